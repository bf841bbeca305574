"""``llm.generate``'s decoder: the marked fixed prefix (``prefix_messages`` /
``prefix_chars``) is checked against what it marks and reaches the engine."""

from __future__ import annotations

import pytest

from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.llm.fake import FakeEngine

MSGS = [{"role": "system", "content": "fixed rules and examples"}, {"role": "user", "content": "go"}]


@pytest.fixture
async def booted(config, clock):
    engine = FakeEngine("done")
    k = await Kernel.boot(config, engines={"fake": engine}, clock=clock, hal=FakeHAL(clock))
    yield k, engine
    await k.shutdown(grace_s=0.5)


async def test_the_marked_prefix_reaches_the_engine(booted) -> None:
    k, engine = booted
    res = await k.syscall("root", "llm.generate", {"messages": MSGS, "prefix_messages": 1, "max_tokens": 4})
    assert res.ok, res.error
    res = await k.syscall("root", "llm.generate", {"prompt": "fixed part; the rest", "prefix_chars": 11})
    assert res.ok, res.error
    res = await k.syscall("root", "llm.generate", {"prompt": "no prefix"})
    assert res.ok, res.error
    assert [(r.prefix_messages, r.prefix_chars) for r in engine.requests] == [(1, None), (None, 11),
                                                                              (None, None)]


@pytest.mark.parametrize("args, field", [
    ({"messages": MSGS, "prefix_messages": 3}, "prefix_messages"),       # only 2 messages
    ({"messages": MSGS, "prefix_messages": -1}, "prefix_messages"),
    ({"messages": MSGS, "prefix_messages": "1"}, "prefix_messages"),     # strict: no coercion
    ({"messages": MSGS, "prefix_messages": True}, "prefix_messages"),
    ({"prompt": "abc", "prefix_messages": 1}, "prefix_messages"),        # chat only
    ({"prompt": "abc", "prefix_chars": 4}, "prefix_chars"),              # past the prompt
    ({"messages": MSGS, "prefix_chars": 1}, "prefix_chars"),             # prompt only
])
async def test_a_bad_prefix_is_an_error_naming_the_field(booted, args, field) -> None:
    k, engine = booted
    res = await k.syscall("root", "llm.generate", args)
    assert not res.ok and res.error.code == "invalid_argument"
    assert res.error.field == field and field in res.error.message
    assert engine.requests == []
