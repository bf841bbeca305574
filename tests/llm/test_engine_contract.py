"""One contract suite for every Engine: what any engine must do, whatever drives it.

Engines come from ``ENGINES``: a name → async factory that yields a started engine.
Add an engine by adding a factory and a ``pytest.param`` (with its marks) to ``CASES``.
Answers differ between engines, so the tests derive expectations from each engine's
own first answer (a stop string cut from it, the same text after a suspend, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from llmos.errors import ContextOverflow, EngineError, InvalidRequest
from llmos.llm.base import (
    Engine,
    FifoPolicy,
    GenerationRequest,
    SamplingParams,
    SeqView,
    StepBudget,
    StepDecision,
)
from llmos.llm.fake import FakeEngine

LONG = ("Write a long and detailed essay about the history of the Roman empire, its emperors, "
        "its roads, its armies and its fall, with many examples")


@contextlib.asynccontextmanager
async def _fake(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    eng = FakeEngine(step_delay_s=0.001)
    await eng.start()
    try:
        yield eng
    finally:
        await eng.close()


@contextlib.asynccontextmanager
async def _llamacpp(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    yield request.getfixturevalue("llama_engine")


@contextlib.asynccontextmanager
async def _openai(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    """The remote engine against the scripted OpenAI-compatible stub (tests/llm/conftest.py)."""
    from stub_openai_server import Reply

    from llmos.llm.openai import OpenAIEngine

    stub = request.getfixturevalue("openai_stub")
    stub.script = lambda body: Reply(token_delay_s=0.01)   # slow enough to cancel mid-stream
    eng = OpenAIEngine(stub.base_url, "stub-model", context_length=512, chat_resume={})
    await eng.start()
    try:
        yield eng
    finally:
        await eng.close()


ENGINES: dict[str, Callable[[pytest.FixtureRequest], contextlib.AbstractAsyncContextManager[Engine]]] = {
    "fake": _fake,
    "llamacpp": _llamacpp,
    "openai": _openai,
}
CASES = [
    pytest.param("fake", id="fake"),
    pytest.param("llamacpp", id="llamacpp", marks=pytest.mark.model),
    pytest.param("openai", id="openai"),
]


@pytest.fixture(params=CASES)
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    async with ENGINES[request.param](request) as eng:
        yield eng


def chat(text: str, max_tokens: int = 16, **kw: Any) -> GenerationRequest:
    return GenerationRequest(messages=({"role": "user", "content": text},),
                             params=SamplingParams(max_tokens=max_tokens, **kw))


async def test_stream_then_result(engine: Engine) -> None:
    h = engine.submit(chat(LONG, 8))
    chunks = [c async for c in h]
    done = await h.result()
    assert done.request_id == h.request_id
    assert done.finish_reason in ("stop", "length")
    assert "".join(c.text for c in chunks) == done.text
    assert [c.index for c in chunks] == sorted(c.index for c in chunks)
    assert 0 < len(chunks) <= done.usage.completion_tokens <= 8
    assert done.usage.prompt_tokens > 0
    assert done.usage.total_s >= done.usage.ttft_s >= 0


async def test_max_tokens_gives_length(engine: Engine) -> None:
    done = await engine.generate(chat(LONG, 3))
    assert done.finish_reason == "length"
    assert done.usage.completion_tokens == 3


async def test_stop_string_cuts_the_text(engine: Engine) -> None:
    full = (await engine.generate(chat(LONG, 12))).text
    words = full.split()
    assert len(words) >= 3, full
    stop = words[2]
    cut = full.index(stop)
    done = await engine.generate(chat(LONG, 12, stop=(stop,)))
    assert done.finish_reason == "stop"
    assert done.text == full[:cut]


async def test_concurrent_requests_all_complete(engine: Engine) -> None:
    qs = [f"{LONG} (part {i})" for i in range(6)]
    done = await asyncio.gather(*(engine.generate(chat(q, 6)) for q in qs))
    assert len({d.request_id for d in done}) == 6
    assert all(d.finish_reason in ("stop", "length") and d.usage.completion_tokens >= 1 for d in done)


async def test_cancel(engine: Engine) -> None:
    h = engine.submit(chat(LONG, 200))
    async for _ in h:
        break
    assert engine.cancel(h.request_id) is True
    done = await h.result()
    assert done.finish_reason == "cancelled"
    assert done.usage.completion_tokens < 200
    assert engine.cancel(h.request_id) is False
    assert engine.cancel("no-such-request") is False


async def test_suspend_resume_gives_the_same_text(engine: Engine) -> None:
    plain = (await engine.generate(chat(LONG, 12))).text
    h = engine.submit(chat(LONG, 12))
    seen = 0
    async for _ in h:
        seen += 1
        if seen == 3:
            await engine.suspend(h.request_id)
            await asyncio.sleep(0.02)
            await engine.resume(h.request_id)
    done = await h.result()
    assert done.text == plain
    assert done.usage.preemptions >= 1


async def test_suspend_unknown_request_fails(engine: Engine) -> None:
    with pytest.raises(EngineError):
        await engine.suspend("no-such-request")


class _Only:
    """A step policy that advances only the listed requests (FIFO among them)."""

    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed
        self.seen: list[list[SeqView]] = []

    def decide(self, seqs: list[SeqView], budget: StepBudget) -> StepDecision:
        self.seen.append(list(seqs))
        run = [s.request_id for s in sorted(seqs, key=lambda s: s.arrival_s) if s.request_id in self.allowed]
        return StepDecision(run=run[: budget.max_active], reason="only")


async def test_policy_decides_who_advances(engine: Engine) -> None:
    a = engine.submit(chat(LONG + " A", 6))
    b = engine.submit(chat(LONG + " B", 6))
    policy = _Only({a.request_id})
    engine.set_policy(policy)
    done_a = await a.result()
    assert done_a.usage.completion_tokens >= 1
    await asyncio.sleep(0.02)
    assert not b.done
    views_b = [v for step in policy.seen for v in step if v.request_id == b.request_id]
    assert views_b and all(v.generated_tokens == 0 for v in views_b)
    engine.set_policy(FifoPolicy())
    assert (await b.result()).usage.completion_tokens >= 1


async def test_bad_input_is_a_clear_error(engine: Engine) -> None:
    with pytest.raises(InvalidRequest) as e:
        engine.submit(GenerationRequest(messages=()))
    assert e.value.field == "messages"
    with pytest.raises(InvalidRequest) as e:
        engine.submit(chat("hi", 0))
    assert e.value.field == "max_tokens"
    with pytest.raises(ContextOverflow):
        engine.submit(chat("hi", engine.capabilities.context_length + 1))
    with pytest.raises(ContextOverflow):
        engine.submit(GenerationRequest(prompt="word " * (engine.capabilities.context_length + 10)))


async def test_a_marked_prefix_is_only_a_hint(engine: Engine) -> None:
    system = {"role": "system", "content": "You answer in one short sentence. " * 6}
    req = GenerationRequest(messages=(system, {"role": "user", "content": LONG}),
                            params=SamplingParams(max_tokens=6))
    plain = (await engine.generate(req)).text
    marked = dataclasses.replace(req, prefix_messages=1, request_id="marked-1")
    assert (await engine.generate(marked)).text == plain
    again = dataclasses.replace(req, prefix_messages=1, request_id="marked-2")
    assert (await engine.generate(again)).text == plain
    with pytest.raises(InvalidRequest) as e:
        engine.submit(dataclasses.replace(req, prefix_messages=3))
    assert e.value.field == "prefix_messages"


async def test_capabilities_and_stats(engine: Engine) -> None:
    caps = engine.capabilities
    assert caps.batching and caps.context_length > 0 and caps.max_active >= 1
    assert engine.count_tokens("hello there, general kenobi") >= 3
    before = engine.stats().tokens_generated
    await engine.generate(chat(LONG, 4))
    st = engine.stats()
    assert st.tokens_generated >= before + 1
    assert st.steps >= 1 and st.kv_total_tokens > 0
