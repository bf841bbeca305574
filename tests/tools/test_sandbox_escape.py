"""Sandbox escape suite: each attempt is blocked or cut off, with a clear reason.

Limits are small (seconds, a few MiB, a few dozen processes) so the suite runs fast.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import sys
import time

import pytest

from llmos.errors import PermissionDenied, SandboxError

from .conftest import SMALL


def run_py(sandbox, ws, code, **limits):
    lim = dataclasses.replace(SMALL, **limits) if limits else SMALL
    return sandbox.run([sys.executable, "-c", code], workdir=ws, limits=lim)


def run_sh(sandbox, ws, cmd, **limits):
    lim = dataclasses.replace(SMALL, **limits) if limits else SMALL
    return sandbox.run(["/bin/sh", "-c", cmd], workdir=ws, limits=lim)


PROBE = """
import sys
for p in sys.argv[1:] or {paths!r}:
    try:
        with open(p) as f:
            print("READ", p, f.read()[:40])
    except OSError as e:
        print("BLOCKED", p, type(e).__name__)
"""


def test_secrets_outside_are_invisible(sandbox, ws, tmp_path):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("PRIVATE KEY")
    paths = [str(home / ".ssh" / "id_rsa"), "/etc/shadow", "/etc/passwd", "/root/.ssh/id_rsa",
             os.path.expanduser("~/.ssh/id_rsa"), os.path.expanduser("~/.bash_history"),
             "/run/secrets/x"]
    r = run_py(sandbox, ws, PROBE.format(paths=paths))
    assert r.exit_code == 0, r.stderr
    assert "READ" not in r.stdout and "PRIVATE KEY" not in r.stdout
    assert r.stdout.count("BLOCKED") == len(paths)
    r = run_sh(sandbox, ws, "ls -a ~ /root /home 2>&1; cat /etc/shadow 2>&1")
    assert ".ssh" not in r.stdout and not re.search(r"^root:", r.stdout, re.M)


def test_writes_outside_the_workspace_fail(sandbox, ws, tmp_path):
    targets = [str(tmp_path / "outside.txt"), "/usr/evil", "/etc/evil", "/evil", "/proc/evil",
               "/dev/evil", str(ws.parent / "sibling.txt"), os.path.expanduser("~/evil")]
    code = (f"import sys\nfor p in {targets!r}:\n    try:\n        open(p, 'w').write('x'); print('WROTE', p)\n"
            "    except OSError as e:\n        print('BLOCKED', p, e.strerror)\n"
            "open('inside.txt', 'w').write('ok')\nopen('/tmp/scratch', 'w').write('ok')\n")
    r = run_py(sandbox, ws, code)
    assert r.exit_code == 0, r.stderr
    for t in targets:
        assert not os.path.exists(t)                        # the host never sees them
        if not t.startswith("/tmp/"):                       # (under /tmp they land in the
            assert f"BLOCKED {t}" in r.stdout               #  sandbox's own small tmpfs)
    assert (ws / "inside.txt").read_text() == "ok"          # the workspace is writable
    assert not os.path.exists("/tmp/scratch")               # /tmp inside is private


def test_no_network(sandbox, ws):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.2)
    port = srv.getsockname()[1]
    code = ("import socket\nfor host in ('127.0.0.1', '1.1.1.1', '10.0.0.1'):\n"
            "    s = socket.socket(); s.settimeout(1)\n"
            f"    try:\n        s.connect((host, {port})); print('CONNECTED', host)\n"
            "    except OSError as e:\n        print('BLOCKED', host, e.strerror)\n")
    try:
        r = run_py(sandbox, ws, code)
        with pytest.raises(OSError):
            srv.accept()
    finally:
        srv.close()
    assert r.exit_code == 0, r.stderr
    assert "CONNECTED" not in r.stdout and r.stdout.count("BLOCKED") == 3


def test_network_needs_the_capability(reg, xctx):
    with pytest.raises(PermissionDenied):
        reg.call("python.run", {"code": "print(1)", "network": True}, xctx)


def test_fork_bomb_is_capped(sandbox, ws):
    t0 = time.monotonic()
    # the shell stays (sleep): a bomb whose branches die out before a limit is hit would
    # otherwise end the run cleanly, which on a loaded machine it sometimes did
    r = run_sh(sandbox, ws, "bomb() { bomb | bomb & }; bomb; sleep 30", timeout_s=3, nproc=16)
    assert time.monotonic() - t0 < 10
    assert r.limit in ("nproc", "timeout"), (r.limit, r.stderr[-300:])
    assert r.reason
    code = ("import os, time\nok = 0\nfor i in range(200):\n    try:\n        pid = os.fork()\n"
            "    except OSError:\n        continue\n    if pid == 0:\n        time.sleep(2); os._exit(0)\n"
            "    ok += 1\nprint('forked', ok)\n")
    r = run_py(sandbox, ws, code, nproc=16)
    forked = int(r.stdout.split()[-1])
    assert forked < 16, r.stdout


def test_memory_bomb_is_stopped(sandbox, ws):
    r = run_py(sandbox, ws, "b = bytearray(4 << 30)", memory_bytes=256 << 20)
    assert r.limit == "memory" and "memory" in r.reason
    r = run_py(sandbox, ws, "l = []\nwhile True:\n    l.append(bytearray(8 << 20))", memory_bytes=256 << 20)
    assert r.limit == "memory"
    r = run_sh(sandbox, ws, "head -c 50000000 /dev/zero > /dev/shm/fill; head -c 50000000 /dev/zero > /tmp/fill",
               fsize_bytes=100 << 20)
    assert "No space left" in r.stderr          # the private tmpfs mounts are small


def test_endless_loop_is_cut_off(sandbox, ws):
    r = run_py(sandbox, ws, "while True: pass", cpu_s=1, timeout_s=8)
    assert r.limit == "cpu" and "CPU" in r.reason
    t0 = time.monotonic()
    r = run_py(sandbox, ws, "import time\ntime.sleep(60)", timeout_s=1)
    assert r.limit == "timeout" and "1 s" in r.reason
    assert time.monotonic() - t0 < 5


def test_background_processes_die_with_the_run(sandbox, ws):
    r = run_sh(sandbox, ws, "(sleep 30; echo late > late.txt) & echo started", timeout_s=5)
    assert r.exit_code == 0 and "started" in r.stdout
    time.sleep(0.3)
    assert not (ws / "late.txt").exists()


def test_huge_output_is_cut(sandbox, ws):
    r = run_py(sandbox, ws, "while True:\n    print('x' * 1000)")
    assert r.limit == "output" and r.truncated
    assert len(r.stdout) <= SMALL.output_bytes
    r = run_py(sandbox, ws, "print('y' * 20000)")
    assert r.exit_code == 0 and r.truncated and len(r.stdout) == SMALL.output_bytes
    assert "cut" in r.reason


def test_file_size_limit(sandbox, ws):
    r = run_py(sandbox, ws, "open('big.bin', 'wb').write(b'0' * (4 << 20))")
    assert r.limit == "fsize" and (ws / "big.bin").stat().st_size <= SMALL.fsize_bytes


def test_no_privileges_inside(sandbox, ws):
    r = run_sh(sandbox, ws, "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; id -u; "
                            "ls /proc | grep -c '^[0-9]'; hostname")
    lines = r.stdout.split()
    assert "0000000000000000" in lines and "65534" in lines and "sandbox" in lines
    assert int(lines[-2]) < 10          # own PID namespace: host processes are invisible
    r = run_py(sandbox, ws, f"import os\ntry:\n    os.kill({os.getpid()}, 0); print('SEEN')\n"
                            "except OSError:\n    print('HIDDEN')")
    assert "HIDDEN" in r.stdout
    r = run_sh(sandbox, ws, "unshare -U -r true && echo NESTED || echo REFUSED")
    assert "REFUSED" in r.stdout


def test_environment_does_not_leak(sandbox, ws, monkeypatch):
    monkeypatch.setenv("LLMOS_TEST_SECRET", "hunter2")
    r = run_sh(sandbox, ws, "env; cat /proc/1/environ")
    assert "hunter2" not in r.stdout and "HOME=/tmp" in r.stdout


def test_a_link_made_inside_does_not_open_the_host(reg, xctx, ws):
    reg.call("shell.run", {"command": "ln -s /etc/passwd passwd-link && ln -s / root-link"}, xctx)
    for p in ("passwd-link", "root-link/etc/passwd"):
        with pytest.raises(PermissionDenied):
            reg.call("files.read", {"path": p}, xctx)


def test_exec_tools_refuse_without_a_sandbox(reg, ctx, ws):
    from llmos.tools.sandbox import Sandbox
    none = dataclasses.replace(ctx, sandbox=Sandbox(bwrap="/nonexistent/bwrap"))
    for tool, args in (("python.run", {"code": "open('ran.txt','w')", "save_as": "s.py"}),
                       ("shell.run", {"command": "touch ran.txt"})):
        with pytest.raises(SandboxError) as ei:
            reg.call(tool, args, none)
        assert "bubblewrap" in str(ei.value) and "apt-get install bubblewrap" in ei.value.hint
    assert not (ws / "ran.txt").exists() and not (ws / "s.py").exists()
