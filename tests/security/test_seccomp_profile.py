"""Issue 12, item 14: a default seccomp profile in the sandbox and a workspace byte quota.

- Inside the sandbox ptrace, keyctl, bpf, perf_event_open, mount and unshare answer
  EPERM (bubblewrap ``--seccomp`` with the program from ``tools/seccomp.py``); ordinary
  programs (threads, subprocesses) still run.
- An agent's ``workspace_bytes`` quota refuses a file write that would pass it
  (QuotaExceeded, nothing written); below it writes work.
"""

from __future__ import annotations

import errno
import struct

import pytest

from llmos.errors import SandboxError
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.llm.fake import FakeEngine
from llmos.tools import seccomp
from llmos.tools.registry import default_registry
from llmos.tools.sandbox import Sandbox, SandboxLimits

PROBE = r"""
import ctypes, os, platform, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
NR = {"x86_64": dict(ptrace=101, keyctl=250, bpf=321, perf_event_open=298, mount=165, unshare=272),
      "aarch64": dict(ptrace=117, keyctl=219, bpf=280, perf_event_open=241, mount=40, unshare=97)}
nr = NR[platform.machine()]
args = dict(ptrace=(0, 0, 0, 0), keyctl=(0, 0, 0, 0), bpf=(0, 0, 0, 0), perf_event_open=(0, 0, 0, 0),
            mount=(0, 0, 0, 0), unshare=(0x00020000, 0, 0, 0))
for name, n in nr.items():
    ctypes.set_errno(0)
    r = libc.syscall(n, *args[name])
    print(name, r, ctypes.get_errno())
t = threading.Thread(target=print, args=("thread ok",)); t.start(); t.join()
print(subprocess.run(["/bin/sh", "-c", "echo child ok"], capture_output=True, text=True).stdout.strip())
"""


@pytest.fixture(scope="module")
def sandbox():
    sb = Sandbox(limits=SandboxLimits(timeout_s=20, cpu_s=5, memory_bytes=512 << 20, nproc=32))
    try:
        sb.check()
    except SandboxError as exc:
        pytest.skip(f"no sandbox here: {exc}")
    return sb


def test_the_sandbox_refuses_dangerous_syscalls_with_eperm(tmp_path, sandbox):
    if seccomp.program() is None:
        pytest.skip("no seccomp table for this architecture")
    res = sandbox.run([sandbox.python_argv()[0], "-c", PROBE], workdir=tmp_path)
    assert res.exit_code == 0, res.stderr
    seen = {line.split()[0]: (int(line.split()[1]), int(line.split()[2]))
            for line in res.stdout.splitlines() if len(line.split()) == 3}
    for name in ("ptrace", "keyctl", "bpf", "perf_event_open", "mount", "unshare"):
        assert seen[name] == (-1, errno.EPERM), (name, seen[name])
    assert "thread ok" in res.stdout and "child ok" in res.stdout


def test_the_program_is_well_formed():
    prog = seccomp.program("x86_64")
    assert prog is not None and len(prog) % 8 == 0 and len(prog) // 8 < 4096
    code, jt, jf, k = struct.unpack("=HBBI", prog[-16:-8])
    assert (code, k) == (seccomp.RET_K, seccomp.RET_ERRNO | errno.EPERM)
    assert seccomp.program("sparc") is None
    assert seccomp.program("aarch64") != prog


@pytest.fixture
async def kernel(config, clock):
    k = await Kernel.boot(config, engines={"fake": FakeEngine("x")}, tools=default_registry(), clock=clock,
                          hal=FakeHAL(clock))
    yield k
    await k.shutdown(grace_s=0.5)


async def test_a_workspace_byte_quota_refuses_writes_past_it(kernel, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    res = await kernel.syscall("root", "agent.create", {"name": "small", "capabilities": {
        "syscalls": ["tool.*", "proc.*"], "write_roots": [str(ws)], "quotas": {"workspace_bytes": 1000}}})
    assert res.ok, res.error
    write = {"tool": "files.write", "workdir": str(ws)}
    res = await kernel.syscall("small", "tool.call", {**write, "args": {"path": "a.txt", "content": "a" * 600}})
    assert res.ok, res.error
    res = await kernel.syscall("small", "tool.call", {**write, "args": {"path": "b.txt", "content": "b" * 600}})
    assert not res.ok and res.error.code == "quota_exceeded" and "workspace_bytes" in res.error.message
    assert not (ws / "b.txt").exists()
    res = await kernel.syscall("small", "tool.call", {**write, "args": {"path": "b.txt", "content": "b" * 300}})
    assert res.ok, res.error
    # a child agent cannot get more than its creator
    res = await kernel.syscall("root", "agent.create", {"name": "big", "capabilities": {
        "syscalls": ["agent.create"], "write_roots": [str(ws)], "quotas": {"workspace_bytes": 1000}}})
    assert res.ok
    res = await kernel.syscall("big", "agent.create", {"name": "bigger", "capabilities": {
        "write_roots": [str(ws)], "quotas": {"workspace_bytes": 5000}}})
    assert not res.ok and "workspace_bytes" in res.error.message


def test_a_sandboxed_run_cannot_write_past_the_quota_left(tmp_path, sandbox):
    from llmos.errors import QuotaExceeded
    from llmos.tools.registry import ToolContext

    (tmp_path / "old.bin").write_bytes(b"x" * 600)
    ctx = ToolContext(workdir=tmp_path, sandbox=sandbox, workspace_bytes=1000)
    reg = default_registry()
    with pytest.raises(SandboxError, match="size limit"):
        reg.call("python.run", {"code": "open('big.bin', 'wb').write(b'y' * 5000)"}, ctx)
    assert (tmp_path / "big.bin").stat().st_size <= 400
    (tmp_path / "big.bin").unlink()
    (tmp_path / "old.bin").write_bytes(b"x" * 1000)
    with pytest.raises(QuotaExceeded):
        reg.call("python.run", {"code": "print(1)"}, ctx)
