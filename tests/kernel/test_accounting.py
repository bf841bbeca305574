"""Per-agent accounting: the tokens-per-minute window (live charges), lifetime totals, joules."""

from __future__ import annotations

from llmos.kernel.accounting import TOKEN_WINDOW_S, Accounting
from llmos.kernel.process import Process


def test_window_slides_and_live_charges_count(clock):
    acc = Accounting(clock.time)
    acc.charge("a", 30, 1.5)
    clock.advance(30)
    acc.charge_live("a", 5)
    acc.charge_live("a", 5)
    assert acc.tokens_last_min("a") == 40 and acc.tokens_last_min("b") == 0
    clock.advance(TOKEN_WINDOW_S - 29)           # the first charge left the window
    assert acc.tokens_last_min("a") == 10
    clock.advance(60)
    assert acc.tokens_last_min("a") == 0
    assert acc.of("a") == {"tokens_total": 40, "tokens_last_min": 0, "cpu_s": 1.5}


def test_seed_and_energy_totals(clock):
    acc = Accounting(clock.time)
    acc.seed([Process(1, "llm", "a", {}, tokens_in=3, tokens_out=4, joules=10.0, joules_modelled=10.0),
              Process(2, "job", "a", {}, cpu_s=2.0),
              Process(3, "job", "b", {}, joules=6.0, joules_modelled=0.0)])
    acc.add_energy("a", 4.0, 0.0)
    ua, ub = acc.usage("a"), acc.usage("b")
    assert (ua.tokens, ua.cpu_s, ua.joules, ua.joules_modelled) == (7, 2.0, 14.0, 10.0)
    assert ua.joules_label == "mixed" and ub.joules_label == "measured"
    assert acc.usage("nobody").joules is None and acc.agents() == ["a", "b"]
    assert acc.tokens_last_min("a") == 0         # seeded totals are not in the window
