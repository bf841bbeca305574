"""Runner: request -> plan -> checks -> confirmation -> steps (observe, revise) -> answer.

Map:
- ``RunResult`` (from ``execution``): status (a ``RunStatus``: succeeded | failed | denied |
  needs_confirmation | planned | cancelled), answer, steps, run id, the full record (a
  ``RunRecord``); ``to_json()`` is the CLI's one-line contract. ``execution.Execution`` is one run in progress.
- ``planner_model(kernel)``: the planner tier for the machine (``llm.tiers``), for the
  entry points when the person names no model.
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
import json
import logging
import re
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from llmos import params
from llmos.errors import (
    InvalidArgument,
    LLMOSError,
    PermissionDenied,
)
from llmos.runs import RunRecord, RunStatus
from llmos.shell import feedback, llmtool, recall
from llmos.shell.context import is_named
from llmos.shell.execution import MAX_REVISIONS, Execution, RunResult
from llmos.shell.plan import (
    LLM_TOOL,
    REF_RE,
    Step,
    render_value,
)
from llmos.types import Risk

__all__ = ["Runner", "RunResult", "STATUSES", "new_run_id", "check_request", "MAX_REVISIONS", "planner_model"]

log = logging.getLogger(__name__)

STATUSES = RunStatus.labels((RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.DENIED,
                             RunStatus.NEEDS_CONFIRMATION, RunStatus.PLANNED))   # how a run ends here
AGENT_SYSCALLS = ["llm.generate", "tool.call", "tool.list", "proc.spawn", "proc.get", "proc.exit",
                  "proc.kill", "proc.list", "proc.wait", "timer.*", "memory.*"]
AGENT_OPTIONAL = ("may.risky", "may.urgent", "mcp.*")   # granted to a run's agent when its creator holds them
AGENT_NAME_TRIES = 3      # fresh names tried when a run agent's name was taken before the run
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


MIN_REPLY_TOKENS = 256     # the shortest reply worth asking for when the context is nearly full
_OVERFLOW_RE = re.compile(r"prompt \((\d+) tokens\).*context \((\d+) tokens\)")


def _room_left(err: Exception | None) -> int | None:
    """Tokens a reply may still take, from an engine's context-overflow error (whose
    message states the prompt's and the context's sizes); None for any other error."""
    if getattr(err, "code", None) != "context_overflow":
        return None
    m = _OVERFLOW_RE.search(str(err))
    return int(m.group(2)) - int(m.group(1)) - 1 if m else None


class Runner:
    execution = Execution      # one run's state machine (workflows subclass it to run a saved plan)

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
        """A fresh agent per run: its only roots are the workspace; nobody else can own it.

        The agent is always one this call creates (``agent.create`` refuses a name that
        exists), so a name taken before the run only costs a fresh suffix; it is never
        reused. It holds ``AGENT_OPTIONAL`` rights only when its creator does."""
        name = f"run-{rid}"
        extra = list(AGENT_OPTIONAL)
        err: LLMOSError | None = None
        for _ in range(AGENT_NAME_TRIES + len(AGENT_OPTIONAL)):
            caps = {"syscalls": AGENT_SYSCALLS + extra, "read_roots": [str(workdir)],
                    "write_roots": [str(workdir)], "network": self.network}
            res = await self.kernel.syscall("root", "agent.create", {"name": name, "capabilities": caps})
            if res.ok:
                return name
            err = res.error
            refused = next((x for x in extra if isinstance(err, PermissionDenied) and f"'{x}'" in err.message), None)
            if refused is not None:
                extra.remove(refused)                  # the creator lacks it: the run does without
                continue
            if not (isinstance(err, InvalidArgument) and getattr(err, "field", None) == "name"
                    and "already exists" in err.message):
                raise err
            log.warning("run %s: agent name %s was taken by another agent; using a fresh one", rid, name)
            name = f"run-{rid}-{uuid.uuid4().hex[:8]}"
        assert err is not None
        raise err

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
        room = _room_left(res.error) if not res.ok else None
        if room is not None and MIN_REPLY_TOKENS <= room < max_tokens:
            # a long revision (the plan so far and its outputs) leaves less room than asked
            # for: a shorter reply still fits, and a plan rarely needs all of it
            log.info("run: %d tokens of room left for the reply (asked %d)", room, max_tokens)
            args["max_tokens"] = room
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
        from llmos.config import check_workspace

        check_workspace(getattr(self.kernel, "config", None), wd)   # not /, ~, nor the state's folder
        rid = new_run_id()
        t_start = time.monotonic()
        rec = RunRecord(rid, created=time.time(), user=self.user, request=request, workdir=str(wd),
                        model=self.model or "", status=RunStatus.FAILED)
        run = self.execution(self, rec, request, wd, yes or yes_all, yes_all, dry_run)
        try:
            result = await run.go()
        except asyncio.CancelledError:
            await asyncio.shield(self._cancelled(rec))
            raise
        except LLMOSError as e:
            denied = isinstance(e, PermissionDenied)
            rec.status = RunStatus.DENIED if denied else RunStatus.FAILED
            rec.answer = f"{'Denied' if denied else 'Failed'}: {e.message}"
            rec.error = e.to_dict()
            await run.exit_process()
            result = None
        rec.timings["total"] = round(time.monotonic() - t_start, 3)
        if self.store is not None:
            self.store.save_run(rec)
        await recall.remember_run(self.kernel, rec)
        feedback.observe_costs(self.kernel, rec)
        self.on_event("done", {"status": rec.status, "answer": rec.answer})
        return result if result is not None else RunResult.of(rec)

    async def _cancelled(self, rec: RunRecord) -> None:
        """The caller gave up on the run: kill its process (and the step it is in), record it."""
        rec.status, rec.answer = RunStatus.CANCELLED, "Cancelled before it finished."
        if rec.pid is not None and rec.agent:
            res = await self.kernel.syscall(rec.agent, "proc.kill", {"pid": rec.pid, "reason": "run cancelled"})
            if not res.ok:
                rec.notes.append(f"run process not killed: {res.error}")
        if self.store is not None:
            self.store.save_run(rec)
        self.on_event("done", {"status": rec.status, "answer": rec.answer})

    # ── risk and paths ──────────────────────────────────────────────────────
    def _ctx(self, wd: Path, agent: str) -> Any:
        from llmos.tools.registry import ToolContext

        return ToolContext(workdir=wd, agent=agent, network=self.network)

    def risk(self, step: Step, ctx: Any, args: dict | None = None) -> Risk:
        """The step's risk class: of the filled-in call when ``args`` are given, else the
        highest plausible one while references are still open."""
        if step.tool == LLM_TOOL:
            view = llmtool.write_view(step.args if args is None else args)
            if view is None:
                return Risk.READ
            step, args = Step(llmtool.SAVE_TOOL, view, step.reason, each=step.each), None if args is None else view
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
            if step.tool == LLM_TOOL and (view := llmtool.write_view(step.args)) is not None:
                step = Step(llmtool.SAVE_TOOL, view, step.reason)
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
        if step.tool == LLM_TOOL and (view := llmtool.write_view(args)) is not None:
            step, args = Step(llmtool.SAVE_TOOL, view, step.reason), view
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


_CHOSEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # kernel -> (model, why)


def planner_model(kernel: Any) -> tuple[str | None, str]:
    """The planner tier for the kernel's machine (``llm.tiers``): (model name, why). For the
    entry points (CLI, daemon) when the person names no model; (None, why) when the kernel
    has no HAL or config to decide with, or was booted with engines of the caller's
    choosing (its default engine plans then). Chosen once per kernel: once the planner is
    loaded, available memory drops, and a second reading could pick another model."""
    base = getattr(kernel, "_kernel", kernel)          # the API's per-caller view of it
    try:
        if base in _CHOSEN:
            return _CHOSEN[base]
    except TypeError:                                  # not weak-referenceable: no memo
        return _choose_planner(kernel)
    _CHOSEN[base] = _choose_planner(kernel)
    return _CHOSEN[base]


def _choose_planner(kernel: Any) -> tuple[str | None, str]:
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


_FIELDS: set[str] | None = None


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

