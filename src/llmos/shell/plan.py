"""Plans: the data a planner emits and a runner executes.

Map:
- ``Step``: one tool call (tool, args, one-line reason), optionally repeated over
  a list (``each``: a reference to an earlier step's list output; ``$item`` in the
  args stands for the element).
- ``Plan``: the request, the steps, an answer template, and where the plan came from.
- References: ``$stepN.output`` or ``$stepN.output.field.0.field`` (also ``$item`` and
  ``$item.field`` inside an ``each`` step). ``refs_in`` finds them, ``resolve_ref`` reads
  one against finished outputs, ``substitute`` fills a value or a text.
- ``Plan.deps()``: the DAG, derived from the references (a step depends on every step
  it names); a reference to the same or a later step is a malformed plan.

A plan is plain data: JSON in, JSON out (``Plan.from_json`` / ``to_json``). Whether its
tools and arguments are valid is the registry's call (``planner.check_plan``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from llmos.errors import InvalidArgument

__all__ = ["Step", "Plan", "REF_RE", "refs_in", "resolve_ref", "substitute", "MAX_STEPS",
           "render_value", "Unresolved"]

MAX_STEPS = 6            # most steps in one plan (schema maxItems)
MAX_EACH_ITEMS = 50      # most elements an ``each`` step repeats over

# $step3.output.rows  |  $item.name  |  $step1.output.0.path
REF_RE = re.compile(r"\$(?:step(\d{1,2})\.output|(item))((?:\.[A-Za-z0-9_]+)*)")


class Unresolved(Exception):
    """A reference names a field that the output does not have."""


@dataclass
class Step:
    tool: str
    args: dict[str, Any]
    reason: str = ""
    each: str | None = None          # "$stepN.output[.field]": repeat this step per element

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"tool": self.tool}
        if self.each:
            d["each"] = self.each
        d["args"] = self.args
        d["why"] = self.reason
        return d

    def refs(self) -> set[int]:
        """Step numbers (1-based) this step reads."""
        found = refs_in(self.args)
        if self.each:
            found |= refs_in(self.each)
        return found


@dataclass
class Plan:
    request: str
    steps: list[Step]
    answer: str = ""                     # template: text + references, filled by the runner
    source: str = "model"                # model | example:<id> | approved:<run>
    examples: list[str] = field(default_factory=list)   # ids of few-shot examples shown
    notes: list[str] = field(default_factory=list)      # repairs, habits applied, code checks

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [s.to_dict() for s in self.steps], "answer": self.answer}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any, request: str = "", source: str = "model") -> Plan:
        """Parse the planner's JSON shape; raise InvalidArgument naming the bad field."""
        if not isinstance(data, dict):
            raise InvalidArgument("plan: expected a JSON object", field="plan", expected="object")
        raw = data.get("steps")
        if not isinstance(raw, list) or not raw:
            raise InvalidArgument("plan.steps: expected a non-empty list", field="steps",
                                  expected=f"list of 1..{MAX_STEPS} steps")
        if len(raw) > MAX_STEPS:
            raise InvalidArgument(f"plan.steps: {len(raw)} steps, at most {MAX_STEPS}",
                                  field="steps", expected=f"at most {MAX_STEPS} steps")
        steps = []
        for i, s in enumerate(raw, 1):
            if not isinstance(s, dict):
                raise InvalidArgument(f"steps[{i}]: expected an object", field=f"steps[{i}]",
                                      expected="object with tool, args, why")
            tool, args = s.get("tool"), s.get("args", {})
            if not isinstance(tool, str) or not tool:
                raise InvalidArgument(f"steps[{i}].tool: expected a tool name", field=f"steps[{i}].tool",
                                      expected="name of a registered tool")
            if not isinstance(args, dict):
                raise InvalidArgument(f"steps[{i}].args: expected an object", field=f"steps[{i}].args",
                                      expected="object")
            each = s.get("each")
            if each is not None and (not isinstance(each, str) or not REF_RE.fullmatch(each)):
                raise InvalidArgument(f"steps[{i}].each: expected a reference like $step1.output",
                                      field=f"steps[{i}].each", expected="$stepN.output[.field]")
            steps.append(Step(tool, dict(args), str(s.get("why", s.get("reason", "")))[:200], each))
        answer = data.get("answer", "")
        if not isinstance(answer, str):
            raise InvalidArgument("plan.answer: expected a string", field="answer", expected="string")
        plan = cls(request, steps, answer, source)
        plan.check_refs()
        return plan

    @classmethod
    def from_json(cls, text: str, request: str = "", source: str = "model") -> Plan:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as e:
            raise InvalidArgument(f"plan: not valid JSON ({e})", field="plan", expected="JSON object") from None
        return cls.from_dict(data, request, source)

    def check_refs(self) -> None:
        """Every reference points to an earlier step; ``$item`` only inside ``each`` steps."""
        for i, s in enumerate(self.steps, 1):
            for n in s.refs():
                if not 1 <= n < i:
                    raise InvalidArgument(f"steps[{i}]: refers to $step{n}, which does not come before it",
                                          field=f"steps[{i}].args", expected=f"$step1..$step{i - 1}")
            if not s.each and _has_item(s.args):
                raise InvalidArgument(f"steps[{i}]: uses $item without 'each'", field=f"steps[{i}].each",
                                      expected="each: $stepN.output when args use $item")
        for n in refs_in(self.answer):
            if not 1 <= n <= len(self.steps):
                raise InvalidArgument(f"answer: refers to $step{n}; the plan has {len(self.steps)} steps",
                                      field="answer", expected=f"$step1..$step{len(self.steps)}")

    def deps(self) -> dict[int, list[int]]:
        """Step number -> the earlier steps it reads (the plan's DAG)."""
        return {i: sorted(s.refs()) for i, s in enumerate(self.steps, 1)}


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
            if key == "count" or key == "length":
                value = len(value)
                continue
            # project a field over a list of records: $step1.output.name -> [names]
            if value and all(isinstance(v, dict) and key in v for v in value):
                value = [v[key] for v in value]
                continue
        raise Unresolved(key)
    return value


def resolve_ref(match: re.Match, outputs: dict[int, Any], item: Any = None) -> Any:
    """Value of one reference. Raises Unresolved when a field is missing."""
    path = [p for p in match.group(3).split(".") if p]
    if match.group(2):                       # $item
        return _walk(item, path)
    n = int(match.group(1))
    if n not in outputs:
        raise Unresolved(f"step{n}")
    return _walk(outputs[n], path)


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
        return REF_RE.sub(lambda mm: render_value(resolve_ref(mm, outputs, item)), value)
    if isinstance(value, dict):
        return {k: substitute(v, outputs, item) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, outputs, item) for v in value]
    return value
