"""Issue 12, item 2: read-only access is not enough to write through python.run/shell.run.

- The kernel refuses an exec tool whose workdir the agent may only read (it is bound
  writable into the sandbox), before anything runs.
- In the sandbox, read roots are mounted read-only and write roots writable; the state
  directory inside a mounted root is hidden.
"""

from __future__ import annotations

import pytest

from llmos.errors import SandboxError, ToolError
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.kernel.access import StateArea
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import ToolContext, default_registry
from llmos.tools.sandbox import Sandbox, SandboxLimits

SMALL = SandboxLimits(timeout_s=20, cpu_s=5, memory_bytes=512 << 20, nproc=32, fsize_bytes=1 << 20,
                      output_bytes=8192, tmp_bytes=8 << 20, shm_bytes=1 << 20)


@pytest.fixture(scope="module")
def sandbox():
    sb = Sandbox(limits=SMALL)
    try:
        sb.check()
    except SandboxError as exc:
        pytest.skip(f"no sandbox here: {exc}")
    return sb


@pytest.fixture
async def kernel(config, clock):
    k = await Kernel.boot(config, engines={"fake": FakeEngine("x")}, tools=default_registry(), clock=clock,
                          hal=FakeHAL(clock))
    yield k
    await k.shutdown(grace_s=0.5)


async def test_an_exec_tool_needs_write_access_to_its_workdir(kernel, tmp_path):
    data, out = tmp_path / "data", tmp_path / "data" / "out"
    out.mkdir(parents=True)
    res = await kernel.syscall("root", "agent.create", {"name": "reader", "capabilities": {
        "syscalls": ["*"], "read_roots": [str(data)], "write_roots": [str(out)]}})
    assert res.ok, res.error
    for tool, args in (("python.run", {"code": "open('planted.py', 'w').write('x')"}),
                       ("shell.run", {"command": "echo x > planted.py"})):
        res = await kernel.syscall("reader", "tool.call", {"tool": tool, "workdir": str(data), "args": args,
                                                           "confirmed": True})
        assert not res.ok and res.error.code == "permission_denied", res
        assert "write roots" in res.error.message
    assert not (data / "planted.py").exists()


def test_read_roots_are_read_only_and_write_roots_writable_in_the_sandbox(tmp_path, sandbox):
    ro, wd = tmp_path / "ro", tmp_path / "wd"
    ro.mkdir()
    wd.mkdir()
    (ro / "in.txt").write_text("from a read root\n")
    res = sandbox.run(["/bin/sh", "-c", f"cat {ro}/in.txt; echo x > {ro}/planted.txt; echo rc=$?; "
                                        f"echo ok > {wd}/out.txt"],
                      workdir=wd, read_roots=[ro], write_roots=[wd])
    assert "from a read root" in res.stdout and "rc=0" not in res.stdout, res
    assert not (ro / "planted.txt").exists()
    assert (wd / "out.txt").read_text() == "ok\n"


def test_python_run_sees_read_roots_read_only_and_not_the_state_dir(tmp_path, sandbox):
    ro, wd, home = tmp_path / "ro", tmp_path / "wd", tmp_path / "ro" / "state"
    wd.mkdir()
    home.mkdir(parents=True)
    (ro / "in.txt").write_text("table\n")
    (home / "admin.token").write_text("secret\n")
    ctx = ToolContext(workdir=wd, read_roots=(ro,), write_roots=(wd,), sandbox=sandbox,
                      state=StateArea.of(home))
    reg = default_registry()
    res = reg.call("python.run", {"code": f"print(open({str(ro / 'in.txt')!r}).read().strip())"}, ctx)
    assert res.output["stdout"].strip() == "table"
    with pytest.raises(ToolError):
        reg.call("python.run", {"code": f"open({str(ro / 'x.txt')!r}, 'w').write('x')"}, ctx)
    assert not (ro / "x.txt").exists()
    with pytest.raises(ToolError):
        reg.call("python.run", {"code": f"print(open({str(home / 'admin.token')!r}).read())"}, ctx)
