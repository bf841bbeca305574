"""Training jobs as kernel processes: the ``train`` job type, its runner, submit and admission.

Map:
- ``register(kernel)``: makes ``{"type": "train", ...}`` a job type of ``kernel``
  (idempotent: after a crash recovery re-queues it, and it resumes from its checkpoint).
- ``job_spec(spec, home)`` -> (the ``proc.spawn`` spec of a job process, its ``JobDir``):
  ``device`` and ``demand`` (cores, memory_bytes) are what the allocator places it by.
- ``admit(spec, snapshot)``: refuse a job that asks for more than this machine has,
  naming the resource (cores, memory, GPUs); the kernel's own admission checks cores and
  memory against the allocator's resources again.
- ``submit(kernel, spec, agent=, fresh=)`` -> pid: ``admit``, then ``Kernel.submit``
  with an idempotency key from the spec (the same spec submitted again is the same job).
- ``TrainRun``: what the job process runs (a coroutine on the kernel loop): launch the
  ranks (local processes, or Ray Train workers when the kernel drives a Ray cluster: the
  same launcher calls), watch them, yield to more urgent work, relaunch from the
  checkpoint, report (with the embedder recipe's ``eval.json`` when there is one).

NOTE (preemption). The kernel's scheduler does not pause jobs, so a training job yields
by itself: while it runs, the runner looks at the process table every ``POLL_S``; when a
live process with a more urgent priority (llm, tool or job; runs excluded, they only
wait on their steps) has been there for ``YIELD_AFTER_S``, it SIGTERMs its ranks, which
agree on a step boundary, write a checkpoint and exit. Their cores and memory are free
while the runner waits; ``RESUME_AFTER_S`` after the last urgent process ended it starts
new ranks, which load the checkpoint. Each yield and resume is journaled as the
process's reason (``llmos ps`` shows it) and in the job's ``events.jsonl``; the energy
meter weighs the job by its cores while ranks run and by 0.01 while it waits. A cancelled
runner (``proc.kill``, kernel shutdown) stops its ranks the same way, waiting up to
``STOP_GRACE_S`` for their checkpoint before SIGKILL.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos.errors import AllocError, LLMOSError
from llmos.train.checkpoint import JobDir, latest, read_progress
from llmos.train.launcher import LocalLauncher
from llmos.train.spec import TrainSpec, parse_spec

if TYPE_CHECKING:
    from llmos.hal.base import HardwareSnapshot

__all__ = ["JOB_TYPE", "register", "job_spec", "admit", "submit", "TrainRun", "TrainError", "job_dir_for",
           "POLL_S", "YIELD_AFTER_S", "RESUME_AFTER_S", "STOP_GRACE_S"]

log = logging.getLogger(__name__)

JOB_TYPE = "train"
POLL_S = 0.25            # seconds between looks at the ranks and the process table
YIELD_AFTER_S = 0.5      # an urgent process live this long makes training yield
RESUME_AFTER_S = 1.0     # no urgent process for this long: training resumes
STOP_GRACE_S = 30.0      # seconds ranks get to write their checkpoint after SIGTERM
MAX_FAILURES = 3         # rank failures in a row before the job fails


class TrainError(LLMOSError):
    """A training job failed (a rank crashed, bad data, torch missing)."""

    code = "train"


def register(kernel: Any) -> None:
    """Make ``train`` a job type of ``kernel`` (torch is imported only by the ranks)."""
    kernel.register_job(JOB_TYPE, functools.partial(run_job, kernel), idempotent=True)


async def run_job(kernel: Any, *, job_dir: str, spec: dict, device: str | None = None) -> dict:
    return await TrainRun(kernel, JobDir(job_dir), parse_spec(spec)).run()


def job_dir_for(spec: TrainSpec, home: str | Path) -> JobDir:
    return JobDir(Path(home) / "train" / f"{spec.name}-{spec.key}")


def job_spec(spec: TrainSpec, home: str | Path) -> tuple[dict[str, Any], JobDir]:
    job = job_dir_for(spec, home)
    demand: dict[str, float] = {"cores": spec.demand.cores, "memory_bytes": float(spec.demand.memory_bytes)}
    return ({"type": JOB_TYPE, "name": f"train {spec.name}", "device": spec.device, "demand": demand,
             "args": {"job_dir": str(job.path), "spec": spec.to_dict()}}, job)


def admit(spec: TrainSpec, snapshot: HardwareSnapshot | None) -> None:
    """Raise AllocError naming the resource when this machine could never run ``spec``."""
    import os

    devices = snapshot.devices if snapshot is not None else ()
    cpu = next((d for d in devices if d.kind == "cpu"), None)
    cores = (cpu.cores if cpu is not None and cpu.cores else None) or os.cpu_count() or 1
    if spec.demand.cores > cores:
        raise AllocError(f"demand.cores: the job asks for {spec.demand.cores:g} cores, this machine has {cores}",
                         hint="lower workers or demand.cores")
    total = getattr(cpu, "memory_total_bytes", None) if cpu is not None else None
    if total and spec.demand.memory_bytes > total:
        raise AllocError(f"demand.memory_bytes: the job asks for {spec.demand.memory_bytes / 2**30:.1f} GiB "
                         f"of memory, this machine has {total / 2**30:.1f} GiB",
                         hint="lower demand.memory_bytes")
    gpus = sum(1 for d in devices if d.kind == "gpu")
    if spec.demand.gpus > gpus:
        raise AllocError(f"demand.gpus: the job asks for {spec.demand.gpus} GPUs, this machine has {gpus}",
                         hint="set device = cpu, or fewer workers")


async def submit(kernel: Any, spec: TrainSpec, *, agent: str = "root", fresh: bool = False) -> int:
    """Admit and submit ``spec`` as a job process; returns its pid (the existing one when the
    same spec was submitted before, unless ``fresh``)."""
    admit(spec, kernel.hal.snapshot() if getattr(kernel, "hal", None) is not None else None)
    body, job = job_spec(spec, kernel.config.home)
    key = f"train:{spec.name}:{spec.key}"
    if fresh:
        key += f":{time.time_ns()}"
    if job.path.exists() and fresh:
        import shutil

        shutil.rmtree(job.path)
    job.create(spec.to_dict())
    return await kernel.submit("job", body, agent=agent, priority=spec.priority, idempotency_key=key)


class TrainRun:
    """One job process's runner. Lives on the kernel's loop; owns its launcher."""

    def __init__(self, kernel: Any, job: JobDir, spec: TrainSpec) -> None:
        self.kernel = kernel
        self.job = job
        self.spec = spec
        self.launcher: Any = None                    # LocalLauncher or RayLauncher (same calls)
        self.on_ray = getattr(getattr(kernel, "executor", None), "connection", None) is not None
        self.yields = 0                              # times it stopped for more urgent work
        self.launches = 0                            # rank sets started
        self.busy_s = 0.0                            # seconds ranks were running
        self.stopping = False

    # ── the kernel side ────────────────────────────────────────────────────
    def _me(self) -> Any:
        for p in self.kernel.procs.live():
            if p.kind == "job" and (p.spec.get("args") or {}).get("job_dir") == str(self.job.path):
                return p
        return None

    def _urgent(self, me: Any) -> Any:
        """A live process more urgent than this job (None: nothing to yield to)."""
        from llmos.kernel.process import ProcState

        if me is None:
            return None
        for p in self.kernel.procs.live():
            if p.pid != me.pid and p.kind != "run" and p.priority < me.priority and \
                    p.state in (ProcState.QUEUED, ProcState.RUNNING, ProcState.PREEMPTED):
                return p
        return None

    def _weigh(self, weight: float) -> None:
        """The job's share of its device's energy: its cores while ranks run, next to
        nothing while it has yielded (a process left at weight 1 would be charged as one)."""
        meter, me = getattr(self.kernel, "meter", None), self._me()
        if meter is None or me is None:
            return
        try:
            meter.set_weight(me.pid, weight)
        except LLMOSError:            # not metered (no HAL, or not running yet)
            pass

    def _say(self, reason: str) -> None:
        me = self._me()
        if me is not None:
            self.kernel.procs.transition(me, me.state, reason)

    # ── the run ────────────────────────────────────────────────────────────
    async def run(self) -> dict[str, Any]:
        self.job.create(self.spec.to_dict())
        ck = latest(self.job)
        resumed_from = ck.step if ck is not None else 0
        self.job.event("start", resumed_from=resumed_from)
        failures = 0
        yielded = False
        try:
            while True:
                await self._wait_for_room(told=yielded)
                codes = await self._attempt()
                yielded = codes is None
                if yielded:                          # checkpoint written; its reason stands
                    continue
                if all(c == 0 for c in codes):
                    break
                if all(c in (0, 75) for c in codes):   # stopped by someone else's SIGTERM
                    continue
                failures += 1
                bad = min((r for r, c in enumerate(codes) if c not in (0, 75)),
                          key=lambda r: (codes[r] == -9, r))   # a killed peer is not the cause
                why = self.launcher.tail(bad) if self.launcher else ""
                self.job.event("failed", rank=bad, code=codes[bad], why=why)
                if failures >= MAX_FAILURES or "train worker" in why:
                    raise TrainError(f"training rank {bad} exited with code {codes[bad]}: "
                                     f"{why or 'no output'}",
                                     hint=f"its log: {self.job.log(bad)}")
        except asyncio.CancelledError:
            await self._stop_ranks()
            self.job.event("cancelled")
            raise
        return self._result(resumed_from)

    async def _wait_for_room(self, told: bool = False) -> None:
        """Wait while more urgent work runs. ``told``: the reason already says why (a yield
        just wrote "checkpointed at step N for pid P"), so waiting does not overwrite it."""
        if not self.spec.preemptible:
            return
        clear_since: float | None = None
        while True:
            urgent = self._urgent(self._me())
            now = time.monotonic()
            if urgent is None:
                clear_since = clear_since or now
                if not told or now - clear_since >= RESUME_AFTER_S:
                    break
            else:
                clear_since = None
                if not told:
                    self._say(f"yielded: waits for pid {urgent.pid} (priority {urgent.priority}) "
                              "before training")
                    told = True
            await asyncio.sleep(POLL_S)
        if told:
            ck = latest(self.job)
            self.job.event("resume", step=ck.step if ck else 0)
            self._say(f"resumed: training from step {ck.step if ck else 0}")

    def _launcher(self) -> Any:
        """Ray Train's workers when the kernel drives a Ray cluster, else local processes."""
        threads = max(1, int(self.spec.demand.cores // self.spec.workers))
        if self.on_ray:
            from llmos.train.ray_launcher import RayLauncher

            return RayLauncher(self.job, self.spec.workers, threads=threads, gpus=self.spec.demand.gpus)
        return LocalLauncher(self.job, self.spec.workers, threads=threads)

    async def _attempt(self) -> list[int] | None:
        """One set of ranks. Exit codes, or None when it yielded to urgent work."""
        self.launcher = self._launcher()
        await self.launcher.start()
        self._weigh(self.spec.demand.cores)
        self.launches += 1
        t0 = time.monotonic()
        urgent_since: float | None = None
        steps_at_start = len(read_progress(self.job))
        try:
            while True:
                codes = await self.launcher.wait(POLL_S)
                if codes is not None:
                    return codes
                if not self.spec.preemptible or self.stopping:
                    continue
                me = self._me()
                urgent = self._urgent(me)
                if urgent is None:
                    urgent_since = None
                    continue
                urgent_since = urgent_since or time.monotonic()
                if time.monotonic() - urgent_since < YIELD_AFTER_S:
                    continue
                if len(read_progress(self.job)) <= steps_at_start:
                    continue                          # make one step of progress per launch first
                self.launcher.stop()
                codes = await self.launcher.wait(STOP_GRACE_S)
                if codes is None:
                    self.launcher.kill()
                    codes = await self.launcher.wait()
                if codes is not None and all(c == 0 for c in codes):
                    return codes                      # it finished meanwhile
                ck = latest(self.job)
                self._weigh(0.01)
                self.yields += 1
                self.job.event("yield", step=ck.step if ck else 0, to_pid=urgent.pid)
                self._say(f"yielded: checkpointed at step {ck.step if ck else 0} for pid {urgent.pid} "
                          f"(priority {urgent.priority}); resumes when it ends")
                return None
        finally:
            self.busy_s += time.monotonic() - t0

    async def _stop_ranks(self) -> None:
        if self.launcher is None:
            return
        self.stopping = True
        self.launcher.stop()
        try:
            codes = await asyncio.wait_for(asyncio.shield(self.launcher.wait(STOP_GRACE_S)), STOP_GRACE_S + 1)
        except (TimeoutError, asyncio.CancelledError):
            codes = None
        if codes is None:
            self.launcher.kill()

    def _result(self, resumed_from: int) -> dict[str, Any]:
        ck = latest(self.job)
        losses = ck.losses if ck is not None else []
        rows = read_progress(self.job)
        samples = self.spec.batch_size * max(0, len(losses) - resumed_from)
        self.job.event("end", step=len(losses))
        extra: dict[str, Any] = {}
        try:                                         # the embedder recipe's before/after retrieval
            extra["eval"] = json.loads((self.job.path / "eval.json").read_text())
        except (OSError, ValueError):
            pass
        return {**extra, "job": self.spec.name, "dir": str(self.job.path), "recipe": self.spec.recipe,
                "launcher": "ray" if self.on_ray else "local",
                "workers": self.spec.workers, "steps": len(losses),
                "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
                "resumed_from": resumed_from, "yields": self.yields, "launches": self.launches,
                "busy_s": round(self.busy_s, 3),
                "samples_per_s": round(samples / self.busy_s, 1) if self.busy_s > 0 else None,
                "checkpoint": str(ck.path) if ck is not None else None, "progress_rows": len(rows)}
