"""Arithmetic read from English (the pre-pass's ``arithmetic``)."""

from __future__ import annotations

import pytest

from llmos.shell.arith import arithmetic


@pytest.mark.parametrize("text,expr", [
    ("what is 80 increased by 15 percent?", "(80 * (1 + 15 / 100))"),
    ("increase 200 by 10%", "(200 * (1 + 10 / 100))"),
    ("what is 50 reduced by 20 percent", "(50 * (1 - 20 / 100))"),
    ("what do I pay for 60 dollars after a 25% discount?", "(60 * (1 - 25 / 100))"),
    ("what percent is 30 of 120", "(30 / 120 * 100)"),
    ("I have three boxes with 24 pencils each", "(3 * 24)"),
    ("if 6 tickets cost 15 dollars each, what is the total?", "(6 * 15)"),
    ("half of 90", "(90 / 2)"),
    ("subtract 45 from 300", "(300 - 45)"),
    ("add 250 and 375 and 125", "250 + 375 + 125"),
    ("divide 1000 by 8 and add 5", "(1000 / 8) + 5"),
    ("compute (12 + 8) * 7", "(12 + 8) * 7"),
    ("how much is 7.5 times 4", "7.5 * 4"),
    ("I have 3 apples and 2 pears", None),
    ("meet at 5 on 2026-05-04", None),
])
def test_phrases(text, expr):
    assert arithmetic(text) == expr
