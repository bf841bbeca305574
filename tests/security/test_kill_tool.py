"""Issue 12, item 6: ``proc.kill`` stops a running tool, and long tools never hold every worker.

- Killing a running ``python.run`` SIGKILLs its sandbox's process group at once: the
  program cannot write its file seconds later, and the worker thread comes back.
- A ``Stop`` fired before the sandbox starts means nothing runs and nothing is written.
- Exec tools run in a pool of their own: with every exec worker busy, a file tool still runs.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from llmos.errors import Cancelled, SandboxError
from llmos.executor.base import Work
from llmos.executor.local import LocalExecutor
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.kernel.sched import Plan
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import Stop, Tool, ToolContext, ToolRegistry, ToolResult, default_registry
from llmos.tools.sandbox import default_sandbox
from llmos.types import Risk

LATE = "import time, pathlib\ntime.sleep(1.5)\npathlib.Path('late.txt').write_text('still ran')\n"


@pytest.fixture(scope="module")
def sandbox_ok():
    try:
        default_sandbox().check()
    except SandboxError as exc:
        pytest.skip(f"no sandbox here: {exc}")


def _executor(tools, workers: int = 4):
    works: dict[int, Work] = {}

    async def claim(pids):
        return {p: works[p] for p in pids if p in works}

    return LocalExecutor(claim, tools=tools, workers=workers), works


async def _until(ex: LocalExecutor, pid: int, limit_s: float = 10.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        out = await asyncio.wait_for(ex.run(Plan()), limit_s)
        if pid in out.finished:
            return out.results[pid]
    raise AssertionError(f"pid {pid} did not finish")


async def test_killing_a_running_python_run_stops_its_program(tmp_path, sandbox_ok):
    ex, works = _executor(default_registry())
    works[1] = Work(1, "tool", "a", 0, {"tool": "python.run", "args": {"code": LATE}},
                    workdir=str(tmp_path), write_roots=(str(tmp_path),))
    try:
        await ex.run(Plan(run=[1]))
        await asyncio.sleep(0.8)                         # the program is sleeping in the sandbox
        assert ex.cancel(1)
        res = await _until(ex, 1)
        assert not res.ok
        await asyncio.sleep(2.0)                         # past the moment it would have written
        assert not (tmp_path / "late.txt").exists(), "the killed program still wrote its file"
        # the worker came back: another exec tool runs
        works[2] = Work(2, "tool", "a", 0, {"tool": "python.run", "args": {"code": "print(2)"}},
                        workdir=str(tmp_path), write_roots=(str(tmp_path),))
        await ex.run(Plan(run=[2]))
        res = await _until(ex, 2)
        assert res.ok, res.error
    finally:
        await ex.close()


async def test_proc_kill_of_a_running_python_run_stops_it(config, clock, tmp_path, sandbox_ok):
    k = await Kernel.boot(config, engines={"fake": FakeEngine("x")}, tools=default_registry(), clock=clock,
                          hal=FakeHAL(clock))
    try:
        res = await k.syscall("root", "proc.spawn", {"kind": "tool", "confirmed": True, "spec": {
            "tool": "python.run", "args": {"code": LATE}, "workdir": str(tmp_path)}})
        assert res.ok, res.error
        pid = res.value["pid"]
        t0 = time.monotonic()
        while k.procs.get(pid).state.name.lower() != "running" and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.8)                          # the program is sleeping in the sandbox
        res = await k.syscall("root", "proc.kill", {"pid": pid, "reason": "test"})
        assert res.ok, res.error
        await asyncio.sleep(2.0)
        assert not (tmp_path / "late.txt").exists(), "proc.kill left the program running"
    finally:
        await k.shutdown(grace_s=0.5)


def test_a_stop_before_the_run_starts_runs_nothing(tmp_path, sandbox_ok):
    stop = Stop()
    stop.stop()
    ctx = ToolContext(workdir=tmp_path, stop=stop)
    with pytest.raises(Cancelled):
        default_registry().call("python.run", {"code": "open('x.txt', 'w').write('x')", "save_as": "s.py"}, ctx)
    assert not (tmp_path / "x.txt").exists() and not (tmp_path / "s.py").exists()


async def test_long_exec_tools_do_not_hold_the_file_tools_worker(tmp_path):
    gate = threading.Event()

    def long_exec(ctx, args):
        gate.wait(10)
        return ToolResult("done", "done")

    def quick(ctx, args):
        return ToolResult("quick", "quick")

    schema = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
    reg = ToolRegistry([Tool(name="x.long", description="long", parameters=schema, risk=Risk.EXEC,
                             fn=long_exec, kind="code"),
                        Tool(name="x.quick", description="quick", parameters=schema, risk=Risk.READ,
                             fn=quick, kind="files")])
    ex, works = _executor(reg, workers=1)
    works[1] = Work(1, "tool", "a", 0, {"tool": "x.long", "args": {}}, workdir=str(tmp_path))
    works[2] = Work(2, "tool", "a", 0, {"tool": "x.quick", "args": {}}, workdir=str(tmp_path))
    try:
        await ex.run(Plan(run=[1]))
        await ex.run(Plan(run=[2]))
        res = await _until(ex, 2, limit_s=3.0)
        assert res.ok and res.value["output"] == "quick"
        assert 1 in ex.running()
    finally:
        gate.set()
        await ex.close()
