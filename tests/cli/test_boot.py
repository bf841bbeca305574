"""`llmos boot` (what `make run` starts) as a user runs it: a real process tree.

The boot process starts `llmos serve` as its child, prints the dashboard link, and reads
the shell's input from a pipe. Daemons started here boot on a scripted FakeEngine through
``boot_site/sitecustomize.py`` (it acts only where ``LLMOS_TEST_FAKE_PLAN`` is set); the
`model` test uses the embedded model.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmos.config import load_config
from llmos.sdk import discover
from llmos.sdk.discover import DAEMON_FILE

LLMOS = os.path.join(os.path.dirname(sys.executable), "llmos")
SITE = str(Path(__file__).parent / "boot_site")
COUNT_PLAN = json.dumps({"steps": [{"tool": "files.count", "args": {"path": "poem.txt"}, "why": "count"}],
                         "answer": "Scripted count: $step1.output.lines lines."})


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOS_")}
    env.update(LLMOS_HOME=str(home), PYTHONPATH=SITE, LLMOS_TEST_FAKE_PLAN=COUNT_PLAN, **extra)
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _gone(pid: int, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _boot(home: Path, ws: Path, stdin: str, *extra: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([LLMOS, "boot", "--workdir", str(ws), "--port", "0", *extra], input=stdin,
                          env=_env(home, **env), capture_output=True, text=True, timeout=120)


def _daemon_pid(stderr: str) -> int:
    m = re.search(r"starting daemon… ready in [\d.]+ s \(pid (\d+)", stderr)
    assert m, stderr
    return int(m.group(1))


@pytest.fixture
def ws(tmp_path):
    d = tmp_path / "ws"
    d.mkdir()
    (d / "poem.txt").write_text("one\ntwo\nthree\n")
    return d


def test_boot_runs_a_request_in_its_daemon_and_stops_it(tmp_path, ws):
    home = tmp_path / "home"
    r = _boot(home, ws, "how many lines are in poem.txt?\nexit\n")
    assert r.returncode == 0, r.stderr
    assert re.search(r"starting daemon… ready in \d+\.\d s", r.stderr)
    assert re.search(r"dashboard:  http://127\.0\.0\.1:\d+/#token=llmos-admin-\S+", r.stderr)
    assert "llmos shell in" in r.stderr
    assert "Scripted count: 3 lines." in r.stdout            # planned by the daemon's FakeEngine
    assert "1. [read] files.count" in r.stderr and "succeeded · run r" in r.stderr
    pid = _daemon_pid(r.stderr)
    assert re.search(rf"daemon stopped \(pid {pid}\) in [\d.]+ s", r.stderr)
    assert _gone(pid) and not (home / DAEMON_FILE).exists()
    log = (home / "logs" / "daemon.log").read_text()
    assert "llmos boot starts the daemon" in log and "llmos daemon on http://127.0.0.1:" in log
    # the run is the shell's like any other: history and explain find it afterwards
    hist = subprocess.run([LLMOS, "history", "--json"], env=_env(home), capture_output=True, text=True,
                          timeout=60)
    assert json.loads(hist.stdout)[0]["answer"] == "Scripted count: 3 lines."


def test_boot_ctrl_c_stops_the_daemon(tmp_path, ws):
    home = tmp_path / "home"
    proc = subprocess.Popen([LLMOS, "boot", "--workdir", str(ws), "--port", "0"], env=_env(home),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen = b""
        end = time.monotonic() + 60
        while b"llmos> " not in seen and time.monotonic() < end and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                seen += os.read(proc.stdout.fileno(), 4096)
        assert b"llmos> " in seen, proc.stderr.read() if proc.poll() is not None else seen
        daemon = json.loads((home / DAEMON_FILE).read_text())["pid"]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        err = err.decode()
        assert proc.returncode == 0, err
        assert f"daemon stopped (pid {daemon})" in err and _gone(daemon)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_boot_reuses_a_running_daemon_and_leaves_it_running(tmp_path, ws):
    home = tmp_path / "home"
    serve = subprocess.Popen([LLMOS, "serve", "--port", "0"], env=_env(home), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        cfg = load_config(env={"LLMOS_HOME": str(home)})
        end = time.monotonic() + 60
        client = None
        while client is None and time.monotonic() < end and serve.poll() is None:
            client = discover(cfg)
            time.sleep(0.05)
        assert client is not None, serve.stderr.read() if serve.poll() is not None else "no daemon"
        client.close()
        r = _boot(home, ws, "how many lines are in poem.txt?\nquit\n")
        assert r.returncode == 0, r.stderr
        assert "using the LLM OS daemon already running at http://127.0.0.1:" in r.stderr
        assert f"(pid {serve.pid})" in r.stderr and "starting daemon" not in r.stderr
        assert "Scripted count: 3 lines." in r.stdout
        assert "keeps running (this shell did not start it)" in r.stderr
        assert serve.poll() is None and discover(cfg) is not None
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)


def test_boot_reports_a_daemon_that_cannot_start(tmp_path, ws):
    home = tmp_path / "home"
    r = _boot(home, ws, "exit\n", LLMOS_HOST="10.1.2.3")   # not loopback: the daemon refuses
    assert r.returncode == 1
    first = r.stderr.strip().splitlines()
    errors = [ln for ln in first if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr
    log = home / "logs" / "daemon.log"
    assert errors[0] == (f"error: the daemon did not start: refusing to listen on 10.1.2.3: the daemon "
                         f"is loopback-only by default (log: {log})")
    assert "llmos shell" not in r.stderr and not (home / DAEMON_FILE).exists()


@pytest.mark.model
def test_boot_on_the_embedded_model(tmp_path, ws):
    """No fake: the daemon loads the embedded model on the first request."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOS_")}
    env["LLMOS_HOME"] = str(home)
    r = subprocess.run([LLMOS, "boot", "--workdir", str(ws), "--port", "0"],
                       input="how many lines are in poem.txt?\nexit\n", env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "booting on smollm2" in r.stderr and "planning…" in r.stderr
    assert re.search(r"(succeeded|failed|denied|needs_confirmation) · run r[0-9a-f]{8}", r.stderr), r.stderr
    assert "daemon stopped" in r.stderr and not (home / DAEMON_FILE).exists()
