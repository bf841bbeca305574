"""``llm.generate``'s decoder: the marked fixed prefix (``prefix_messages`` /
``prefix_chars``) is checked against what it marks and reaches the engine."""

from __future__ import annotations

import asyncio

import pytest

from llmos.errors import Cancelled
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


@pytest.mark.model
async def test_a_fresh_kernel_loads_the_prefix_a_previous_one_saved(config, clock) -> None:
    """Two in-process kernels one after the other (two `llmos run`s without a daemon) on the
    embedded model: the second one evaluates only what follows the marked prefix."""
    system = {"role": "system", "content": "You plan tool calls for LLM OS. Answer with one short line. " * 6}
    args = {"messages": [system, {"role": "user", "content": "Plot sales by month"}], "prefix_messages": 1,
            "max_tokens": 4}
    results, stats = [], []
    for _ in range(2):
        k = await Kernel.boot(config, clock=clock, hal=FakeHAL(clock))
        try:
            res = await k.syscall("root", "llm.generate", args)
            assert res.ok, res.error
            results.append(res.value)
            (engine,) = k.engine_set.loaded.values()
            stats.append(engine.stats())
        finally:
            await k.shutdown(grace_s=0.5)
    assert [p.suffix for p in (config.home / "cache" / "kv-prefix").iterdir()] == [".bin"]
    first, second = results
    assert first["usage"]["cached_tokens"] == 0 and stats[0].prompt_tokens_loaded == 0
    assert second["usage"]["cached_tokens"] == stats[1].prompt_tokens_loaded > 0
    assert stats[1].prompt_tokens_evaluated == second["usage"]["prompt_tokens"] - stats[1].prompt_tokens_loaded
    assert second["text"] == first["text"]


async def test_a_generation_past_timeout_s_is_stopped_and_named(config, clock) -> None:
    """A generation that never finishes (one step an hour) ends at timeout_s on the kernel
    clock: the call fails with TimedOut, the process is killed and the engine drops it."""
    engine = FakeEngine("never " * 50, step_delay_s=3600)
    k = await Kernel.boot(config, engines={"fake": engine}, clock=clock, hal=FakeHAL(clock))
    try:
        call = asyncio.ensure_future(k.syscall("root", "llm.generate", {"prompt": "go", "timeout_s": 30}))
        for _ in range(500):
            if engine.views():
                break
            await asyncio.sleep(0.01)
        assert engine.views() and not call.done()              # generating, not finished
        clock.advance(29)
        await asyncio.sleep(0.1)
        assert not call.done()
        clock.advance(1)
        res = await asyncio.wait_for(call, 5)
        assert not res.ok and res.error.code == "timed_out", res.error
        assert "30 s" in res.error.message and "timeout_s" in res.error.message
        assert isinstance(res.error, Cancelled)
        assert engine.views() == []                            # the engine's sequence is gone
        killed = [p for p in k.procs if p.kind == "llm"]
        assert [p.state.name for p in killed] == ["KILLED"] and "timed out" in killed[0].reason
    finally:
        await k.shutdown(grace_s=0.5)


async def test_timeout_s_must_be_positive(booted) -> None:
    k, engine = booted
    for bad in (0, -1, "5"):
        res = await k.syscall("root", "llm.generate", {"prompt": "go", "timeout_s": bad})
        assert not res.ok and res.error.field == "timeout_s", res.error
    res = await k.syscall("root", "llm.generate", {"prompt": "go", "timeout_s": 60})
    assert res.ok and res.value["text"] == "done"
