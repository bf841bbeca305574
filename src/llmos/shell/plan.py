"""Plans: the data a planner emits and a runner executes.

Map:
- ``Step``: one tool call (tool, args, one-line reason), optionally repeated over a list
  (``each``: a reference to an earlier step's list output; ``$item`` / ``$item.field`` in
  the args stand for the element) and optionally guarded (``when``: a ``Guard`` on an
  earlier result; a step whose guard is false is skipped, and so is every step that
  reads it).
- ``Guard``: ``{"ref": "$step2.output.count", "op": ">", "value": 0}``; ``holds(outputs)``.
- ``Plan``: the request, the steps (at most ``MAX_STEPS``), an answer template, and
  where the plan came from; or a refusal (``refuse``: one sentence why no tool can do
  it) or a clarifying question (``ask``); ``more`` says the planner wants to see the
  outputs of these steps before it plans the rest.
- References: ``$stepN.output`` or ``$stepN.output.field.0.field`` (also ``$item`` and
  ``$item.field`` inside an ``each`` step). ``refs_in`` finds them, ``resolve_ref`` reads
  one against finished outputs, ``substitute`` fills a value or a text.
- ``Plan.deps()``: the DAG, derived from the references (a step depends on every step
  it names or guards on); a reference to the same or a later step is a malformed plan.

A plan is plain data: JSON in, JSON out (``Plan.from_dict`` / ``to_dict``). Whether its
tools and arguments are valid is the registry's call (``planner.check_plan``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from llmos.errors import InvalidArgument

__all__ = ["Step", "Plan", "Guard", "REF_RE", "refs_in", "resolve_ref", "substitute", "MAX_STEPS",
           "render_value", "Unresolved", "GUARD_OPS", "MAX_EACH_ITEMS", "LLM_TOOL"]

MAX_STEPS = 12           # most steps in one plan (schema maxItems)
MAX_EACH_ITEMS = 50      # most elements an ``each`` step repeats over
LLM_TOOL = "llm"         # the model as a tool: run by the runner as an ``llm.generate`` syscall
GUARD_OPS = ("==", "!=", ">", ">=", "<", "<=", "contains", "empty", "not_empty")

# $step3.output.rows  |  $item.name  |  $step1.output.0.path
REF_RE = re.compile(r"\$(?:step(\d{1,2})\.output|(item))((?:\.[A-Za-z0-9_]+)*)")


class Unresolved(Exception):
    """A reference names a field that the output does not have."""


def _bad(msg: str, where: str, expected: str) -> InvalidArgument:
    return InvalidArgument(msg, field=where, expected=expected)


@dataclass
class Guard:
    ref: str                  # "$stepN.output[.field]": the value tested
    op: str                   # one of GUARD_OPS
    value: Any = None         # number, text, bool or a reference (ignored by empty/not_empty)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ref": self.ref, "op": self.op}
        if self.op not in ("empty", "not_empty"):
            d["value"] = self.value
        return d

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Guard:
        if not isinstance(data, dict):
            raise _bad(f"{where}: expected an object like "
                       '{"ref": "$step1.output.count", "op": ">", "value": 0}', where, "guard object")
        ref, op = data.get("ref"), data.get("op")
        if not isinstance(ref, str) or not REF_RE.fullmatch(ref) or ref.startswith("$item"):
            raise _bad(f"{where}.ref: expected a reference like $step1.output.count", f"{where}.ref",
                       "$stepN.output[.field]")
        if op not in GUARD_OPS:
            raise _bad(f"{where}.op: expected one of {', '.join(GUARD_OPS)}", f"{where}.op", "comparison")
        return cls(ref, op, data.get("value"))

    def holds(self, outputs: dict[int, Any]) -> bool:
        """Whether the step runs. Raises Unresolved when the reference cannot be read."""
        m = REF_RE.fullmatch(self.ref)
        assert m is not None
        left = resolve_ref(m, outputs)
        right = substitute(self.value, outputs)
        if self.op == "empty":
            return _empty(left)
        if self.op == "not_empty":
            return not _empty(left)
        if self.op == "contains":
            if isinstance(left, (list, tuple)):
                return any(_eq(x, right) for x in left)
            return str(right).lower() in render_value(left).lower()
        if self.op in ("==", "!="):
            return _eq(left, right) == (self.op == "==")
        a, b = _num(left), _num(right)
        if a is None or b is None:
            a, b = render_value(left), render_value(right)
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[self.op]   # type: ignore[operator]


def _empty(v: Any) -> bool:
    if isinstance(v, dict):
        for k in ("count", "rows", "matches", "files", "items", "lines"):
            if k in v:
                return _empty(v[k])
    return v in (None, "", 0, False) or (isinstance(v, (list, dict)) and not v)


def _num(v: Any) -> float | None:
    if isinstance(v, dict):
        for k in ("value", "count", "total", "result"):
            if k in v:
                return _num(v[k])
    if isinstance(v, (list, tuple)):
        return float(len(v))
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v).replace(",", "").strip())
    except ValueError:
        return None


def _eq(a: Any, b: Any) -> bool:
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None and not isinstance(a, (list, dict)):
        return na == nb
    return render_value(a).strip().lower() == render_value(b).strip().lower()


@dataclass
class Step:
    tool: str
    args: dict[str, Any]
    reason: str = ""
    each: str | None = None          # "$stepN.output[.field]": repeat this step per element
    when: Guard | None = None        # run only when this holds

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"tool": self.tool}
        if self.each:
            d["each"] = self.each
        if self.when:
            d["when"] = self.when.to_dict()
        d["args"] = self.args
        if self.reason:
            d["why"] = self.reason
        return d

    def refs(self) -> set[int]:
        """Step numbers (1-based) this step reads."""
        found = refs_in(self.args)
        if self.each:
            found |= refs_in(self.each)
        if self.when:
            found |= refs_in(self.when.ref) | refs_in(self.when.value)
        return found


@dataclass
class Plan:
    request: str
    steps: list[Step]
    answer: str = ""                     # template: text + references, filled by the runner
    source: str = "model"                # model | revised | approved:<run>
    examples: list[str] = field(default_factory=list)   # ids of few-shot examples shown
    notes: list[str] = field(default_factory=list)      # repairs, normalizations, checks
    refuse: str = ""                     # non-empty: no tool can do this; the one-sentence reason
    ask: str = ""                        # non-empty: the request is ambiguous; the question
    more: bool = False                   # plan the rest after seeing these steps' outputs

    def to_dict(self) -> dict[str, Any]:
        if self.refuse:
            return {"refuse": self.refuse}
        if self.ask:
            return {"ask": self.ask}
        d: dict[str, Any] = {"steps": [s.to_dict() for s in self.steps], "answer": self.answer}
        if self.more:
            d["more"] = True
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any, request: str = "", source: str = "model", offset: int = 0) -> Plan:
        """Parse the planner's JSON shape; raise InvalidArgument naming the bad field.
        ``offset``: steps that ran before this plan's first (a revision's numbering)."""
        if not isinstance(data, dict):
            raise _bad("plan: expected a JSON object", "plan", "object")
        for key in ("refuse", "ask"):
            if key in data and "steps" not in data:
                text = data[key]
                if not isinstance(text, str) or not text.strip():
                    raise _bad(f"plan.{key}: expected one sentence", key, "non-empty string")
                return cls(request, [], source=source, **{key: " ".join(text.split())[:300]})
        raw = data.get("steps")
        if not isinstance(raw, list) or not raw:
            raise _bad("plan.steps: expected a non-empty list", "steps", f"list of 1..{MAX_STEPS} steps")
        if len(raw) > MAX_STEPS:
            raise _bad(f"plan.steps: {len(raw)} steps, at most {MAX_STEPS}", "steps",
                       f"at most {MAX_STEPS} steps")
        steps = [_step_from(_indexes_as_fields(s), i) for i, s in enumerate(raw, 1)]
        answer = _indexes_as_fields(data.get("answer", ""))
        if not isinstance(answer, str):
            raise _bad("plan.answer: expected a string", "answer", "string")
        more = data.get("more", False)
        if not isinstance(more, bool):
            raise _bad("plan.more: expected true or false", "more", "boolean")
        plan = cls(request, steps, answer, source, more=more)
        plan.check_refs(offset)
        return plan

    @classmethod
    def from_json(cls, text: str, request: str = "", source: str = "model") -> Plan:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as e:
            raise _bad(f"plan: not valid JSON ({e})", "plan", "JSON object") from None
        return cls.from_dict(data, request, source)

    def check_refs(self, offset: int = 0) -> None:
        """Every reference points to an earlier step (``offset`` steps already ran before
        this plan's first step); ``$item`` only inside ``each`` steps."""
        for i, s in enumerate(self.steps, offset + 1):
            for n in s.refs():
                if not 1 <= n < i:
                    raise _bad(f"steps[{i}]: refers to $step{n}, which does not come before it",
                               f"steps[{i}].args", f"$step1..$step{i - 1}" if i > 1 else "no reference")
            if not s.each and _has_item(s.args):
                raise _bad(f"steps[{i}]: uses $item without 'each'", f"steps[{i}].each",
                           "each: $stepN.output when args use $item")
            if s.each and not _has_item(s.args):
                raise _bad(f"steps[{i}]: repeats over {s.each} but no argument uses $item, so every pass "
                           "would do the same; put $item (or $item.name) in an argument, or drop 'each'",
                           f"steps[{i}].args", "an argument that uses $item")
        last = offset + len(self.steps)
        wrong = sorted(n for n in refs_in(self.answer) if not 1 <= n <= last)
        if wrong:   # repair: the runner words the answer from the outputs instead
            self.notes.append(f"answer template dropped: it refers to $step{wrong[0]}, "
                              f"and the plan has {last} steps")
            self.answer = ""

    def deps(self) -> dict[int, list[int]]:
        """Step number -> the earlier steps it reads (the plan's DAG)."""
        return {i: sorted(s.refs()) for i, s in enumerate(self.steps, 1)}


# a reference written with list indexes, as in most languages: $step1.output.rows[0].name
_INDEXED_REF_RE = re.compile(r"\$(?:step\d{1,2}\.output|item)(?:\.[A-Za-z0-9_]+|\[\d+\])*\[\d+\]"
                             r"(?:\.[A-Za-z0-9_]+|\[\d+\])*")


def _indexes_as_fields(value: Any) -> Any:
    """``$step1.output.rows[0].name`` -> ``$step1.output.rows.0.name`` in every string."""
    if isinstance(value, str):
        return _INDEXED_REF_RE.sub(lambda m: re.sub(r"\[(\d+)\]", r".\1", m.group(0)), value)
    if isinstance(value, dict):
        return {k: _indexes_as_fields(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_indexes_as_fields(v) for v in value]
    return value


def _step_from(s: Any, i: int) -> Step:
    where = f"steps[{i}]"
    if not isinstance(s, dict):
        raise _bad(f"{where}: expected an object", where, "object with tool and args")
    tool, args = s.get("tool"), s.get("args", {})
    if not isinstance(tool, str) or not tool:
        raise _bad(f"{where}.tool: expected a tool name", f"{where}.tool", "name of a registered tool")
    if not isinstance(args, dict):
        raise _bad(f"{where}.args: expected an object", f"{where}.args", "object")
    each = s.get("each")
    if each is not None and (not isinstance(each, str) or not REF_RE.fullmatch(each)
                             or each.startswith("$item")):
        raise _bad(f"{where}.each: expected a reference like $step1.output", f"{where}.each",
                   "$stepN.output[.field]")
    when = Guard.from_dict(s["when"], f"{where}.when") if s.get("when") is not None else None
    return Step(tool, dict(args), str(s.get("why", s.get("reason", "")))[:200], each, when)


def _has_item(value: Any) -> bool:
    if isinstance(value, str):
        return any(m.group(2) for m in REF_RE.finditer(value))
    if isinstance(value, dict):
        return any(_has_item(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_item(v) for v in value)
    return False


def refs_in(value: Any) -> set[int]:
    """Step numbers referenced anywhere inside ``value`` (strings, lists, dicts)."""
    if isinstance(value, str):
        return {int(m.group(1)) for m in REF_RE.finditer(value) if m.group(1)}
    if isinstance(value, dict):
        return set().union(*(refs_in(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(refs_in(v) for v in value)) if value else set()
    return set()


def _walk(value: Any, path: list[str]) -> Any:
    for key in path:
        if isinstance(value, dict):
            if key in value:
                value = value[key]
                continue
            raise Unresolved(key)
        if isinstance(value, list):
            if key.isdigit() and int(key) < len(value):
                value = value[int(key)]
                continue
            if key in ("count", "length"):
                value = len(value)
                continue
            # project a field over a list of records: $step1.output.name -> [names]
            if value and all(isinstance(v, dict) and key in v for v in value):
                value = [v[key] for v in value]
                continue
            # an each-step's results: [{"item", "output"}] -> look inside the outputs
            if value and all(isinstance(v, dict) and set(v) == {"item", "output"} for v in value):
                value = [_walk(v["output"], [key]) for v in value]
                continue
        raise Unresolved(key)
    return value


def resolve_ref(match: re.Match, outputs: dict[int, Any], item: Any = None) -> Any:
    """Value of one reference. Raises Unresolved when a field is missing.

    Fields past a plain value are text that follows it: ``$item.stem.csv`` is the
    item's stem then ``.csv`` (a file name built from a value)."""
    path = [p for p in match.group(3).split(".") if p]
    if match.group(2):                       # $item
        base = item
    else:
        n = int(match.group(1))
        if n not in outputs:
            raise Unresolved(f"step{n}")
        base = outputs[n]
    for k in range(len(path), -1, -1):
        try:
            value = _walk(base, path[:k])
        except Unresolved:
            if k == 0:
                raise
            continue
        if k == len(path):
            return value
        rest = path[k:]
        if isinstance(value, str) and len(rest) == 1 and len(rest[0]) <= 5 and rest[0].isalnum():
            return f"{value}.{rest[0]}"        # a suffix after a name: $item.stem.csv
        break
    return _walk(base, path)


def _fill_text(text: str, outputs: dict[int, Any], item: Any) -> str:
    """References inside a longer text, rendered. An element's path (``$item.name`` of a
    listed file, "lists/a.txt", named from the workspace root) after a folder or a name
    prefix in the same word is joined to the file's own name: "lists/$item.name" and
    "lists/sorted_$item.name" mean "lists/a.txt" and "lists/sorted_a.txt", "out/$item.name"
    "out/a.txt", and "sorted_$item.name" "lists/sorted_a.txt"."""
    done, pos = "", 0
    for m in REF_RE.finditer(text):
        done += text[pos:m.start()]
        pos = m.end()
        value = resolve_ref(m, outputs, item)
        shown = render_value(value)
        if m.group(2) and isinstance(value, str) and "/" in value and not value.startswith("/") \
                and ".." not in value.split("/"):
            word = re.split(r"[\s\"'(,;:=]", done)[-1]
            if word:
                folder, shown = value.rsplit("/", 1)
                if "/" not in word:             # a name prefix: the file's folder goes first
                    done = f"{done[:len(done) - len(word)]}{folder}/{word}"
        done += shown
    return done + text[pos:]


def render_value(value: Any) -> str:
    """A tool output as short text: numbers plainly, lists one per line, records as k: v."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e15 else str(value)
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, list):
        return "\n".join(render_value(v) for v in value)
    if isinstance(value, dict):
        if set(value) == {"item", "output"}:
            return f"{render_value(value['item'])}: {render_value(value['output'])}"
        return ", ".join(f"{k}: {render_value(v)}" for k, v in value.items())
    return str(value)


def substitute(value: Any, outputs: dict[int, Any], item: Any = None) -> Any:
    """Fill references inside an argument value.

    A string that is exactly one reference becomes the referenced value (any type);
    references inside longer text are rendered as text. Raises Unresolved.
    """
    if isinstance(value, str):
        m = REF_RE.fullmatch(value)
        if m:
            return resolve_ref(m, outputs, item)
        return _fill_text(value, outputs, item)
    if isinstance(value, dict):
        return {k: substitute(v, outputs, item) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, outputs, item) for v in value]
    return value
