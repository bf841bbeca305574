"""The local-process launcher: one worker process per rank on this machine, torchrun-style.

Map:
- ``LocalLauncher(job, world_size, python=)``: ``start()`` picks a free loopback port and
  starts ``python -m llmos.train.worker`` once per rank with ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``,
  ``LLMOS_TRAIN_DIR`` and ``LLMOS_TRAIN_PARENT`` set; each worker's output goes to
  ``logs/rank<N>.log``. ``wait(timeout)`` -> the exit codes once every worker ended (None
  while any runs; when one fails the others are stopped); ``stop()`` sends SIGTERM (a
  stop at the next step boundary, checkpoint written); ``kill()`` SIGKILLs them.
- ``free_port()``.

Workers run in sessions of their own (a Ctrl-C at the terminal reaches the kernel, which
decides) and get SIGKILL from the kernel if the process that launched them dies
(``PR_SET_PDEATHSIG``), so a ``kill -9`` of the daemon leaves no rank behind. Every signal
goes to a worker by its own pid.

``ray_launcher.RayLauncher`` (Ray Train's ``TorchTrainer`` on the cluster the kernel drives)
sits beside this one behind the same calls; the job runner picks it when the kernel runs
with a Ray executor.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import sys
from pathlib import Path

from llmos.train.checkpoint import JobDir

__all__ = ["LocalLauncher", "free_port"]

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:      # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class LocalLauncher:
    """The ranks of one attempt. Owner: the job runner that made it."""

    def __init__(self, job: JobDir, world_size: int, *, python: str | None = None,
                 threads: int = 1) -> None:
        self.job = job
        self.world_size = world_size
        self.python = python or sys.executable
        self.threads = threads                       # OMP threads per worker
        self.procs: list[asyncio.subprocess.Process] = []
        self.port: int | None = None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def start(self) -> None:
        self.port = free_port()
        src = str(Path(__file__).resolve().parents[2])      # the tree llmos is imported from
        base = dict(os.environ)
        base["PYTHONPATH"] = src + (os.pathsep + base["PYTHONPATH"] if base.get("PYTHONPATH") else "")
        base.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(self.port),
                     "WORLD_SIZE": str(self.world_size), "LOCAL_WORLD_SIZE": str(self.world_size),
                     "LLMOS_TRAIN_DIR": str(self.job.path), "LLMOS_TRAIN_PARENT": str(os.getpid()),
                     "OMP_NUM_THREADS": str(self.threads), "PYTHONUNBUFFERED": "1"})
        for rank in range(self.world_size):
            env = {**base, "RANK": str(rank), "LOCAL_RANK": str(rank)}
            with open(self.job.log(rank), "ab") as log:
                try:
                    p = await asyncio.create_subprocess_exec(
                        self.python, "-m", "llmos.train.worker", env=env, stdin=asyncio.subprocess.DEVNULL,
                        stdout=log, stderr=log, start_new_session=True, preexec_fn=_die_with_parent)
                except BaseException:
                    self.kill()
                    raise
            self.procs.append(p)

    async def wait(self, timeout: float | None = None) -> list[int] | None:
        """Exit codes (rank order) once all ended; None if still running after ``timeout``.
        A rank that failed (not 0 and not a stop) brings the others down."""
        tasks = [asyncio.ensure_future(p.wait()) for p in self.procs]
        try:
            await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.ALL_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
        codes = [p.returncode for p in self.procs]
        if all(c is not None for c in codes):
            return codes                                   # type: ignore[return-value]
        if any(c not in (None, 0, 75) for c in codes):
            self.kill()                                    # a peer died: the rest would hang
            await asyncio.gather(*(p.wait() for p in self.procs))
            return [p.returncode for p in self.procs]      # type: ignore[misc]
        return None

    def stop(self) -> None:
        """Ask every rank to stop at the next step boundary (checkpoint written)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        for p in self.procs:
            if p.returncode is None:
                try:
                    os.kill(p.pid, sig)
                except ProcessLookupError:
                    pass

    def tail(self, rank: int, lines: int = 3) -> str:
        """The last lines of a rank's log (the error a failed worker printed)."""
        try:
            text = self.job.log(rank).read_text(errors="replace")
        except OSError:
            return ""
        rows = [r for r in text.splitlines() if r.strip() and "Warning" not in r
                and not r.startswith("  ")]
        return " | ".join(rows[-lines:])
