"""``llmos serve`` as a child process on the chaos site (see sitecustomize.py): start it,
talk to it over HTTP with the admin token, ``kill -9`` it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

SITE = Path(__file__).resolve().parent
LLMOS = os.path.join(os.path.dirname(sys.executable), "llmos")


class Daemon:
    def __init__(self, home: Path, *, delay_s: float = 0.05, start_timeout_s: float = 60.0) -> None:
        env = {**os.environ, "LLMOS_HOME": str(home), "LLMOS_TEST_CHAOS": str(delay_s),
               "PYTHONPATH": os.pathsep.join([str(SITE), os.environ.get("PYTHONPATH", "")])}
        for var in ("LLMOS_MODEL", "LLMOS_PLANNER_MODEL", "LLMOS_PLANNER_GGUF", "LLMOS_PORT", "LLMOS_HOST"):
            env.pop(var, None)
        self.home = home
        self.log = open(home.parent / "daemon.log", "ab")    # noqa: SIM115 - closed in kill/stop
        self.proc = subprocess.Popen([LLMOS, "serve", "--port", "0"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.url = self._wait_ready(start_timeout_s)
        token = (home / "admin.token").read_text().strip()
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=30.0)

    def _wait_ready(self, timeout: float) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}; see {self.log.name}")
            try:
                info = json.loads((self.home / "daemon.json").read_text())
                if info.get("pid") == self.proc.pid:
                    r = httpx.get(info["url"] + "/api/v1/health", timeout=1.0)
                    if r.status_code == 200:
                        return info["url"]
            except (OSError, ValueError, httpx.HTTPError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"daemon did not answer within {timeout} s; see {self.log.name}")

    def kill9(self) -> None:
        self.http.close()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.log.close()

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()

    def get(self, path: str, **kw) -> httpx.Response:
        return self.http.get("/api/v1" + path, **kw)

    def post(self, path: str, body: dict | None = None) -> httpx.Response:
        return self.http.post("/api/v1" + path, json=body or {})


def effects(ws: Path) -> list[str]:
    f = ws / "effects.txt"
    return f.read_text().split() if f.exists() else []
