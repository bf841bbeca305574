"""RayExecutor: the local executor, with tool steps and jobs run as Ray tasks on a cluster.

Imported only when Ray is configured (``llmos serve --ray``); it imports Ray.

Map:
- ``RayExecutor(claim, connection=, ...)``: the same interface as ``LocalExecutor``
  (plan down, outcome up) and the same bookkeeping (it extends it): generations stay
  on the kernel's engines; a tool step that ``ray_request.tool_route`` sends out, and a
  job whose callable can be pickled, become Ray tasks with the resources
  ``ray_request.request_for`` asks; everything else runs here as before.
- ``sends(kind, spec, fn)``: whether a tool step or job of that spec becomes a Ray task
  (asked before it runs: the kernel's allocator then places it on a cluster node).
- ``stats``: counts of steps run on Ray / here, re-runs after a dead worker, failures,
  and steps that ran off the node they were placed on (``off_node``).

NOTE (nodes). A step the allocator placed on a node (``Work.node``) is submitted with
soft node affinity to it: Ray runs it there, and when that node has left (or cannot hold
it) on a node of its own choice; the worker reports its node, and a step that ran elsewhere
gets a ``Result.note`` naming both (the kernel appends it to the end reason), as does
a placed job whose callable turned out to run here.

NOTE (who decides). The kernel's journal stays the only record: the executor is
handed claimed work and returns one ``Result`` per process, exactly as the local
executor does. ``Work.began`` is journaled before the task is submitted (a step sent
to a worker may have begun). Ray never re-runs a task by itself (``max_retries=0``):
when the worker or its node dies mid-task, the executor submits an idempotent step
again (``RAY_RETRIES`` times at most) and fails any other with the reason, so a step
is never lost and never silently run twice. A task's own failure comes back as data
(``ray_worker``) and becomes the same error the local executor would report. A
program's workdir versions (undo) are kept here on the head around its task, as
``python.run`` does locally; that assumes the workdir is the same folder on the node
(a local head, or a shared filesystem). ``cancel`` force-cancels the task (Ray kills
its worker; the sandbox's ``--die-with-parent`` takes the program down with it).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
from typing import Any

import ray

from llmos import params
from llmos.errors import Cancelled, KernelError, LLMOSError, ToolError
from llmos.executor.base import Claim, Result, Work
from llmos.executor.local import TOOL_WORKERS, LocalExecutor
from llmos.executor.ray_connect import RayConnection
from llmos.executor.ray_request import RAY_RETRIES, may_retry, memory_limit, request_for, tool_route
from llmos.executor.ray_worker import run_job, run_tool, unpack
from llmos.hal.cluster import RAY_GPU_RESOURCE, node_resource_name

__all__ = ["RayExecutor", "SELF_PLACED_JOBS"]

# job types whose runner (on the kernel's loop) puts its own work on the cluster: a training
# job's ranks are Ray Train workers with their own GPU requests (train.ray_launcher)
SELF_PLACED_JOBS = ("train",)

log = logging.getLogger(__name__)


def _died_errors() -> tuple[type[BaseException], ...]:
    """Ray's errors meaning the worker or node running a task went away."""
    names = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "ObjectLostError",
             "OwnerDiedError", "OutOfMemoryError", "RaySystemError")
    return tuple(t for n in names if isinstance(t := getattr(ray.exceptions, n, None), type))


class RayExecutor(LocalExecutor):
    def __init__(self, claim: Claim, *, connection: RayConnection, engine_for: Any = None, tools: Any = None,
                 workers: int = TOOL_WORKERS, versions: Any = None) -> None:
        super().__init__(claim, engine_for=engine_for, tools=tools, workers=workers, versions=versions)
        self.connection = connection                       # owner: whoever built this executor
        self._tool_task = ray.remote(run_tool)
        self._job_task = ray.remote(run_job)
        self._refs: dict[int, ray.ObjectRef] = {}          # pid -> its Ray task now in flight
        self._builtins: dict[str, Any] | None = None       # tool name -> builtin Tool (lazy)
        self._payloads: dict[tuple[int, int], bytes | None] = {}   # (pid, attempt) -> pickled job
        self._died = _died_errors()
        self.stats: collections.Counter[str] = collections.Counter()   # ray / local / retried / died

    # ── interface ──────────────────────────────────────────────────────────
    def cancel(self, pid: int) -> bool:
        ref = self._refs.pop(pid, None)
        if ref is not None:
            try:
                ray.cancel(ref, force=True)
            except Exception as e:     # already finished, or its node is gone
                log.info("ray: pid %d not cancelled: %s", pid, e)
        return super().cancel(pid)

    async def close(self) -> None:
        """Cancel what runs, then leave the cluster (a head started here is stopped)."""
        for pid in list(self._refs):
            self.cancel(pid)
        await super().close()
        self.connection.close()

    # ── routes ─────────────────────────────────────────────────────────────
    def sends(self, kind: str, spec: Any, fn: Any = None) -> bool:
        """Whether a tool step or job of ``spec`` runs as a Ray task, decided before it runs
        (``route`` without the claimed Work; a job's ``fn`` when known: its registered function).
        A job whose callable then cannot be sent runs here, and its result says so."""
        if not isinstance(spec, dict):
            return False
        if kind == "tool":
            return self.route(Work(0, "tool", "", 0, spec)) is None
        if kind != "job" or spec.get("type") in SELF_PLACED_JOBS:
            return False
        if spec.get("type") == "call":            # in-process unless it asks a GPU of the cluster
            return str(spec.get("device") or "").startswith("gpu")
        return not (inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "func", None)))

    def route(self, w: Work) -> str | None:
        """None: ``w`` runs as a Ray task; else why it runs in this process."""
        if w.kind == "tool":
            if self._tools is None:
                return "no tool registry"
            name = w.spec.get("tool")
            try:
                tool = self._tools.get(name)
            except LLMOSError:
                return "unknown tool"
            return tool_route(tool, w.spec, self._builtin(name))
        if w.kind == "job":
            if w.spec.get("type") == "call" and w.device != RAY_GPU_RESOURCE:
                return "an in-process callable: it shares this process's objects"
            fn = w.call
            if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "func", None)):
                return "a coroutine: it runs on the kernel's loop"
            return None if self._pickled(w) is not None else "its callable cannot be sent to a worker"
        return f"a {w.kind} process"

    def _builtin(self, name: Any) -> Any:
        if self._builtins is None:
            from llmos.tools.builtin import all_tools

            self._builtins = {t.name: t for t in all_tools()}
        return self._builtins.get(name)

    def _pickled(self, w: Work) -> bytes | None:
        """The job's callable pickled (kept for its submission), or None when it cannot be."""
        if w.call is None:
            return None
        key = (w.pid, w.attempt)
        if key not in self._payloads:
            from ray import cloudpickle

            try:
                self._payloads[key] = cloudpickle.dumps(w.call)
            except Exception:
                self._payloads[key] = None
        return self._payloads[key]

    # ── tools ──────────────────────────────────────────────────────────────
    async def _exec_tool(self, w: Work) -> Result:
        why = self.route(w)
        if why is not None:
            self.stats["local"] += 1
            return self._here(w, why, await super()._exec_tool(w))
        name = w.spec["tool"]
        args = dict(w.spec.get("args") or {})
        guard = w.spec.get("guard") or {}
        fields = {"workdir": w.workdir, "agent": w.owner, "network": w.network,
                  "read_roots": tuple(w.read_roots), "write_roots": tuple(w.write_roots),
                  "idempotency_key": w.idempotency_key, "state": tuple(guard.get("state") or ()),
                  "workspace_bytes": guard.get("workspace_bytes")}
        tree = None
        if self._versions is not None and getattr(self._tools.get(name), "kind", "") == "code":
            tree = await asyncio.to_thread(self._keep_tree, w)
        if w.began is not None:
            await asyncio.to_thread(w.began)         # journaled: this attempt (may have) began
        try:
            out = await self._submit(w, self._tool_task, (name, args, fields, memory_limit(w)), ToolError)
        finally:
            if tree is not None:
                await asyncio.to_thread(tree.__exit__, None, None, None)   # records what changed
        value = {"output": out["output"], "summary": out["summary"], "files": out["files"],
                 "risk": w.spec.get("risk")}
        return Result(w.pid, True, value, cpu_s=float(out.get("cpu_s") or 0.0), note=self._off_node(w, out))

    def _keep_tree(self, w: Work) -> Any:
        """Keep the workdir's tree before a program runs on a worker (undo), as
        ``python.run`` does in process; the returned context manager records on exit."""
        from llmos.tools.registry import using
        from llmos.tools.versioning import changing_tree

        ctx = self._tool_context(w)
        self._stops.pop(w.pid, None)
        cm = changing_tree(ctx.workdir, "exec", max_bytes=params.VERSIONS_EXEC_MAX_BYTES)
        with using(ctx):
            cm.__enter__()
        return cm

    # ── jobs ───────────────────────────────────────────────────────────────
    async def _exec_job(self, w: Work) -> Result:
        why = self.route(w)
        if why is not None:
            if w.device == RAY_GPU_RESOURCE and w.spec.get("type") not in SELF_PLACED_JOBS:
                raise KernelError(f"job pid {w.pid} was placed on the Ray cluster's GPUs but {why}",
                                  hint="register the job type with a module-level function")
            self._payloads.pop((w.pid, w.attempt), None)
            self.stats["local"] += 1
            return self._here(w, why, await super()._exec_job(w))
        payload = self._payloads.pop((w.pid, w.attempt), None) or self._pickled(w)
        self._payloads.pop((w.pid, w.attempt), None)
        device = None
        if w.device is not None:
            device = "gpu:0" if w.device.startswith(("gpu", RAY_GPU_RESOURCE)) else w.device
        if w.began is not None:
            await asyncio.to_thread(w.began)
        out = await self._submit(w, self._job_task, (payload, device, memory_limit(w)), KernelError)
        return Result(w.pid, True, out.get("value"), cpu_s=float(out.get("cpu_s") or 0.0),
                      note=self._off_node(w, out))

    # ── nodes ──────────────────────────────────────────────────────────────
    def _here(self, w: Work, why: str, res: Result) -> Result:
        """A step placed on a node that ran in this process: its result says so."""
        if w.node is not None and res.ok:
            res.note = f"placed on {node_resource_name(w.node)} but run in the kernel's process: {why}"
        return res

    def _off_node(self, w: Work, out: dict[str, Any]) -> str:
        """'' when the task ran on the node it was placed on (or none was); else why not."""
        ran = out.get("node")
        if w.node is None or ran is None or ran == w.node:
            return ""
        self.stats["off_node"] += 1
        try:
            live = {n.node_id for n in self.connection.view.nodes()}
        except Exception:                           # the view failed: say what is known
            live = {w.node}
        why = "which had left the cluster" if w.node not in live else "which could not hold it"
        log.info("ray: pid %d placed on node %s, %s: ran on %s", w.pid, w.node[:12], why, ran[:12])
        return f"placed on {node_resource_name(w.node)}, {why}: Ray ran it on {node_resource_name(ran)}"

    # ── submission, retries ────────────────────────────────────────────────
    async def _submit(self, w: Work, task: Any, args: tuple, error: type[LLMOSError]) -> dict[str, Any]:
        """Run ``task`` with ``w``'s resource request; re-run an idempotent step whose worker
        died (see the NOTE). A failure the task reported is raised as its own error."""
        options = request_for(w).as_options()
        if w.node is not None:                       # the allocator's node; Ray's choice if it left
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(w.node, soft=True)
        retries = 0
        while True:
            t0 = time.monotonic()
            ref = task.options(**options).remote(*args)
            self._refs[w.pid] = ref
            self.stats["ray"] += 1
            try:
                out = await ref
            except asyncio.CancelledError:
                raise
            except ray.exceptions.TaskCancelledError:
                raise Cancelled(f"process {w.pid} was cancelled") from None
            except self._died as e:
                self.stats["died"] += 1
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
                what = f"{w.kind} pid {w.pid}"
                if may_retry(w.spec, retries):
                    retries += 1
                    self.stats["retried"] += 1
                    log.warning("ray: the worker running %s died after %.1f s (%s); idempotent: "
                                "run again (%d/%d)", what, time.monotonic() - t0, type(e).__name__,
                                retries, RAY_RETRIES)
                    continue
                if w.spec.get("idempotent"):
                    raise error(f"{what}: its Ray worker died {retries + 1} times ({type(e).__name__}: "
                                f"{first})", hint="see the node's logs; the step is idempotent and "
                                "may be submitted again") from None
                raise error(f"{what}: its Ray worker died mid-task ({type(e).__name__}); the step is "
                            "not idempotent, so it was not run again (it may have run in part)",
                            hint="check its effects, then run it again if needed") from None
            except ray.exceptions.RayError as e:     # anything else Ray says: one line
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                raise error(f"{w.kind} pid {w.pid}: Ray failed the task: {first}") from None
            finally:
                if self._refs.get(w.pid) is ref:
                    del self._refs[w.pid]
            if not out.get("ok"):
                raise unpack(out["error"])
            return out
