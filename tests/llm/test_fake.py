import asyncio

import pytest

from llmos.errors import ContextOverflow, InvalidRequest
from llmos.llm.base import GenerationRequest, SamplingParams, StepDecision
from llmos.llm.fake import FakeEngine


def req(text="hi", **kw):
    return GenerationRequest(messages=({"role": "user", "content": text},), **kw)


async def test_echo_streams_then_completes(fake_engine):
    h = fake_engine.submit(req("one two three"))
    chunks = [c.text async for c in h]
    done = await h.result()
    assert "".join(chunks) == done.text == "one two three"
    assert done.finish_reason == "stop" and done.usage.completion_tokens == 3


async def test_max_tokens_and_stop():
    eng = FakeEngine("a b c d e f")
    await eng.start()
    try:
        r1 = await eng.generate(req(params=SamplingParams(max_tokens=2)))
        assert r1.text == "a b" and r1.finish_reason == "length"
        r2 = await eng.generate(req(params=SamplingParams(stop=(" d",))))
        assert r2.text == "a b c" and r2.finish_reason == "stop"
    finally:
        await eng.close()


async def test_policy_decides_who_advances():
    class OnlyFirst:
        def decide(self, seqs, budget):
            first = min(seqs, key=lambda s: s.arrival_s)
            return StepDecision(run=[first.request_id], reason="first only")

    eng = FakeEngine("x y z")
    eng.set_policy(OnlyFirst())
    await eng.start()
    try:
        a, b = eng.submit(req()), eng.submit(req())
        ra = await a.result()
        assert not b.done or (await b.result()).usage.ttft_s >= ra.usage.ttft_s
        await b.result()
        assert all(len(d.run) == 1 for d in eng.step_log)
    finally:
        await eng.close()


async def test_cancel(fake_engine):
    fake_engine.set_policy(type("Never", (), {"decide": lambda self, s, b: StepDecision()})())
    h = fake_engine.submit(req("never finishes"))
    await asyncio.sleep(0)
    assert fake_engine.cancel(h.request_id)
    assert (await h.result()).finish_reason == "cancelled"
    assert not fake_engine.cancel(h.request_id)


@pytest.mark.parametrize("bad, field", [
    (GenerationRequest(messages=()), "messages"),
    (GenerationRequest(), "messages"),
    (GenerationRequest(prompt="x", priority=99), "priority"),
    (GenerationRequest(prompt="x", params=SamplingParams(max_tokens=0)), "max_tokens"),
    (GenerationRequest(prompt="x", params=SamplingParams(temperature=-1)), "temperature"),
    (GenerationRequest(messages=({"role": "wizard", "content": "x"},)), "messages[0].role"),
    (GenerationRequest(prompt="x", json_schema="nope"), "json_schema"),  # type: ignore[arg-type]
    (req(prefix_messages=2), "prefix_messages"),                      # more than there are
    (req(prefix_messages=-1), "prefix_messages"),
    (req(prefix_messages=True), "prefix_messages"),                  # type: ignore[arg-type]
    (req(prefix_messages="1"), "prefix_messages"),                   # type: ignore[arg-type]
    (GenerationRequest(prompt="x", prefix_messages=1), "prefix_messages"),   # chat only
    (GenerationRequest(prompt="abc", prefix_chars=4), "prefix_chars"),
    (req(prefix_chars=1), "prefix_chars"),                            # prompt only
])
async def test_bad_requests_name_the_field(fake_engine, bad, field):
    with pytest.raises(InvalidRequest) as ei:
        fake_engine.submit(bad)
    assert ei.value.field == field


async def test_marked_prefix_is_accepted_and_recorded(fake_engine):
    two = ({"role": "system", "content": "rules"}, {"role": "user", "content": "go now"})
    done = await fake_engine.generate(GenerationRequest(messages=two, prefix_messages=1))
    assert done.text == "go now"
    await fake_engine.generate(GenerationRequest(prompt="fixed part, then more", prefix_chars=11))
    await fake_engine.generate(GenerationRequest(messages=two, prefix_messages=0))   # 0: none
    assert [(r.prefix_messages, r.prefix_chars) for r in fake_engine.requests] == [
        (1, None), (None, 11), (0, None)]


async def test_context_overflow():
    eng = FakeEngine(context_length=10)
    with pytest.raises(ContextOverflow):
        eng.submit(req("x", params=SamplingParams(max_tokens=50)))
