"""An accepted run survives ``kill -9`` of the daemon. ``POST /api/v1/runs`` answers 202
only once the run is journaled; after a restart the run is still there and ends (it is
resumed when nothing of it can have run, else it ends ``failed`` saying why), and no
process is left ``waiting`` for a driver that died with the old daemon."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "chaos_site"))

from chaosd import Daemon, effects  # noqa: E402

FINAL = ("succeeded", "failed", "denied", "needs_confirmation", "rejected", "cancelled")


def wait_run(d: Daemon, rid: str, until, timeout: float = 60.0) -> dict:
    end = time.monotonic() + timeout
    while True:
        r = d.get(f"/runs/{rid}")
        assert r.status_code == 200, (r.status_code, r.text)
        run = r.json()
        if until(run) or time.monotonic() > end:
            return run
        time.sleep(0.05)


def stuck(d: Daemon) -> list[dict]:
    """Processes waiting on nothing a person can answer (a run's driver that is gone)."""
    procs = d.get("/processes", params={"limit": 500}).json()
    procs = procs.get("processes", procs) if isinstance(procs, dict) else procs
    return [p for p in procs if p["state"] == "waiting" and not p.get("needs_confirmation")]


def test_a_run_accepted_just_before_kill9_is_not_lost(tmp_path):
    home, ws = tmp_path / "home", tmp_path / "ws"
    home.mkdir()
    ws.mkdir()
    d = Daemon(home, delay_s=1.0)
    try:
        r = d.post("/runs", {"request": "note CHAOSKEY-a in effects.txt", "workdir": str(ws)})
        assert r.status_code == 202
        rid = r.json()["id"]
    finally:
        d.kill9()
    d = Daemon(home, delay_s=0.01)
    try:
        run = wait_run(d, rid, lambda x: x["status"] in FINAL)
        assert run["status"] in ("succeeded", "failed"), run
        if run["status"] == "failed":
            assert "restart" in run["answer"], run
        lines = effects(ws)
        assert len(lines) == len(set(lines)), lines
        assert stuck(d) == []
        assert rid in [x["id"] for x in d.get("/runs", params={"limit": 50}).json()["runs"]]
    finally:
        d.stop()


def test_a_run_killed_in_the_middle_of_a_step_ends_failed_and_nothing_waits(tmp_path):
    home, ws = tmp_path / "home", tmp_path / "ws"
    home.mkdir()
    ws.mkdir()
    d = Daemon(home, delay_s=3.0)
    try:
        r = d.post("/runs", {"request": "note CHAOSKEY-b in effects.txt", "workdir": str(ws)})
        assert r.status_code == 202
        rid = r.json()["id"]
        run = wait_run(d, rid, lambda x: any(s.get("status") == "running" for s in x["steps"]), 30)
        assert run["status"] == "running", run
        time.sleep(0.5)                        # step 1's tool is sleeping before its write
    finally:
        d.kill9()
    d = Daemon(home, delay_s=0.01)
    try:
        run = wait_run(d, rid, lambda x: x["status"] in FINAL)
        assert run["status"] == "failed", run
        assert "restart" in run["answer"] and "step 1" in run["answer"], run["answer"]
        assert run["error"]["error"] == "restart"
        assert effects(ws).count("CHAOSKEY-b:1") <= 1 and "CHAOSKEY-b:2" not in effects(ws)
        time.sleep(0.3)
        assert effects(ws).count("CHAOSKEY-b:1") <= 1
        assert stuck(d) == []
    finally:
        d.stop()
