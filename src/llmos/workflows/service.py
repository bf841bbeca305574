"""``Workflows``: the daemon's standing orders — compile, approve, fire, run, explain.

Map:
- ``compile(description, workdir, owner)``: the model splits trigger and task
  (``trigger.split`` through ``llm.generate``), the trigger is checked, the task is planned
  (a dry run of the shell's runner: a checked Plan, nothing runs). Returns a proposal: the
  trigger, the plan's steps with their risk, and the rights its runs will use.
- ``add(proposal, name, owner)``: the person approved it; checked again and stored.
- ``start()``: boot. A time rule whose time passed while the daemon was down fires once
  now (said in the log), never once per missed time; file rules scan their folder once
  (files that landed meanwhile fire once each); then the clock loop and the folder
  watchers (``watchfiles``) run.
- ``fire(name, cause)``: one run of the saved plan, as a kernel ``run`` process of a
  fresh agent whose only roots are the workflow's workspace (the shell's runner). A failed
  run is tried again (at most ``MAX_ATTEMPTS``) only when every step is idempotent; else
  it stops with the reason. Every run is journaled with its explanation (``runs``) and
  announced on the kernel's event bus (``workflow.run``). Success starts the workflows
  whose trigger is ``after`` this one.
- ``pause`` / ``resume`` / ``delete`` / ``save_from_run``.

NOTE (time). The kernel's clock is the only clock. For a time rule ``next_due_s`` is the
next fire time; when the clock passes it (a tick, a jump, or a boot after downtime) the
workflow fires once and ``next_due_s`` becomes the first fire time after *now*, so a
jump over many fire times is one run, not a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fnmatch
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmos.errors import InvalidArgument, LLMOSError, NotFound, PermissionDenied
from llmos.kernel.timers import wait_due
from llmos.runs import RunRecord, RunStatus
from llmos.workflows.saved import SavedPlanRunner, idempotent
from llmos.workflows.store import State, Workflow, WorkflowStore, check_name
from llmos.workflows.trigger import Kind, Trigger, split

__all__ = ["Workflows", "MAX_ATTEMPTS", "open_workflows"]

log = logging.getLogger("llmos.workflows")

MAX_ATTEMPTS = 3           # runs of one firing, when every step is idempotent
SPLIT_MAX_TOKENS = 300     # the trigger JSON is short
RunnerFactory = Callable[[Any, Workflow], Any]


def open_workflows(kernel: Any, **kw: Any) -> Workflows:
    """The service on the kernel's state directory (``workflows.db``)."""
    return Workflows(kernel, WorkflowStore(Path(kernel.config.home) / "workflows.db"), **kw)


class Workflows:
    def __init__(self, kernel: Any, store: WorkflowStore, *, runner_factory: RunnerFactory | None = None,
                 model: str | None = None, watch: bool = True) -> None:
        self.kernel = kernel
        self.store = store
        self.clock = kernel.clock
        self.model = model                     # the planner model; None: the machine's planner tier
        self._factory = runner_factory or self._default_runner
        self._watch = watch                    # False in tests: they call scan_files() themselves
        self._changed = asyncio.Event()        # a time rule was added, paused, resumed or removed
        self._tasks: set[asyncio.Task] = set()          # runs in flight
        self._watchers: dict[str, tuple[asyncio.Task, asyncio.Event]] = {}   # name -> watcher, stop
        self._locks: dict[str, asyncio.Lock] = {}       # one run of a workflow at a time
        self._loop_task: asyncio.Task | None = None
        self._runs_store: Any = None           # the shell's ShellStore: runs kept for `llmos explain`
        self.boot_notes: list[str] = []        # what start() fired late, for the log and tests

    # ── compile and approve ────────────────────────────────────────────────
    def _model(self) -> str | None:
        if self.model is None:
            from llmos.shell.runner import planner_model

            self.model, _ = planner_model(self.kernel)
        return self.model

    async def _generate(self, owner: str, messages: list[dict[str, str]], schema: dict) -> str:
        args: dict[str, Any] = {"messages": messages, "json_schema": schema, "max_tokens": SPLIT_MAX_TOKENS,
                                "temperature": 0.0}
        if self._model():
            args["model"] = self.model
        res = await self.kernel.syscall(owner, "llm.generate", args)
        if not res.ok:
            raise res.error
        return (res.value or {}).get("text", "")

    async def compile(self, description: str, workdir: str | Path, owner: str = "root") -> dict[str, Any]:
        from llmos.shell.runner import check_request

        check_request(description)
        wd = _workdir(workdir)
        self._check_owner(owner, wd)
        trig, task = await split(description, lambda m, s: self._generate(owner, m, s))
        trig.check(wd)
        if trig.kind == Kind.AFTER:
            self.store.get(trig.after)
        plan, steps = await self._plan(task, wd, owner)
        return {"description": description, "task": task, "trigger": trig.to_dict(), "when": trig.describe(),
                "plan": plan, "steps": steps, "workdir": str(wd), "rights": _rights(wd, steps)}

    def _check_owner(self, owner: str, wd: Path) -> None:
        """Its runs read and write the workspace: the owner must hold that right itself."""
        from llmos.kernel.access import is_under

        caps = self.kernel.agents.get(owner).caps
        if not any(is_under(str(wd), r) for r in caps.write_roots):
            raise PermissionDenied(f"workdir: {wd} is outside agent {owner}'s write roots "
                                   f"({', '.join(caps.write_roots) or 'none'})")

    async def _plan(self, task: str, wd: Path, owner: str) -> tuple[dict, list[dict]]:
        runner = SavedPlanRunner(self.kernel, None, user=owner, model=self._model())
        res = await runner.run(task, workdir=wd, dry_run=True)
        if res.status is not RunStatus.PLANNED or not (res.record.plan or {}).get("steps"):
            raise InvalidArgument(f"task: no plan ({res.answer})", field="task",
                                  expected="a task the tools can do")
        return res.record.plan, _proposed(res.record)

    def add(self, proposal: dict[str, Any], name: str, owner: str = "root") -> Workflow:
        """Store an approved proposal (checked again: it may have come over the API)."""
        from llmos.shell.plan import Plan
        from llmos.shell.planner import check_plan

        check_name(name)
        wd = _workdir(proposal.get("workdir") or "")
        self._check_owner(owner, wd)
        trig = Trigger.from_dict(proposal.get("trigger"))
        trig.check(wd)
        if trig.kind == Kind.AFTER:
            if trig.after == name:
                raise InvalidArgument("trigger.after: a workflow cannot follow itself", field="trigger.after",
                                      expected="another workflow's name")
            self.store.get(trig.after)
        task = str(proposal.get("task") or "").strip()
        if not task:
            raise InvalidArgument("task: expected what to do each time", field="task", expected="non-empty text")
        plan = check_plan(Plan.from_dict(proposal.get("plan"), task, source="workflow"), self.kernel.tools)
        now = self.clock.time()
        wf = Workflow(name, owner, str(proposal.get("description") or task), task, trig, plan.to_dict(), str(wd),
                      list(proposal.get("rights") or _rights(wd, proposal.get("steps") or [])), created_s=now)
        if trig.kind == Kind.TIME:
            wf.next_due_s = trig.next_after(now)
        elif trig.kind == Kind.FILE:
            wf.seen = _snapshot(trig, wd)            # files already there do not fire
        self.store.add(wf)
        log.info("workflow %s: saved (%s)", name, trig.describe())
        self._changed.set()
        self._start_watcher(wf)
        return wf

    async def save_from_run(self, name: str, run: RunRecord, when: str | None, owner: str = "root") -> Workflow:
        """A past run (the shell's record) becomes a workflow; ``when`` in plain words
        (split by the model), or None for one run on demand or by its webhook."""
        if not (run.plan or {}).get("steps"):
            raise InvalidArgument(f"--from: run {run.run} has no plan to keep", field="from",
                                  expected="a run that made a plan")
        wd = _workdir(run.workdir)
        trig = Trigger(Kind.WEBHOOK)
        if when:
            trig, _task = await split(f"{when}: {run.request}", lambda m, s: self._generate(owner, m, s))
        return self.add({"description": run.request, "task": run.request, "trigger": trig.to_dict(),
                         "plan": run.plan, "workdir": str(wd), "steps": _proposed(run)}, name, owner)

    # ── lifecycle ──────────────────────────────────────────────────────────
    def get(self, name: str) -> Workflow:
        return self.store.get(name)

    def list(self) -> list[Workflow]:
        return self.store.list()

    def pause(self, name: str) -> Workflow:
        wf = self.store.get(name)
        wf.state = State.PAUSED
        self.store.save(wf)
        self._stop_watcher(name)
        self._changed.set()
        return wf

    def resume(self, name: str) -> Workflow:
        wf = self.store.get(name)
        wf.state = State.ACTIVE
        now = self.clock.time()
        if wf.trigger.kind == Kind.TIME:
            wf.next_due_s = wf.trigger.next_after(now)   # a paused workflow does not catch up
        elif wf.trigger.kind == Kind.FILE:
            wf.seen = _snapshot(wf.trigger, Path(wf.workdir))
        self.store.save(wf)
        self._start_watcher(wf)
        self._changed.set()
        return wf

    def delete(self, name: str) -> None:
        wf = self.store.get(name)
        wf.state = State.DELETED
        self.store.save(wf)
        self._stop_watcher(name)
        self._changed.set()

    async def start(self) -> None:
        """Boot: catch up once, scan folders once, then run the clock loop and watchers."""
        now = self.clock.time()
        for wf in self.store.list():
            if wf.state != State.ACTIVE:
                continue
            if wf.trigger.kind == Kind.TIME:
                if wf.next_due_s is not None and wf.next_due_s <= now:
                    note = (f"workflow {wf.name}: its time {_when(wf.next_due_s, wf.trigger)} passed while the "
                            "daemon was down; firing once now")
                    log.warning(note)
                    self.boot_notes.append(note)
                    self._fire_due(wf, now, cause=f"missed time {_when(wf.next_due_s, wf.trigger)}, fired on boot")
                elif wf.next_due_s is None:
                    wf.next_due_s = wf.trigger.next_after(now)
                    self.store.save(wf)
            elif wf.trigger.kind == Kind.FILE:
                await self.scan_files(wf.name)
                self._start_watcher(wf)
        self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="llmos-workflows")

    async def close(self) -> None:
        for name in list(self._watchers):
            self._stop_watcher(name)
        tasks = [t for t, _ in self._watchers.values()]
        if self._loop_task is not None:
            self._loop_task.cancel()
            tasks.append(self._loop_task)
        tasks += list(self._tasks)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.store.close()
        if self._runs_store is not None:
            self._runs_store.close()

    # ── time rules ─────────────────────────────────────────────────────────
    def _fire_due(self, wf: Workflow, now: float, cause: str) -> None:
        missed = 0
        nxt = wf.trigger.next_after(wf.next_due_s or now)
        while nxt <= now and missed < 1000:
            missed += 1
            nxt = wf.trigger.next_after(nxt)
        if missed:
            cause += f" ({missed} more fire time(s) passed too: fired once)"
        wf.next_due_s = wf.trigger.next_after(now)
        self.store.save(wf)
        self.fire(wf.name, cause)

    def tick(self) -> list[str]:
        """Fire every active time rule that is due on the kernel's clock; the names fired."""
        now = self.clock.time()
        fired = []
        for wf in self.store.list():
            if (wf.state == State.ACTIVE and wf.trigger.kind == Kind.TIME and wf.next_due_s is not None
                    and wf.next_due_s <= now):
                self._fire_due(wf, now, cause=f"time {_when(wf.next_due_s, wf.trigger)}")
                fired.append(wf.name)
        return fired

    async def _run(self) -> None:
        """The clock loop: fire what is due, then wait for the next time or a change."""
        while True:
            self.tick()
            self._changed.clear()
            due = [wf.next_due_s for wf in self.store.list()
                   if wf.state == State.ACTIVE and wf.trigger.kind == Kind.TIME and wf.next_due_s is not None]
            await wait_due(self.clock, min(due, default=None), self._changed)

    # ── file rules ─────────────────────────────────────────────────────────
    async def scan_files(self, name: str) -> list[str]:
        """Fire once per file that appeared or changed since the last scan; their names."""
        wf = self.store.get(name)
        if wf.state != State.ACTIVE or wf.trigger.kind != Kind.FILE:
            return []
        now = _snapshot(wf.trigger, Path(wf.workdir))
        new = sorted(f for f, sig in now.items() if wf.seen.get(f) != sig)
        wf.seen = now
        self.store.save(wf)
        folder = wf.trigger.folder.rstrip("/")
        for f in new:
            self.fire(name, f"file {folder}/{f}", note=f"The file that started this run: {folder}/{f}")
        return new

    def _start_watcher(self, wf: Workflow) -> None:
        if not self._watch or wf.trigger.kind != Kind.FILE or wf.state != State.ACTIVE or wf.name in self._watchers:
            return
        with contextlib.suppress(RuntimeError):    # no running loop: start() watches later
            stop = asyncio.Event()
            task = asyncio.get_running_loop().create_task(self._watch_folder(wf, stop), name=f"watch-{wf.name}")
            self._watchers[wf.name] = (task, stop)

    def _stop_watcher(self, name: str) -> None:
        got = self._watchers.pop(name, None)
        if got is not None:
            got[1].set()

    async def _watch_folder(self, wf: Workflow, stop: asyncio.Event) -> None:
        import watchfiles

        folder = wf.trigger.folder_path(Path(wf.workdir))
        try:
            async for _changes in watchfiles.awatch(folder, stop_event=stop, recursive=False):
                await self.scan_files(wf.name)
        except (OSError, RuntimeError, NotFound) as e:
            log.warning("workflow %s: stopped watching %s: %s", wf.name, folder, e)

    # ── runs ───────────────────────────────────────────────────────────────
    def fire(self, name: str, cause: str, note: str = "") -> asyncio.Task:
        wf = self.store.get(name)
        wf.last_fire_s = self.clock.time()
        self.store.save(wf)
        task = asyncio.get_running_loop().create_task(self.execute(wf, cause, note), name=f"workflow-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def idle(self) -> None:
        """Wait for every run in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _default_runner(self, kernel: Any, wf: Workflow) -> Any:
        if self._runs_store is None:
            from llmos.shell.store import ShellStore

            self._runs_store = ShellStore(Path(kernel.config.home) / "shell.db")
        return SavedPlanRunner(kernel, wf.plan, user=wf.owner, model=self._model(), store=self._runs_store)

    async def execute(self, wf: Workflow, cause: str, note: str = "") -> dict[str, Any]:
        """One firing: run the saved plan; retry a failure only when every step is idempotent."""
        lock = self._locks.setdefault(wf.name, asyncio.Lock())
        async with lock:
            rid = self.store.start_run(wf.name, cause, self.clock.time())
            why = [f"fired by {cause} ({wf.trigger.describe()})", f"ran in {wf.workdir} as {wf.owner}'s workflow"]
            run_ids: list[str] = []
            status, answer = RunStatus.FAILED, ""
            request = wf.task + (f"\n({note})" if note else "")
            for attempt in range(1, MAX_ATTEMPTS + 1):
                try:
                    res = await self._factory(self.kernel, wf).run(request, workdir=wf.workdir, yes=True)
                    status, answer = res.status, res.answer
                    run_ids.append(res.run)
                except LLMOSError as e:
                    status, answer = RunStatus.FAILED, f"Failed: {e.message}"
                why.append(f"attempt {attempt}: {status.label}" + (f" (run {run_ids[-1]})" if run_ids else "")
                           + ("" if status is RunStatus.SUCCEEDED else f": {answer[:200]}"))
                if status is RunStatus.SUCCEEDED:
                    break
                if status is not RunStatus.FAILED:     # denied, or a step past the approval: not a fault
                    why.append(f"not retried: the run ended {status.label.replace('_', ' ')}")
                    break
                ok, reason = idempotent(wf.plan, self.kernel.tools)
                if not ok:
                    why.append(f"not retried: {reason}, so running it again could repeat its effect")
                    break
                if attempt < MAX_ATTEMPTS:
                    why.append("retried: every step is idempotent")
                else:
                    why.append(f"gave up after {MAX_ATTEMPTS} attempts")
            explain = "; ".join(why)
            self.store.finish_run(rid, status.label, self.clock.time(), run_ids, answer, explain)
            log.info("workflow %s: %s — %s", wf.name, status.label, explain)
            self.kernel.bus.publish({"type": "workflow.run", "workflow": wf.name, "status": status.label,
                                     "cause": cause, "runs": run_ids, "answer": answer[:500],
                                     "ts": self.clock.time()})
        if status is RunStatus.SUCCEEDED:
            for other in self.store.list():
                if (other.state == State.ACTIVE and other.trigger.kind == Kind.AFTER
                        and other.trigger.after == wf.name):
                    self.fire(other.name, f"workflow {wf.name} finished")
        return {"id": rid, "workflow": wf.name, "status": status.label, "runs": run_ids, "answer": answer,
                "explain": explain}


def _workdir(workdir: str | Path) -> Path:
    if not workdir:
        raise InvalidArgument("workdir: expected the workflow's workspace", field="workdir",
                              expected="an existing directory")
    wd = Path(workdir).expanduser().resolve()
    if not wd.is_dir():
        raise InvalidArgument(f"workdir: {wd} is not a directory", field="workdir", expected="an existing directory")
    return wd


def _proposed(rec: RunRecord) -> list[dict[str, Any]]:
    """The run's steps as a proposal lists them (what each does, and its risk)."""
    return [{"tool": s.tool, "args": s.args, "risk": s.risk, "why": s.why} for s in rec.steps]


def _rights(wd: Path, steps: list[dict]) -> list[str]:
    risky = [f"step {i} {s.get('tool')} ({s.get('risk')})" for i, s in enumerate(steps, 1)
             if s.get("risk") not in (None, "read")]
    return [f"read and write files in {wd} only", "no network",
            "runs without asking: " + (", ".join(risky) if risky else "nothing beyond reading")]


def _snapshot(trig: Trigger, wd: Path) -> dict[str, list[float]]:
    folder = trig.folder_path(wd)
    out: dict[str, list[float]] = {}
    try:
        entries = list(folder.iterdir())
    except OSError:
        return out
    for p in entries:
        if p.is_file() and fnmatch.fnmatch(p.name, trig.pattern or "*"):
            with contextlib.suppress(OSError):
                st = p.stat()
                out[p.name] = [st.st_mtime, float(st.st_size)]
    return out


def _when(epoch: float, trig: Trigger) -> str:
    return dt.datetime.fromtimestamp(epoch, trig.zone()).strftime("%Y-%m-%d %H:%M %Z")
