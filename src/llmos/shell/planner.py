"""Planner: a plain-language request -> a checked ``Plan`` of tool calls.

Map:
- ``Generate``: the planner's only door to a model, ``await generate(messages, schema,
  max_tokens, temperature) -> text``; the runner binds it to the ``llm.generate`` syscall.
- ``Planner(registry, generate, library, store)``: ``await plan(request, workdir, user)``.
- ``check_plan(plan, registry)``: every tool exists, every argument fits its schema
  (references aside), references point backwards; repairs it may make are listed in
  ``plan.notes``; anything else raises InvalidArgument (the plan is never run).
- ``parse_model_output(text)``: the first JSON object in the text, or InvalidArgument.

NOTE (how a 135M model plans well enough). The request first goes through a
deterministic pre-pass (``extract``: file names, paths, patterns, quoted text,
arithmetic, durations, CSV columns and their kinds, cells and search words it names,
the column it asks for). Similar examples are retrieved (BM25 over the curated library
plus the person's approved plans, never the ones rated bad; named columns, cells and
search words fold to COLUMN/CELL/TERM) and weighed by how well their plans fit the
request's facts (``adapt.fit``); they are shown as few-shot turns, most similar last.
The examples' plans are the *skeletons* the model may choose from (a tool sequence and
the arguments each step sets): the JSON schema of the answer is an anyOf over them
(``prefixItems`` fixing each step's tool), each argument narrowed to the request's own
values of the role the example's value had (``adapt.role_overrides``), paths to those
the request names or the workspace holds, and answer text that may not hold digits
(numbers come from tool outputs through ``$stepN.output`` references). So the model
chooses the skeleton, fills the arguments and words the answer; the grammar makes
every plan parse and name only existing tools with valid arguments (a plan cut off by
the token limit is made once more with short text). References the model copied are
then pointed at what the request asks for (``adapt.adapt_refs``). Code arguments (a
Python program, a .py file's content) are written in a second, plain-text call with a
code prompt, and checked by compiling and for calls to names never defined (the
runner runs them in the sandbox when the plan does).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmos.errors import InvalidArgument, LLMOSError, NotFound
from llmos.shell import schema as S
from llmos.shell.adapt import adapt_refs, fit, role_overrides
from llmos.shell.examples import Example, Retriever, load_library
from llmos.shell.extract import Facts, extract
from llmos.shell.plan import REF_RE, Plan
from llmos.types import Message, Risk

__all__ = ["Planner", "Generate", "check_plan", "parse_model_output", "CODE_ARGS", "PlanError",
           "role_overrides", "undefined_calls"]

# (chat messages, or a plain prompt for completion) , schema, max_tokens, temperature -> text
Generate = Callable[[list[Message] | str, dict | None, int, float], Awaitable[str]]

TOP_K = 4                 # examples shown to the model (their skeletons are the choices)
NEAR_TIE = 0.6            # a skeleton is a choice only if its example scores >= this x the best
PLAN_MAX_TOKENS = 320     # a plan of a few steps, with reasons and answer
RETRY_MAX_TOKENS = 640    # the tight re-plan: every string short, so the longest plan fits
CODE_MAX_TOKENS = 300     # one small program
CODE_TRIES = 2            # code generations before giving up (greedy, then sampled)
# arguments that hold a program: (tool, argument) -> language
CODE_ARGS = {("python.run", "code"): "python", ("files.write", "content"): None}
CODE_PLACEHOLDER = "<code>"   # what the plan holds where a program goes; written by a second call


def _is_code_arg(tool: str, arg: str, args: dict) -> bool:
    if (tool, arg) not in CODE_ARGS:
        return False
    path = args.get("path")
    return tool != "files.write" or (isinstance(path, str) and path.endswith(".py"))


def _shown_plan(plan: dict) -> dict:
    """An example's plan as the model sees it: programs replaced by the placeholder."""
    steps = []
    for s in plan["steps"]:
        args = {k: (CODE_PLACEHOLDER if _is_code_arg(s["tool"], k, s.get("args", {})) else v)
                for k, v in s.get("args", {}).items()}
        steps.append({**s, "args": args})
    return {**plan, "steps": steps}

SYSTEM = ("You plan tool calls for a request. Reply with one JSON plan. Use only the facts "
          "given. A later step can use an earlier result as $step1.output or $step1.output.field. "
          "The answer is a short sentence; it takes every number from $stepN.output.")


class PlanError(InvalidArgument):
    """The model's output could not be turned into a valid plan."""


@dataclass
class PlannerConfig:
    top_k: int = TOP_K
    max_tokens: int = PLAN_MAX_TOKENS
    temperature: float = 0.0


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


def _placeholder_free(args: dict) -> tuple[dict, set[str]]:
    """Args without the ones that are (or contain) references, and the names left out."""
    keep, refs = {}, set()
    for k, v in args.items():
        if isinstance(v, str) and REF_RE.search(v):
            refs.add(k)
        else:
            keep[k] = v
    return keep, refs


def check_plan(plan: Plan, registry: Any) -> Plan:
    """Validate against the registry; repair what is safe to repair (noted), else raise."""
    import jsonschema

    for i, step in enumerate(plan.steps, 1):
        try:
            tool = registry.get(step.tool)
        except (NotFound, LLMOSError):
            raise PlanError(f"steps[{i}].tool: no tool named {step.tool!r}", field=f"steps[{i}].tool",
                            expected="a registered tool") from None
        props = tool.parameters.get("properties", {})
        unknown = [k for k in step.args if k not in props]
        if unknown:   # repair: drop arguments the tool does not take
            for k in unknown:
                step.args.pop(k)
            plan.notes.append(f"step {i}: dropped unknown argument(s) {', '.join(unknown)}")
        concrete, refs = _placeholder_free(step.args)
        v = jsonschema.Draft202012Validator(dict(tool.parameters))
        for err in v.iter_errors(concrete):
            if err.validator == "required" and all(r in refs for r in err.validator_value
                                                   if r not in concrete):
                continue
            where = ".".join(str(p) for p in err.absolute_path) or "args"
            raise PlanError(f"steps[{i}].args.{where}: {err.message}", field=f"steps[{i}].args.{where}",
                            expected="a value that fits the tool's schema")
    try:
        plan.check_refs()
    except PlanError:
        raise
    except InvalidArgument as e:
        raise PlanError(e.message, field=e.field, expected=e.expected) from None
    return plan


_SIG_RE = re.compile(r"\b([A-Za-z_]\w*)\(([\w\s,=*]*)\)")
CODE_STOP = ["\n\n\n", "```", "\nif __name__"]


def code_seed(request: str) -> tuple[str, bool]:
    """The first line of the program: the function the request names (``is_prime(n)``), or a
    ``main()`` whose body the model writes; and whether it is a library (no call added)."""
    m = _SIG_RE.search(request)
    if m and m.group(1) not in ("print", "range", "len", "input"):
        return f"def {m.group(1)}({m.group(2).strip()}):", True
    return "def main():", False


def first_block(seed: str, completion: str) -> str:
    """The seeded definition only: lines up to the first one back at column 0."""
    lines = (seed + completion).splitlines()
    keep = [lines[0]]
    for line in lines[1:]:
        if line.strip() and not line[:1].isspace():
            break
        keep.append(line)
    while keep and not keep[-1].strip():
        keep.pop()
    return "\n".join(keep) + "\n"


def undefined_calls(tree: ast.Module) -> list[str]:
    """Names a program calls that it neither defines, imports, binds nor gets from builtins
    (a small model calls helpers it never wrote)."""
    import builtins

    bound = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    called = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    return sorted({c for c in called if c not in bound})


def _compiles(code: str) -> bool:
    try:
        ast.parse(code)
        return "\n" in code.strip()
    except SyntaxError:
        return False


def _code_prompt(request: str, seed: str) -> str:
    # plain completion (no chat template): a comment stating the task, then the seeded line.
    # No solved example before it: a model this small copies an example's code and names
    # (measured: solved examples cost two of eight code requests).
    return f"# {request.strip()}\n{seed}"


class Planner:
    """Plans requests; see the module map and the NOTE above."""

    def __init__(self, registry: Any, generate: Generate, *, library: list[Example] | None = None,
                 store: Any = None, config: PlannerConfig | None = None) -> None:
        self.registry = registry
        self.generate = generate
        self.library = library if library is not None else load_library()
        self.store = store
        self.config = config or PlannerConfig()
        self._tool_names = {t["name"] for t in registry.schemas()}
        self._schemas = {t["name"]: t for t in registry.schemas()}
        # library examples that name a tool this registry lacks are never shown
        self.library = [e for e in self.library if all(t in self._tool_names for t in e.tools)]

    # ── retrieval ───────────────────────────────────────────────────────────
    def candidates(self, request: str, facts: Facts | None = None) -> list[Example]:
        """The examples to show, best first: BM25 similarity, lowered for each fact an
        example's plan needs that this request lacks; one example per skeleton."""
        pool = list(self.library)
        if self.store is not None:
            for a in self.store.approved():
                try:
                    Plan.from_dict(a["plan"])
                except InvalidArgument:
                    continue
                ex = Example(a["id"], "approved", a["request"], a["plan"], a["facts"])
                if all(t in self._tool_names for t in ex.tools):
                    pool.append(ex)
        ranked = Retriever(pool).top(request, k=len(pool), facts=facts)
        if facts is not None:
            ranked = sorted(((ex, score * fit(ex, facts, self._writes(ex))) for ex, score in ranked),
                            key=lambda p: -p[1])
        out: list[Example] = []
        seen: set[str] = set()
        best = ranked[0][1] if ranked else 0.0
        for ex, score in ranked:
            if len(out) >= self.config.top_k or (out and score < NEAR_TIE * best):
                break
            # one example per skeleton keeps the choice wide; an approved plan wins its skeleton
            if ex.signature in seen:
                continue
            seen.add(ex.signature)
            out.append(ex)
        return out

    def _writes(self, ex: Example) -> bool:
        """Whether an example's plan changes anything (a writing tool, or a path it writes)."""
        for s in ex.plan["steps"]:
            tool = self.registry.get(s["tool"])
            if tool.risk >= Risk.WRITE or any(m == "w" and a in s.get("args", {})
                                              for a, m in tool.path_args.items()):
                return True
        return False

    # ── prompt and schema ──────────────────────────────────────────────────
    def _kept_args(self, tool: str, shown: list[Example]) -> set[str]:
        keep: set[str] = set()
        for ex in [*shown, *self.library]:
            for s in ex.plan["steps"]:
                if s["tool"] == tool:
                    keep |= set(s.get("args", {}))
        return keep

    def _tool_line(self, name: str) -> str:
        t = self._schemas[name]
        props = t["parameters"].get("properties", {})
        req = t["parameters"].get("required", [])
        args = ", ".join(p if p in req else f"{p}?" for p in props)
        return f"- {name}({args}): {t['description']}"

    def messages(self, request: str, facts: Facts, shown: list[Example]) -> list[Message]:
        tools = []
        for ex in shown:
            for t in ex.tools:
                if t not in tools:
                    tools.append(t)
        system = SYSTEM + "\nTools:\n" + "\n".join(self._tool_line(t) for t in tools)
        msgs: list[Message] = [{"role": "system", "content": system}]
        for ex in reversed(shown):        # most similar last, nearest the request
            msgs.append({"role": "user", "content": "\n".join([f"Request: {ex.request}", *ex.facts])})
            msgs.append({"role": "assistant", "content": json.dumps(_shown_plan(ex.plan), separators=(",", ":"))})
        msgs.append({"role": "user", "content": "\n".join([f"Request: {request}", *facts.lines()])})
        return msgs

    def schema_for(self, facts: Facts, shown: list[Example], tight: bool = False) -> dict:
        seqs = []
        for ex in shown:
            seq = []
            for pos, s in enumerate(ex.plan["steps"]):
                tool = self.registry.get(s["tool"])
                overrides = role_overrides(s.get("args", {}), ex.fact_obj, facts,
                                           self._schemas[s["tool"]]["parameters"].get("properties", {}))
                for a in s.get("args", {}):
                    if _is_code_arg(s["tool"], a, s["args"]):
                        overrides[a] = {"const": CODE_PLACEHOLDER}
                args = S.tool_args_schema(self._schemas[s["tool"]], facts, self._kept_args(s["tool"], shown),
                                          dict(tool.path_args), creates=tool.risk < Risk.DESTRUCTIVE,
                                          item=bool(s.get("each")), overrides=overrides, before=pos,
                                          require=set(s.get("args", {})),
                                          string_cap=S.TIGHT_CAP if tight else S.STRING_CAP)
                seq.append(S.step_schema(s["tool"], args, bool(s.get("each")), before=pos))
            seqs.append(seq)
        return S.plan_schema(skeleton_steps=seqs, names=[m for m in facts.mentioned if m not in facts.outside])

    # ── planning ───────────────────────────────────────────────────────────
    async def plan(self, request: str, workdir: str | Path, *, facts: Facts | None = None) -> Plan:
        """Plan ``request``; raises PlanError when no valid plan comes out."""
        if not request.strip():
            raise InvalidArgument("request: expected a non-empty request", field="request",
                                  expected="what you want done, in plain words")
        facts = facts or extract(request, workdir)
        shown = self.candidates(request, facts)
        if not shown:
            raise PlanError("no example fits the available tools", field="request",
                            expected="a request the tools can serve")
        msgs = self.messages(request, facts, shown)
        text = await self.generate(msgs, self.schema_for(facts, shown), self.config.max_tokens,
                                   self.config.temperature)
        retried = False
        try:
            data = parse_model_output(text)
        except PlanError:
            # cut off (a small model can loop inside a free text): once more, with short text
            # and room for the longest plan the tight schema admits
            retried = True
            text = await self.generate(msgs, self.schema_for(facts, shown, tight=True),
                                       RETRY_MAX_TOKENS, self.config.temperature)
            data = parse_model_output(text)
        try:
            plan = Plan.from_dict(data, request, source="model")
        except PlanError:
            raise
        except InvalidArgument as e:
            raise PlanError(e.message, field=e.field, expected=e.expected) from None
        plan.examples = [e.id for e in shown]
        if retried:
            plan.notes.append("planned again with shorter text: the first plan was cut off")
        check_plan(plan, self.registry)
        plan.notes += adapt_refs(plan, facts)
        await self.fill_code(plan, request)
        check_plan(plan, self.registry)
        return plan

    async def fill_code(self, plan: Plan, request: str) -> None:
        """Write program arguments with a code prompt; check they compile (noted either way)."""
        for i, step in enumerate(plan.steps, 1):
            for (tool, arg), _lang in CODE_ARGS.items():
                if step.tool != tool or arg not in step.args:
                    continue
                path = step.args.get("path") if isinstance(step.args.get("path"), str) else None
                if not _is_code_arg(tool, arg, step.args) and step.args.get(arg) != CODE_PLACEHOLDER:
                    continue
                code, err = await self.write_code(request, path)
                if err and isinstance(step.args.get(arg), str) and _compiles(step.args[arg]):
                    plan.notes.append(f"step {i}: kept the planner's code ({err} in the rewrite)")
                    continue
                step.args[arg] = code
                plan.notes.append(f"step {i}: code written by the model"
                                  + (f" does not compile: {err}" if err else " compiles"))

    async def write_code(self, request: str, path: str | None) -> tuple[str, str | None]:
        """A program for ``request``: (code, None) when it compiles and defines what was
        asked, else (last code, why not). Greedy first, then sampled retries."""
        seed, library = code_seed(request)
        name = seed[4:seed.index("(")]
        code, err = "", "no code"
        for attempt in range(CODE_TRIES):
            text = await self.generate(_code_prompt(request, seed), None, CODE_MAX_TOKENS,
                                       0.0 if attempt == 0 else 0.7)
            body = first_block(seed, text)
            code = body if library else body + "\n\nmain()\n"
            try:
                tree = ast.parse(code)
            except SyntaxError as e:
                err = f"line {e.lineno}: {e.msg}"
                continue
            if not any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body):
                err = f"it does not define {name}"
                continue
            if len(body.splitlines()) < 2:
                err = "the function has no body"
                continue
            missing_names = undefined_calls(tree)
            if missing_names:
                err = f"it calls {', '.join(missing_names)}, which it never defines"
                continue
            return code, None
        return code, err
