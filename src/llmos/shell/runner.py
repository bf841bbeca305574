"""Runner: request -> plan -> checks -> confirmation -> steps (observe, revise) -> answer.

Map:
- ``RunResult``: status (succeeded | failed | denied | needs_confirmation | planned),
  answer, steps, run id, the full record; ``to_json()`` is the CLI's one-line contract.
- ``check_request(request)``: refuse an empty, over-long, NUL-holding or non-UTF-8 request
  before any run starts (``Runner.run`` and the API's ``POST /runs`` call it).
- ``Runner(kernel, store=..., user=..., model=..., priority=..., confirm=..., ask=...,
  on_event=...)``: ``await run(request, workdir=..., yes=False, yes_all=False,
  dry_run=False) -> RunResult``. Everything goes through syscalls as the run's own agent
  (a fresh ``agent.create`` per run, with the workspace as its only read/write root, no
  network): the planner's ``llm.generate``, ``llm`` steps, each tool step's ``tool.call``
  (as children of a ``run`` process), ``proc.get`` for the kernel's scheduling facts.

NOTE (safety order). The whole plan is made and checked before any step runs: each
step's risk is computed from its arguments (a step whose arguments depend on earlier
results counts at the tool's highest plausible class), and every concrete path is
checked against the workspace. A plan that would leave the workspace is sent only its
offending step, so the kernel itself refuses it and gives its reason (``denied``,
nothing changed). A plan with a destructive, exec or network step runs only with
``yes`` or the person's answer to ``confirm``; otherwise nothing runs
(``needs_confirmation``). Two guards hold even with ``yes`` (only ``yes_all`` or the
person's own answer passes them), because they catch what a small model gets wrong:
deleting, moving or overwriting an existing path the request did not name, and a
command or program filled in from content read at run time (shown filled in). Before
each step its arguments are filled from earlier outputs and checked again: the
risk of the filled-in call, paths, and dates and times (they come from the request or
the clock, never from the model). After a failed step the planner sees the outputs
and the error and writes the rest of the plan once more (a repair); a plan may also
ask to see its outputs before planning the rest (``more``); at most
``MAX_REVISIONS`` in all, each revised step checked like the first ones. Tool output
is data: it fills references and the answer, never adds rights. The answer is the
plan's template filled from real outputs (numbers the template states on its own are
dropped), so it never reports a result the model made up before the tools ran.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmos import params
from llmos.errors import (
    InvalidArgument,
    LLMOSError,
    NeedsConfirmation,
    PermissionDenied,
    QuotaExceeded,
)
from llmos.shell import feedback, llmtool
from llmos.shell.context import Workspace, is_named
from llmos.shell.normalize import Moments, WhenError
from llmos.shell.plan import (
    LLM_TOOL,
    MAX_EACH_ITEMS,
    REF_RE,
    Plan,
    Step,
    Unresolved,
    refs_in,
    render_value,
    substitute,
)
from llmos.shell.planner import PlanError, Planner
from llmos.shell.render import fill_answer, short
from llmos.types import Risk

__all__ = ["Runner", "RunResult", "STATUSES", "new_run_id", "check_request", "MAX_REVISIONS", "planner_model"]

log = logging.getLogger(__name__)

STATUSES = ("succeeded", "failed", "denied", "needs_confirmation", "planned")
OUTPUT_KEEP_CHARS = 2000        # tool output kept per step in the run record
MAX_REVISIONS = 3               # re-plans after steps ran (repairs and continuations)
AGENT_SYSCALLS = ["llm.generate", "tool.call", "tool.list", "proc.spawn", "proc.get", "proc.exit",
                  "proc.kill", "proc.list", "proc.wait", "timer.*", "memory.*"]
_MOVES_AWAY = {"files.move": ("source",), "files.delete": ("path",)}   # tools that remove a path

Confirm = Callable[[int, Step, Risk], Awaitable[bool]]
Ask = Callable[[str], Awaitable[str | None]]
OnEvent = Callable[[str, dict[str, Any]], None]


def check_request(request: Any) -> None:
    """Refuse a request no run should start from: empty, too long, NUL, not UTF-8."""
    if not isinstance(request, str) or not request.strip():
        raise InvalidArgument("request: expected what you want done, in plain words; got nothing",
                              field="request", expected="a non-empty request",
                              hint='e.g. "how many lines are in poem.txt?"')
    if len(request) > params.REQUEST_MAX_CHARS:
        raise InvalidArgument(f"request: {len(request)} characters, more than {params.REQUEST_MAX_CHARS}",
                              field="request", expected=f"at most {params.REQUEST_MAX_CHARS} characters",
                              hint="put long material in a file in the workspace and name the file")
    if "\x00" in request:
        raise InvalidArgument("request: contains a NUL character", field="request",
                              expected="text without NUL characters")
    try:
        request.encode()
    except UnicodeEncodeError:      # undecodable bytes from the command line (surrogate escapes)
        raise InvalidArgument("request: contains bytes that are not UTF-8 text", field="request",
                              expected="UTF-8 text", hint="check the terminal's encoding (locale)") from None


def new_run_id() -> str:
    return "r" + uuid.uuid4().hex[:8]


@dataclass
class RunResult:
    status: str
    answer: str
    steps: list[dict[str, Any]]
    run: str
    record: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"status": self.status, "answer": self.answer, "steps": self.steps,
                           "run": self.run}, default=str)


def _public_step(s: dict[str, Any]) -> dict[str, Any]:
    keep = ("tool", "args", "why", "risk", "status", "summary", "error", "each", "when")
    return {k: s[k] for k in keep if k in s and s[k] not in (None, "")}


@dataclass
class _Stop(Exception):
    """Ends the run early with a status and an answer."""

    status: str
    answer: str


class Runner:
    def __init__(self, kernel: Any, *, store: Any = None, user: str | None = None,
                 model: str | None = None, priority: int = params.PRIORITY_DEFAULT,
                 confirm: Confirm | None = None, on_event: OnEvent | None = None,
                 registry: Any = None, network: bool = False, ask: Ask | None = None,
                 clock: Callable[[], dt.datetime] | None = None, **_: Any) -> None:
        self.kernel = kernel
        self.store = store
        self.user = user or _user()
        self.model = model
        self.priority = priority
        self.confirm = confirm
        self.ask = ask
        self.on_event = on_event or (lambda kind, data: None)
        self.registry = registry if registry is not None else kernel.tools
        self.network = network
        self.clock = clock or dt.datetime.now

    # ── syscalls as the run's agent ─────────────────────────────────────────
    async def _agent(self, workdir: Path, rid: str) -> str:
        """A fresh agent per run: its only roots are the workspace; nobody else can own it."""
        name = f"run-{rid}"
        caps = {"syscalls": AGENT_SYSCALLS, "read_roots": [str(workdir)], "write_roots": [str(workdir)],
                "network": self.network}
        res = await self.kernel.syscall("root", "agent.create", {"name": name, "capabilities": caps})
        if not res.ok:
            raise res.error
        return name

    async def _generate(self, agent: str, parent: int | None, log_: list, messages, schema,
                        max_tokens: int, temperature: float, prefix_messages: int = 0) -> str:
        args: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature,
                                "priority": self.priority, "messages": messages}
        if schema is not None:
            args["json_schema"] = schema
        if prefix_messages and _accepts("prefix_messages"):
            args["prefix_messages"] = prefix_messages
        if self.model:
            args["model"] = self.model
        if parent is not None:
            args["parent"] = parent
        t0 = time.monotonic()
        res = await self.kernel.syscall(agent, "llm.generate", args)
        if not res.ok:
            raise res.error
        v = res.value or {}
        log_.append({"pid": v.get("pid"), "seconds": round(time.monotonic() - t0, 3),
                     "usage": v.get("usage"), "constrained": schema is not None,
                     "finish": v.get("finish_reason")})
        return v.get("text", "")

    # ── the run ─────────────────────────────────────────────────────────────
    async def run(self, request: str, *, workdir: str | Path | None = None, yes: bool = False,
                  yes_all: bool = False, dry_run: bool = False) -> RunResult:
        check_request(request)
        wd = Path(workdir or Path.cwd()).expanduser().resolve()
        if not wd.is_dir():
            raise InvalidArgument(f"workdir: {wd} is not a directory", field="workdir",
                                  expected="an existing directory")
        rid = new_run_id()
        t_start = time.monotonic()
        rec: dict[str, Any] = {"run": rid, "created": time.time(), "user": self.user, "request": request,
                               "workdir": str(wd), "model": self.model or "", "status": "failed",
                               "answer": "", "steps": [], "notes": [], "habits": [], "timings": {},
                               "llm_calls": [], "revisions": 0}
        run = _Run(self, rec, request, wd, yes or yes_all, yes_all, dry_run)
        try:
            result = await run.go()
        except asyncio.CancelledError:
            await asyncio.shield(self._cancelled(rec))
            raise
        except LLMOSError as e:
            rec["status"] = "denied" if isinstance(e, PermissionDenied) else "failed"
            rec["answer"] = f"{'Denied' if rec['status'] == 'denied' else 'Failed'}: {e.message}"
            rec["error"] = e.to_dict()
            await run.exit_process()
            result = None
        rec["timings"]["total"] = round(time.monotonic() - t_start, 3)
        if self.store is not None:
            self.store.save_run(rec)
        feedback.observe_costs(self.kernel, rec)
        self.on_event("done", {"status": rec["status"], "answer": rec["answer"]})
        if result is None:
            result = RunResult(rec["status"], rec["answer"], [_public_step(s) for s in rec["steps"]], rid, rec)
        return result

    async def _cancelled(self, rec: dict) -> None:
        """The caller gave up on the run: kill its process (and the step it is in), record it."""
        rec["status"], rec["answer"] = "cancelled", "Cancelled before it finished."
        if rec.get("pid") is not None and rec.get("agent"):
            res = await self.kernel.syscall(rec["agent"], "proc.kill",
                                            {"pid": rec["pid"], "reason": "run cancelled"})
            if not res.ok:
                rec["notes"].append(f"run process not killed: {res.error}")
        if self.store is not None:
            self.store.save_run(rec)
        self.on_event("done", {"status": rec["status"], "answer": rec["answer"]})

    # ── risk and paths ──────────────────────────────────────────────────────
    def _ctx(self, wd: Path, agent: str) -> Any:
        from llmos.tools.registry import ToolContext

        return ToolContext(workdir=wd, agent=agent, network=self.network)

    def risk(self, step: Step, ctx: Any, args: dict | None = None) -> Risk:
        """The step's risk class: of the filled-in call when ``args`` are given, else the
        highest plausible one while references are still open."""
        if step.tool == LLM_TOOL:
            return Risk.READ
        try:
            tool = self.registry.get(step.tool)
        except LLMOSError:
            return Risk.NETWORK
        if args is None:
            open_paths = [a for a in tool.path_args if REF_RE.search(json.dumps(step.args.get(a)))]
            if open_paths or step.each:
                writes = any(tool.path_args.get(a) == "w" for a in open_paths) or (
                    step.each and any(m == "w" for m in tool.path_args.values()))
                if writes and tool.risk >= Risk.WRITE:
                    return max(tool.risk, Risk.DESTRUCTIVE)
            args = step.args
        return tool.risk_for(args, ctx)

    def outside(self, steps: list[Step], ctx: Any) -> tuple[int, Step] | None:
        for i, step in enumerate(steps, 1):
            try:
                tool = self.registry.get(step.tool)
            except LLMOSError:
                continue
            for arg, mode in tool.path_args.items():
                v = step.args.get(arg)
                if not isinstance(v, str) or REF_RE.search(v):
                    continue
                try:
                    ctx.resolve(v.split("*")[0] or ".", mode, field=arg)
                except PermissionDenied:
                    return i, step
                except LLMOSError:
                    continue
        return None

    def unnamed(self, step: Step, args: dict, ctx: Any, request: str,
                made: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Existing paths this call would delete, move away or overwrite that the request
        does not name (by name or pattern) and the run itself did not make (``made``)."""
        try:
            tool = self.registry.get(step.tool)
        except LLMOSError:
            return []
        targets: list[str] = []
        if step.tool in _MOVES_AWAY:
            targets += [args.get(a) for a in _MOVES_AWAY[step.tool] if isinstance(args.get(a), str)]
        if tool.risk_for(args, ctx) >= Risk.DESTRUCTIVE:
            for a, mode in tool.path_args.items():
                v = args.get(a)
                if mode == "w" and isinstance(v, str) and v not in targets:
                    targets.append(v)
        out = []
        for t in targets:
            try:
                p = ctx.resolve(t.split("*")[0] or ".", "w")
            except LLMOSError:
                continue
            if "*" not in t and not p.exists():
                continue
            rel = t if "*" in t else ctx.rel(p)
            if rel not in made and not is_named(rel, request):
                out.append(rel)
        return out

    def coerce(self, tool_name: str, args: dict) -> dict:
        """A referenced value lands in a text argument as text (a list one item per line)."""
        if tool_name == LLM_TOOL:
            return args
        try:
            props = self.registry.get(tool_name).parameters.get("properties", {})
        except LLMOSError:
            return args
        out = dict(args)
        for k, v in args.items():
            t = props.get(k, {}).get("type")
            if t == "string" and not isinstance(v, str):
                out[k] = render_value(v)
        return out


class _Run:
    """One run's state: the plan, the outputs, the approvals. Owned by ``Runner.run``."""

    def __init__(self, runner: Runner, rec: dict, request: str, wd: Path, yes: bool, yes_all: bool,
                 dry_run: bool) -> None:
        self.r = runner
        self.rec = rec
        self.request = request
        self.wd = wd
        self.yes = yes                    # the person approved risky steps up front
        self.yes_all = yes_all            # ... and the guards too
        self.dry_run = dry_run
        self.agent = ""
        self.parent: int | None = None
        self.steps: list[Step] = []       # every step so far and planned, numbered from 1
        self.outputs: dict[int, Any] = {}
        self.summaries: dict[int, str] = {}
        self.skipped: set[int] = set()
        self.approved: dict[int, Risk] = {}   # step -> the risk the person agreed to
        self.made: set[str] = set()           # workspace paths this run created or wrote
        self.exited = False

    # ── records ─────────────────────────────────────────────────────────────
    def _srec(self, i: int) -> dict[str, Any]:
        return self.rec["steps"][i - 1]

    def _record_steps(self, first: int) -> None:
        ctx = self.ctx
        del self.rec["steps"][first - 1:]
        for s in self.steps[first - 1:]:
            d = {"tool": s.tool, "args": s.args, "why": s.reason, "each": s.each,
                 "risk": self.r.risk(s, ctx).name.lower(), "status": "planned"}
            if s.when:
                d["when"] = s.when.to_dict()
            self.rec["steps"].append(d)

    async def finish(self, status: str, answer: str) -> RunResult:
        self.rec["status"], self.rec["answer"] = status, answer
        await self.exit_process()
        return RunResult(status, answer, [_public_step(s) for s in self.rec["steps"]], self.rec["run"], self.rec)

    async def exit_process(self) -> None:
        if self.parent is None or self.exited:
            return
        self.exited = True
        status = self.rec["status"]
        ok = status in ("succeeded", "planned")
        k, agent = self.r.kernel, self.agent
        res = await k.syscall(agent, "proc.exit", {
            "pid": self.parent, "ok": ok, "result": {"status": status},
            **({} if ok else {"message": short(self.rec["answer"], 1900)})})
        if not res.ok:
            self.rec["notes"].append(f"run process did not exit cleanly: {res.error}")
        info = await k.syscall(agent, "proc.get", {"pid": self.parent, "history": True})
        if info.ok:
            self.rec["kernel"] = {"run process": info.value}

    # ── the run ─────────────────────────────────────────────────────────────
    async def go(self) -> RunResult:
        r, rec = self.r, self.rec
        self.agent = await r._agent(self.wd, rec["run"])
        rec["agent"] = self.agent
        res = await r.kernel.syscall(self.agent, "proc.spawn", {
            "kind": "run", "spec": {"title": short(self.request, 80), "request": self.request},
            "priority": r.priority})
        if res.ok:
            self.parent = rec["pid"] = res.value.get("pid")
        else:
            rec["notes"].append(f"no run process: {res.error}")
        self.ctx = r._ctx(self.wd, self.agent)
        self.ws = Workspace.scan(self.wd, r.clock())
        self.moments = Moments.of(self.request, self.ws.now)
        rights = (f"read and write files in the workspace only; network {'yes' if r.network else 'no'}; "
                  "deleting, overwriting, moving and running code ask the person first.")
        rec["facts"] = self.ws.lines(self.request, rights)
        self.planner = Planner(
            r.registry,
            lambda m, s, n, t, p: r._generate(self.agent, self.parent, rec["llm_calls"], m, s, n, t, p),
            store=r.store, allow_ask=r.ask is not None, rights=rights)
        try:
            return await self._plan_and_run()
        except _Stop as stop:
            return await self.finish(stop.status, stop.answer)

    async def _plan_and_run(self) -> RunResult:
        r, rec = self.r, self.rec
        t0 = time.monotonic()
        r.on_event("planning", {"request": self.request})
        plan = await self._plan(self.request)
        rec["timings"]["plan"] = round(time.monotonic() - t0, 3)
        if plan.ask:
            answer = await r.ask(plan.ask) if r.ask is not None else None
            if not answer:
                raise _Stop("failed", f"I need to know more: {plan.ask}")
            plan = await self._plan(f"{self.request}\n(Asked: {plan.ask} Answer: {answer})")
            if plan.ask:
                raise _Stop("failed", f"I still cannot tell what to do: {plan.ask}")
        if plan.refuse:
            raise _Stop("failed", f"I can't do that here: {plan.refuse}")
        if r.store is not None:
            rec["habits"] = feedback.apply_habits(plan, self.ws, self.request,
                                                  feedback.active_habits(r.store, r.user), r.registry)
            if r.store.is_blocked(self.request, plan.to_dict()):
                raise _Stop("failed", "The plan I made is one you rated bad for this request; not running it.")
        self.plan = plan
        rec["plan"] = plan.to_dict()
        rec["examples"] = plan.examples
        rec["notes"] += plan.notes
        rec["deps"] = {str(k): v for k, v in plan.deps().items()}
        self.steps = list(plan.steps)
        self._record_steps(1)
        r.on_event("plan", {"steps": rec["steps"], "answer": plan.answer})
        if self.dry_run:
            raise _Stop("planned", "Plan only (dry run): " + "; ".join(
                f"{i}. {s['tool']}" for i, s in enumerate(rec["steps"], 1)))
        await self._admit(1)
        await self._execute()
        answer = fill_answer(self.plan.answer, self.outputs, self.summaries)
        if not answer.strip():
            answer = "Done." if not self.outputs else render_value(self.outputs[max(self.outputs)])[:500]
        return await self.finish("succeeded", answer)

    async def _plan(self, request: str) -> Plan:
        try:
            return await self.planner.plan(request, self.ws)
        except PlanError as e:
            raise _Stop("failed", f"I could not make a valid plan for this request ({e.message}).") from None

    # ── checks before steps run ─────────────────────────────────────────────
    async def _admit(self, first: int) -> None:
        """Check steps ``first``.. before any of them runs: paths, then the person's yes."""
        r, ctx = self.r, self.ctx
        new = self.steps[first - 1:]
        bad = r.outside(new, ctx)
        if bad is not None:
            i, step = bad
            i += first - 1
            out = await self._call(i, step, step.args, confirmed=False)
            if out.get("denied"):
                raise _Stop("denied", f"Denied: {out['error']}")
        risky = []
        for i, s in enumerate(new, first):
            risk = Risk[self.rec["steps"][i - 1]["risk"].upper()]
            if risk.needs_confirmation:
                risky.append((i, s, risk))
        if not risky:
            return
        if self.yes:
            for i, _s, risk in risky:
                self.approved[i] = risk
            return
        if r.confirm is None:
            for i, _s, _risk in risky:
                self._srec(i)["status"] = "needs_confirmation"
            names = ", ".join(f"step {i} ({s.tool}, {risk.name.lower()})" for i, s, risk in risky)
            raise _Stop("needs_confirmation", f"Nothing was done: {names} needs your approval; "
                                              "re-run with --yes to approve." if first == 1 else
                        f"Stopped: the revised plan's {names} needs your approval; re-run with --yes.")
        for i, s, risk in risky:
            if not await r.confirm(i, s, risk):
                self._srec(i)["status"] = "needs_confirmation"
                raise _Stop("needs_confirmation", f"Nothing more was done: you did not approve step {i} ({s.tool}).")
            self.approved[i] = risk

    async def _recheck(self, i: int, step: Step, args: dict) -> None:
        """Checks on the filled-in call, just before it runs."""
        r, ctx = self.r, self.ctx
        try:
            notes = self.moments.check_args(step.tool, args)
        except WhenError as e:
            raise _Stop("failed", f"Stopped before step {i} ({step.tool}): {e.message}. "
                                  + (e.hint or "")) from None
        self.rec["notes"] += [f"step {i}: {n}" for n in notes]
        risk = r.risk(step, ctx, args)
        rose = risk.needs_confirmation and risk > self.approved.get(i, Risk.WRITE)
        guards = []                       # what even --yes does not cover
        if risk.needs_confirmation and not self.yes_all:
            unnamed = r.unnamed(step, args, ctx, self.request, self.made)
            if unnamed:
                guards.append(f"it would change {', '.join(unnamed[:5])}, which the request does not name")
            if risk >= Risk.EXEC and refs_in(step.args):
                guards.append("its command or program was filled in from content read during the run: "
                              + short(args, 300))
        if not rose and not guards:
            return
        why = "; ".join([f"its risk is {risk.name.lower()} once filled in"] * rose + guards)
        if r.confirm is not None:
            if await r.confirm(i, Step(step.tool, args, step.reason), risk):
                self.approved[i] = risk
                return
            self._srec(i)["status"] = "needs_confirmation"
            raise _Stop("needs_confirmation", f"Stopped before step {i} ({step.tool}): you did not approve it.")
        if self.yes and not guards:
            self.approved[i] = risk
            return
        self._srec(i)["status"] = "needs_confirmation"
        raise _Stop("needs_confirmation", f"Stopped before step {i} ({step.tool}): {why}. Nothing from "
                                          "this step on was done; approve it in `llmos shell`, or re-run "
                                          "with --yes-all.")

    # ── steps ───────────────────────────────────────────────────────────────
    async def _execute(self) -> None:
        r = self.r
        i = 1
        while True:
            while i <= len(self.steps):
                step = self.steps[i - 1]
                r.on_event("step", {"index": i, "tool": step.tool, "status": "running"})
                out = await self._run_step(i, step)
                srec = self._srec(i)
                r.on_event("step", {"index": i, "tool": step.tool, "status": srec["status"],
                                    "summary": srec.get("summary", "")})
                if out.get("denied"):
                    raise _Stop("denied", f"Denied: {out['error']}")
                if out.get("confirm"):
                    raise _Stop("needs_confirmation", f"Stopped before step {i} ({step.tool}): {out['error']}; "
                                                      "re-run with --yes to approve.")
                if out.get("error"):
                    i = await self._revise(i, f"$step{i} ({step.tool}) failed: {out['error']}", failed=True)
                    continue              # the revision's first step
                if "output" in out:
                    self.outputs[i] = out["output"]
                    self.summaries[i] = out.get("summary", "")
                i += 1
            if not self.plan.more or self.rec["revisions"] >= MAX_REVISIONS:
                return
            self.plan.more = False
            i = await self._revise(i, "The plan asked to see these results before planning the rest.",
                                   failed=False)
            if i > len(self.steps):
                return

    async def _revise(self, i: int, why: str, *, failed: bool) -> int:
        """Re-plan after steps 1..i-1 ran (and step ``i`` failed, when ``failed``); returns
        the number of the first step to run next. The model writes the whole plan again;
        its leading steps that are the same as ones that ran well keep their results."""
        rec = self.rec
        done = "; ".join(v for v in self.summaries.values() if v)
        if rec["revisions"] >= MAX_REVISIONS:
            head = f"Step {why[5:]}" if failed else "The plan did not finish within its revisions."
            raise _Stop("failed", f"{head} (after {MAX_REVISIONS} revisions)"
                        + (f". Done before it: {done}" if done else ""))
        rec["revisions"] += 1
        ran = [(s, self.outputs.get(n), "skipped" if n in self.skipped else "ok")
               for n, s in enumerate(self.steps[:i - 1], 1)]
        if failed:
            ran.append((self.steps[i - 1], None, "failed: " + str(self._srec(i).get("error", ""))[:300]))
        self.r.on_event("planning", {"request": self.request, "revision": rec["revisions"]})
        t0 = time.monotonic()
        try:
            new = await self.planner.revise(self.request, self.ws, ran, why, self.plan)
        except PlanError as e:
            raise _Stop("failed", f"Step {why[5:]}; I could not repair the plan ({e.message})."
                        if failed else f"I could not plan the rest ({e.message}).") from None
        rec["timings"][f"revision {rec['revisions']}"] = round(time.monotonic() - t0, 3)
        if new.refuse or new.ask:
            if failed:
                raise _Stop("failed", f"Step {why[5:]}. {new.refuse or new.ask}")
            self.plan.more = False
            return len(self.steps) + 1
        keep = 0                              # leading steps unchanged and run well: results stay
        while (keep < min(len(new.steps), i - 1) and _same(new.steps[keep], self.steps[keep])
               and keep + 1 in self.outputs):
            keep += 1
        if not failed and keep == len(new.steps):
            self.plan.more = False            # nothing new: the plan is done
            return len(self.steps) + 1
        rec.setdefault("replaced", []).extend(rec["steps"][keep:])
        for n in [n for n in self.outputs if n > keep]:
            self.outputs.pop(n)
            self.summaries.pop(n, None)
        self.skipped = {n for n in self.skipped if n <= keep}
        self.steps = self.steps[:keep] + new.steps[keep:]
        rec["notes"].append(f"revision {rec['revisions']}: {why} -> kept {keep} step(s), then "
                            + ", ".join(s.tool for s in new.steps[keep:]))
        rec["notes"] += new.notes
        self.plan = Plan(self.request, self.steps, new.answer or self.plan.answer, "revised",
                         self.plan.examples, more=new.more)
        for n in range(keep + 1, len(self.steps) + 1):
            self.approved.pop(n, None)
        self._record_steps(keep + 1)
        self.r.on_event("plan", {"steps": rec["steps"], "answer": self.plan.answer, "revision": rec["revisions"]})
        await self._admit(keep + 1)
        return keep + 1

    async def _run_step(self, i: int, step: Step) -> dict[str, Any]:
        srec = self._srec(i)
        reads = step.refs()
        if reads & self.skipped:
            self.skipped.add(i)
            srec["status"] = "skipped"
            return {"skipped": True}
        try:
            if step.when is not None and not step.when.holds(self.outputs):
                self.skipped.add(i)
                srec.update(status="skipped", summary="its condition does not hold")
                return {"skipped": True}
            if step.each:
                return await self._run_each(i, step)
            args = self.r.coerce(step.tool, substitute(step.args, self.outputs))
        except Unresolved as e:
            srec.update(status="failed", error=f"a reference names a missing field: {e}")
            return {"error": srec["error"]}
        await self._recheck(i, step, args)
        return await self._call(i, step, args, confirmed=True)

    async def _run_each(self, i: int, step: Step) -> dict[str, Any]:
        srec = self._srec(i)
        items = substitute(step.each, self.outputs)
        if isinstance(items, dict):
            items = next((v for v in items.values() if isinstance(v, list)), [items])
        if not isinstance(items, list):
            items = [items]
        if len(items) > MAX_EACH_ITEMS:
            self.rec["notes"].append(f"step {i}: {len(items)} items, only the first {MAX_EACH_ITEMS} done")
        results, summaries = [], []
        for item in items[:MAX_EACH_ITEMS]:
            args = self.r.coerce(step.tool, substitute(step.args, self.outputs, item=item))
            await self._recheck(i, step, args)
            out = await self._call(i, step, args, confirmed=True, record=False)
            if "output" not in out:
                return out
            key = (item.get("name") or item.get("path") or item) if isinstance(item, dict) else item
            results.append({"item": key, "output": out["output"]})
            summaries.append(out["summary"])
        srec.update(status="succeeded", summary="; ".join(summaries)[:500],
                    output=short(results, OUTPUT_KEEP_CHARS))
        return {"output": results, "summary": "\n".join(summaries)}

    async def _call(self, i: int, step: Step, args: dict, *, confirmed: bool, record: bool = True) -> dict[str, Any]:
        if step.tool == LLM_TOOL:
            return await self._llm(i, args, record)
        r, rec = self.r, self.rec
        srec = self._srec(i)
        if record:
            srec["args"] = args
        call = {"tool": step.tool, "args": args, "workdir": str(self.wd), "confirmed": confirmed,
                "idempotency_key": f"{rec['run']}:{i}:{hashlib.sha1(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()[:8]}",
                "priority": r.priority}
        if self.parent is not None:
            call["parent"] = self.parent
        t0 = time.monotonic()
        res = await r.kernel.syscall(self.agent, "tool.call", call)
        srec["seconds"] = round(srec.get("seconds", 0.0) + time.monotonic() - t0, 4)
        if res.ok:
            v = res.value or {}
            srec.setdefault("pids", []).append(v.get("pid"))
            self.made.update(f for f in v.get("files") or [] if isinstance(f, str))
            if record:
                srec.update(status="succeeded", summary=v.get("summary", ""),
                            output=short(v.get("output"), OUTPUT_KEEP_CHARS), files=v.get("files", []))
            return {"output": v.get("output"), "summary": v.get("summary", "")}
        err = res.error
        msg = getattr(err, "reason", None) or (err.message if err else "unknown error")
        if isinstance(err, (PermissionDenied, QuotaExceeded)):
            srec.update(status="denied", error=msg)
            return {"denied": True, "error": msg}
        if isinstance(err, NeedsConfirmation):
            srec.update(status="needs_confirmation", error=msg)
            return {"confirm": True, "error": msg}
        srec.update(status="failed", error=err.message if err else msg)
        return {"error": srec["error"]}

    async def _llm(self, i: int, args: dict, record: bool) -> dict[str, Any]:
        """An ``llm`` step: the model on a text, as an ``llm.generate`` syscall of the run."""
        srec = self._srec(i)
        texts = args.get("text")
        many = isinstance(texts, list)
        outs = []
        t0 = time.monotonic()
        for text in (texts if many else [texts])[:MAX_EACH_ITEMS]:
            one = {**args, "text": text if isinstance(text, str) or text is None else render_value(text)}
            messages, schema, n = llmtool.request_for(one)
            try:
                reply = await self.r._generate(self.agent, self.parent, self.rec["llm_calls"], messages,
                                               schema, n, 0.0)
            except LLMOSError as e:
                srec.update(status="failed", error=e.message)
                return {"error": e.message}
            outs.append(llmtool.result(one, reply))
        srec["seconds"] = round(srec.get("seconds", 0.0) + time.monotonic() - t0, 4)
        output: Any = outs if many else (outs[0] if outs else "")
        summary = f"llm {args.get('task')}: {short(render_value(output), 160)}"
        if record:
            srec.update(status="succeeded", summary=summary, output=short(output, OUTPUT_KEEP_CHARS),
                        args=args)
        return {"output": output, "summary": summary}


_FIELDS: set[str] | None = None


def planner_model(kernel: Any) -> tuple[str | None, str]:
    """The planner tier for the kernel's machine (``llm.tiers``): (model name, why). For the
    entry points (CLI, daemon) when the person names no model; (None, why) when the kernel
    has no HAL or config to decide with, or was booted with engines of the caller's
    choosing (its default engine plans then)."""
    hal, cfg = getattr(kernel, "hal", None), getattr(kernel, "config", None)
    if hal is None or cfg is None:
        return None, "no hardware view: the kernel's default model plans"
    engines = getattr(kernel, "engine_set", None)
    if engines is not None and getattr(engines, "given", None):
        return None, "the kernel was given its engines: its default plans"
    try:
        from llmos.llm.tiers import choose_planner
    except ImportError:
        return None, "no planner tiers here: the kernel's default model plans"
    try:
        choice = choose_planner(hal.snapshot(), cfg)
    except LLMOSError as e:
        log.warning("planner tier: %s", e.message)
        return None, f"planner tier unavailable ({e.message}): the kernel's default model plans"
    return choice.model.name, choice.reason


def _same(a: Step, b: Step) -> bool:
    return (a.tool, a.args, a.each, a.when and a.when.to_dict()) == (b.tool, b.args, b.each,
                                                                   b.when and b.when.to_dict())


def _accepts(name: str) -> bool:
    """Whether ``llm.generate`` takes the argument ``name`` (read once from its model)."""
    global _FIELDS
    if _FIELDS is None:
        try:
            from llmos.kernel.sys_llm import GenerateArgs

            _FIELDS = set(GenerateArgs.model_fields)
        except Exception:  # noqa: BLE001 - an older kernel: send only what it knows
            _FIELDS = set()
    return name in _FIELDS


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "user"

