"""The planner's one JSON schema, generated from the whole tool registry.

Map:
- ``args_schema(tool_schema, pos)``: one tool's arguments as the planner may write them: the
  tool's own schema (descriptions dropped, strings bounded), where every value may also
  be a reference to an earlier result (``$step2.output.rows``, ``$item``) and free text
  may embed references.
- ``step_schema(tool_schema, pos)``: ``{"tool": const, "each"?: ref, "when"?: guard, "args"}``,
  whose references may name only the steps before position ``pos``.
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

__all__ = ["args_schema", "step_schema", "plan_schema", "REF_PATTERN", "ANSWER_MAX_CHARS",
           "STRING_CAP", "CODE_CAP", "REASON_MAX_CHARS"]

_FIELDS = r"(\.[A-Za-z0-9_]{1,32}){0,3}"


def _steps_before(n: int) -> str | None:
    """A regex for the step numbers 1..n-1 (those a step at position n may read)."""
    if n <= 1:
        return None
    return "(" + "|".join(str(k) for k in range(n - 1, 0, -1)) + ")"


def _ref_re(pos: int) -> str:
    steps = _steps_before(pos)
    alts = ([rf"step{steps}\.output"] if steps else []) + ["item"]
    return rf"\$({'|'.join(alts)}){_FIELDS}"


_REF = _ref_re(MAX_STEPS + 1)
REF_PATTERN = rf"^{_REF}$"
_TEXT_PATTERN = rf"^([^$]|{_REF})*$"       # free text: a "$" only starts a reference
ANSWER_MAX_CHARS = 300
REASON_MAX_CHARS = 300
STRING_CAP = 300            # longest free string in one argument
CODE_CAP = 2400             # ... in an argument that holds a program or a file's text
_LONG_ARGS = {"code", "content", "text", "command"}
FIXED_POSITIONS = 3         # leading steps whose references the grammar itself keeps backward


def _strip(s: Any) -> Any:
    """Drop descriptions/defaults/titles (no use to the grammar)."""
    if isinstance(s, dict):
        return {k: _strip(v) for k, v in s.items() if k not in ("description", "default", "title", "examples")}
    if isinstance(s, list):
        return [_strip(v) for v in s]
    return s


def _ref(pos: int) -> dict:
    return {"type": "string", "pattern": f"^{_ref_re(pos)}$", "maxLength": 48}


def _text(pos: int) -> str:
    return rf"^([^$]|{_ref_re(pos)})*$"      # free text: a "$" only starts a reference


def _value(name: str, sub: dict, pos: int) -> dict:
    sub = _strip(copy.deepcopy(sub))
    t = sub.get("type")
    if t == "string" and "enum" not in sub:
        cap = CODE_CAP if name in _LONG_ARGS else STRING_CAP
        sub["maxLength"] = min(int(sub.get("maxLength", cap)), cap)
        if "pattern" not in sub:
            sub["pattern"] = _text(pos)
        return sub
    if t == "array" and isinstance(sub.get("items"), dict):
        sub["maxItems"] = min(int(sub.get("maxItems", 50)), 50)
    return {"anyOf": [sub, _ref(pos)]}


def args_schema(tool_schema: dict, pos: int = MAX_STEPS + 1) -> dict:
    """``pos``: the step's number (references may name only the steps before it)."""
    params = tool_schema.get("parameters", {})
    props = params.get("properties", {})
    return {"type": "object",
            "properties": {n: _value(n, p, pos) for n, p in props.items()},
            "required": list(params.get("required", [])),
            "additionalProperties": False}


def _guard(pos: int) -> dict:
    scalar = {"anyOf": [{"type": "number"}, {"type": "string", "maxLength": 80, "pattern": _text(pos)},
                        {"type": "boolean"}]}
    return {"type": "object",
            "properties": {"ref": _ref(pos), "op": {"enum": list(GUARD_OPS)}, "value": scalar},
            "required": ["ref", "op"], "additionalProperties": False}


def step_schema(tool_schema: dict, pos: int = MAX_STEPS + 1) -> dict:
    return {"type": "object",
            "properties": {"tool": {"const": tool_schema["name"]}, "each": _ref(pos), "when": _guard(pos),
                           "args": args_schema(tool_schema, pos)},
            "required": ["tool", "args"], "additionalProperties": False}


def plan_schema(tools: list[dict], *, allow_ask: bool = False, offset: int = 0,
                max_steps: int = MAX_STEPS) -> dict:
    """``offset``: steps that already ran (a revision's steps are numbered after them).
    The first ``FIXED_POSITIONS`` positions have their own step alternatives, so a
    reference there can only name a step before it (where small models go wrong most);
    later ones share one (a forward reference there is caught by the checks). The whole
    schema stays under the kernel's journaled-spec bound."""
    n = max(1, max_steps - offset)
    fixed = min(n, FIXED_POSITIONS)
    steps = {"type": "array",
             "prefixItems": [{"anyOf": [step_schema(t, offset + k) for t in tools]} for k in range(1, fixed + 1)],
             "items": {"anyOf": [step_schema(t, offset + n + 1) for t in tools]} if n > fixed else False,
             "minItems": 1, "maxItems": n}
    plan = {"type": "object",
            "properties": {"steps": steps,
                           "answer": {"type": "string", "maxLength": ANSWER_MAX_CHARS, "pattern": _TEXT_PATTERN},
                           "more": {"type": "boolean"}},
            "required": ["steps", "answer"], "additionalProperties": False}
    reason = {"type": "string", "minLength": 8, "maxLength": REASON_MAX_CHARS, "pattern": r"^[^$]*$"}
    alts = [plan, {"type": "object", "properties": {"refuse": reason}, "required": ["refuse"],
                   "additionalProperties": False}]
    if allow_ask:
        alts.append({"type": "object", "properties": {"ask": reason}, "required": ["ask"],
                     "additionalProperties": False})
    return {"anyOf": alts}
