"""Planner: a plain-language request -> a checked ``Plan`` the model wrote.

Map:
- ``Generate``: the planner's only door to a model, ``await generate(messages, schema,
  max_tokens, temperature, prefix_messages) -> text``; the runner binds it to the
  ``llm.generate`` syscall of the run's agent.
- ``Planner(registry, generate, store=..., allow_ask=...)``:
  ``await plan(request, workspace)`` -> Plan; ``await revise(request, workspace, done,
  why)`` -> the plan for what is left after some steps ran (a repair when one failed).
- ``check_plan(plan, registry, workspace, offset)``: every tool exists, every argument
  fits its schema (references aside), references point backwards, programs compile,
  answer text states no number the request did not; names are resolved to the files
  and columns the workspace has (noted); anything else raises PlanError.
- ``parse_model_output(text)``: the first JSON object in the text, or PlanError.

NOTE (how the model plans). The prompt is a fixed prefix, the same for every request
(the rules of the plan language, one line per tool with its arguments and output
shape, and a few worked examples) kept in the engine's prefix cache and on disk, then
the person's approved plans most like this request, then the context block (today,
the agent's rights, the file tree with sizes, each table's columns and first rows) and
the request. The reply is constrained by one JSON schema generated from the whole
registry (``schema.plan_schema``): any tool, any number of steps up to ``MAX_STEPS``,
each tool's arguments checked by its own schema, or a refusal. Examples teach, they
never narrow the schema. A plan that fails the checks is made once more with the
reason appended; after steps run, ``revise`` shows the model their outputs (and the
error of a failed step) and takes the plan for the rest in the same schema.
"""

from __future__ import annotations

import ast
import json
import posixpath
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from llmos.errors import InvalidArgument, LLMOSError, NotFound
from llmos.shell import llmtool, shapes
from llmos.shell import schema as S
from llmos.shell.context import Workspace
from llmos.shell.named import named_files, strings, unused_names
from llmos.shell.normalize import canon_number, numbers, resolve_column, resolve_path
from llmos.shell.plan import LLM_TOOL, REF_RE, Plan
from llmos.types import Message

__all__ = ["Planner", "Generate", "check_plan", "parse_model_output", "PlanError", "load_examples",
           "SYSTEM", "tool_line", "named_files", "unused_names", "UnusedNames", "copied_refusal"]

# (messages, schema, max_tokens, temperature, prefix_messages) -> text
Generate = Callable[[list[Message], dict | None, int, float, int], Awaitable[str]]

PLAN_MAX_TOKENS = 900       # a plan of several steps with a short program in it
APPROVED_SHOWN = 2          # the person's approved plans shown per request
OUTPUT_SHOWN_CHARS = 600    # of each step's output, when the model revises
RETRY_TEMPERATURE = 0.7     # the last try, when the model repeated a plan that failed the checks

SYSTEM = """You are the planner of LLM OS. Turn the person's request into a JSON plan of tool calls.
- Use only the tools below and the files and columns in the context. Paths are relative to the workspace.
- A step can use an earlier step's output: "$step1.output" or a field like "$step1.output.rows" \
or "$step2.output.value"; inside text, "$step1.output.text" is replaced by that value.
- "each": "$stepN.output.LIST" runs the step once per element; "$item" or "$item.name" is the element.
- "when": {"ref": "$stepN.output.FIELD", "op": ">", "value": 0} runs the step only if that holds.
- The "llm" tool works on text you give it: read a file first and pass "$stepN.output.text".
- A tool with "save_to" changes a file only when save_to is given; to change a file in place, \
set save_to to the file itself.
- "answer" is the reply to the person. Put results in it with $stepN.output references; \
never write a number you have not computed.
- Only delete, move or overwrite files the request names. Do only what was asked.
- If no tool can do what was asked, reply {"refuse": "one sentence why"}."""


class PlanError(InvalidArgument):
    """The model's output could not be turned into a valid plan."""


class UnusedNames(PlanError):
    """A plan that is valid but uses none of some files the request names (``missed``);
    ``plan`` is that plan, checked in every other way."""

    def __init__(self, missed: list[str], plan: Plan) -> None:
        super().__init__(f"the request names {', '.join(missed)}, but no step uses "
                         f"{'it' if len(missed) == 1 else 'them'}", field="steps",
                         expected="a plan that does every part of the request")
        self.missed = missed
        self.plan = plan


@dataclass(frozen=True)
class Example:
    id: str
    context: list[str]
    request: str
    plan: dict[str, Any]


def load_examples() -> list[Example]:
    """The fixed worked examples: ``examples/plans.json`` first, then every other
    ``examples/*.json`` by name (a tool's own example lives beside it in its own file)."""
    folder = resources.files("llmos.shell").joinpath("examples")
    names = sorted(f.name for f in folder.iterdir() if f.name.endswith(".json") and f.name != "plans.json")
    raw = [e for n in ["plans.json", *names] for e in json.loads(folder.joinpath(n).read_text())]
    return [Example(e["id"], e["context"], e["request"], e["plan"]) for e in raw]


def tool_line(t: dict) -> str:
    props = t["parameters"].get("properties", {})
    req = t["parameters"].get("required", [])
    args = ", ".join(p if p in req else f"{p}?" for p in props)
    enums = "; ".join(f"{p}: {'|'.join(map(str, v['enum']))}" for p, v in props.items()
                      if isinstance(v, dict) and "enum" in v and len(v["enum"]) <= 8)
    line = f"- {t['name']}({args}): {t['description']}"
    if enums:
        line += f" [{enums}]"
    if t.get("returns"):
        line += f" -> {t['returns']}"
    return line


def parse_model_output(text: str) -> Any:
    """The first complete JSON object in ``text``; PlanError when there is none."""
    start = text.find("{")
    if start < 0:
        raise PlanError("plan: the model wrote no JSON object", field="plan", expected="a JSON object")
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as e:
        raise PlanError(f"plan: the model's JSON is malformed ({e.msg} at {e.pos})", field="plan",
                        expected="a complete JSON object") from None
    return obj


def _concrete(args: dict) -> tuple[dict, set[str]]:
    """Args without the ones that hold references, and the names left out."""
    keep, refs = {}, set()
    for k, v in args.items():
        if REF_RE.search(json.dumps(v)):
            refs.add(k)
        else:
            keep[k] = v
    return keep, refs


def _column_args(tool: dict) -> list[str]:
    props = tool["parameters"].get("properties", {})
    out = []
    for n, p in props.items():
        desc = str(p.get("description", "")).lower()
        if p.get("type") == "string" and "column" in desc and "new" not in desc and "enum" not in p:
            out.append(n)
    return out


def check_plan(plan: Plan, registry: Any, ws: Workspace | None = None, offset: int = 0,
               strict_fields: bool = True, strict_names: bool | None = None) -> Plan:
    """Validate against the registry; repair what is safe to repair (noted), else raise.
    ``strict_fields``: a reference to a field its tool does not return raises; otherwise
    it is noted (the step fails at run time and the model revises it with the real
    outputs in view) and such an answer template is dropped."""
    import jsonschema

    tools = {t["name"]: t for t in registry.schemas()}
    tools[LLM_TOOL] = llmtool.SCHEMA
    for i, step in enumerate(plan.steps, offset + 1):
        t = tools.get(step.tool)
        if t is None:
            raise PlanError(f"steps[{i}].tool: no tool named {step.tool!r}", field=f"steps[{i}].tool",
                            expected="a registered tool")
        props = t["parameters"].get("properties", {})
        unknown = [k for k in step.args if k not in props]
        for k in unknown:   # repair: drop arguments the tool does not take
            step.args.pop(k)
        if unknown:
            plan.notes.append(f"step {i}: dropped unknown argument(s) {', '.join(unknown)}")
        if ws is not None:
            _normalize(plan, i, step, t, registry, ws)
        concrete, refs = _concrete(step.args)
        v = jsonschema.Draft202012Validator(dict(t["parameters"]))
        for err in v.iter_errors(concrete):
            if err.validator == "required" and all(r in refs for r in err.validator_value if r not in concrete):
                continue
            where = ".".join(str(p) for p in err.absolute_path) or "args"
            raise PlanError(f"steps[{i}].args.{where}: {err.message}", field=f"steps[{i}].args.{where}",
                            expected="a value that fits the tool's schema")
        if step.tool == "data.write" and step.args.get("rows") in ([], {}):
            raise PlanError(f"steps[{i}].args.rows: no rows to write; give an earlier step's rows "
                            "($stepN.output.rows), or convert a table with data.load and save_to",
                            field=f"steps[{i}].args.rows", expected="rows from an earlier step")
        bare = _bare_number(step)
        if bare is not None and canon_number(bare) not in numbers(plan.request):
            raise PlanError(f"steps[{i}].args.expression: {bare} is a number no tool computed and the request "
                            "does not state; compute it from the files with a tool, or write the arithmetic",
                            field=f"steps[{i}].args.expression", expected="arithmetic over known numbers")
        code = _program(step)
        if code is not None:
            try:
                ast.parse(code)
            except SyntaxError as e:
                raise PlanError(f"steps[{i}]: the Python program does not compile (line {e.lineno}: {e.msg})",
                                field=f"steps[{i}].args", expected="a program that compiles") from None
    try:
        plan.check_refs(offset)
    except PlanError:
        raise
    except InvalidArgument as e:
        raise PlanError(e.message, field=e.field, expected=e.expected) from None
    wrong = _check_shapes(plan, tools, offset) + _check_overwrites(plan, registry, offset)
    if wrong and strict_fields:
        where, msg = wrong[0]
        raise PlanError(msg, field=where, expected="a field the step's tool returns")
    for where, msg in wrong:
        plan.notes.append(f"unchecked reference: {msg}")
        if where == "answer":
            plan.answer = ""
    _check_answer(plan)
    if ws is not None:
        missed = unused_names(plan, ws)
        if missed and (strict_fields if strict_names is None else strict_names):
            raise UnusedNames(missed, plan)
        if missed:
            plan.notes.append(f"the plan uses none of {', '.join(missed)}, which the request names")
    return plan


def _check_shapes(plan: Plan, tools: dict[str, dict], offset: int = 0) -> list[tuple[str, str]]:
    """Every reference names a field its step's tool returns (the registry's ``returns``
    lines; a tool without one is not checked), and ``$item.field`` a field of the list's
    elements. The reason names the fields there are and the tools that have the one
    asked for, so the model's second try can mend it."""
    parsed = {name: shapes.parse(t.get("returns")) for name, t in tools.items()}
    wrong: list[tuple[str, str]] = []

    def step_shape(n: int) -> tuple[Any, Any] | None:
        k = n - offset - 1
        if not 0 <= k < len(plan.steps):
            return None                          # a step that already ran: its output is real
        st = plan.steps[k]
        shape = parsed.get(st.tool)
        return (st, shape) if shape is not None else None

    def check(text: str, where: str, item: Any) -> None:
        for m in REF_RE.finditer(text):
            path = [p for p in m.group(3).split(".") if p]
            if m.group(2):                       # $item
                if item is None or item is shapes.ANY:
                    continue
                bad, what = shapes.check_ref(item, path), "each element"
            else:
                found = step_shape(int(m.group(1)))
                if found is None:
                    continue
                st, shape = found
                bad = shapes.check_ref(shape, path, each=st.each is not None)
                what = f"step {m.group(1)} ({st.tool}) output"
            if bad:
                key, why = bad
                have = [] if m.group(2) else shapes.providers(parsed, key)
                hint = f"; {key!r} comes from {', '.join(have)}" if 0 < len(have) <= 3 else ""
                wrong.append((where, f"{where}: {m.group(0)}: {what} {why}{hint}"))

    for i, st in enumerate(plan.steps, offset + 1):
        item = None
        if st.each:
            m = REF_RE.fullmatch(st.each)
            found = step_shape(int(m.group(1))) if m and m.group(1) else None
            if found is not None:
                path = [p for p in m.group(3).split(".") if p]
                check(st.each, f"steps[{i}].each", None)
                item = shapes.item_of(found[1], path, each=found[0].each is not None)
        for text in strings(st.args):
            check(text, f"steps[{i}].args", item)
        if st.when is not None:
            for text in [st.when.ref, *strings(st.when.value)]:
                check(text, f"steps[{i}].when", None)
    check(plan.answer or "", "answer", None)
    return wrong


def _literal(args: dict, arg: str) -> str | None:
    v = args.get(arg)
    return posixpath.normpath(v) if isinstance(v, str) and v and not REF_RE.search(v) else None


def _check_overwrites(plan: Plan, registry: Any, offset: int = 0) -> list[tuple[str, str]]:
    """A file one step replaces must not be replaced again before anything read it
    (the first result would be lost), and a step repeated over a list must not replace
    the same file on every pass (only the last pass would stay). Which arguments
    replace a file is the tool's own fact (``overwrite_risk``); paths with references
    are not checked."""
    wrong: list[tuple[str, str]] = []
    last: dict[str, int] = {}
    for i, st in enumerate(plan.steps, offset + 1):
        if st.tool == LLM_TOOL and (view := llmtool.write_view(st.args)) is not None:
            st = type(st)(llmtool.SAVE_TOOL, view, st.reason, st.each, st.when)
        try:
            tool = registry.get(st.tool)
        except (NotFound, LLMOSError):
            continue
        reads = {p for arg, mode in dict(tool.path_args).items() if mode == "r" and (p := _literal(st.args, arg))}
        for p in reads:
            last.pop(p, None)
        for arg in getattr(tool.risk_fn, "overwrites", ()):
            p = _literal(st.args, arg)
            if p is None:
                continue
            if st.each and p not in reads:
                wrong.append((f"steps[{i}].args.{arg}", f"steps[{i}].args.{arg}: the step runs once per "
                              f"element and replaces {p} every time, so only the last pass would stay; "
                              "put $item in the name, or write all results in one step"))
            elif p in last:
                wrong.append((f"steps[{i}].args.{arg}", f"steps[{i}].args.{arg}: step {last[p]} already "
                              f"writes {p} and nothing reads it in between, so this step would replace "
                              "that result; write it once (one step over a pattern, or collect first)"))
            last[p] = i
    return wrong


def _bare_number(step: Any) -> str | None:
    """A calculator step whose expression is one literal number: a result the model wrote."""
    expr = step.args.get("expression") if step.tool == "calc.eval" else None
    if isinstance(expr, str) and re.fullmatch(r"\s*-?\d[\d,]*(?:\.\d+)?\s*", expr):
        return expr.strip()
    return None


def _program(step: Any) -> str | None:
    if step.tool == "python.run" and isinstance(step.args.get("code"), str):
        code = step.args["code"]
    elif (step.tool == "files.write" and str(step.args.get("path", "")).endswith(".py")
          and isinstance(step.args.get("content"), str)):
        code = step.args["content"]
    else:
        return None
    return None if REF_RE.search(code) else code


def _normalize(plan: Plan, i: int, step: Any, t: dict, registry: Any, ws: Workspace) -> None:
    """Names the model wrote -> the existing file or column they mean (noted)."""
    try:
        path_args = dict(registry.get(step.tool).path_args)
    except (NotFound, LLMOSError):
        path_args = dict(llmtool.PATH_ARGS) if step.tool == LLM_TOOL else {}
    for arg, mode in path_args.items():
        v = step.args.get(arg)
        if mode == "r" and isinstance(v, str) and not REF_RE.search(v):
            fixed = resolve_path(v, ws.paths)
            if fixed and fixed != v:
                step.args[arg] = fixed
                plan.notes.append(f"step {i}: {arg} {v!r} is the workspace's {fixed!r}")
    cols = ws.columns
    if cols:
        for arg in _column_args(t):
            v = step.args.get(arg)
            fixed = resolve_column(v, cols) if isinstance(v, str) and not REF_RE.search(v) else None
            if fixed:
                step.args[arg] = fixed
                plan.notes.append(f"step {i}: column {v!r} is {fixed!r}")


def _check_answer(plan: Plan) -> None:
    """The answer template states no number of its own: numbers come from tool outputs
    (references) or the request's own words. A template that does is dropped (noted):
    the runner then words the answer from the outputs."""
    text = REF_RE.sub(" ", plan.answer)
    stated = numbers(plan.request)
    invented = [m for m in re.findall(r"(?<![\w.])\d+(?:[.,]\d+)*", text) if canon_number(m) not in stated]
    if invented:
        plan.notes.append(f"answer template dropped: it stated {', '.join(invented[:3])}, "
                          "which no tool computed and the request did not say")
        plan.answer = ""


_NOT_TOPICAL = {"tool", "tools", "here", "only", "work", "with", "files", "file", "folder", "this", "that",
                "cannot", "there", "which", "would", "could", "from", "into", "your", "have", "does", "these"}


def _stems(text: str) -> set[str]:
    """The topical words of a sentence, cut to five letters (order/orders, email/emails)."""
    return {w[:5] for w in re.findall(r"[a-z]{4,}", text.lower()) if w not in _NOT_TOPICAL}


def copied_refusal(reason: str, request: str, examples: list[Example]) -> Example | None:
    """The worked example whose refusal ``reason`` repeats, when the reason's first clause
    shares no topical word with ``request``: the model copied it rather than saying why
    this request cannot be done."""
    head = _stems(reason.split(";")[0])
    if not head or head & _stems(request):
        return None
    for e in examples:
        theirs = _stems(str(e.plan.get("refuse", "")).split(";")[0])
        if theirs and len(head & theirs) >= 0.6 * len(head) and e.request.strip() != request.strip():
            return e
    return None


def _shown(output: Any) -> str:
    s = output if isinstance(output, str) else json.dumps(output, default=str)
    return s if len(s) <= OUTPUT_SHOWN_CHARS else s[:OUTPUT_SHOWN_CHARS - 1] + "…"


def _words(s: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]{3,}", s.lower())}


class Planner:
    """Plans requests; see the module map and the NOTE above."""

    def __init__(self, registry: Any, generate: Generate, *, store: Any = None, allow_ask: bool = False,
                 examples: list[Example] | None = None, rights: str = "",
                 max_tokens: int = PLAN_MAX_TOKENS, temperature: float = 0.0) -> None:
        self.registry = registry
        self.generate = generate
        self.store = store
        self.allow_ask = allow_ask
        self.rights = rights
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.tools = [*registry.schemas(), llmtool.SCHEMA]
        names = {t["name"] for t in self.tools}
        self.examples = [e for e in (examples if examples is not None else load_examples())
                         if all(s["tool"] in names for s in e.plan.get("steps", []))]
        self.schema = S.plan_schema(self.tools, allow_ask=allow_ask)

    # ── the prompt ─────────────────────────────────────────────────────────────
    def prefix(self) -> list[Message]:
        """The fixed part: the same for every request (cached by the engine)."""
        system = SYSTEM + "\n\nTools:\n" + "\n".join(tool_line(t) for t in self.tools)
        msgs: list[Message] = [{"role": "system", "content": system}]
        for e in self.examples:
            msgs.append({"role": "user", "content": "\n".join([*e.context, f"Request: {e.request}"])})
            msgs.append({"role": "assistant", "content": json.dumps(e.plan, separators=(",", ":"))})
        return msgs

    def approved(self, request: str) -> list[tuple[str, dict, list[str]]]:
        """The person's approved plans most like ``request`` (shared words), best last."""
        if self.store is None:
            return []
        want = _words(request)
        scored = []
        for a in self.store.approved(200):
            try:
                Plan.from_dict(a["plan"])
            except InvalidArgument:
                continue
            have = _words(a["request"])
            score = len(want & have) / (len(want | have) or 1)
            if score >= 0.3:
                scored.append((score, a))
        scored.sort(key=lambda p: p[0])
        return [(a["request"], a["plan"], a.get("facts") or []) for _, a in scored[-APPROVED_SHOWN:]]

    def messages(self, request: str, ws: Workspace) -> tuple[list[Message], list[str]]:
        msgs = self.prefix()
        shown = []
        for req, plan, facts in self.approved(request):
            msgs.append({"role": "user", "content": "\n".join([*facts, f"Request: {req}"])})
            msgs.append({"role": "assistant", "content": json.dumps(plan, separators=(",", ":"))})
            shown.append(req)
        msgs.append({"role": "user", "content": "\n".join([*ws.lines(request, self.rights),
                                                           f"Request: {request}"])})
        return msgs, shown

    # ── planning ───────────────────────────────────────────────────────────────
    async def plan(self, request: str, ws: Workspace) -> Plan:
        """Plan ``request``; raises PlanError when no valid plan comes out (after one retry)."""
        if not request.strip():
            raise InvalidArgument("request: expected a non-empty request", field="request",
                                  expected="what you want done, in plain words")
        msgs, shown = self.messages(request, ws)
        plan = await self._generate_checked(msgs, request, ws, 0)
        plan.examples = [f"approved: {r}" for r in shown]
        return plan

    async def revise(self, request: str, ws: Workspace, done: list[tuple[Any, Any, str]],
                     why: str, last_plan: Plan, *, names_checked: bool = True) -> Plan:
        """The whole plan again, in the light of what ran. ``done``: (step, output or None,
        status) of every step so far, in order; ``why``: the error of the failed step, or
        that the plan asked to see the outputs. The runner does not run again the leading
        steps that are unchanged and ran well: their results stay."""
        msgs, _ = self.messages(request, ws)
        msgs.append({"role": "assistant", "content": last_plan.to_json()})
        lines = ["What happened:"]
        for n, (step, out, status) in enumerate(done, 1):
            head = f"$step{n} {step.tool} {json.dumps(step.args, default=str)[:200]}"
            lines.append(f"{head} -> {status}" + (f": {_shown(out)}" if out is not None else ""))
        lines.append(why)
        lines.append("Reply with the whole plan again, corrected, from $step1. Steps that already ran "
                     "well and stay the same are not run again; their results stay.")
        msgs.append({"role": "user", "content": "\n".join(lines)})
        return await self._generate_checked(msgs, request, ws, 0, source="revised", names_checked=names_checked)

    async def _generate_checked(self, msgs: list[Message], request: str, ws: Workspace, offset: int,
                                source: str = "model", names_checked: bool = True) -> Plan:
        prefix_n = 1 + 2 * len(self.examples)
        last: PlanError | None = None
        partial: UnusedNames | None = None    # the first plan, valid but leaving out named files
        first = text = ""

        def keep(p: UnusedNames) -> Plan:
            p.plan.notes.append(f"kept the first plan; the one made again used no more of the named files "
                                f"({p.message})")
            return p.plan
        for attempt in range(3):
            # a third try only when the model said the same thing again, told why it was
            # wrong: greedy decoding will not leave that plan, so the last try samples
            if attempt == 2 and (text.strip() != first.strip() or self.temperature >= RETRY_TEMPERATURE):
                break
            temperature = RETRY_TEMPERATURE if attempt == 2 else self.temperature
            text = await self.generate(msgs, self.schema, self.max_tokens, temperature, prefix_n)
            if attempt == 0:
                first = text
            try:
                data = parse_model_output(text)
                try:
                    plan = Plan.from_dict(data, request, source=source, offset=offset)
                except PlanError:
                    raise
                except InvalidArgument as e:
                    raise PlanError(e.message, field=e.field, expected=e.expected) from None
                if plan.refuse and attempt == 0 and (e := copied_refusal(plan.refuse, request, self.examples)):
                    raise PlanError(f"plan.refuse: that reason is the worked example's for {e.request!r}, and it "
                                    "says nothing about this request; if the tools can do this request, reply "
                                    "with its plan, else refuse with the reason for this request",
                                    field="refuse", expected="a plan, or a refusal that fits this request")
                check_plan(plan, self.registry, ws, offset, strict_fields=attempt == 0,
                           strict_names=attempt == 0 and names_checked)
                if partial is not None and len(unused_names(plan, ws)) >= len(partial.missed):
                    return keep(partial)     # the retry dropped as much as it added
                if attempt:
                    how = " (sampled: the model repeated its plan)" if attempt == 2 else ""
                    plan.notes.append(f"planned again{how}: {last.message if last else ''}")
                return plan
            except PlanError as e:
                last = e
                if attempt == 0:
                    if isinstance(e, UnusedNames):
                        partial = e
                        e.plan.notes.append(f"the plan uses none of {', '.join(e.missed)}, which the request names")
                        ask = (f"That plan is not complete: {e.message}. Reply with the whole plan again: keep "
                               f"the steps that were right and add the steps for {', '.join(e.missed)}.")
                    else:
                        ask = f"That plan is not valid: {e.message}. Reply with a corrected plan."
                    msgs = [*msgs, {"role": "assistant", "content": text[:2000]},
                            {"role": "user", "content": ask}]
        if partial is not None:
            return keep(partial)             # the retries were worse than a plan that did part of it
        assert last is not None
        raise last

