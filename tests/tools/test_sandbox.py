"""The sandbox's command line, its probe, and how results are explained."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from llmos.errors import SandboxError
from llmos.tools.sandbox import Sandbox, SandboxLimits, SandboxResult, _explain, default_sandbox


def test_argv_confines(sandbox, tmp_path):
    a = sandbox.argv(["true"], tmp_path, network=False, limits=sandbox.limits)
    s = " ".join(a)
    for flag in ("--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
                 "--unshare-user", "--uid 65534"):
        assert flag in s
    assert "--share-net" not in a
    assert ["--bind", str(tmp_path), str(tmp_path)] == a[a.index("--bind"):a.index("--bind") + 3]
    assert a[a.index("--remount-ro", a.index("--tmpfs")) + 1] in ("/dev", "/")
    assert a[-1] == "true" and "--" in a
    assert not any(x.startswith("/etc/shadow") or x == os.path.expanduser("~") for x in a)
    net = sandbox.argv(["true"], tmp_path, network=True, limits=sandbox.limits)
    assert "--share-net" in net


def test_workspace_inside_a_read_only_tree_stays_writable(tmp_path):
    sb = Sandbox(extra_ro=(str(tmp_path),))
    sb._features = "--size --disable-userns"
    a = sb.argv(["true"], tmp_path / "ws", network=False, limits=sb.limits)
    assert a.index(str(tmp_path / "ws")) > a.index(str(tmp_path))   # mounted on top


def test_limits_scale_with_the_timeout():
    lim = SandboxLimits(timeout_s=30, cpu_s=20)
    assert lim.scaled(3).cpu_s == 2 and lim.scaled(3).timeout_s == 3
    assert lim.scaled(120).cpu_s == 80


def test_missing_bwrap_refuses_with_a_hint():
    sb = Sandbox(bwrap="/nonexistent/bwrap")
    for _ in range(2):                          # the failed probe is remembered
        with pytest.raises(SandboxError) as ei:
            sb.check()
        assert "apt-get install bubblewrap" in ei.value.hint


def test_broken_bwrap_refuses(tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(SandboxError, match="cannot make a sandbox here: .*namespace") as ei:
        Sandbox(bwrap=str(fake)).check()
    assert "user namespaces" in ei.value.hint


def test_info_and_default(sandbox):
    info = sandbox.info()
    assert info["uid"] == 65534 and "bwrap" in info["argv"][0]
    if os.geteuid() == 0:
        assert "pids cgroup" in info["process_limit"]
    assert default_sandbox() is default_sandbox()


def test_runs_leave_no_cgroups(sandbox, ws):
    r = sandbox.run(["/bin/true"], workdir=ws)
    assert r.ok and r.limit is None and r.reason is None
    base = sandbox._cgroup_base
    if base:
        assert not [d for d in os.listdir(base) if d.startswith(f"llmos-sandbox-{os.getpid()}-")]


def test_inputs_are_read_only(sandbox, ws):
    r = sandbox.run(["/bin/sh", "-c", "cat /run/sandbox/in.txt; echo x > /run/sandbox/in.txt"],
                    workdir=ws, inputs={"in.txt": "hello\n"})
    assert r.stdout == "hello\n" and r.exit_code != 0


@pytest.mark.parametrize("code,stderr,limit", [
    (-signal.SIGXCPU, "", "cpu"),
    (-signal.SIGXFSZ, "", "fsize"),
    (1, "MemoryError\n", "memory"),
    (2, "sh: 1: Cannot fork\n", "nproc"),
    (-signal.SIGKILL, "", None),
    (1, "Traceback ... ValueError\n", None),
])
def test_explain(code, stderr, limit):
    res = SandboxResult(exit_code=code, stdout="", stderr=stderr)
    _explain(res, None, SandboxLimits(), 0)
    assert res.limit == limit
    assert (res.reason is not None) == (limit is not None or code < 0)


def test_explain_cgroup_hits_and_timeout():
    res = SandboxResult(exit_code=0, stdout="", stderr="")
    _explain(res, None, SandboxLimits(nproc=7), 3)
    assert res.limit == "nproc" and "7 processes" in res.reason
    res = SandboxResult(exit_code=-9, stdout="", stderr="")
    _explain(res, "timeout", SandboxLimits(timeout_s=2), 0)
    assert res.limit == "timeout" and "2 s" in res.reason


def test_python_prefixes_are_bound_read_only(sandbox):
    ro = sandbox._python_ro()
    assert all(not p.startswith("/usr") for p in ro)
    assert all(Path(p).exists() for p in ro)


NOBODY = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from llmos.tools.sandbox import Sandbox, SandboxLimits
sb = Sandbox(python="/usr/bin/python3", limits=SandboxLimits(timeout_s=5, nproc=12))
ws = Path(sys.argv[2])
fork = ("import os, time\\nok = 0\\nfor i in range(60):\\n    try:\\n        pid = os.fork()\\n"
        "    except OSError:\\n        continue\\n    if pid == 0:\\n        time.sleep(1); os._exit(0)\\n"
        "    ok += 1\\nprint(ok)")
r1 = sb.run(["/usr/bin/python3", "-c", fork], workdir=ws)
# the shell stays (sleep): with "wait" the first branches return at once (their pipelines are
# in the background), and on a quiet machine the shell can end before any fork fails
r2 = sb.run(["/bin/sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 30"], workdir=ws)
r3 = sb.run(["/bin/sh", "-c", "id -u; echo ok > f.txt; cat /etc/shadow"], workdir=ws)
print(json.dumps({"how": sb.info()["process_limit"], "forked": r1.stdout.strip(), "bomb": r2.limit,
                  "id": r3.stdout.split()[0], "shadow": r3.exit_code}))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"),
                    reason="needs root (to become nobody), setpriv and /usr/bin/python3")
def test_as_a_normal_user_the_process_limit_is_an_rlimit(sandbox):
    """The usual deployment: not root, so RLIMIT_NPROC (in the sandbox's user namespace)
    caps the processes. Run the sandbox as nobody to check that path too."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    ws = tempfile.mkdtemp(prefix="llmos-nobody-")
    try:
        os.chmod(ws, 0o777)
        p = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                            "/usr/bin/python3", "-c", NOBODY, src, ws],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0 and ("Permission denied" in p.stderr or "ModuleNotFound" in p.stderr):
            pytest.skip(f"nobody cannot run the source tree here: {p.stderr.strip()[-200:]}")
        assert p.returncode == 0, p.stderr
        got = json.loads(p.stdout.strip().splitlines()[-1])
        assert got["how"].startswith("RLIMIT_NPROC")
        assert int(got["forked"]) < 12 and got["bomb"] in ("nproc", "timeout")
        assert got["id"] == "65534" and got["shadow"] != 0
        assert Path(ws, "f.txt").read_text() == "ok\n"
    finally:
        shutil.rmtree(ws, ignore_errors=True)
