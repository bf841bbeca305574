"""The loop: step() is schedule -> run -> update; failures don't kill it; preemption."""

from __future__ import annotations

import asyncio

from llmos.executor.base import Outcome
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel, ProcState
from llmos.kernel.loop import KernelLoop
from llmos.kernel.sched import Plan
from llmos.llm.fake import FakeEngine

S = ProcState


class _Sched:
    def __init__(self, log):
        self.log = log
        self._running = [7]

    def schedule(self, now, free_slots):
        self.log.append(("schedule", now, free_slots))
        return Plan(run=[1], reasons={1: "first"}, at_s=now)

    def running(self):
        return self._running


class _Exec:
    def __init__(self, log, fail_first=False):
        self.log = log
        self.fail = fail_first

    async def run(self, plan):
        self.log.append(("run", list(plan.run)))
        if self.fail:
            self.fail = False
            raise RuntimeError("executor hiccup")
        await asyncio.sleep(0)
        return Outcome(finished={1}, usage={1: (3, 0.1)})


async def test_step_is_schedule_run_update(clock):
    log: list = []
    loop = KernelLoop(_Sched(log), _Exec(log), lambda plan, out: log.append(("update", plan.run, out.finished)),
                      clock, slots=4)
    out = await loop.step()
    assert log == [("schedule", clock.time(), 3), ("run", [1]), ("update", [1], {1})]
    assert out.finished == {1} and loop.plan.reasons == {1: "first"} and loop.steps == 1


async def test_a_failing_step_is_logged_and_the_loop_goes_on(clock, caplog):
    log: list = []
    loop = KernelLoop(_Sched(log), _Exec(log, fail_first=True), lambda p, o: log.append("update"),
                      clock, slots=4)
    loop.start()
    for _ in range(200):
        if log.count("update") >= 2:
            break
        await asyncio.sleep(0.01)
    await loop.stop()
    assert loop.failures == 1 and log.count("update") >= 2
    assert "kernel step failed" in caplog.text


async def test_high_priority_generation_preempts_a_low_one(config, clock):
    engine = FakeEngine(lambda req: "low " * 60 if req.priority > 0 else "urgent answer",
                        step_delay_s=0.002)
    k = await Kernel.boot(config.replace(scheduler="priority"), engines={"fake": engine}, clock=clock,
                          hal=FakeHAL(clock))
    try:
        k.loop.slots = 1
        low = await k.submit("llm", {"prompt": "background", "max_tokens": 100}, priority=10)
        while k.procs.get(low).state != S.RUNNING or k.sched.used(low)[0] < 8:
            await asyncio.sleep(0.005)
            k.executor.wake()        # report progress so the scheduler sees tokens
        high = await k.submit("llm", {"prompt": "now", "max_tokens": 20}, priority=-10)
        assert (await k.result(high, timeout_s=None))["text"] == "urgent answer"
        await k.run_until_idle(10)
        lp = k.procs.get(low)
        assert lp.state == S.SUCCEEDED and lp.result["text"] == "low " * 60
        k.journal.flush()
        hist = [h["to"] for h in k.view(lp, history=True)["history"]]
        assert "preempted" in hist and hist.count("running") == 2
        reasons = [h["reason"] for h in k.view(lp, history=True)["history"]]
        assert any(r.startswith("preempted by pid") for r in reasons)
        assert any(r.startswith("resumed") for r in reasons)
        assert lp.attempts == 2 and lp.result["usage"]["preemptions"] >= 1
    finally:
        await k.shutdown()
