"""The Ray Train launcher: one attempt's ranks as Ray Train workers (``TorchTrainer``) on the
cluster the kernel drives, behind the same calls as ``LocalLauncher``.

Map:
- ``RayLauncher(job, world_size, threads=, gpus=)``: ``start()`` makes a ``Control`` actor
  and runs ``TorchTrainer.fit()`` in a thread (Ray Train places ``world_size`` workers with
  ``threads`` CPUs each, or one GPU each with ``gpus``, and joins them in one process group:
  gloo on CPU, NCCL on GPU); ``wait(timeout)`` -> the exit codes once the run ended (None
  while it runs); ``stop()`` asks every rank to stop at the next step boundary (checkpoint
  written, code 75); ``kill()`` kills the rank actors at once; ``tail(rank)`` is the
  one line a failed rank left.
- ``rank_main(config)``: what each Ray Train worker runs: ``recipes.train`` over the job
  folder, as ``python -m llmos.train.worker`` does for a local rank.
- ``Control``: a small actor (no CPU) that the ranks report to: their actor handles and
  pids, the stop flag (polled at most every ``STOP_POLL_S``), their exit codes and failures.

NOTE (same folder, same curve). The job folder is still the only state: rank 0 writes the
checkpoints and progress there, and every new attempt (after a yield, a lost node, a kernel
restart) resumes from its newest checkpoint, so the loss curve is the one the local
launcher gets (same per-rank split, same seeds). That needs the folder at the same path on
every node that runs a rank: a local head, or a shared filesystem. Ray Train never retries
by itself (``max_failures=0``): the kernel's runner decides, as it does for local ranks.
A rank whose Python code raised leaves ``train worker N: Error: message`` (the runner fails
the job at once); a rank whose worker or node died leaves ``ray: ...`` (the runner starts a
new attempt from the checkpoint). When the kernel process dies, Ray ends the actors its
driver owned, but only once it notices (about a second here, 25 steps of a tiny model): so a
rank on the kernel's own node also checks at every step that the kernel lives, and stops
without writing when it does not (``EXIT_ORPHANED``, as a local rank whose parent died).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from typing import Any

import ray

from llmos.train.checkpoint import JobDir

__all__ = ["RayLauncher", "Control", "rank_main", "STOP_POLL_S", "CODE_KILLED", "CODE_FAILED"]

log = logging.getLogger(__name__)

STOP_POLL_S = 0.2          # seconds between a rank's looks at the stop flag
PG_TIMEOUT_S = 120         # seconds the process group waits for a peer (as local ranks do)
CODE_FAILED = 1            # a rank's code raised, or Ray failed the run
CODE_KILLED = -9           # a rank ended by kill(), or torn down after a peer failed


class Control:
    """One attempt's meeting point. Owner: its RayLauncher (a Ray actor, no CPU)."""

    def __init__(self) -> None:
        self.stop = False
        self.ranks: dict[int, tuple[Any, int, str]] = {}   # rank -> (actor handle, pid, node id)
        self.codes: dict[int, int] = {}                     # rank -> exit code it returned
        self.why: dict[int, str] = {}                       # rank -> the line a failed rank left

    def join(self, rank: int, handle: Any, pid: int, node: str) -> bool:
        self.ranks[rank] = (handle, pid, node)
        return self.stop

    def ask_stop(self) -> None:
        self.stop = True

    def stopping(self) -> bool:
        return self.stop

    def done(self, rank: int, code: int, why: str = "") -> None:
        self.codes[rank] = code
        if why:
            self.why[rank] = why

    def state(self) -> dict[str, Any]:
        return {"codes": dict(self.codes), "why": dict(self.why),
                "pids": {r: pid for r, (_, pid, _) in self.ranks.items()}}

    def handles(self) -> list[Any]:
        return [h for h, _, _ in self.ranks.values()]


# ── a rank (runs in a Ray Train worker) ────────────────────────────────────
def rank_main(config: dict[str, Any]) -> None:
    """One rank: join the attempt, train from the newest checkpoint, report the exit code.
    A failure is reported as one line, then raised (Ray Train tears the group down)."""
    import json

    import ray.train
    import torch

    from llmos.train import recipes
    from llmos.train.spec import parse_spec

    ctx = ray.train.get_context()
    rank, world, local_rank = ctx.get_world_rank(), ctx.get_world_size(), ctx.get_local_rank()
    control = config["control"]
    job = JobDir(config["job_dir"])
    rt = ray.get_runtime_context()
    asked = ray.get(control.join.remote(rank, rt.current_actor, os.getpid(), rt.get_node_id()))
    polled = {"at": time.monotonic(), "asked": asked}

    def stop() -> bool:
        now = time.monotonic()
        if not polled["asked"] and now - polled["at"] >= STOP_POLL_S:
            polled["asked"] = bool(ray.get(control.stopping.remote()))
            polled["at"] = now
        return polled["asked"]

    parent = int(config["parent"]) if config.get("parent_node") == rt.get_node_id() else 0

    def orphaned() -> bool:                   # the kernel on this node died (see the NOTE)
        if not parent:
            return False
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False

    try:
        spec = parse_spec(json.loads(job.spec_file.read_text()))
        torch.set_num_threads(max(1, int(config["threads"])))
        device = recipes.pick_device(spec, local_rank)
        code = recipes.train(spec, job, rank, world, stop, device, orphaned=orphaned)
    except Exception as e:
        line = f"train worker {rank}: {type(e).__name__}: {e}"
        with contextlib.suppress(OSError), open(job.log(rank), "a") as f:
            f.write(line + "\n")
        ray.get(control.done.remote(rank, CODE_FAILED, line))
        raise
    ray.get(control.done.remote(rank, code))


# ── the launcher (runs in the kernel) ──────────────────────────────────────
class RayLauncher:
    """The ranks of one attempt on the Ray cluster. Owner: the job runner that made it."""

    def __init__(self, job: JobDir, world_size: int, *, threads: int = 1, gpus: int = 0) -> None:
        self.job = job
        self.world_size = world_size
        self.threads = threads                        # CPUs per rank (its torch threads)
        self.gpus = gpus                              # GPUs in all (0: CPU ranks, gloo)
        self.control: Any = None                      # the Control actor (start() makes it)
        self._fit: asyncio.Future | None = None       # the thread running TorchTrainer.fit()
        self._error: BaseException | None = None      # what fit() raised
        self._state: dict[str, Any] = {"codes": {}, "why": {}, "pids": {}}
        self._killed = False
        self._storage = job.path / "ray"              # Ray Train's own run folder (removed after)

    @property
    def pids(self) -> list[int]:
        return [self._state["pids"][r] for r in sorted(self._state["pids"])]

    async def start(self) -> None:
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        self.control = ray.remote(num_cpus=0)(Control).remote()
        per_rank: dict[str, float] = {"CPU": float(self.threads)}
        if self.gpus:
            per_rank["GPU"] = max(1.0, self.gpus / self.world_size)
        trainer = TorchTrainer(
            rank_main,
            train_loop_config={"control": self.control, "job_dir": str(self.job.path), "threads": self.threads,
                               "parent": os.getpid(), "parent_node": ray.get_runtime_context().get_node_id()},
            torch_config=TorchConfig(backend="nccl" if self.gpus else "gloo", timeout_s=PG_TIMEOUT_S),
            scaling_config=ScalingConfig(num_workers=self.world_size, use_gpu=bool(self.gpus),
                                         resources_per_worker=per_rank),
            run_config=RunConfig(name=f"attempt-{time.time_ns()}", storage_path=str(self._storage),
                                 failure_config=FailureConfig(max_failures=0)))
        self._fit = asyncio.ensure_future(asyncio.to_thread(self._run, trainer))

    def _run(self, trainer: Any) -> None:
        try:
            trainer.fit()
        except BaseException as e:      # the run's failure becomes codes (wait), never a raise here
            self._error = e
        finally:
            shutil.rmtree(self._storage, ignore_errors=True)

    async def wait(self, timeout: float | None = None) -> list[int] | None:
        """Exit codes (rank order) once the run ended; None if it still runs after ``timeout``."""
        if self._fit is None:
            raise RuntimeError("RayLauncher.wait before start")
        done, _ = await asyncio.wait({self._fit}, timeout=timeout)
        if not done:
            return None
        with contextlib.suppress(Exception):
            self._state = await asyncio.wait_for(self.control.state.remote(), 10)
        return self._codes()

    def _codes(self) -> list[int]:
        codes, why = self._state["codes"], self._state["why"]
        failures: dict[int, Any] = getattr(self._error, "worker_failures", None) or {}
        out: list[int] = []
        for rank in range(self.world_size):
            if rank in codes:
                out.append(codes[rank])
            elif rank in failures:                    # its worker died before it could say
                out.append(CODE_KILLED if self._killed else CODE_FAILED)
                err = failures[rank]
                first = (str(err).strip().splitlines() or [type(err).__name__])[-1][:200]
                why.setdefault(rank, f"ray: the worker of rank {rank} died ({type(err).__name__}: {first})")
            elif self._error is not None and not failures:   # Ray failed the run itself
                out.append(CODE_KILLED if self._killed else CODE_FAILED)
                first = (str(self._error).strip().splitlines() or [type(self._error).__name__])[0][:200]
                why.setdefault(rank, f"ray: {type(self._error).__name__}: {first}")
            else:                                     # torn down after a peer failed, or killed
                out.append(CODE_KILLED)
        return out

    def stop(self) -> None:
        """Ask every rank to stop at the next step boundary (checkpoint written)."""
        if self.control is not None:
            self.control.ask_stop.remote()

    def kill(self) -> None:
        """End the ranks now (no checkpoint): their actors are killed."""
        if self.control is None:
            return
        self._killed = True
        try:
            handles = ray.get(self.control.handles.remote(), timeout=10)
        except Exception as e:          # the control actor is gone: the run is too
            log.info("train: no rank handles to kill (%s)", e)
            return
        for h in handles:
            with contextlib.suppress(Exception):
                ray.kill(h, no_restart=True)

    def tail(self, rank: int, lines: int = 3) -> str:
        """The line a failed rank left (its error, or how its worker died)."""
        why = self._state["why"].get(rank)
        if why:
            return why
        try:
            text = self.job.log(rank).read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join([r for r in text.splitlines() if r.strip()][-lines:])
