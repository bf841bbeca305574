"""The planner's JSON schemas, generated from the tool registry and the request's facts.

Map:
- ``tool_args_schema(tool_schema, facts, keep)``: one tool's argument schema for the
  planner: only the arguments in ``keep`` (required ones always), descriptions dropped,
  every value also allowed to be a reference (``$step2.output.rows``, ``$item``), and
  path arguments narrowed to the paths the request names or the workspace holds (plus
  a plain relative file name, so a new output file can be named); a written path, when
  the request names new files, is one of those (never its input, never a made-up name).
- ``step_schema(tool, args_schema, each)``: ``{"tool": const, ["each": ref], "args", "why"}``.
- ``plan_schema(skeletons)``: ``{"steps": [...], "answer": str}``; with skeletons, the
  step list is one of the given tool sequences (``prefixItems``), else any registered
  tool per step. Strings and arrays are bounded; ``additionalProperties`` is false.
- ``ANSWER_PATTERN``: answer text holds no digits of its own: numbers come from
  references to tool outputs, never from the model (the file names the request wrote
  may appear as written).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from llmos.shell.extract import Facts
from llmos.shell.plan import MAX_STEPS

__all__ = ["tool_args_schema", "step_schema", "plan_schema", "REF_PATTERN", "ANSWER_PATTERN",
           "ANSWER_MAX_CHARS", "WHY_MAX_CHARS", "Skeleton"]

REF_PATTERN = r"^\$(step[1-6]\.output|item)(\.[A-Za-z0-9_]{1,24}){0,3}$"
STEP_REF_PATTERN = r"^\$step[1-6]\.output(\.[A-Za-z0-9_]{1,24}){0,3}$"
# text without digits, quotes, backslashes or dotted names (file names come from tool outputs
# too); a dot only ends a sentence; references may carry digits
ANSWER_PATTERN = r"^([^0-9$\"\\\n.]|\. |\$(step[1-6]\.output|item)(\.[A-Za-z0-9_]{1,24}){0,3})*\.?$"
ANSWER_MAX_CHARS = 120
WHY_MAX_CHARS = 60
NEW_FILE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,30}(/[A-Za-z0-9_][A-Za-z0-9_-]{0,30})?(\.[a-z0-9]{1,5})?$"
STRING_CAP = 400          # longest free string the planner may write in one argument
TIGHT_CAP = 80            # the same, when a plan is made again after a cut-off one

Skeleton = list[tuple[str, bool]]   # [(tool name, repeated over each)]


def _strip(s: Any) -> Any:
    """Drop descriptions/defaults/titles (no use to the grammar; they cost nothing to keep out)."""
    if isinstance(s, dict):
        return {k: _strip(v) for k, v in s.items() if k not in ("description", "default", "title", "examples")}
    if isinstance(s, list):
        return [_strip(v) for v in s]
    return s


def _cap(s: dict, cap: int) -> dict:
    if s.get("type") == "string" and "enum" not in s:
        s["maxLength"] = min(int(s.get("maxLength", cap)), cap)
    return s


def _ref(item: bool = False, before: int = 6) -> dict | None:
    """References a step may use: ``$step1..$step{before}`` (and ``$item`` in an each-step)."""
    steps = f"step[1-{before}]\\.output" if before >= 1 else None
    alts = [a for a in (steps, "item" if item else None) if a]
    if not alts:
        return None
    return {"type": "string", "pattern": rf"^\$({'|'.join(alts)})(\.[A-Za-z0-9_]{{1,24}}){{0,3}}$", "maxLength": 48}


def _free_text(item: bool, before: int) -> str:
    """A pattern for free text whose only ``$`` starts a reference to an earlier step
    (or ``$item`` in an each-step): text cannot name a step that has not run yet."""
    alts = [f"step[1-{before}]\\.output" if before >= 1 else None, "item" if item else None]
    alts = [a for a in alts if a]
    if not alts:
        return r"^[^$]*$"
    return rf"^([^$]|\$({'|'.join(alts)})(\.[A-Za-z0-9_]{{1,24}}){{0,3}})*$"


def _with_ref(schema: dict, item: bool, before: int) -> dict:
    ref = _ref(item, before)
    if ref is None:
        return schema
    if "anyOf" in schema:
        return {"anyOf": [*schema["anyOf"], ref]}
    return {"anyOf": [schema, ref]}


def _path_schema(facts: Facts, mode: str, creates: bool, item: bool = False, before: int = 6) -> dict:
    names = facts.globs + facts.paths() if not creates else facts.paths() + facts.globs
    if mode == "r" and names:
        names = [*names, "."]           # the workspace itself (search or list all of it)
    named_new = [m for m in facts.new_files if m not in facts.outside]
    if mode == "w" and creates and named_new:
        names = named_new + [g for g in facts.globs if g not in named_new]   # written: the files it names
    alts: list[dict] = []
    if names:
        alts.append({"enum": names})
    if (mode == "w" and creates and not named_new) or not names:
        # a new file name of the model's own only when the request names none
        alts.append({"type": "string", "pattern": NEW_FILE_PATTERN, "maxLength": 64})
    return _with_ref({"anyOf": alts}, item, before) if len(alts) > 1 else _with_ref(alts[0], item, before)


def tool_args_schema(tool_schema: dict, facts: Facts, keep: set[str] | None = None,
                     path_args: dict[str, str] | None = None,
                     creates: bool = True, item: bool = False,
                     overrides: dict[str, dict] | None = None, before: int = 6,
                     require: set[str] | None = None, string_cap: int = STRING_CAP) -> dict:
    """One tool's arguments as the planner may write them (see the module map).

    ``creates``: the tool's written paths may be new files (false for deleting tools,
    whose paths must name something the request or the workspace holds). ``item``: the
    step repeats over a list, so ``$item`` references are allowed. ``overrides``: argument
    -> schema chosen by the planner (e.g. the request's own candidates for that role).
    ``before``: how many earlier steps there are (references may name only those).
    ``require``: arguments the chosen skeleton sets (they must be given). ``string_cap``:
    the longest free text in an argument (a program goes in as a placeholder, so code
    arguments need no more room than text)."""
    params = tool_schema["parameters"]
    props = params.get("properties", {})
    required = list(params.get("required", []))
    names = [n for n in props if n in required or keep is None or n in keep or (require and n in require)]
    out_props: dict[str, Any] = {}
    columns = sorted({c for cols in facts.columns.values() for c in cols})
    for n in names:
        if overrides and n in overrides:
            out_props[n] = overrides[n]
            continue
        if path_args and n in path_args:
            out_props[n] = _path_schema(facts, path_args[n], creates, item, before)
            continue
        desc = str(props[n].get("description", "")).lower()
        items = props[n].get("items") if props[n].get("type") == "array" else None
        if (columns and "column" in desc and "new" not in desc and props[n].get("type") == "string"
                and "enum" not in props[n]):
            out_props[n] = _with_ref({"enum": columns}, item, before)   # a column the tables have
            continue
        if columns and items and "column" in str(items.get("description", "")).lower():
            out_props[n] = {"type": "array", "items": {"enum": columns},
                            "maxItems": min(int(props[n].get("maxItems", 10)), 10)}
            continue
        sub = _cap(_strip(copy.deepcopy(props[n])), string_cap)
        if sub.get("type") == "string" and "enum" not in sub and "pattern" not in sub:
            sub["pattern"] = _free_text(item, before)    # references inside text: earlier steps only
            out_props[n] = sub
            continue
        out_props[n] = _with_ref(sub, item, before) if sub.get("type") != "string" or "enum" in sub else sub
    return {"type": "object", "properties": out_props,
            "required": [n for n in names if n in required or (require and n in require)],
            "additionalProperties": False}


def step_schema(tool: str, args_schema: dict, each: bool | None = None, before: int = 6) -> dict:
    props: dict[str, Any] = {"tool": {"const": tool}}
    req = ["tool", "args", "why"]
    ref = _ref(False, before)
    if each is None and ref:        # free choice
        props["each"] = ref
    elif each and ref:
        props["each"] = ref
        req.insert(1, "each")
    props["args"] = args_schema
    props["why"] = {"type": "string", "maxLength": WHY_MAX_CHARS, "pattern": r"^[^\"\\\n]*$"}
    return {"type": "object", "properties": props, "required": req, "additionalProperties": False}


def _answer_pattern(n: int | None, names: list[str] | None) -> str:
    pat = ANSWER_PATTERN if n is None else ANSWER_PATTERN.replace("step[1-6]", f"step[1-{n}]")
    if names:   # the file names the request itself wrote may appear as written
        alts = "|".join(re.escape(x) for x in sorted(set(names), key=len, reverse=True))
        pat = pat.replace(r"|\. |", rf"|\. |({alts})|", 1)
    return pat


def plan_schema(step_alternatives: list[dict] | None = None, *,
                skeleton_steps: list[list[dict]] | None = None, names: list[str] | None = None) -> dict:
    """The whole plan. Either any step from ``step_alternatives`` at each position, or one
    of the fixed step sequences in ``skeleton_steps`` (each a list of step schemas).
    With skeletons of different lengths the plan is an ``anyOf`` by length, so the answer
    can name only the steps its own skeleton has."""
    if not skeleton_steps:
        answer = {"type": "string", "maxLength": ANSWER_MAX_CHARS, "pattern": _answer_pattern(None, names)}
        steps = {"type": "array", "items": {"anyOf": step_alternatives or []},
                 "minItems": 1, "maxItems": MAX_STEPS}
        return _plan_object(steps, answer)
    by_len: dict[int, list[list[dict]]] = {}
    for seq in skeleton_steps:
        by_len.setdefault(len(seq), []).append(seq)
    alts = []
    for n, group in by_len.items():
        answer = {"type": "string", "maxLength": ANSWER_MAX_CHARS, "pattern": _answer_pattern(n, names)}
        seqs = [{"type": "array", "prefixItems": seq, "items": False, "minItems": n, "maxItems": n}
                for seq in group]
        alts.append(_plan_object(seqs[0] if len(seqs) == 1 else {"anyOf": seqs}, answer))
    return alts[0] if len(alts) == 1 else {"anyOf": alts}


def _plan_object(steps: dict, answer: dict) -> dict:
    return {"type": "object", "properties": {"steps": steps, "answer": answer},
            "required": ["steps", "answer"], "additionalProperties": False}
