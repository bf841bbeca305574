"""LocalExecutor: runs processes in this Python process.

- llm: submitted to an engine (continuous batching happens inside the engine, under
  the step policy the kernel installed); chunks stream to ``Work.sink``.
- tool: ``ToolRegistry.call`` in a bounded thread pool (tools that need isolation
  start their own sandboxed subprocess inside the registry). Exec tools (kind
  ``code``: python.run, shell.run) get a pool of their own, so long runs never hold
  every worker the quick file tools need.
- job: ``Work.call`` — awaited when it is a coroutine function, else in the pool;
  a callable with a ``device`` parameter is told where the allocator placed it, one
  with a ``grant`` parameter gets its ``Grant`` (to confine what it starts).

What the allocator granted (``Work.grant``: CPU ids, memory, GPUs) is enforced on
the child an exec tool starts: the tool's sandbox gets those limits (the child pins
itself to the CPU ids, its memory limit is the tighter of the agent's quota and the
grant, ``CUDA_VISIBLE_DEVICES`` lists the granted GPUs).

An llm process runs on the engine the kernel's allocator chose (``Work.engine``),
and ``Work.on_tokens`` is asked before each generated token is delivered: when the
agent's tokens-per-minute quota is spent the generation is cancelled there and the
process fails with QuotaExceeded, its partial text kept in the result.

Preemption pauses an llm sequence with ``engine.suspend`` (KV snapshotted) and
``resume`` continues it; tools and jobs are not preemptible (the kernel's scheduler
is told so). ``cancel`` stops an llm at once; for a tool it fires the call's ``Stop``
(``ToolContext.stop``), which SIGKILLs the sandbox's process group, so a killed
``python.run`` writes nothing more; the tool's thread then returns and its late result
is dropped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from llmos.errors import Cancelled, EngineError, LLMOSError, NotFound, QuotaExceeded, map_foreign
from llmos.executor.base import (
    Claim,
    Executor,
    Grant,
    Outcome,
    PlanLike,
    Result,
    Work,
    request_from_spec,
    request_id_for,
)
from llmos.llm.base import Engine

__all__ = ["LocalExecutor", "TOOL_WORKERS"]

log = logging.getLogger(__name__)

TOOL_WORKERS = 4   # threads running tool/job code at once


class LocalExecutor(Executor):
    def __init__(self, claim: Claim, *, engine_for: Callable[[str | None], Awaitable[Engine]] | None = None,
                 tools: Any = None, workers: int = TOOL_WORKERS, versions: Any = None) -> None:
        self._claim = claim
        self._versions = versions                          # VersionStore: file changes kept (undo)
        self._engine_for = engine_for
        self._tools = tools
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="llmos-tool")
        self._exec_pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="llmos-exec")
        self._stops: dict[int, Any] = {}                   # tool pid -> its Stop (proc.kill)
        self._tasks: dict[int, asyncio.Task] = {}          # pid -> task running it
        self._handles: dict[int, tuple[Engine, Any]] = {}  # llm pid -> (engine, handle)
        self._paused: set[int] = set()                     # llm pids suspended by preemption
        self._progress: dict[int, list[float]] = {}        # pid -> [tokens, s] not yet reported
        self._generated: dict[int, int] = {}               # pid -> tokens generated this attempt
        self._last_report = time.monotonic()               # s; when usage was last reported
        self._wake = asyncio.Event()
        self._sandboxes: dict[tuple, Any] = {}             # (memory bytes, cores, gpus) -> Sandbox

    # ── interface ──────────────────────────────────────────────────────────
    def running(self) -> set[int]:
        return set(self._tasks)

    def wake(self) -> None:
        self._wake.set()

    def generated(self, pid: int) -> int:
        return self._generated.get(pid, 0)

    def cancel(self, pid: int) -> bool:
        task = self._tasks.get(pid)
        if task is None:
            return False
        h = self._handles.get(pid)
        if h is not None:
            h[1].cancel()
        stop = self._stops.get(pid)
        if stop is not None:
            stop.stop()            # kills the tool's sandboxed process group now
        task.cancel()
        self._paused.discard(pid)
        return True

    async def run(self, plan: PlanLike) -> Outcome:
        out = Outcome()
        for pid in plan.preempt:
            if await self._pause(pid):
                out.preempted.add(pid)
        todo = [p for p in plan.run if p not in self._tasks or p in self._paused]
        if todo:
            works = await self._claim(todo)
            for pid in todo:
                w = works.get(pid)
                if w is None:
                    continue
                if pid in self._paused:
                    await self._resume(pid)
                else:
                    self._progress[pid] = [0, 0.0]
                    self._tasks[pid] = asyncio.get_running_loop().create_task(
                        self._exec(w), name=f"llmos-pid-{pid}")
        started = bool(todo) or bool(out.preempted)
        if not started and not any(t.done() for t in self._tasks.values()):
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            live = [t for p, t in self._tasks.items() if p not in self._paused]
            try:
                await asyncio.wait([waiter, *live], return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
        self._collect(out)
        return out

    async def close(self) -> None:
        for pid in list(self._tasks):
            self.cancel(pid)
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._exec_pool.shutdown(wait=False, cancel_futures=True)

    # ── internals ──────────────────────────────────────────────────────────
    def _collect(self, out: Outcome) -> None:
        now = time.monotonic()
        dt = now - self._last_report
        self._last_report = now
        for pid, task in list(self._tasks.items()):
            prog = self._progress.get(pid, [0, 0.0])
            if task.done():
                del self._tasks[pid]
                self._handles.pop(pid, None)
                self._stops.pop(pid, None)
                self._paused.discard(pid)
                self._progress.pop(pid, None)
                self._generated.pop(pid, None)
                if task.cancelled():
                    res = Result(pid, False, error=Cancelled(f"process {pid} was cancelled"))
                else:
                    res = task.result()
                out.finished.add(pid)
                out.results[pid] = res
                out.usage[pid] = (int(prog[0]), min(dt, res.wall_s) if res.wall_s else dt)
            elif pid not in self._paused:
                out.usage[pid] = (int(prog[0]), dt)
                prog[0] = 0

    async def _pause(self, pid: int) -> bool:
        h = self._handles.get(pid)
        if h is None or pid in self._paused:
            return False       # tools and jobs are not preemptible
        engine, handle = h
        try:
            await engine.suspend(handle.request_id)
        except EngineError as e:
            log.info("pid %d not paused: %s", pid, e)
            return False
        self._paused.add(pid)
        return True

    async def _resume(self, pid: int) -> None:
        engine, handle = self._handles[pid]
        self._paused.discard(pid)
        try:
            await engine.resume(handle.request_id)
        except EngineError as e:   # the sequence is gone; its task reports the failure
            log.warning("pid %d could not resume: %s", pid, e)

    async def _exec(self, w: Work) -> Result:
        t0 = time.monotonic()
        try:
            if w.kind == "llm":
                res = await self._exec_llm(w)
            elif w.kind == "tool":
                res = await self._exec_tool(w)
            elif w.kind == "job":
                res = await self._exec_job(w)
            else:
                raise NotFound(f"the executor cannot run processes of kind {w.kind!r}")
        except asyncio.CancelledError:
            raise
        except LLMOSError as e:
            res = Result(w.pid, False, error=e, exc=e)
        except Exception as e:   # a tool or job bug must not take the executor down
            res = Result(w.pid, False, error=map_foreign(e, context=f"{w.kind} pid {w.pid}"), exc=e)
        res.wall_s = time.monotonic() - t0
        return res

    async def _exec_llm(self, w: Work) -> Result:
        if self._engine_for is None:
            raise EngineError("no engine is configured for llm processes")
        req = request_from_spec(w.spec, owner=w.owner, priority=w.priority,
                                request_id=request_id_for(w.pid, w.attempt))
        t0 = time.monotonic()
        engine = await self._engine_for(w.engine or req.model)
        setup_s = time.monotonic() - t0          # an engine built on first use loads here
        handle = engine.submit(req)
        self._handles[w.pid] = (engine, handle)
        prog = self._progress.setdefault(w.pid, [0, 0.0])
        delivered: list[str] = []          # text of the tokens delivered (kept when the quota stops it)
        stopped: str | None = None         # why the quota guard stopped it
        async for chunk in handle:
            if w.on_tokens is not None and (stopped := w.on_tokens(1)) is not None:
                handle.cancel()
                break
            prog[0] += 1
            self._generated[w.pid] = self._generated.get(w.pid, 0) + 1
            delivered.append(chunk.text)
            if w.sink is not None:
                w.sink(chunk)
        comp = await handle.result()
        model = comp.model or engine.model
        if stopped is not None:
            value = {"text": "".join(delivered), "finish_reason": "quota", "usage": comp.usage.to_dict(),
                     "model": model}
            return Result(w.pid, False, value, error=QuotaExceeded(
                f"stopped after {len(delivered)} generated tokens: {stopped}",
                hint="wait for the minute window to pass, or raise the agent's tokens_per_min quota"),
                tokens_in=comp.usage.prompt_tokens, tokens_out=len(delivered), setup_s=setup_s)
        if comp.finish_reason == "cancelled":
            raise Cancelled(f"generation for pid {w.pid} was cancelled")
        value = {"text": comp.text, "finish_reason": comp.finish_reason,
                 "usage": comp.usage.to_dict(), "model": model}
        return Result(w.pid, True, value, tokens_in=comp.usage.prompt_tokens,
                      tokens_out=comp.usage.completion_tokens, setup_s=setup_s)

    async def _exec_tool(self, w: Work) -> Result:
        if self._tools is None:
            raise NotFound("no tool registry is configured")
        name = w.spec["tool"]
        args = dict(w.spec.get("args") or {})
        ctx = self._tool_context(w)
        call = self._tools.call
        pool = self._exec_pool if _is_exec(self._tools, name) else self._pool
        if inspect.iscoroutinefunction(call):
            if w.began is not None:
                await asyncio.to_thread(w.began)     # journaled: this attempt began
            t0 = time.thread_time()
            res = await call(name, args, ctx)
            cpu = time.thread_time() - t0
        else:
            def run() -> tuple[Any, float]:
                if w.began is not None:
                    w.began()                        # journaled: this attempt began
                c0 = time.thread_time()
                r = call(name, args, ctx)
                return r, time.thread_time() - c0
            res, cpu = await asyncio.get_running_loop().run_in_executor(pool, run)
        value = {"output": getattr(res, "output", res), "summary": getattr(res, "summary", ""),
                 "files": list(getattr(res, "files", ()) or ()), "risk": w.spec.get("risk")}
        return Result(w.pid, True, value, cpu_s=cpu)

    def _tool_context(self, w: Work) -> Any:
        from llmos.kernel.access import StateArea
        from llmos.tools.registry import Stop, ToolContext

        guard = w.spec.get("guard") or {}
        state = guard.get("state") or ()
        stop = self._stops[w.pid] = Stop()
        fields = {"workdir": w.workdir, "agent": w.owner, "network": w.network,
                  "read_roots": w.read_roots, "write_roots": w.write_roots,
                  "set_timer": w.set_timer, "idempotency_key": w.idempotency_key,
                  "sandbox": self._sandbox_for(w.memory_bytes, w.grant),
                  "state": StateArea(*state) if state else None,
                  "workspace_bytes": guard.get("workspace_bytes"), "stop": stop,
                  "versions": self._recorder(w)}
        if dataclasses.is_dataclass(ToolContext):
            names = {f.name for f in dataclasses.fields(ToolContext)}
        else:
            names = set(inspect.signature(ToolContext).parameters)
        return ToolContext(**{k: v for k, v in fields.items() if k in names})

    def _recorder(self, w: Work) -> Any:
        """The version recorder of one tool call: its agent, its run (the shell run id its
        idempotency key starts with, else its pid) and its pid."""
        if self._versions is None:
            return None
        from llmos.kernel.versions import run_of

        return self._versions.bind(w.owner, run_of(w.idempotency_key, w.pid), w.pid)

    def _sandbox_for(self, memory_bytes: int | None, grant: Grant | None = None) -> Any:
        """None (the default sandbox) unless the agent's memory quota is tighter than it or
        the allocator granted the process something (CPU ids, memory, GPUs); one Sandbox
        per distinct set of limits, so each is probed once."""
        if memory_bytes is None and grant is None:
            return None
        from llmos.tools.sandbox import Sandbox, default_sandbox

        limits = default_sandbox().limits
        mem = min([limits.memory_bytes] + [m for m in (memory_bytes, grant and grant.memory_bytes) if m])
        cores = grant.cores if grant is not None else None
        gpus = grant.gpus if grant is not None else None
        key = (mem, cores, gpus)
        if key == (limits.memory_bytes, None, None):
            return None
        box = self._sandboxes.get(key)
        if box is None:
            box = self._sandboxes[key] = Sandbox(
                limits=dataclasses.replace(limits, memory_bytes=mem, cores=cores, gpus=gpus))
        return box

    async def _exec_job(self, w: Work) -> Result:
        if w.call is None:
            raise NotFound(f"job pid {w.pid} has nothing to run")
        fn = w.call
        if w.device is not None and _takes(fn, "device"):
            fn = functools.partial(fn, device=w.device)
        if w.grant is not None and _takes(fn, "grant"):
            fn = functools.partial(fn, grant=w.grant)
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "func", None)):
            if w.began is not None:
                await asyncio.to_thread(w.began)     # journaled: this attempt began
            t0 = time.thread_time()
            value = await fn()
            cpu = time.thread_time() - t0
        else:
            def run() -> tuple[Any, float]:
                if w.began is not None:
                    w.began()                        # journaled: this attempt began
                c0 = time.thread_time()
                v = fn()
                return v, time.thread_time() - c0
            value, cpu = await asyncio.get_running_loop().run_in_executor(self._pool, run)
        return Result(w.pid, True, value, cpu_s=cpu)


def _is_exec(tools: Any, name: str) -> bool:
    """True for a tool that runs a sandboxed program (kind ``code``)."""
    try:
        return getattr(tools.get(name), "kind", None) == "code"
    except Exception:      # a registry without the tool: the call itself reports it
        return False


def _takes(fn: Callable[..., Any], name: str) -> bool:
    """True when ``fn`` has a parameter ``name`` not already bound (the placement passes it in)."""
    if name in (getattr(fn, "keywords", None) or {}):
        return False
    try:
        param = inspect.signature(fn).parameters.get(name)
    except (TypeError, ValueError):
        return False
    return param is not None and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
