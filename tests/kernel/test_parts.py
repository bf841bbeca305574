"""The kernel's parts, each without the ``Kernel`` facade: the process manager, the
meter, the loop hooks and the programs API over one ``Subsystems`` record (a real
journal, table and scheduler on a fake clock); and no part imports the facade."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import llmos.kernel
from llmos.errors import Cancelled
from llmos.executor.base import Outcome, Result
from llmos.hal.fake import FakeHAL
from llmos.kernel.access import ROOT
from llmos.kernel.boot import make_scheduler_for
from llmos.kernel.energy import EnergyMeter
from llmos.kernel.engines import EngineSet
from llmos.kernel.metering import Meter
from llmos.kernel.process import ProcState
from llmos.kernel.procops import ProcessManager
from llmos.kernel.programs import Programs, TaskHandle
from llmos.kernel.result import SyscallResult
from llmos.kernel.specs import JobType
from llmos.kernel.stepping import LoopHooks, Measured
from llmos.kernel.storage import Journal
from llmos.kernel.subsystems import Subsystems
from llmos.kernel.syscall import Call

S = ProcState
PARTS = ("procops.py", "stepping.py", "metering.py", "programs.py", "subsystems.py", "loop.py", "process.py",
         "engines.py")


@pytest.fixture
def sub(config, clock):
    journal = Journal(config.db_path)
    s = Subsystems(config, clock, journal, EngineSet(config, None, lambda: None))
    s.sched = make_scheduler_for("fifo", clock, config.home)
    s.job_types["x"] = JobType("x", lambda: 1, False)
    yield s
    journal.close()


@pytest.fixture
def parts(sub):
    released: list[tuple[int, Measured | None]] = []
    pm = ProcessManager(sub, release=lambda pid, m: released.append((pid, m)))
    meter = Meter(sub, pm.view)
    return pm, meter, released


def test_no_part_imports_the_facade():
    here = Path(llmos.kernel.__file__).parent
    for name in PARTS:
        for n in ast.walk(ast.parse((here / name).read_text())):
            mods = [a.name for a in n.names] if isinstance(n, ast.Import) else \
                [n.module or ""] if isinstance(n, ast.ImportFrom) else []
            assert "llmos.kernel.core" not in mods, name


async def test_process_manager_alone_spawns_waits_and_ends(sub, parts):
    pm, _, released = parts
    call = Call(ROOT, "proc.spawn")
    run, dup = await pm.spawn(call, "run", {"title": "report"})
    assert not dup and run.state == S.WAITING and pm.busy() == 0
    job, _ = await pm.spawn(call, "job", {"type": "x"}, sink=print, job_call=lambda: 1)
    assert job.state == S.QUEUED and job.pid in sub.sched and pm.busy() == 1
    pm.on_transition_idle()
    assert not pm.idle.is_set()
    fut = pm.waiter(job.pid)
    pm.charge_live(job.pid, 5)
    pm.end(job, S.KILLED, "test")
    assert fut.done() and fut.result() is None and released == [(job.pid, None)]
    assert job.pid not in pm.sinks and job.pid not in pm.calls and pm.take_live_tokens(job.pid) == 0
    assert job.pid not in sub.sched and pm.busy() == 0
    with pytest.raises(Cancelled, match="killed"):
        await pm.result(job.pid)
    assert pm.view(run)["state"] == "waiting" and pm.view(run)["needs_confirmation"] is False


async def test_meter_alone_keeps_placed_joules_and_live_figures(sub, parts, clock):
    pm, meter, _ = parts
    p, _ = await pm.spawn(Call(ROOT, "proc.spawn"), "job", {"type": "x"})
    assert meter.hook(p, S.RUNNING) is None                        # no energy meter: nothing metered
    sub.meter = EnergyMeter(FakeHAL(clock), clock=clock)
    sub.meter.start(p.pid, p.owner, devices=("cpu",))
    sub.procs.transition(p, S.RUNNING, "dispatched")
    clock.advance(2.0)
    changes = meter.hook(p, S.SUCCEEDED)
    assert changes["joules"] == pytest.approx(8.0) and changes["joules_modelled"] == pytest.approx(8.0)
    assert meter.take_placed(p.pid) == pytest.approx(8.0) and meter.take_placed(p.pid) is None
    stats = meter.stats()
    assert stats["processes"]["running"] == 1 and stats["live"][0]["pid"] == p.pid
    assert meter.energy_by_agent()["root"]["label"] == "modelled"


async def test_loop_hooks_alone_fold_an_outcome(sub, parts, clock):
    pm, meter, released = parts

    async def no_syscall(agent, name, args):
        return SyscallResult.success(None)

    hooks = LoopHooks(sub, pm, meter, no_syscall)
    p, _ = await pm.spawn(Call(ROOT, "proc.spawn"), "job", {"type": "x"}, job_call=lambda: 7)
    plan = sub.sched.schedule(clock.time(), 4)
    assert plan.run == [p.pid]
    hooks.place(plan)                                   # no placer: the plan stays as it is
    works = await hooks.claim(plan.run)
    assert p.state == S.RUNNING and works[p.pid].kind == "job" and works[p.pid].call() == 7
    fut = pm.waiter(p.pid)
    hooks.update(plan, Outcome(finished={p.pid}, results={p.pid: Result(p.pid, True, value=7, wall_s=2.0,
                                                                            setup_s=0.5, cpu_s=1.0)}))
    assert p.state == S.SUCCEEDED and p.result == 7 and p.wall_s == 2.0
    assert fut.result().value == 7
    assert released == [(p.pid, Measured(1.5, True, None, 0.75))]
    assert sub.usage.of("root")["cpu_s"] == 1.0


async def test_programs_alone_go_through_the_syscall_door(sub, parts):
    pm, _, _ = parts
    asked = []

    async def door(agent, name, args):
        asked.append((agent, name, args["kind"]))
        return SyscallResult.success({"pid": 41})

    progs = Programs(sub, pm, door, lambda pid: TaskHandle(None, pid))
    progs.register_job("echo", lambda text: text)
    assert "echo" in sub.job_types
    assert await progs.submit("run", {"title": "t"}, agent="root") == 41 and asked == [("root", "proc.spawn", "run")]
    handle = await progs.add_task(lambda: 3, name="three")
    assert sub.procs.get(handle.pid).state == S.QUEUED and handle.pid in pm.calls and handle.pid in pm.waiters
