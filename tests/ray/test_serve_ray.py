"""``llmos serve --ray auto`` end to end (opt-in: -m ray): the daemon starts a local head,
runs a program on it through the API, shows the node, and on Ctrl-C stops the head's
processes (its children, checked by PID)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray
pytest.importorskip("ray")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_serve_ray_auto_runs_steps_on_its_head_and_stops_it(home, tmp_path):
    import httpx

    from llmos.sdk.client import Client

    llmos = str(Path(sys.executable).with_name("llmos"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"LLMOS_HOME": str(home)}
    proc = subprocess.Popen([llmos, "serve", "--ray", "auto", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    children: list[int] = []
    try:
        lines = [proc.stdout.readline() for _ in range(5)]
        assert lines[0].startswith("llmos daemon on http://127.0.0.1:"), lines
        assert lines[3].startswith("ray:") and "(1 nodes, " in lines[3], lines
        url = lines[0].split()[3]
        token = (home / "admin.token").read_text().strip()
        out = subprocess.run(["ps", "--ppid", str(proc.pid), "-o", "pid="], capture_output=True, text=True)
        children = [int(p) for p in out.stdout.split()]
        assert len(children) >= 2                                  # gcs_server, raylet, ...
        c = Client(url, token)
        spawned = c.syscall("proc.spawn", {"kind": "tool", "confirmed": True, "spec": {
            "tool": "python.run", "workdir": str(tmp_path), "args": {"code": "import socket; print(socket.gethostname())"}}})
        done = c.syscall("proc.wait", {"pid": spawned["pid"], "timeout_s": 60})
        assert done["state"] == "succeeded", done
        assert done["result"]["output"]["stdout"].strip() == "sandbox"
        system = httpx.get(f"{url}/api/v1/system", headers={"Authorization": f"Bearer {token}"}).json()
        assert [n["alive"] for n in system["cluster"]["nodes"]] == [True]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert [p for p in children if _alive(p)] == []
