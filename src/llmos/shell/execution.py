"""One run in progress: the plan, the outputs, the approvals, the revisions.

Map:
- ``RunResult``: status, answer, steps, run id, the full record (a ``llmos.runs``
  ``RunRecord``; ``to_json()`` is the CLI's one-line contract).
- ``Execution(runner, record, request, workdir, yes, yes_all, dry_run)``: ``await go()``;
  owned by ``Runner.run`` for one request. It plans (``Planner``), admits steps (paths,
  then the person's yes), runs them as syscalls of the run's agent, re-checks each
  filled-in call (``_recheck``), revises after a failed step or when the plan asks
  (``_revise``), and fills the answer. The safety order is the NOTE in ``runner``.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos.errors import LLMOSError, NeedsConfirmation, PermissionDenied, QuotaExceeded
from llmos.runs import RunRecord, RunStatus, StepStatus
from llmos.runs import Step as StepRecord
from llmos.shell import feedback, llmtool, recall
from llmos.shell.context import Workspace
from llmos.shell.named import named_files
from llmos.shell.normalize import Moments, WhenError, resolve_column
from llmos.shell.plan import (
    LLM_TOOL,
    MAX_EACH_ITEMS,
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

if TYPE_CHECKING:
    from llmos.shell.runner import Runner

__all__ = ["Execution", "RunResult", "MAX_REVISIONS", "OUTPUT_KEEP_CHARS"]

OUTPUT_KEEP_CHARS = 2000        # tool output kept per step in the run record
NAMED_WALK_DIRS = 500          # folders looked through for the files a request names, at most
MAX_REVISIONS = 3               # re-plans after steps ran (repairs and continuations)


@dataclass
class RunResult:
    """How a run ended: its status, answer and steps, and everything it recorded."""

    status: RunStatus
    answer: str
    steps: list[StepRecord]
    run: str                          # the run id
    record: RunRecord

    @classmethod
    def of(cls, rec: RunRecord) -> RunResult:
        return cls(rec.status, rec.answer, list(rec.steps), rec.run, rec)

    def to_json(self) -> str:
        return json.dumps({"status": self.status, "answer": self.answer,
                           "steps": [s.public() for s in self.steps], "run": self.run}, default=str)


@dataclass
class _Stop(Exception):
    """Ends the run early with a status and an answer."""

    status: RunStatus
    answer: str


class Execution:
    """One run's state: the plan, the outputs, the approvals. Owned by ``Runner.run``."""

    def __init__(self, runner: Runner, rec: RunRecord, request: str, wd: Path, yes: bool, yes_all: bool,
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
        self.finishing = False                # asked once to write the named files left unmade

    # ── records ─────────────────────────────────────────────────────────────
    def _srec(self, i: int) -> StepRecord:
        return self.rec.steps[i - 1]

    def _record_steps(self, first: int) -> None:
        ctx = self.ctx
        del self.rec.steps[first - 1:]
        for s in self.steps[first - 1:]:
            self.rec.steps.append(StepRecord(s.tool, s.args, why=s.reason, each=s.each,
                                             risk=self.r.risk(s, ctx).name.lower(),
                                             when=s.when.to_dict() if s.when else None))

    async def finish(self, status: RunStatus, answer: str) -> RunResult:
        self.rec.status, self.rec.answer = status, answer
        await self.exit_process()
        return RunResult.of(self.rec)

    async def exit_process(self) -> None:
        if self.parent is None or self.exited:
            return
        self.exited = True
        status = self.rec.status
        k, agent = self.r.kernel, self.agent
        res = await k.syscall(agent, "proc.exit", {
            "pid": self.parent, "ok": status.ok, "result": {"status": status.label},
            **({} if status.ok else {"message": short(self.rec.answer, 1900)})})
        if not res.ok:
            self.rec.notes.append(f"run process did not exit cleanly: {res.error}")
        info = await k.syscall(agent, "proc.get", {"pid": self.parent, "history": True})
        if info.ok:
            self.rec.kernel = {"run process": info.value}

    # ── the run ─────────────────────────────────────────────────────────────
    async def go(self) -> RunResult:
        r, rec = self.r, self.rec
        self.agent = rec.agent = await r._agent(self.wd, rec.run)
        res = await r.kernel.syscall(self.agent, "proc.spawn", {
            "kind": "run", "spec": {"title": short(self.request, 80), "request": self.request},
            "priority": r.priority})
        if res.ok:
            self.parent = rec.pid = res.value.get("pid")
        else:
            rec.notes.append(f"no run process: {res.error}")
        self.ctx = r._ctx(self.wd, self.agent)
        self.ws = Workspace.scan(self.wd, r.clock())
        self.moments = Moments.of(self.request, self.ws.now)
        rights = (f"read and write files in the workspace only; network {'yes' if r.network else 'no'}; "
                  "deleting, overwriting, moving and running code ask the person first.")
        rec.facts = self.ws.lines(self.request, rights)
        self.ws.memory = rec.memory = await recall.recall_lines(r.kernel, self.agent, self.request, r.user,
                                                                      workdir=str(self.wd))
        self.planner = Planner(
            r.registry,
            lambda m, s, n, t, p: r._generate(self.agent, self.parent, rec.llm_calls, m, s, n, t, p),
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
        rec.timings["plan"] = round(time.monotonic() - t0, 3)
        if plan.ask:
            answer = await r.ask(plan.ask) if r.ask is not None else None
            if not answer:
                raise _Stop(RunStatus.FAILED, f"I need to know more: {plan.ask}")
            rec.asked = {"question": plan.ask, "answer": answer}     # the person's words: remembered
            plan = await self._plan(f"{self.request}\n(Asked: {plan.ask} Answer: {answer})")
            if plan.ask:
                raise _Stop(RunStatus.FAILED, f"I still cannot tell what to do: {plan.ask}")
        if plan.refuse:
            raise _Stop(RunStatus.FAILED, f"I can't do that here: {plan.refuse}")
        if r.store is not None:
            rec.habits = feedback.apply_habits(plan, self.ws, self.request,
                                                  feedback.active_habits(r.store, r.user), r.registry)
            if r.store.is_blocked(self.request, plan.to_dict()):
                raise _Stop(RunStatus.FAILED, "The plan I made is one you rated bad for this request; "
                                              "not running it.")
        self.plan = plan
        rec.plan = plan.to_dict()
        rec.examples = plan.examples
        rec.notes += plan.notes
        rec.deps = {str(k): v for k, v in plan.deps().items()}
        self.steps = list(plan.steps)
        self._record_steps(1)
        r.on_event("plan", {"steps": [s.to_dict() for s in rec.steps], "answer": plan.answer})
        if self.dry_run:
            raise _Stop(RunStatus.PLANNED, "Plan only (dry run): " + "; ".join(
                f"{i}. {s.tool}" for i, s in enumerate(rec.steps, 1)))
        await self._admit(1)
        await self._execute()
        leaves = [n for n in range(1, len(self.steps) + 1)
                  if not any(n in s.refs() for s in self.steps[n:])]
        answer = fill_answer(self.plan.answer, self.outputs, self.summaries, leaves)
        if not answer.strip():
            answer = "Done." if not self.outputs else render_value(self.outputs[max(self.outputs)])[:500]
        missing = self._not_made()
        if missing:
            answer += (f"\nNot done: the request names {', '.join(missing)}, which this run did not "
                       "create.")
            rec.notes.append(f"named but not created: {', '.join(missing)}")
        return await self.finish(RunStatus.SUCCEEDED, answer)

    def _not_made(self) -> list[str]:
        """The files the request names that neither stood in the workspace when the run
        began nor stand there now: a part of the request the plan left undone."""
        before = {p.rstrip("/").lower() for p in self.ws.paths}
        wanted = [n for n in named_files(self.request)
                  if not n.startswith("/") and ".." not in n.split("/") and n.lower() not in before]
        if not wanted:
            return []
        have: set[str] = set()       # every path and file name now (an "index.txt inside backup")
        for n, (root, dirs, files) in enumerate(os.walk(self.wd)):
            if n > NAMED_WALK_DIRS:
                return []                # too big to tell: say nothing rather than guess
            rel = os.path.relpath(root, self.wd)
            for f in [*files, *dirs]:
                path = f if rel == "." else posixpath.join(rel, f)
                have.update((path.lower(), f.lower()))
        return [n for n in wanted if n.lower() not in have]

    async def _plan(self, request: str) -> Plan:
        try:
            return await self.planner.plan(request, self.ws)
        except PlanError as e:
            raise _Stop(RunStatus.FAILED, f"I could not make a valid plan for this request ({e.message}).") from None

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
                raise _Stop(RunStatus.DENIED, f"Denied: {out['error']}")
        risky = []
        for i, s in enumerate(new, first):
            risk = Risk[self._srec(i).risk.upper()]
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
                self._srec(i).status = StepStatus.NEEDS_CONFIRMATION
            names = ", ".join(f"step {i} ({s.tool}, {risk.name.lower()})" for i, s, risk in risky)
            raise _Stop(RunStatus.NEEDS_CONFIRMATION, f"Nothing was done: {names} needs your approval; "
                                              "re-run with --yes to approve." if first == 1 else
                        f"Stopped: the revised plan's {names} needs your approval; re-run with --yes.")
        for i, s, risk in risky:
            if not await r.confirm(i, s, risk):
                self._srec(i).status = StepStatus.NEEDS_CONFIRMATION
                raise _Stop(RunStatus.NEEDS_CONFIRMATION, f"Nothing more was done: you did not approve step {i} ({s.tool}).")
            self.approved[i] = risk

    async def _recheck(self, i: int, step: Step, args: dict) -> None:
        """Checks on the filled-in call, just before it runs."""
        r, ctx = self.r, self.ctx
        try:
            notes = self.moments.check_args(step.tool, args)
        except WhenError as e:
            raise _Stop(RunStatus.FAILED, f"Stopped before step {i} ({step.tool}): {e.message}. "
                                          + (e.hint or "")) from None
        self.rec.notes += [f"step {i}: {n}" for n in notes]
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
            self._srec(i).status = StepStatus.NEEDS_CONFIRMATION
            raise _Stop(RunStatus.NEEDS_CONFIRMATION, f"Stopped before step {i} ({step.tool}): you did not "
                                                      "approve it.")
        if self.yes and not guards:
            self.approved[i] = risk
            return
        self._srec(i).status = StepStatus.NEEDS_CONFIRMATION
        raise _Stop(RunStatus.NEEDS_CONFIRMATION, f"Stopped before step {i} ({step.tool}): {why}. Nothing "
                                                  "from this step on was done; approve it in `llmos shell`, "
                                                  "or re-run with --yes-all.")

    # ── steps ───────────────────────────────────────────────────────────────
    async def _execute(self) -> None:
        r = self.r
        i = 1
        while True:
            while i <= len(self.steps):
                step = self.steps[i - 1]
                r.on_event("step", {"index": i, "tool": step.tool, "status": StepStatus.RUNNING})
                out = await self._run_step(i, step)
                srec = self._srec(i)
                r.on_event("step", {"index": i, "tool": step.tool, "status": srec.status,
                                    "summary": srec.summary})
                if out.get("denied"):
                    raise _Stop(RunStatus.DENIED, f"Denied: {out['error']}")
                if out.get("confirm"):
                    raise _Stop(RunStatus.NEEDS_CONFIRMATION, f"Stopped before step {i} ({step.tool}): "
                                                              f"{out['error']}; re-run with --yes to approve.")
                if out.get("error"):
                    i = await self._revise(i, f"$step{i} ({step.tool}) failed: {out['error']}", failed=True)
                    continue              # the revision's first step
                if "output" in out:
                    self.outputs[i] = out["output"]
                    self.summaries[i] = out.get("summary", "")
                i += 1
            if not self.plan.more and not self.finishing and self.rec.revisions < MAX_REVISIONS:
                missing = self._not_made()
                if missing:               # observe: the plan ran but left a named file unmade
                    self.finishing = True
                    try:
                        nxt = await self._revise(
                            i, f"The request names {', '.join(missing)}, which no step has written yet: "
                               "add the steps that write it from the results above.", failed=False,
                            names_checked=False)      # this revision is that question: asked once
                    except _Stop as stop:
                        if stop.status is not RunStatus.FAILED:
                            raise         # a new step waits for the person's yes, or was denied
                        return            # no plan for the rest: the answer says what is not done
                    if nxt <= len(self.steps):
                        i = nxt
                        continue
                    return
            if not self.plan.more or self.rec.revisions >= MAX_REVISIONS:
                return
            self.plan.more = False
            i = await self._revise(i, "The plan asked to see these results before planning the rest.",
                                   failed=False)
            if i > len(self.steps):
                return

    async def _revise(self, i: int, why: str, *, failed: bool, names_checked: bool = True) -> int:
        """Re-plan after steps 1..i-1 ran (and step ``i`` failed, when ``failed``); returns
        the number of the first step to run next. The model writes the whole plan again;
        its leading steps that are the same as ones that ran well keep their results."""
        rec = self.rec
        done = "; ".join(v for v in self.summaries.values() if v)
        if rec.revisions >= MAX_REVISIONS:
            head = f"Step {why[5:]}" if failed else "The plan did not finish within its revisions."
            raise _Stop(RunStatus.FAILED, f"{head} (after {MAX_REVISIONS} revisions)"
                        + (f". Done before it: {done}" if done else ""))
        rec.revisions += 1
        ran = [(s, self.outputs.get(n), "skipped" if n in self.skipped else "ok")
               for n, s in enumerate(self.steps[:i - 1], 1)]
        if failed:
            ran.append((self.steps[i - 1], None, "failed: " + str(self._srec(i).error or "")[:300]))
        self.r.on_event("planning", {"request": self.request, "revision": rec.revisions})
        t0 = time.monotonic()
        try:
            new = await self.planner.revise(self.request, self.ws, ran, why, self.plan,
                                            names_checked=names_checked)
        except PlanError as e:
            raise _Stop(RunStatus.FAILED, f"Step {why[5:]}; I could not repair the plan ({e.message})."
                        if failed else f"I could not plan the rest ({e.message}).") from None
        rec.timings[f"revision {rec.revisions}"] = round(time.monotonic() - t0, 3)
        if new.refuse or new.ask:
            if failed:
                raise _Stop(RunStatus.FAILED, f"Step {why[5:]}. {new.refuse or new.ask}")
            self.plan.more = False
            return len(self.steps) + 1
        keep = 0                              # leading steps unchanged and run well: results stay
        while (keep < min(len(new.steps), i - 1) and _same(new.steps[keep], self.steps[keep])
               and keep + 1 in self.outputs):
            keep += 1
        if not failed and keep == len(new.steps):
            self.plan.more = False            # nothing new: the plan is done
            return len(self.steps) + 1
        rec.replaced = (rec.replaced or []) + rec.steps[keep:]
        for n in [n for n in self.outputs if n > keep]:
            self.outputs.pop(n)
            self.summaries.pop(n, None)
        self.skipped = {n for n in self.skipped if n <= keep}
        self.steps = self.steps[:keep] + new.steps[keep:]
        rec.notes.append(f"revision {rec.revisions}: {why} -> kept {keep} step(s), then "
                         + ", ".join(s.tool for s in new.steps[keep:]))
        rec.notes += new.notes
        self.plan = Plan(self.request, self.steps, new.answer or self.plan.answer, "revised",
                         self.plan.examples, more=new.more)
        for n in range(keep + 1, len(self.steps) + 1):
            self.approved.pop(n, None)
        self._record_steps(keep + 1)
        self.r.on_event("plan", {"steps": [s.to_dict() for s in rec.steps], "answer": self.plan.answer,
                                 "revision": rec.revisions})
        await self._admit(keep + 1)
        return keep + 1

    async def _run_step(self, i: int, step: Step) -> dict[str, Any]:
        srec = self._srec(i)
        reads = step.refs()
        if reads & self.skipped:
            self.skipped.add(i)
            srec.status = StepStatus.SKIPPED
            return {"skipped": True}
        try:
            if step.when is not None and not step.when.holds(self.outputs):
                self.skipped.add(i)
                srec.update(status=StepStatus.SKIPPED, summary="its condition does not hold")
                return {"skipped": True}
            if step.each:
                return await self._run_each(i, step)
            args = self.r.coerce(step.tool, substitute(step.args, self.outputs))
        except Unresolved as e:
            srec.update(status=StepStatus.FAILED, error=f"a reference names a missing field: {e}")
            return {"error": srec.error}
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
            self.rec.notes.append(f"step {i}: {len(items)} items, only the first {MAX_EACH_ITEMS} done")
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
        srec.update(status=StepStatus.SUCCEEDED, summary="; ".join(summaries)[:500],
                    output=short(results, OUTPUT_KEEP_CHARS))
        return {"output": results, "summary": "\n".join(summaries)}

    async def _call(self, i: int, step: Step, args: dict, *, confirmed: bool, record: bool = True) -> dict[str, Any]:
        if step.tool == LLM_TOOL:
            return await self._llm(i, args, record)
        r, rec = self.r, self.rec
        srec = self._srec(i)
        if record:
            srec.args = args
        call = {"tool": step.tool, "args": args, "workdir": str(self.wd), "confirmed": confirmed,
                "idempotency_key": f"{rec.run}:{i}:{hashlib.sha1(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()[:8]}",
                "priority": r.priority}
        if self.parent is not None:
            call["parent"] = self.parent
        t0 = time.monotonic()
        res = await r.kernel.syscall(self.agent, "tool.call", call)
        srec.seconds = round((srec.seconds or 0.0) + time.monotonic() - t0, 4)
        if res.ok:
            v = res.value or {}
            srec.pids.append(v.get("pid"))
            self.made.update(f for f in v.get("files") or [] if isinstance(f, str))
            if record:
                srec.update(status=StepStatus.SUCCEEDED, summary=v.get("summary", ""),
                            output=short(v.get("output"), OUTPUT_KEEP_CHARS), files=v.get("files", []))
            return {"output": v.get("output"), "summary": v.get("summary", "")}
        err = res.error
        msg = getattr(err, "reason", None) or (err.message if err else "unknown error")
        if isinstance(err, (PermissionDenied, QuotaExceeded)):
            srec.update(status=StepStatus.DENIED, error=msg)
            return {"denied": True, "error": msg}
        if isinstance(err, NeedsConfirmation):
            srec.update(status=StepStatus.NEEDS_CONFIRMATION, error=msg)
            return {"confirm": True, "error": msg}
        srec.update(status=StepStatus.FAILED, error=err.message if err else msg)
        return {"error": srec.error}

    async def _llm(self, i: int, args: dict, record: bool) -> dict[str, Any]:
        """An ``llm`` step: the model on a text, as an ``llm.generate`` syscall of the run."""
        if llmtool.table_mode(args):
            return await self._llm_table(i, args, record)
        srec = self._srec(i)
        texts = args.get("text")
        many = isinstance(texts, list)
        outs = []
        t0 = time.monotonic()
        for text in (texts if many else [texts])[:MAX_EACH_ITEMS]:
            one = {**args, "text": text if isinstance(text, str) or text is None else render_value(text)}
            messages, schema, n = llmtool.request_for(one)
            try:
                reply = await self.r._generate(self.agent, self.parent, self.rec.llm_calls, messages,
                                               schema, n, 0.0)
            except LLMOSError as e:
                srec.update(status=StepStatus.FAILED, error=e.message)
                return {"error": e.message}
            outs.append(llmtool.result(one, reply))
        srec.seconds = round((srec.seconds or 0.0) + time.monotonic() - t0, 4)
        output: Any = outs if many else (outs[0] if outs else "")
        summary = f"llm {args.get('task')}: {short(render_value(output), 160)}"
        view = llmtool.write_view(args, render_value(output).rstrip("\n") + "\n")
        return await self._llm_done(i, args, record, output, summary,
                                    None if view is None else (llmtool.SAVE_TOOL, view))

    async def _llm_table(self, i: int, args: dict, record: bool) -> dict[str, Any]:
        """An ``llm`` step in table mode: the task once per row on ``column``'s text, the
        results as ``new_column``; the table is read and written through the kernel
        (``data.load``, ``data.write``) like any tool step."""
        srec = self._srec(i)
        path, task = args["path"], args.get("task", "write")

        def fail(msg: str) -> dict[str, Any]:
            srec.update(status=StepStatus.FAILED, error=msg)
            return {"error": msg}
        load = {"path": path, "rows": llmtool.TABLE_MAX_ROWS}
        got = await self._call(i, Step("data.load", load), load, confirmed=True, record=False)
        if "output" not in got:
            return got
        table = got["output"] or {}
        columns = [str(c) for c in table.get("columns") or []]
        if int(table.get("rows") or 0) > llmtool.TABLE_MAX_ROWS:
            return fail(f"{path} has {table['rows']} rows; an llm step works on at most "
                        f"{llmtool.TABLE_MAX_ROWS} rows of a table")
        col = args["column"] if args["column"] in columns else resolve_column(args["column"], columns)
        if col is None:
            return fail(f"column: {path} has no column {args['column']!r} (it has {', '.join(columns)})")
        name = args.get("new_column") or ("label" if task == "classify" else task)
        rows = [dict(r) for r in table.get("head") or []]
        t0 = time.monotonic()
        for row in rows:
            one = {**args, "text": render_value(row.get(col, ""))}
            messages, schema, n = llmtool.request_for(one)
            try:
                reply = await self.r._generate(self.agent, self.parent, self.rec.llm_calls, messages,
                                               schema, n, 0.0)
            except LLMOSError as e:
                return fail(e.message)
            row[name] = llmtool.result(one, reply)
        srec.seconds = round((srec.seconds or 0.0) + time.monotonic() - t0, 4)
        values = [r[name] for r in rows]
        output = {"rows": rows, "values": values, "column": name, "count": len(rows)}
        summary = f"llm {task} on {len(rows)} rows of {path}: {name} " + short(", ".join(map(str, values)), 120)
        save = (llmtool.TABLE_SAVE_TOOL, {"path": args["save_to"], "rows": rows}) if args.get("save_to") else None
        return await self._llm_done(i, args, record, output, summary, save)

    async def _llm_done(self, i: int, args: dict, record: bool, output: Any, summary: str,
                        save: tuple[str, dict] | None) -> dict[str, Any]:
        """An ``llm`` step's end: its ``save_to`` written by ``save`` (tool, args) through the
        kernel like any tool step (a refused or failed write fails the step), then recorded."""
        srec = self._srec(i)
        saved: list[str] = []
        if save is not None:
            tool, w = save
            wrote = await self._call(i, Step(tool, w), w, confirmed=True, record=False)
            if "output" not in wrote:        # the write was refused or failed: the step did not do it
                if record:
                    srec.args = args
                return wrote
            saved = [w["path"]]
            summary += f"; saved to {w['path']}"
        if record:
            srec.update(status=StepStatus.SUCCEEDED, summary=summary, output=short(output, OUTPUT_KEEP_CHARS),
                        args=args, **({"files": saved} if saved else {}))
        return {"output": output, "summary": summary}


def _same(a: Step, b: Step) -> bool:
    return (a.tool, a.args, a.each, a.when and a.when.to_dict()) == (b.tool, b.args, b.each,
                                                                   b.when and b.when.to_dict())
