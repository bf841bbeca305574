"""Only a step that really began counts as started. Tools the kernel dispatched but
that were still waiting for a tool worker when the kernel died cannot have done
anything: recovery runs them again instead of asking the person whether "attempt 1
started" may be repeated."""

from __future__ import annotations

import asyncio
import threading

from llmos.executor.local import TOOL_WORKERS
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel, ProcState
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import Tool, ToolRegistry, ToolResult
from llmos.types import Risk

S = ProcState


def registry(began: list[str], gate: threading.Event) -> ToolRegistry:
    def hold(ctx, args):
        began.append(args["key"])
        gate.wait(20)
        return ToolResult(output=args["key"], summary="held")

    schema = {"type": "object", "additionalProperties": False,
              "properties": {"key": {"type": "string", "maxLength": 40}}, "required": ["key"]}
    return ToolRegistry([Tool(name="t.hold", description="hold a worker", parameters=schema,
                              risk=Risk.WRITE, fn=hold, kind="text", idempotent=False)])


async def crash(k: Kernel) -> None:
    """What kill -9 leaves behind: whatever the journal committed, nothing else."""
    await k.loop.stop()
    if k._timer_task is not None:
        k._timer_task.cancel()
    k.closed = True
    k.journal.flush()
    k.journal.close()
    k.executor._pool.shutdown(wait=False, cancel_futures=True)
    k.lock.release()


async def test_dispatched_but_never_begun_tools_are_rerun_not_held(config, clock, workdir=None):
    began: list[str] = []
    gate = threading.Event()
    reg = registry(began, gate)
    k = await Kernel.boot(config, engines={"fake": FakeEngine("ok")}, tools=reg, clock=clock,
                          hal=FakeHAL(clock))
    n = TOOL_WORKERS + 2
    pids = {}
    for i in range(n):
        pids[f"k{i}"] = await k.submit("tool", {"tool": "t.hold", "args": {"key": f"k{i}"}},
                                       idempotency_key=f"k{i}")
    for _ in range(500):                       # every one dispatched, only TOOL_WORKERS began
        if all(k.procs.get(p).state == S.RUNNING for p in pids.values()) and len(began) >= TOOL_WORKERS:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert all(k.procs.get(p).state == S.RUNNING for p in pids.values())
    assert len(began) == TOOL_WORKERS
    await crash(k)
    started = {pids[key] for key in began}
    try:
        k2 = await Kernel.boot(config, engines={"fake": FakeEngine("ok")}, tools=reg, clock=clock,
                               hal=FakeHAL(clock), run_loop=False)
        try:
            rep = k2.recovery
            assert sorted(rep.needs_confirmation) == sorted(started)
            never = set(pids.values()) - started
            assert never and never <= set(rep.requeued)
            for pid in started:
                p = k2.procs.get(pid)
                assert p.state == S.WAITING and "began" in p.reason, p.reason
            for pid in never:
                p = k2.procs.get(pid)
                assert p.state == S.QUEUED and "never began" in p.reason, p.reason
        finally:
            gate.set()
            await k2.shutdown()
    finally:
        gate.set()
