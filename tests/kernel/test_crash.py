"""kill -9 at random moments: every acknowledged process survives and finishes, and no
non-idempotent tool effect happens twice (the tool appends its idempotency key to a file)."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("crash_worker.py")


class Worker:
    def __init__(self, home: Path, target: Path) -> None:
        env = {**os.environ, "LLMOS_HOME": str(home)}
        self.proc = subprocess.Popen([sys.executable, str(WORKER), str(home), str(target)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.buf = ""
        line = self.readline(60)
        assert line and line.startswith("READY"), line
        self.recovery = json.loads(line[6:])

    def send(self, msg: dict) -> None:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def readline(self, timeout: float) -> str | None:
        end = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while "\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                return None
            chunk = os.read(fd, 65536).decode()
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split("\n", 1)
        return line

    def read_until(self, prefix: str, timeout: float, acks: dict) -> str:
        end = time.monotonic() + timeout
        while True:
            line = self.readline(max(0.0, end - time.monotonic()))
            assert line is not None, f"no {prefix} from the worker"
            if line.startswith("ACK"):
                _, key, pid = line.split()
                assert acks.setdefault(key, int(pid)) == int(pid), "a retried key got another pid"
            elif line.startswith(prefix):
                return line
            else:
                assert not line.startswith("ERR"), line

    def collect(self, acks: dict, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            line = self.readline(left)
            if line is None:
                return
            if line.startswith("ACK"):
                _, key, pid = line.split()
                assert acks.setdefault(key, int(pid)) == int(pid), "a retried key got another pid"
            else:
                assert not line.startswith("ERR"), line

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def run_crashes(tmp_path: Path, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    home, target = tmp_path / "home", tmp_path / "ws" / "effects.txt"
    target.parent.mkdir()
    acks: dict[str, int] = {}
    sent: list[str] = []
    n = 0
    for _ in range(kills):
        w = Worker(home, target)
        for key in [k for k in sent if k not in acks]:     # the client retries what was not acked
            w.send({"op": "submit", "key": key})
        for _ in range(rng.randint(5, 25)):
            key = f"k{n}"
            n += 1
            sent.append(key)
            w.send({"op": "submit", "key": key})
        w.collect(acks, rng.uniform(0.0, 0.3))
        w.kill9()
    w = Worker(home, target)
    for key in [k for k in sent if k not in acks]:
        w.send({"op": "submit", "key": key})
    w.send({"op": "drain"})
    states = json.loads(w.read_until("STATES", 120, acks)[7:])
    w.proc.stdin.close()
    w.proc.wait(30)
    lines = target.read_text().split() if target.exists() else []
    assert len(lines) == len(set(lines)), "a non-idempotent effect happened twice"
    assert set(lines) <= set(sent)
    assert set(acks) == set(sent)                      # every submission was acknowledged once retried
    for key, pid in acks.items():
        assert key in states, f"acknowledged {key} (pid {pid}) was lost"
        got_pid, state, _ = states[key]
        assert got_pid == pid and state in ("succeeded", "killed"), (key, states[key])
        if state == "succeeded":
            assert key in lines
        else:                                          # declined only because it already ran
            assert key in lines


def test_sigkill_short(tmp_path):
    run_crashes(tmp_path, kills=5, seed=1)


@pytest.mark.slow
def test_sigkill_full(tmp_path):
    run_crashes(tmp_path, kills=40, seed=2)


def test_sigterm_shuts_down_gracefully(tmp_path):
    home, target = tmp_path / "home", tmp_path / "ws" / "effects.txt"
    target.parent.mkdir()
    w = Worker(home, target)
    acks: dict[str, int] = {}
    for i in range(20):
        w.send({"op": "submit", "key": f"t{i}"})
    w.collect(acks, 0.5)
    w.proc.send_signal(signal.SIGTERM)
    line = w.read_until("BYE", 30, acks)
    assert w.proc.wait(30) == 0
    w2 = Worker(home, target)
    assert w2.recovery["needs_confirmation"] == []     # nothing was left half-done
    w2.send({"op": "drain"})
    states = json.loads(w2.read_until("STATES", 60, acks)[7:])
    w2.proc.stdin.close()
    w2.proc.wait(30)
    assert line.startswith("BYE")
    assert all(states[k][1] == "succeeded" for k in acks)
    lines = target.read_text().split()
    assert sorted(lines) == sorted(set(lines))
