"""Crash recovery, in process: a kernel 'dies' (no shutdown), a new one boots on its journal."""

from __future__ import annotations

import asyncio

from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel, ProcState
from llmos.llm.fake import FakeEngine

S = ProcState


async def crash(k: Kernel) -> None:
    """What kill -9 leaves behind: whatever the journal committed, nothing else."""
    await k.loop.stop()
    if k._timer_task is not None:
        k._timer_task.cancel()
    k.closed = True
    k.journal.flush()
    k.journal.close()
    await k.executor.close()
    k.lock.release()


async def boot(config, clock, registry, **kw) -> Kernel:
    kw.setdefault("hal", FakeHAL(clock))
    return await Kernel.boot(config, engines={"fake": FakeEngine("ok")}, tools=registry, clock=clock, **kw)


async def test_unfinished_work_is_requeued_or_held_for_confirmation(config, clock, registry, workdir):
    k = await boot(config, clock, registry, run_loop=False)
    append = {"tool": "test.append", "workdir": str(workdir), "args": {"path": "log.txt", "line": "a"}}
    queued_tool = await k.submit("tool", append, idempotency_key="q")
    started_tool = await k.submit("tool", {**append, "args": {"path": "log.txt", "line": "b"}})
    started_echo = await k.submit("tool", {"tool": "test.echo", "args": {"text": "e"}})
    started_llm = await k.submit("llm", {"prompt": "hello"})
    run = await k.submit("run", {"title": "r"})
    task = await k.add_task(lambda: 1)
    done = await k.submit("tool", {"tool": "test.echo", "args": {"text": "done"}})
    for pid in (started_tool, started_echo, started_llm, done):
        k.sched.remove(pid)
    works = await k._claim([started_tool, started_echo, started_llm, done])   # RUNNING, committed
    for pid in (started_tool, started_echo):
        works[pid].began()                                   # their workers began (journaled)
    k._end(k.procs.get(done), S.SUCCEEDED, "finished", result="done")
    await crash(k)

    k2 = await boot(config, clock, registry)
    try:
        rep = k2.recovery
        assert rep.processes == 7
        assert sorted(rep.requeued) == sorted([queued_tool, started_echo, started_llm])
        assert rep.needs_confirmation == [started_tool] and rep.failed == [task.pid]
        p = k2.procs.get(started_tool)
        assert p.state == S.WAITING and p.reason.startswith("needs_confirmation: tool test.append may have run")
        assert k2.view(p)["needs_confirmation"]
        assert k2.procs.get(run).state == S.WAITING
        assert k2.procs.get(done).state == S.SUCCEEDED and k2.procs.get(done).result == "done"
        assert "callable" in k2.procs.get(task.pid).reason
        await k2.run_until_idle(5)
        for pid in (queued_tool, started_echo, started_llm):
            assert k2.procs.get(pid).state == S.SUCCEEDED, k2.procs.get(pid)
        assert k2.procs.get(started_llm).attempts == 2
        assert (workdir / "log.txt").read_text() == "a\n"        # the uncertain 'b' did not run again
        # the person says yes: it runs (once more); or kill drops it
        res = await k2.syscall("root", "proc.confirm", {"pid": started_tool})
        assert res.value["state"] == "queued"
        await k2.run_until_idle(5)
        assert (workdir / "log.txt").read_text() == "a\nb\n"
        res = await k2.syscall("root", "proc.confirm", {"pid": started_tool})
        assert res.error.code == "invalid_argument"
        # a retried submission with the same key finds the first process
        again = await k2.syscall("root", "proc.spawn", {"kind": "tool", "spec": append, "idempotency_key": "q"})
        assert again.value == {"pid": queued_tool, "state": "succeeded", "deduplicated": True}
        # pids keep counting up after recovery
        assert await k2.submit("run") == done + 1
        hist = (await k2.syscall("root", "proc.get", {"pid": started_llm, "history": True})).value["history"]
        assert any("recovered" in h["reason"] for h in hist)
    finally:
        await k2.shutdown()


async def test_boot_refuses_a_second_kernel_on_the_same_state_dir(config, clock, registry):
    from llmos.errors import StateDirError

    k = await boot(config, clock, registry)
    try:
        try:
            await boot(config, clock, registry)
        except StateDirError as e:
            assert "another kernel" in str(e)
        else:
            raise AssertionError("second boot succeeded")
    finally:
        await k.shutdown()
    k = await boot(config, clock, registry)      # released at shutdown
    await k.shutdown()


async def test_graceful_shutdown_finishes_tools_and_checkpoints_generations(config, clock, registry, gate):
    engine = FakeEngine("word " * 200, step_delay_s=0.01)
    k = await Kernel.boot(config, engines={"fake": engine}, tools=registry, clock=clock, hal=FakeHAL(clock))
    tool = await k.submit("tool", {"tool": "test.block", "args": {}})
    gen = await k.submit("llm", {"prompt": "long", "max_tokens": 200})
    while not (k.procs.get(tool).state == S.RUNNING and k.procs.get(gen).state == S.RUNNING):
        await asyncio.sleep(0.01)
    asyncio.get_running_loop().call_later(0.1, gate.set)
    await k.shutdown(grace_s=5)
    k2 = await Kernel.boot(config, engines={"fake": FakeEngine("ok")}, tools=registry, clock=clock,
                           run_loop=False, hal=FakeHAL(clock))
    try:
        assert k2.procs.get(tool).state == S.SUCCEEDED
        g = k2.procs.get(gen)
        assert g.state == S.QUEUED and "checkpointed at shutdown" in g.reason
        assert k2.recovery.requeued == [gen]
    finally:
        await k2.shutdown()


async def test_timers_survive_restart_and_fire_late(config, clock, registry):
    k = await boot(config, clock, registry)
    await k.syscall("root", "timer.set", {"in_s": 10, "message": "stretch"})
    await k.syscall("root", "timer.set", {"in_s": 1000, "message": "later"})
    await crash(k)
    clock.advance(60)                                 # the kernel was down when 'stretch' came due
    k2 = await boot(config, clock, registry)
    try:
        assert len(k2.recovery.late_timers) == 1
        timers = (await k2.syscall("root", "timer.list", {"all": True})).value["timers"]
        fired = [t for t in timers if t["state"] == "fired"]
        assert [(t["message"], t["late"]) for t in fired] == [("stretch", True)]
        ctx = (await k2.syscall("root", "memory.context", {})).value["messages"]
        assert ctx[-1]["content"] == "reminder (late): stretch"
        pending = (await k2.syscall("root", "timer.list", {})).value["timers"]
        assert [t["message"] for t in pending] == ["later"]
    finally:
        await k2.shutdown()
