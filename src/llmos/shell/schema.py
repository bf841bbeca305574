"""The planner's one JSON schema, generated from the whole tool registry.

Map:
- ``args_schema(tool_schema, scope)``: one tool's arguments as the planner may write them: the
  tool's own schema (descriptions dropped, strings bounded), where every value may also
  be a reference to an earlier result (``$step2.output.rows``, ``$item``) and free text
  may embed references.
- ``step_schema(tool_schema, scope)``: ``{"tool": const, "each"?: ref, "when"?: guard, "args"}``;
  ``Scope`` says what its values may reference (nothing, earlier steps, or also ``$item``).
- ``plan_schema(tools, allow_ask)``: ``{"steps": [any step, 1..MAX_STEPS], "answer": str,
  "more"?: bool}``, or ``{"refuse": str}``, or (interactive shells) ``{"ask": str}``.
  The tool name is one of the registry's (a ``const`` per alternative), each tool's
  arguments are checked by its own schema, so every plan parses and is well typed on
  any model. No example and no phrase narrows it.
- ``REF_PATTERN``: what a reference looks like.

Whether a path lies inside the workspace and a step's
risk is acceptable is checked after parsing (``planner.check_plan``, the runner, the
kernel), since a grammar cannot see them.
"""

from __future__ import annotations

import copy
from typing import Any

from llmos.shell.plan import GUARD_OPS, MAX_STEPS

__all__ = ["args_schema", "step_schema", "plan_schema", "Scope", "REF_PATTERN", "ANSWER_MAX_CHARS",
           "STRING_CAP", "CODE_CAP", "REASON_MAX_CHARS"]

_FIELDS = r"(\.[A-Za-z0-9_]{1,32}){0,3}"
_STEP = r"step([1-9]|1[0-2])\.output"


class Scope:
    """What a step's values may reference. ``FIRST``: nothing (no step ran before it);
    ``PLAIN``: earlier steps' outputs; ``EACH``: those and ``$item`` (the step repeats)."""

    FIRST, PLAIN, EACH = (), (_STEP,), (_STEP, "item")


def _ref_re(scope: tuple[str, ...]) -> str | None:
    return rf"\$({'|'.join(scope)}){_FIELDS}" if scope else None


_REF = _ref_re(Scope.EACH)
REF_PATTERN = rf"^{_REF}$"
_TEXT_PATTERN = rf"^([^$]|{_REF})*$"       # free text: a "$" only starts a reference
ANSWER_MAX_CHARS = 300
REASON_MAX_CHARS = 300
STRING_CAP = 300            # longest free string in one argument
CODE_CAP = 2400             # ... in an argument that holds a program or a file's text
_LONG_ARGS = {"code", "content", "text", "command"}


def _strip(s: Any) -> Any:
    """Drop descriptions/defaults/titles (no use to the grammar)."""
    if isinstance(s, dict):
        return {k: _strip(v) for k, v in s.items() if k not in ("description", "default", "title", "examples")}
    if isinstance(s, list):
        return [_strip(v) for v in s]
    return s


def _ref(scope: tuple[str, ...]) -> dict | None:
    r = _ref_re(scope)
    return {"type": "string", "pattern": f"^{r}$", "maxLength": 48} if r else None


def _text(scope: tuple[str, ...]) -> str:
    r = _ref_re(scope)
    return rf"^([^$]|{r})*$" if r else r"^[^$]*$"     # free text: a "$" only starts a reference


def _value(name: str, sub: dict, scope: tuple[str, ...]) -> dict:
    sub = _strip(copy.deepcopy(sub))
    t = sub.get("type")
    if t == "string" and "enum" not in sub:
        cap = CODE_CAP if name in _LONG_ARGS else STRING_CAP
        sub["maxLength"] = min(int(sub.get("maxLength", cap)), cap)
        if "pattern" not in sub:
            sub["pattern"] = _text(scope)
        return sub
    if t == "array" and isinstance(sub.get("items"), dict):
        sub["maxItems"] = min(int(sub.get("maxItems", 50)), 50)
    _nested_text(sub, scope)       # also a text-or-number value, like data.filter's
    ref = _ref(scope)
    return {"anyOf": [sub, ref]} if ref else sub


def _nested_text(s: Any, scope: tuple[str, ...]) -> None:
    """Strings inside arrays and objects follow the same rule as top-level text: a "$"
    only starts a reference this step may make."""
    if isinstance(s, dict):
        t = s.get("type")
        if (t == "string" or (isinstance(t, list) and "string" in t)) and "enum" not in s and "pattern" not in s:
            s["pattern"] = _text(scope)
        for k in ("items", "additionalProperties"):
            if isinstance(s.get(k), dict):
                _nested_text(s[k], scope)
        for v in (s.get("properties") or {}).values():
            _nested_text(v, scope)
        for v in s.get("anyOf") or []:
            _nested_text(v, scope)


def args_schema(tool_schema: dict, scope: tuple[str, ...] = Scope.EACH) -> dict:
    params = tool_schema.get("parameters", {})
    props = params.get("properties", {})
    return {"type": "object",
            "properties": {n: _value(n, p, scope) for n, p in props.items()},
            "required": list(params.get("required", [])),
            "additionalProperties": False}


def _guard() -> dict:
    scalar = {"anyOf": [{"type": "number"}, {"type": "string", "maxLength": 80, "pattern": _text(Scope.PLAIN)},
                        {"type": "boolean"}]}
    return {"type": "object",
            "properties": {"ref": _ref(Scope.PLAIN), "op": {"enum": list(GUARD_OPS)}, "value": scalar},
            "required": ["ref", "op"], "additionalProperties": False}


def step_schema(tool_schema: dict, scope: tuple[str, ...] = Scope.PLAIN) -> dict:
    """One step of ``tool``: a first step references nothing; a repeated one must say
    what it repeats over (``each``) and may use ``$item``; a plain later one may not."""
    props: dict[str, Any] = {"tool": {"const": tool_schema["name"]}}
    required = ["tool", "args"]
    if scope == Scope.EACH:
        props["each"] = _ref(Scope.PLAIN)
        required.insert(1, "each")
    if scope != Scope.FIRST:
        props["when"] = _guard()
    props["args"] = args_schema(tool_schema, scope)
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def plan_schema(tools: list[dict], *, allow_ask: bool = False, max_steps: int = MAX_STEPS) -> dict:
    """The first step references nothing; every later one is a plain step or one repeated
    over a list (``each``, the only place ``$item`` may appear). So the grammar itself
    rules out the two reference errors small models make most (a first step naming a
    result, ``$item`` outside a repeat); a later reference to a step that is not earlier
    is caught by the checks. The schema stays under the kernel's journaled-spec bound."""
    later = [step_schema(t, Scope.PLAIN) for t in tools] + [step_schema(t, Scope.EACH) for t in tools]
    steps = {"type": "array",
             "prefixItems": [{"anyOf": [step_schema(t, Scope.FIRST) for t in tools]}],
             "items": {"anyOf": later}, "minItems": 1, "maxItems": max_steps}
    plan = {"type": "object",
            "properties": {"steps": steps,
                           "answer": {"type": "string", "maxLength": ANSWER_MAX_CHARS, "pattern": _text(Scope.PLAIN)},
                           "more": {"type": "boolean"}},
            "required": ["steps", "answer"], "additionalProperties": False}
    reason = {"type": "string", "minLength": 8, "maxLength": REASON_MAX_CHARS, "pattern": r"^[^$]*$"}
    alts = [plan, {"type": "object", "properties": {"refuse": reason}, "required": ["refuse"],
                   "additionalProperties": False}]
    if allow_ask:
        alts.append({"type": "object", "properties": {"ask": reason}, "required": ["ask"],
                     "additionalProperties": False})
    return {"anyOf": alts}
