"""Plain-language runs over HTTP: submit, watch, confirm or reject a pending step.

Map:
- ``RunState``: one run as the API shows it (``RunOut``): status, plan, steps, the
  step waiting for a yes/no, answer, explanation. Owner: ``RunManager``.
- ``RunManager``: starts each run as a task driving the shell's ``Runner``; turns the
  runner's progress callbacks into ``run.*`` events on the hub; parks the runner's
  ``confirm`` question as ``pending`` until ``decide(run, yes)`` answers it (or
  ``CONFIRM_TIMEOUT_S`` passes: then it is a no); a run submitted with ``ask=false``
  has no question to park and stops before a risky step (``needs_confirmation``).
- ``_AsCaller``: the kernel as the runner sees it, with the runner's root calls
  (creating the run's workspace agent) made as the calling agent instead, so the
  kernel checks that the new agent's rights lie within the caller's.
- Routes: ``POST /api/v1/runs``, ``GET /runs``, ``GET /runs/{id}``, ``GET /runs/{id}/plan``,
  ``POST /runs/{id}/confirm``, ``POST /runs/{id}/reject``, ``POST /runs/{id}/cancel``,
  ``GET /runs/{id}/events`` (SSE).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse

from llmos.api import schemas as S
from llmos.api.auth import ADMIN_AGENT, Principal
from llmos.api.deps import Services, call, principal, services
from llmos.api.errors import ApiError
from llmos.api.events import sse_format
from llmos.api.routes import ERRORS
from llmos.errors import LLMOSError, NotFound, PermissionDenied

__all__ = ["RunManager", "RunState", "router", "CONFIRM_TIMEOUT_S"]

log = logging.getLogger("llmos.api.runs")

CONFIRM_TIMEOUT_S = 3600.0   # a pending step left unanswered this long counts as rejected
CANCEL_WAIT_S = 10.0         # how long a cancel waits for the run to wind down before answering
RUNS_KEPT = 500              # runs remembered in memory (older ones come from the shell's store)
FINAL = ("succeeded", "failed", "denied", "needs_confirmation", "planned", "rejected", "cancelled")


@dataclass
class RunState:
    id: str
    request: str
    owner: str                                   # agent id that submitted it
    workdir: str
    status: str = "planning"                     # planning, running, pending, then a FINAL one
    created: float = field(default_factory=time.time)   # epoch seconds
    updated: float = field(default_factory=time.time)
    plan: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    pending: dict[str, Any] | None = None        # the step waiting for a yes/no
    answer: str | None = None
    explanation: str | None = None
    error: dict[str, Any] | None = None
    shell_run: str | None = None                 # the shell's record id (llmos explain)
    pid: int | None = None                       # the kernel's run process
    _decision: asyncio.Future | None = None      # answered by confirm / reject
    _task: asyncio.Task | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


class _AsCaller:
    """The kernel, with calls the runner makes as root made as ``agent`` instead."""

    def __init__(self, kernel: Any, agent: str) -> None:
        self._kernel = kernel
        self._agent = agent

    def syscall(self, agent: str, name: str, args: dict) -> Any:
        return self._kernel.syscall(self._agent if agent == ADMIN_AGENT else agent, name, args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kernel, name)


def _default_runner(kernel: Any, *, store: Any, model: str | None, priority: int,
                    confirm: Callable, on_event: Callable) -> Any:
    from llmos.shell.runner import Runner, planner_model

    if model is None:
        model, _why = planner_model(kernel)
    return Runner(kernel, store=store, model=model, priority=priority, confirm=confirm,
                  on_event=on_event)


class RunManager:
    def __init__(self, svc: Services, *, runner_factory: Callable | None = None) -> None:
        self.svc = svc
        self._factory = runner_factory or _default_runner
        self._runs: collections.OrderedDict[str, RunState] = collections.OrderedDict()  # id -> run
        self._store: Any = None                   # the shell's ShellStore, opened on first use

    # ── store ──────────────────────────────────────────────────────────────
    def store(self) -> Any:
        if self._store is None:
            from llmos.shell.store import ShellStore

            self._store = ShellStore(self.svc.config.home / "shell.db")
        return self._store

    # ── events ─────────────────────────────────────────────────────────────
    def _publish(self, run: RunState, kind: str, **extra: Any) -> None:
        run.updated = time.time()
        self.svc.hub.publish({"type": f"run.{kind}", "run_id": run.id, "owner": run.owner,
                              "run": run.to_dict(), **extra})

    def _on_runner_event(self, run: RunState) -> Callable[[str, dict], None]:
        def on_event(kind: str, data: dict[str, Any]) -> None:
            if kind == "plan":
                run.plan = [dict(s) for s in data.get("steps", [])]
                run.steps = [dict(s) for s in run.plan]
                run.status = "running"
            elif kind == "step":
                i = int(data.get("index", 0)) - 1
                if 0 <= i < len(run.steps):
                    run.steps[i]["status"] = data.get("status", run.steps[i].get("status"))
                    if data.get("summary"):
                        run.steps[i]["summary"] = data["summary"]
            self._publish(run, kind if kind != "done" else "progress", data=data)
        return on_event

    def _confirm(self, run: RunState) -> Callable:
        async def confirm(index: int, step: Any, risk: Any) -> bool:
            fut = asyncio.get_running_loop().create_future()
            run._decision = fut
            run.pending = {"step": index, "tool": step.tool, "args": step.args,
                           "reason": step.reason, "risk": getattr(risk, "name", str(risk)).lower()}
            prev, run.status = run.status, "pending"
            self._publish(run, "pending")
            try:
                yes = await asyncio.wait_for(fut, CONFIRM_TIMEOUT_S)
            except TimeoutError:
                yes = False
            finally:
                run.pending = None
                run._decision = None
            run.status = prev if yes else "rejected"
            self._publish(run, "decided", approved=bool(yes), step=index)
            return bool(yes)
        return confirm

    # ── submit / decide ────────────────────────────────────────────────────
    async def _workdir(self, who: Principal, workdir: str | None) -> FsPath:
        if workdir is None:
            wd = self.svc.config.home / "workspaces" / who.agent
            wd.mkdir(parents=True, exist_ok=True)
            return wd.resolve()
        wd = FsPath(os.path.expanduser(workdir)).resolve()
        if not wd.is_dir():
            raise ApiError(400, "invalid_argument", f"workdir: {workdir} is not a directory",
                           field="workdir", expected="an existing directory")
        if not who.admin:
            me = await call(self.svc, who, "agent.list", {})
            caps = next((a.get("capabilities", {}) for a in me.get("agents", []) if a.get("id") == who.agent), {})
            roots = [FsPath(r) for r in caps.get("write_roots", [])]
            if not any(wd == r or wd.is_relative_to(r) for r in roots):
                raise PermissionDenied(f"workdir: {wd} is outside the write roots of agent {who.agent!r}",
                                       reason="a run's workspace must lie inside the agent's write roots")
        return wd

    async def submit(self, who: Principal, body: S.RunRequest) -> RunState:
        from llmos.shell.runner import check_request

        check_request(body.request)               # a 400 now, not a failed run later
        if (body.yes or body.yes_all) and not who.admin:
            raise PermissionDenied(f"yes: agent {who.agent!r} cannot approve a run's steps up front",
                                   reason="approval is the person's act (the admin token)",
                                   hint="submit without yes; the person confirms the pending step "
                                        "with `llmos confirm` or in the dashboard")
        wd = await self._workdir(who, body.workdir)
        run = RunState(id="r" + uuid.uuid4().hex[:8], request=body.request, owner=who.agent,
                       workdir=str(wd))
        runner = self._factory(_AsCaller(self.svc.kernel, who.agent), store=self.store(),
                               model=body.model, priority=body.priority or 0,
                               confirm=self._confirm(run) if body.ask else None,
                               on_event=self._on_runner_event(run))
        self._remember(run)
        self._publish(run, "submitted")
        run._task = asyncio.create_task(self._drive(run, runner, body, wd), name=f"run-{run.id}")
        return run

    async def _drive(self, run: RunState, runner: Any, body: S.RunRequest, wd: FsPath) -> None:
        try:
            res = await runner.run(body.request, workdir=wd, yes=body.yes, yes_all=body.yes_all,
                                  dry_run=body.dry_run)
            rec = getattr(res, "record", {}) or {}
            if run.status != "rejected":
                run.status = res.status
            run.answer = res.answer
            run.shell_run = res.run
            run.pid = rec.get("pid")
            run.steps = [dict(s) for s in getattr(res, "steps", run.steps)]
            if rec.get("error"):
                run.error = rec["error"]
            try:
                from llmos.shell.render import explain_text

                run.explanation = explain_text(rec) if rec else None
            except Exception:  # noqa: BLE001 - an explanation is a bonus, never a failure
                log.warning("explain_text failed for run %s", run.id, exc_info=True)
        except asyncio.CancelledError:
            run.status = "cancelled"
            raise
        except LLMOSError as e:
            run.status = "failed"
            run.error = e.to_dict()
            run.answer = f"Failed: {e.message}"
        except Exception as e:  # noqa: BLE001 - a runner bug ends the run, not the daemon
            log.exception("run %s crashed", run.id)
            run.status = "failed"
            run.error = {"error": "internal", "message": f"the run crashed ({type(e).__name__})"}
        finally:
            run.pending = None
            self._publish(run, "finished")

    def _remember(self, run: RunState) -> None:
        self._runs[run.id] = run
        while len(self._runs) > RUNS_KEPT:
            oldest = next((k for k, r in self._runs.items() if r.finished), None)
            if oldest is None:
                break
            self._runs.pop(oldest)

    def get(self, who: Principal, run_id: str) -> RunState:
        run = self._runs.get(run_id)
        if run is None:
            run = next((r for r in self._runs.values() if r.shell_run == run_id), None)
        if run is None:
            run = self._from_store(run_id)
        if run is None or not (who.admin or run.owner == who.agent):
            raise NotFound(f"no run {run_id!r}", hint="list runs with GET /api/v1/runs")
        return run

    def _from_store(self, run_id: str) -> RunState | None:
        try:
            rec = self.store().get_run(run_id)
        except LLMOSError:
            return None
        from llmos.shell.render import explain_text

        steps = [dict(s) for s in rec.get("steps", [])]
        return RunState(id=rec["run"], request=rec.get("request", ""), owner=ADMIN_AGENT,
                        workdir=rec.get("workdir", ""), status=rec.get("status", "failed"),
                        created=rec.get("created", 0.0), updated=rec.get("created", 0.0),
                        plan=steps, steps=steps, answer=rec.get("answer"),
                        explanation=explain_text(rec), error=rec.get("error"),
                        shell_run=rec["run"], pid=rec.get("pid"))

    def list(self, who: Principal, limit: int) -> list[RunState]:
        runs = [r for r in reversed(self._runs.values()) if who.admin or r.owner == who.agent]
        return runs[:limit]

    def decide(self, who: Principal, run_id: str, yes: bool, step: int | None) -> RunState:
        run = self.get(who, run_id)
        if yes and not who.admin:
            raise PermissionDenied(f"run {run_id}: agent {who.agent!r} cannot approve a step",
                                   reason="approval is the person's act (the admin token)",
                                   hint=f"the person runs `llmos confirm {run_id}` or uses the dashboard")
        fut = run._decision
        if run.pending is None or fut is None or fut.done():
            raise ApiError(409, "no_pending_step", f"run {run_id} has no step waiting for a decision",
                           hint="GET the run: 'pending' shows the step that waits, if any")
        if step is not None and step != run.pending["step"]:
            raise ApiError(409, "wrong_step", f"step {step} is not the pending one "
                           f"(step {run.pending['step']} is)", field="step",
                           expected=str(run.pending["step"]))
        fut.set_result(yes)
        run.pending = None                       # what the runner's confirm() also records
        run.status = "running" if yes else "rejected"
        return run

    async def cancel(self, who: Principal, run_id: str) -> RunState:
        """Stop a run that has not finished: its kernel process and current step are killed."""
        run = self.get(who, run_id)
        task = run._task
        if run.finished or task is None or task.done():
            raise ApiError(409, "run_finished", f"run {run_id} has already finished ({run.status})",
                           hint="only a planning, running or pending run can be cancelled")
        task.cancel()
        await asyncio.wait([task], timeout=CANCEL_WAIT_S)
        return run

    async def close(self) -> None:
        tasks = [r._task for r in self._runs.values() if r._task is not None and not r._task.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._store is not None:
            self._store.close()
            self._store = None

    async def stream(self, who: Principal, run_id: str) -> AsyncIterator[bytes]:
        run = self.get(who, run_id)
        sub = self.svc.hub.subscribe(["run"], agent=None if who.admin else who.agent)
        try:
            yield b"retry: 2000\n\n"
            yield sse_format({"type": "run.snapshot", "run_id": run.id, "run": run.to_dict(),
                              "id": self.svc.hub.last_id})
            if run.finished:
                yield sse_format({"type": "run.finished", "run_id": run.id, "run": run.to_dict(),
                                  "id": self.svc.hub.last_id})
                return
            while True:
                ev = await sub.get(timeout=15.0)
                if ev is None:
                    yield b": keep-alive\n\n"
                    continue
                if ev.get("run_id") != run.id:
                    continue
                yield sse_format(ev)
                if ev.get("type") == "run.finished":
                    return
        finally:
            sub.close()


# ── routes ──────────────────────────────────────────────────────────────────
router = APIRouter(prefix="/api/v1", tags=["runs"], responses={
    **ERRORS, 409: {"model": S.ErrorBody, "description": "no step is waiting, or not this one"}})
Who = Depends(principal)
Svc = Depends(services)


def _runs(svc: Services) -> RunManager:
    if svc.runs is None:
        raise ApiError(503, "unavailable", "runs are not available in this daemon")
    return svc.runs


@router.post("/runs", response_model=S.RunOut, status_code=202)
async def submit_run(body: S.RunRequest, who: Principal = Who, svc: Services = Svc) -> dict:
    """Start a plain-language request; it plans, may wait for a yes, then runs. Watch it on
    ``GET /runs/{id}/events`` or poll ``GET /runs/{id}``."""
    run = await _runs(svc).submit(who, body)
    return run.to_dict()


@router.get("/runs", response_model=S.RunList)
async def list_runs(limit: int = Query(20, ge=1, le=500), who: Principal = Who,
                    svc: Services = Svc) -> dict:
    return {"runs": [r.to_dict() for r in _runs(svc).list(who, limit)]}


RunIdPath = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="run id")


@router.get("/runs/{run_id}", response_model=S.RunOut)
async def get_run(run_id: str = RunIdPath, who: Principal = Who, svc: Services = Svc) -> dict:
    return _runs(svc).get(who, run_id).to_dict()


@router.get("/runs/{run_id}/plan", response_model=S.RunPlan)
async def get_plan(run_id: str = RunIdPath, who: Principal = Who, svc: Services = Svc) -> dict:
    run = _runs(svc).get(who, run_id)
    return {"id": run.id, "status": run.status, "plan": run.plan, "pending": run.pending}


@router.post("/runs/{run_id}/confirm", response_model=S.RunOut)
async def confirm_step(run_id: str = RunIdPath, body: S.StepDecisionRequest | None = None, who: Principal = Who,
                       svc: Services = Svc) -> dict:
    """Approve the step that waits (answer 409 when none does)."""
    return _runs(svc).decide(who, run_id, True, body.step if body else None).to_dict()


@router.post("/runs/{run_id}/reject", response_model=S.RunOut)
async def reject_step(run_id: str = RunIdPath, body: S.StepDecisionRequest | None = None, who: Principal = Who,
                      svc: Services = Svc) -> dict:
    """Refuse the step that waits: nothing of the plan runs."""
    return _runs(svc).decide(who, run_id, False, body.step if body else None).to_dict()


@router.post("/runs/{run_id}/cancel", response_model=S.RunOut)
async def cancel_run(run_id: str = RunIdPath, who: Principal = Who, svc: Services = Svc) -> dict:
    """Stop a run that has not finished (409 when it has): status becomes ``cancelled``."""
    return (await _runs(svc).cancel(who, run_id)).to_dict()


@router.get("/runs/{run_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "run.snapshot, then run.* events until run.finished"}})
async def run_events(run_id: str = RunIdPath, who: Principal = Who, svc: Services = Svc) -> Response:
    mgr = _runs(svc)
    mgr.get(who, run_id)          # 404 before the stream starts
    return StreamingResponse(mgr.stream(who, run_id), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
