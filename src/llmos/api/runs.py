"""Plain-language runs over HTTP: submit, watch, confirm or reject a pending step.

Map:
- ``RunState``: one run as the API shows it (``RunOut``): status, plan, steps, the
  step waiting for a yes/no, answer, explanation. Owner: ``RunManager``.
- ``RunManager``: starts each run as a task driving the shell's ``Runner``; turns the
  runner's progress callbacks into ``run.*`` events on the hub; parks the runner's
  ``confirm`` question as ``pending`` until ``decide(run, yes)`` answers it (or
  ``CONFIRM_TIMEOUT_S`` passes: then it is a no); a run submitted with ``ask=false``
  has no question to park and stops before a risky step (``needs_confirmation``).
- ``RunLog``: the ``runs`` table of the kernel's journal. A run is written (and
  committed) before ``POST /runs`` answers 202, and every status, plan and step change
  after; tool steps commit what came before them, so the row never claims less than
  ran. At start-up ``RunManager`` reads it back (``recover``, see its NOTE).
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
import json
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
from llmos.runs import RunStatus, StepStatus

__all__ = ["RunManager", "RunState", "RunLog", "router", "CONFIRM_TIMEOUT_S", "MAX_RESTARTS"]

log = logging.getLogger("llmos.api.runs")

CONFIRM_TIMEOUT_S = 3600.0   # a pending step left unanswered this long counts as rejected
CANCEL_WAIT_S = 10.0         # how long a cancel waits for the run to wind down before answering
RUNS_KEPT = 500              # runs remembered in memory (older ones come from the shell's store)
FINAL = RunStatus.final()    # run statuses after which nothing changes (the order in llmos.runs)
MAX_RESTARTS = 3             # times a run is started over after restarts before it ends failed
NO_EFFECT = StepStatus.no_effect()   # step statuses: nothing ran


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
    _options: dict[str, Any] = field(default_factory=dict)   # the RunRequest fields (journaled)
    _ran: list[str] = field(default_factory=list)  # tools of the steps that started, revisions included
    _restarts: int = 0                           # times it was started over after a restart
    _agent: str | None = None                    # the run's kernel agent (journaled once made)

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


class RunLog:
    """The ``runs`` table in the kernel's journal (writes ride its group commits)."""

    COLUMNS = ("id", "owner", "request", "workdir", "options", "status", "created_s", "updated_s",
               "plan", "steps", "ran", "answer", "error", "shell_run", "pid", "restarts", "agent")

    def __init__(self, journal: Any) -> None:
        self.journal = journal

    def save(self, run: RunState) -> None:
        row = (run.id, run.owner, run.request, run.workdir, json.dumps(run._options), run.status,
               run.created, run.updated, json.dumps(run.plan, default=str),
               json.dumps(run.steps, default=str), json.dumps(run._ran), run.answer,
               None if run.error is None else json.dumps(run.error, default=str), run.shell_run,
               run.pid, run._restarts, run._agent)
        self.journal.write(f"INSERT OR REPLACE INTO runs({', '.join(self.COLUMNS)}) "
                           f"VALUES ({', '.join('?' * len(self.COLUMNS))})", row)

    async def durable(self) -> None:
        await self.journal.durable()

    def load(self, where: str = "", args: tuple = (), limit: int = RUNS_KEPT) -> list[RunState]:
        rows = self.journal.query(f"SELECT {', '.join(self.COLUMNS)} FROM runs {where} "
                                  "ORDER BY created_s DESC LIMIT ?", (*args, limit))
        out = []
        for r in rows:
            try:
                out.append(self._run(dict(zip(self.COLUMNS, r, strict=True))))
            except (ValueError, TypeError) as e:
                log.warning("runs: journal row of run %r could not be read (%s); skipped", r[0], e)
        return list(reversed(out))

    @staticmethod
    def _run(d: dict[str, Any]) -> RunState:
        def js(v: str | None, default: Any) -> Any:
            return default if v is None else json.loads(v)

        return RunState(id=d["id"], request=d["request"], owner=d["owner"], workdir=d["workdir"],
                        status=d["status"], created=d["created_s"], updated=d["updated_s"],
                        plan=js(d["plan"], []), steps=js(d["steps"], []), answer=d["answer"],
                        error=js(d["error"], None), shell_run=d["shell_run"], pid=d["pid"],
                        _options=js(d["options"], {}), _ran=js(d["ran"], []),
                        _restarts=int(d["restarts"] or 0), _agent=d["agent"])


class _AsCaller:
    """The kernel, with calls the runner makes as root made as ``agent`` instead; the
    agent the runner creates for the run is reported to ``on_agent`` (awaited) before
    the runner hears of it, so the run's row names it before any of its processes exist."""

    def __init__(self, kernel: Any, agent: str, on_agent: Callable | None = None) -> None:
        self._kernel = kernel
        self._agent = agent
        self._on_agent = on_agent

    async def syscall(self, agent: str, name: str, args: dict, **kw: Any) -> Any:
        res = await self._kernel.syscall(self._agent if agent == ADMIN_AGENT else agent, name, args, **kw)
        if name == "agent.create" and self._on_agent is not None and getattr(res, "ok", False):
            await self._on_agent(str(args.get("name")))
        return res

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
        journal = getattr(svc.kernel, "journal", None)
        self._log = RunLog(journal) if journal is not None else None   # None: runs kept in memory only
        self.recovered: dict[str, list[str]] = {"resumed": [], "failed": []}   # run ids, last start-up
        if self._log is not None:
            self.recover()

    # ── store ──────────────────────────────────────────────────────────────
    def store(self) -> Any:
        if self._store is None:
            from llmos.shell.store import ShellStore

            self._store = ShellStore(self.svc.config.home / "shell.db")
        return self._store

    # ── events ─────────────────────────────────────────────────────────────
    def _publish(self, run: RunState, kind: str, **extra: Any) -> None:
        run.updated = time.time()
        if self._log is not None:
            self._log.save(run)
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
                if data.get("status") == "running":
                    run._ran.append(str(data.get("tool", "?")))
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
                       workdir=str(wd), _options=body.model_dump(exclude={"request", "workdir"}))
        if self._log is not None:                 # acknowledged = committed
            self._log.save(run)
            await self._log.durable()
        self._start(run, body, wd)
        return run

    def _start(self, run: RunState, body: S.RunRequest, wd: FsPath) -> None:
        async def on_agent(name: str) -> None:
            run._agent = name
            if self._log is not None:
                self._log.save(run)
                await self._log.durable()

        runner = self._factory(_AsCaller(self.svc.kernel, run.owner, on_agent), store=self.store(),
                               model=body.model, priority=body.priority or 0,
                               confirm=self._confirm(run) if body.ask else None,
                               on_event=self._on_runner_event(run))
        self._remember(run)
        self._publish(run, "submitted")
        run._task = asyncio.create_task(self._drive(run, runner, body, wd), name=f"run-{run.id}")

    # ── recovery ───────────────────────────────────────────────────────────
    def recover(self) -> None:
        """Read the journaled runs back at start-up; settle the ones a restart interrupted.

        NOTE (what happens to a run the daemon was driving when it died). The kernel's
        recovery has already ended its run process and stopped its steps. Here:
        - nothing of it can have had an effect (still planning or waiting for a yes, or
          every step that started uses an idempotent tool): started over from the
          request, at most ``MAX_RESTARTS`` times;
        - a step that is not idempotent started: ended ``failed``, with the step and
          what finished before it, never run again (it may have had its effect).
        Either way no acknowledged run is lost and no run is left waiting.
        """
        assert self._log is not None
        for run in self._log.load():
            self._remember(run)
        try:
            asyncio.get_running_loop()
            can_start = True
        except RuntimeError:                      # built outside a loop: nothing can run here
            can_start = False
        for run in [r for r in self._runs.values() if not r.finished]:
            risky = self._began(run)
            self._end_processes(run)
            if can_start and not risky and run._restarts < MAX_RESTARTS:
                self._restart(run)
            else:
                self._fail_interrupted(run, risky)

    def _began(self, run: RunState) -> list[str]:
        """Tools of the run's steps that are not idempotent and may have had their effect.
        The kernel knows exactly (a worker journals ``began`` before a tool's first effect,
        and the run's agent is journaled before any of its processes exist); without a
        kernel table, every such step the run reported as started counts."""
        k = self.svc.kernel
        if run._agent is None or not hasattr(k, "procs"):
            return [t for t in run._ran if not self._idempotent(t)]
        return [p.spec.get("tool") or p.spec.get("type") or p.kind for p in k.procs
                if p.owner == run._agent and p.kind in ("tool", "job") and p.began > 0
                and not p.spec.get("idempotent")]

    def _end_processes(self, run: RunState) -> None:
        """End what the run's old driver left in the kernel: its run process (FAILED) and
        the steps under it (KILLED); nothing of it is run again by the kernel."""
        from llmos.kernel.process import ProcState
        from llmos.kernel.recovery import end_run

        k = self.svc.kernel
        if run._agent is None or not hasattr(k, "procs"):
            return
        mine = [p for p in k.procs if p.owner == run._agent and not p.state.finished]
        for p in [p for p in mine if p.kind == "run"]:
            if not p.state.finished:
                end_run(k, p)
        for p in mine:
            if not p.state.finished:
                k._end(p, ProcState.KILLED, f"its run {run.id} ended after a restart; not run again")

    def _idempotent(self, tool: str) -> bool:
        if tool == "llm":
            return True
        try:
            return bool(self.svc.kernel.tools.get(tool).idempotent)
        except Exception:  # noqa: BLE001 - an unknown tool counts as one with effects
            return False

    def _restart(self, run: RunState) -> None:
        try:
            body = S.RunRequest(request=run.request, workdir=run.workdir, **run._options)
        except Exception as e:  # noqa: BLE001 - a row this version cannot read
            self._fail_interrupted(run, [], why=f"its options could not be read ({type(e).__name__})")
            return
        log.info("run %s: started over after a restart (nothing of it had an effect)", run.id)
        run._restarts += 1
        run.status, run.plan, run.steps, run._ran, run.pending = "planning", [], [], [], None
        run.shell_run = run.pid = None
        self.recovered["resumed"].append(run.id)
        self._start(run, body, FsPath(run.workdir))

    def _fail_interrupted(self, run: RunState, risky: list[str], why: str | None = None) -> None:
        started = [(i, s) for i, s in enumerate(run.steps, 1) if s.get("status") not in NO_EFFECT]
        done = [i for i, s in started if s.get("status") == "succeeded"]
        if why is None and started:
            i, s = next(((i, s) for i, s in started if s.get("status") != "succeeded"), started[-1])
            why = f"while step {i} ({s.get('tool', '?')}) was {s.get('status', 'running')}"
        elif why is None and risky:
            why = f"after {', '.join(risky)} had started"
        elif why is None:
            why = f"while it was {run.status} (started over {run._restarts} times already)"
        did = (f"; step(s) {', '.join(map(str, done))} had finished" if done else "")
        msg = (f"the daemon stopped (crash or kill -9) {why}{did}. Nothing was run again after "
               f"the restart, since a step that is not idempotent may already have had its effect")
        run.status, run.pending = "failed", None
        run.answer = f"Failed: {msg}."
        run.error = {"error": "restart", "message": msg,
                     "hint": "check the workspace, then submit the request again if it is still needed"}
        self.recovered["failed"].append(run.id)
        log.warning("run %s: ended failed at start-up: %s", run.id, msg)
        self._publish(run, "finished")

    async def _drive(self, run: RunState, runner: Any, body: S.RunRequest, wd: FsPath) -> None:
        try:
            res = await runner.run(body.request, workdir=wd, yes=body.yes, yes_all=body.yes_all,
                                  dry_run=body.dry_run)
            rec = res.record                     # a llmos.runs.RunRecord
            if run.status != "rejected":
                run.status = res.status.label
            run.answer = res.answer
            run.shell_run = res.run
            run.pid = rec.pid
            run.steps = [s.public() for s in res.steps]
            if rec.error:
                run.error = rec.error
            try:
                from llmos.shell.render import explain_text

                run.explanation = explain_text(rec)
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
        if self._log is not None:
            try:
                found = self._log.load("WHERE id = ? OR shell_run = ?", (run_id, run_id), limit=1)
            except LLMOSError:
                found = []
            if found:
                return found[0]
        try:
            rec = self.store().get_run(run_id)
        except LLMOSError:
            return None
        from llmos.shell.render import explain_text

        steps = [s.to_dict() for s in rec.steps]
        return RunState(id=rec.run, request=rec.request, owner=ADMIN_AGENT, workdir=rec.workdir,
                        status=rec.status.label, created=rec.created, updated=rec.created,
                        plan=steps, steps=steps, answer=rec.answer, explanation=explain_text(rec),
                        error=rec.error, shell_run=rec.run, pid=rec.pid)

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
