"""The loop's hooks: the tokens-per-minute quota stops a running generation; placement
drops what has no room from the plan (the loop's place step)."""

from __future__ import annotations

import asyncio

import pytest

from llmos.errors import QuotaExceeded
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel, ProcState
from llmos.kernel.loop import KernelLoop
from llmos.kernel.sched import Plan
from llmos.llm.fake import FakeEngine

from .conftest import make_agent

S = ProcState


@pytest.fixture
async def k(config, clock):
    engine = FakeEngine(lambda req: "w " * 30, step_delay_s=0.001)
    kern = await Kernel.boot(config, engines={"fake": engine}, clock=clock, hal=FakeHAL(clock))
    await make_agent(kern, "chatty", syscalls=["llm.*", "proc.*", "agent.list"], quotas={"tokens_per_min": 10})
    yield kern
    await kern.shutdown()


async def test_quota_stops_a_running_generation(k, clock):
    chunks = [e async for e in k.syscall_stream("chatty", "llm.generate",
                                                {"prompt": "go", "max_tokens": 30, "stream": True})]
    final = chunks[-1]
    assert final["type"] == "result" and not final["ok"]
    assert final["error"]["error"] == "quota_exceeded" and "tokens_per_min=10" in final["error"]["message"]
    assert len([c for c in chunks if c["type"] == "chunk"]) == 10          # no token past the quota
    p = next(p for p in k.procs if p.owner == "chatty")
    assert p.state == S.FAILED and p.tokens_out == 10 and p.result["text"].split() == ["w"] * 10
    assert p.result["finish_reason"] == "quota"
    assert k.usage.tokens_last_min("chatty") == 10 + p.tokens_in       # prompt counted at the end
    with pytest.raises(QuotaExceeded):                                   # admission refuses now
        await k.submit("llm", {"prompt": "more"}, agent="chatty")
    clock.advance(61.0)                                                  # the window moved on
    pid = await k.submit("llm", {"prompt": "more", "max_tokens": 5}, agent="chatty")
    assert (await k.result(pid))["text"].split() == ["w"] * 5


async def test_concurrent_generations_share_the_quota(k):
    pids = await asyncio.gather(*(k.submit("llm", {"prompt": "go", "max_tokens": 30}, agent="chatty")
                                  for _ in range(3)))
    await k.run_until_idle(10)
    procs = [k.procs.get(p) for p in pids]
    assert sum(p.tokens_out for p in procs) == 10
    assert all(p.state == S.FAILED and p.error["error"] == "quota_exceeded" for p in procs)
    assert k.usage_of("chatty")["tokens_total"] == 10 + sum(p.tokens_in for p in procs)


async def test_agents_without_a_quota_are_not_stopped(k):
    pid = await k.submit("llm", {"prompt": "go", "max_tokens": 30})
    assert (await k.result(pid))["text"].split() == ["w"] * 30


class _Sched:
    def __init__(self):
        self._running: list[int] = []

    def schedule(self, now, free_slots):
        return Plan(run=[1, 2, 3], at_s=now)

    def running(self):
        return self._running


class _Exec:
    def __init__(self):
        self.ran: list[list[int]] = []

    async def run(self, plan):
        from llmos.executor.base import Outcome

        self.ran.append(list(plan.run))
        await asyncio.sleep(0)
        return Outcome()


async def test_the_loop_places_between_schedule_and_run(clock):
    ex = _Exec()
    updates = []

    def place(plan):
        plan.run.remove(2)             # no room for pid 2 this step

    loop = KernelLoop(_Sched(), ex, lambda p, o: updates.append(list(p.run)), clock, slots=4, place=place)
    await loop.step()
    assert ex.ran == [[1, 3]] and updates == [[1, 3]]
