"""``llmos serve`` as a user runs it: a real process, found by ``discover``, stopped by a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from llmos.api.server import check_bind, dashboard_url
from llmos.config import load_config
from llmos.errors import ConfigError
from llmos.sdk import discover
from llmos.sdk.discover import DAEMON_FILE

LLMOS = os.path.join(os.path.dirname(sys.executable), "llmos")


@pytest.mark.parametrize("host,remote,ok", [("127.0.0.1", False, True), ("::1", False, True),
                                            ("localhost", False, True), ("0.0.0.0", False, False),
                                            ("0.0.0.0", True, True), ("10.1.2.3", False, False),
                                            ("not-an-ip", True, False)])
def test_check_bind(host, remote, ok):
    if ok:
        check_bind(host, remote)
    else:
        with pytest.raises(ConfigError) as e:
            check_bind(host, remote)
        assert e.value.hint


def test_dashboard_url_carries_the_token_in_the_fragment():
    assert dashboard_url("http://127.0.0.1:8420", "tok") == "http://127.0.0.1:8420/#token=tok"


def _wait_for(pred, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return None


def test_llmos_serve_process(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "LLMOS_HOME": str(home)}
    proc = subprocess.Popen([LLMOS, "serve", "--port", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        cfg = load_config(env={"LLMOS_HOME": str(home)})
        client = _wait_for(lambda: discover(cfg))
        assert client is not None, proc.stderr.read() if proc.poll() is not None else "no daemon"
        with client:
            assert client.health()["pid"] == proc.pid
            assert client.ps() == [] or isinstance(client.ps(), list)
        # a second daemon on the same state directory is refused with a clear line
        second = subprocess.run([LLMOS, "serve", "--port", "0"], env=env, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 1 and "already serves" in second.stderr
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "dashboard:" in out and "#token=llmos-admin-" in out
        assert not (home / DAEMON_FILE).exists()
        assert discover(cfg) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_refuses_remote_bind_without_flag(tmp_path):
    r = subprocess.run([LLMOS, "--home", str(tmp_path), "serve", "--host", "0.0.0.0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "loopback-only" in r.stderr and "--allow-remote" in r.stderr
