"""The kernel's engines: live renice into the step policy, engine stats, the default engine."""

from __future__ import annotations

import asyncio

from llmos.executor.base import pid_of_request, request_id_for
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel, ProcState
from llmos.kernel.engines import LivePriorities, RenicedPolicy
from llmos.llm.base import SeqState, SeqView, StepBudget, StepDecision
from llmos.llm.fake import FakeEngine

S = ProcState


def view(rid: str, priority: int) -> SeqView:
    return SeqView(rid, "root", priority, SeqState.DECODING, 0.0, 4, 4, 1, 16, 5)


class _Recorder:
    def __init__(self):
        self.seen: list[list[tuple[str, int]]] = []
        self.preemptions = 7

    def decide(self, seqs, budget):
        self.seen.append([(v.request_id, v.priority) for v in seqs])
        return StepDecision(run=[v.request_id for v in seqs])


def test_request_ids_map_back_to_pids():
    assert pid_of_request(request_id_for(42, 3)) == 42
    assert pid_of_request("3f9a0c") is None and pid_of_request("pidx.1") is None
    assert pid_of_request("pid7") is None


def test_reniced_policy_hands_current_priorities_to_the_inner_policy():
    live = LivePriorities()
    inner = _Recorder()
    policy = RenicedPolicy(inner, live)
    budget = StepBudget(4, 512, 1000, 1000)
    seqs = [view(request_id_for(1, 1), 5), view(request_id_for(2, 1), 5), view("external", 5)]
    policy.decide(seqs, budget)
    live.set(2, -10)
    live.set(99, 3)                           # a process not in the engine: ignored
    policy.decide(seqs, budget)
    live.forget(2)
    policy.decide(seqs, budget)
    assert inner.seen == [[("pid1.1", 5), ("pid2.1", 5), ("external", 5)],
                          [("pid1.1", 5), ("pid2.1", -10), ("external", 5)],
                          [("pid1.1", 5), ("pid2.1", 5), ("external", 5)]]
    assert policy.preemptions == 7            # the rest is the inner policy's


async def test_nice_reorders_a_running_generation_inside_the_engine(config, clock):
    engine = FakeEngine(lambda req: "x " * (300 if "long" in (req.prompt or "") else 20),
                        max_active=1, step_delay_s=0.002)
    k = await Kernel.boot(config.replace(scheduler="priority"), engines={"fake": engine}, clock=clock,
                          hal=FakeHAL(clock))
    try:
        first = await k.submit("llm", {"prompt": "long one", "max_tokens": 300}, priority=0)
        second = await k.submit("llm", {"prompt": "short", "max_tokens": 20}, priority=10)
        for _ in range(1000):                 # both RUNNING in the kernel; the engine batch holds one
            if all(k.procs.get(p).state == S.RUNNING for p in (first, second)) and len(engine.step_log) > 10:
                break
            await asyncio.sleep(0.005)
        assert engine.step_log[-1].run == [request_id_for(first, 1)]   # the engine runs the urgent one
        res = await k.syscall("root", "proc.nice", {"pid": second, "priority": -10})
        assert res.ok
        await k.result(second)
        assert k.procs.get(first).state == S.RUNNING                    # overtaken mid-generation
        assert any(request_id_for(first, 1) in d.pause or request_id_for(first, 1) in d.swap_out
                   for d in engine.step_log)                            # the policy preempted it
        await k.result(first)
        assert engine.policy.explain(request_id_for(second, 1))[1:2] == ["reniced 10 -> -10"]
    finally:
        await k.shutdown()


async def test_nice_of_a_queued_generation_reaches_the_engine_through_its_request(config, clock):
    engine = FakeEngine("ok")
    k = await Kernel.boot(config, engines={"fake": engine}, clock=clock, hal=FakeHAL(clock), run_loop=False)
    try:
        pid = await k.submit("llm", {"prompt": "q"}, priority=5)
        await k.syscall("root", "proc.nice", {"pid": pid, "priority": -3})
        await k.run_until_idle(5)
        assert engine.requests[-1].priority == -3
        assert len(k.engine_set.live) == 0                               # forgotten when it ended
    finally:
        await k.shutdown()
