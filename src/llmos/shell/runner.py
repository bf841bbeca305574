"""Runner: request -> plan -> risk check -> confirmation -> steps -> answer -> record.

Map:
- ``RunResult``: status (succeeded | failed | denied | needs_confirmation | planned),
  answer, steps, run id, the full record; ``to_json()`` is the CLI's one-line contract.
- ``check_request(request)``: refuse an empty, over-long, NUL-holding or non-UTF-8 request
  before any run starts (``Runner.run`` and the API's ``POST /runs`` call it).
- ``Runner(kernel, store=..., user=..., model=..., priority=..., confirm=..., on_event=...)``:
  ``await run(request, workdir=..., yes=False, dry_run=False) -> RunResult``.
  Everything goes through syscalls as the run's own agent (``agent.create`` with the
  workspace as its only read/write root, no network): the planner's ``llm.generate``,
  each step's ``tool.call`` (as children of a ``run`` process), ``proc.get`` for the
  kernel's scheduling facts. The kernel checks every path and risk again; the runner's
  own checks only make it stop *before* anything changes.

NOTE (safety order). The whole plan is made and checked before any step runs: each
step's risk is computed from its arguments (a step whose arguments depend on earlier
results counts at the tool's highest plausible class), and every concrete path is
checked against the workspace. A plan that would leave the workspace is sent only
its offending step, so the kernel itself refuses it and gives its reason (status
``denied``, nothing changed). A plan with a destructive, exec or network step runs
only with ``yes`` or the person's answer to ``confirm``; otherwise nothing runs and
the status is ``needs_confirmation``. Tool output is data: it fills ``$stepN``
references and the answer, never adds steps or rights.
"""

from __future__ import annotations

import asyncio
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
from llmos.shell import feedback
from llmos.shell.extract import extract
from llmos.shell.plan import MAX_EACH_ITEMS, REF_RE, Plan, Step, Unresolved, render_value, substitute
from llmos.shell.planner import CODE_STOP, PlanError, Planner
from llmos.shell.render import fill_answer, short
from llmos.types import Risk

__all__ = ["Runner", "RunResult", "STATUSES", "new_run_id", "check_request"]

log = logging.getLogger(__name__)

STATUSES = ("succeeded", "failed", "denied", "needs_confirmation", "planned")
OUTPUT_KEEP_CHARS = 2000        # tool output kept per step in the run record
AGENT_SYSCALLS = ["llm.generate", "tool.call", "tool.list", "proc.spawn", "proc.get", "proc.exit",
                  "proc.kill", "proc.list", "proc.wait", "timer.*", "memory.*"]

Confirm = Callable[[int, Step, Risk], Awaitable[bool]]
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
    keep = ("tool", "args", "why", "risk", "status", "summary", "error", "each")
    return {k: s[k] for k in keep if k in s and s[k] not in (None, "")}


class Runner:
    def __init__(self, kernel: Any, *, store: Any = None, user: str | None = None,
                 model: str | None = None, priority: int = params.PRIORITY_DEFAULT,
                 confirm: Confirm | None = None, on_event: OnEvent | None = None,
                 registry: Any = None, library: list | None = None, network: bool = False) -> None:
        self.kernel = kernel
        self.store = store
        self.user = user or _user()
        self.model = model
        self.priority = priority
        self.confirm = confirm
        self.on_event = on_event or (lambda kind, data: None)
        self.registry = registry if registry is not None else kernel.tools
        self.library = library
        self.network = network

    # ── syscalls as the run's agent ─────────────────────────────────────────
    async def _agent(self, workdir: Path) -> str:
        h = hashlib.sha1(f"{workdir}|{self.network}".encode()).hexdigest()[:10]
        name = f"shell-{h}"
        caps = {"syscalls": AGENT_SYSCALLS, "read_roots": [str(workdir)], "write_roots": [str(workdir)],
                "network": self.network}
        res = await self.kernel.syscall("root", "agent.create", {"name": name, "capabilities": caps})
        if not res.ok and "already exists" not in str(res.error):
            raise res.error
        return name

    async def _generate(self, agent: str, parent: int | None, log_: list, messages, schema,
                        max_tokens: int, temperature: float) -> str:
        args: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature,
                                "priority": self.priority}
        if isinstance(messages, str):          # plain completion (code): no chat template
            args["prompt"] = messages
            args["stop"] = CODE_STOP
        else:
            args["messages"] = messages
        if schema is not None:
            args["json_schema"] = schema
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
                  dry_run: bool = False) -> RunResult:
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
                               "llm_calls": []}
        try:
            result = await self._run(rec, request, wd, yes, dry_run)
        except asyncio.CancelledError:
            await asyncio.shield(self._cancelled(rec))
            raise
        except LLMOSError as e:
            rec["status"] = "denied" if isinstance(e, PermissionDenied) else "failed"
            rec["answer"] = f"{'Denied' if rec['status'] == 'denied' else 'Failed'}: {e.message}"
            rec["error"] = e.to_dict()
            result = None
        rec["timings"]["total"] = round(time.monotonic() - t_start, 3)
        if self.store is not None:
            self.store.save_run(rec)
        feedback.observe_costs(self.kernel, rec)
        self.on_event("done", {"status": rec["status"], "answer": rec["answer"]})
        if result is None:
            result = RunResult(rec["status"], rec["answer"], [_public_step(s) for s in rec["steps"]], rid, rec)
        return result

    async def _run(self, rec: dict, request: str, wd: Path, yes: bool, dry_run: bool) -> RunResult:
        agent = await self._agent(wd)
        rec["agent"] = agent
        parent = await self._spawn_run(agent, request, rec)
        facts = extract(request, wd)
        rec["facts"] = facts.lines()
        planner = Planner(self.registry,
                          lambda m, s, n, t: self._generate(agent, parent, rec["llm_calls"], m, s, n, t),
                          library=self.library, store=self.store)
        t0 = time.monotonic()
        self.on_event("planning", {"request": request})
        try:
            plan = await planner.plan(request, wd, facts=facts)
        except PlanError as e:
            rec["timings"]["plan"] = round(time.monotonic() - t0, 3)
            return await self._finish(rec, parent, agent, "failed",
                                      f"I could not make a valid plan for this request ({e.message}).")
        rec["timings"]["plan"] = round(time.monotonic() - t0, 3)
        if self.store is not None:
            habits = feedback.active_habits(self.store, self.user)
            rec["habits"] = feedback.apply_habits(plan, facts, request, habits, self.registry)
        if self.store is not None and self.store.is_blocked(request, plan.to_dict()):
            return await self._finish(rec, parent, agent, "failed",
                                      "The plan I made is one you rated bad for this request; not running it.")
        rec["plan"] = plan.to_dict()
        rec["examples"] = plan.examples
        rec["notes"] = list(plan.notes)
        rec["deps"] = {str(k): v for k, v in plan.deps().items()}
        ctx = self._ctx(wd, agent)
        steps = rec["steps"]
        for s in plan.steps:
            steps.append({"tool": s.tool, "args": s.args, "why": s.reason, "each": s.each,
                          "risk": self._risk(s, ctx).name.lower(), "status": "planned"})
        self.on_event("plan", {"steps": steps, "answer": plan.answer})
        if dry_run:
            return await self._finish(rec, parent, agent, "planned",
                                      "Plan only (dry run): " + "; ".join(
                                          f"{i}. {s['tool']}" for i, s in enumerate(steps, 1)))
        # 1. paths: a step that would leave the workspace goes alone to the kernel
        bad = self._outside(plan, ctx)
        if bad is not None:
            i, step = bad
            out = await self._call(agent, parent, rec, i, step, step.args, wd, confirmed=False)
            if out.get("denied"):
                return await self._finish(rec, parent, agent, "denied", f"Denied: {out['error']}")
        # 2. confirmation before anything runs
        risky = [(i, s) for i, s in enumerate(plan.steps, 1) if Risk[steps[i - 1]["risk"].upper()].needs_confirmation]
        approved = yes
        if risky and not yes:
            if self.confirm is None:
                for i, _s in risky:
                    steps[i - 1]["status"] = "needs_confirmation"
                names = ", ".join(f"step {i} ({s.tool}, {steps[i - 1]['risk']})" for i, s in risky)
                return await self._finish(rec, parent, agent, "needs_confirmation",
                                          f"Nothing was done: {names} needs your approval; "
                                          "re-run with --yes to approve.")
            approved = True
            for i, s in risky:
                if not await self.confirm(i, s, Risk[steps[i - 1]["risk"].upper()]):
                    steps[i - 1]["status"] = "needs_confirmation"
                    return await self._finish(rec, parent, agent, "needs_confirmation",
                                              f"Nothing was done: you did not approve step {i} ({s.tool}).")
        # 3. run the steps in order
        outputs: dict[int, Any] = {}
        summaries: dict[int, str] = {}
        for i, step in enumerate(plan.steps, 1):
            self.on_event("step", {"index": i, "tool": step.tool, "status": "running"})
            out = await self._run_step(agent, parent, rec, i, step, outputs, wd, approved)
            self.on_event("step", {"index": i, "tool": step.tool, "status": steps[i - 1]["status"],
                                   "summary": steps[i - 1].get("summary", "")})
            if out.get("denied"):
                return await self._finish(rec, parent, agent, "denied", f"Denied: {out['error']}")
            if out.get("confirm"):
                return await self._finish(rec, parent, agent, "needs_confirmation",
                                          f"Stopped before step {i} ({step.tool}): {out['error']}; "
                                          "re-run with --yes to approve.")
            if out.get("error"):
                done = "; ".join(summaries.values())
                return await self._finish(rec, parent, agent, "failed",
                                          f"Step {i} ({step.tool}) failed: {out['error']}"
                                          + (f". Done before it: {done}" if done else ""))
            outputs[i] = out["output"]
            summaries[i] = out["summary"]
        answer = fill_answer(plan.answer, outputs, summaries)
        bad_code = [n for n in plan.notes if "does not compile" in n]
        if bad_code:
            answer += " Note: the generated code did not compile."
        return await self._finish(rec, parent, agent, "succeeded", answer)

    # ── helpers ─────────────────────────────────────────────────────────────
    def _ctx(self, wd: Path, agent: str) -> Any:
        from llmos.tools.registry import ToolContext

        return ToolContext(workdir=wd, agent=agent, network=self.network)

    def _risk(self, step: Step, ctx: Any) -> Risk:
        try:
            tool = self.registry.get(step.tool)
        except LLMOSError:
            return Risk.NETWORK
        unknown_paths = [a for a in tool.path_args if isinstance(step.args.get(a), str)
                         and REF_RE.search(step.args[a])]
        if unknown_paths or step.each:
            # the written path is known only once earlier steps ran: assume it may exist
            writes = any(tool.path_args.get(a) == "w" for a in unknown_paths) or (
                step.each and any(m == "w" for m in tool.path_args.values()))
            return max(tool.risk, Risk.DESTRUCTIVE) if writes and tool.risk >= Risk.WRITE else tool.risk
        return tool.risk_for(step.args, ctx)      # references in other arguments do not change it

    def _coerce(self, tool_name: str, args: dict) -> dict:
        """A referenced value lands in a text argument as text (a list one item per line)."""
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

    def _outside(self, plan: Plan, ctx: Any) -> tuple[int, Step] | None:
        for i, step in enumerate(plan.steps, 1):
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

    async def _spawn_run(self, agent: str, request: str, rec: dict) -> int | None:
        res = await self.kernel.syscall(agent, "proc.spawn", {
            "kind": "run", "spec": {"title": short(request, 80), "request": request},
            "priority": self.priority})
        if not res.ok:
            rec["notes"].append(f"no run process: {res.error}")
            return None
        rec["pid"] = res.value.get("pid")
        return rec["pid"]

    async def _finish(self, rec: dict, parent: int | None, agent: str, status: str, answer: str) -> RunResult:
        rec["status"], rec["answer"] = status, answer
        if parent is not None:
            ok = status in ("succeeded", "planned")
            res = await self.kernel.syscall(agent, "proc.exit", {
                "pid": parent, "ok": ok, "result": {"status": status},
                **({} if ok else {"message": short(answer, 1900)})})
            if not res.ok:
                rec["notes"].append(f"run process did not exit cleanly: {res.error}")
            info = await self.kernel.syscall(agent, "proc.get", {"pid": parent, "history": True})
            if info.ok:
                rec["kernel"] = {"run process": info.value}
        return RunResult(status, answer, [_public_step(s) for s in rec["steps"]], rec["run"], rec)

    async def _run_step(self, agent: str, parent: int | None, rec: dict, i: int, step: Step,
                        outputs: dict[int, Any], wd: Path, approved: bool) -> dict[str, Any]:
        srec = rec["steps"][i - 1]
        try:
            if step.each:
                items = substitute(step.each, outputs)
                if isinstance(items, dict):
                    items = next((v for v in items.values() if isinstance(v, list)), [items])
                if not isinstance(items, list):
                    items = [items]
                items = items[:MAX_EACH_ITEMS]
                results, summaries = [], []
                for item in items:
                    key = item.get("name") or item.get("path") if isinstance(item, dict) else item
                    args = self._coerce(step.tool, substitute(step.args, outputs,
                                                              item=key if isinstance(item, dict) else item))
                    out = await self._call(agent, parent, rec, i, step, args, wd, approved, record=False)
                    if "output" not in out:
                        return out
                    results.append({"item": key, "output": out["output"]})
                    summaries.append(out["summary"])
                srec.update(status="succeeded", summary="; ".join(summaries)[:500],
                            output=short(results, OUTPUT_KEEP_CHARS))
                return {"output": results, "summary": "\n".join(summaries)}
            args = self._coerce(step.tool, substitute(step.args, outputs))
        except Unresolved as e:
            srec.update(status="failed", error=f"a reference names a missing field: {e}")
            return {"error": srec["error"]}
        return await self._call(agent, parent, rec, i, step, args, wd, approved)

    async def _call(self, agent: str, parent: int | None, rec: dict, i: int, step: Step, args: dict,
                    wd: Path, confirmed: bool, *, record: bool = True) -> dict[str, Any]:
        srec = rec["steps"][i - 1]
        if record:
            srec["args"] = args
        call = {"tool": step.tool, "args": args, "workdir": str(wd), "confirmed": confirmed,
                "idempotency_key": f"{rec['run']}:{i}:{hashlib.sha1(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()[:8]}",
                "priority": self.priority}
        if parent is not None:
            call["parent"] = parent
        t0 = time.monotonic()
        res = await self.kernel.syscall(agent, "tool.call", call)
        took = round(time.monotonic() - t0, 4)
        srec["seconds"] = round(srec.get("seconds", 0.0) + took, 4)
        if res.ok:
            v = res.value or {}
            srec.setdefault("pids", []).append(v.get("pid"))
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


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "user"

