"""Case-based adaptation: how an example's plan is fitted to a new request.

Map:
- ``fit(example, facts, writes) -> float``: a factor on an example's retrieval score:
  lower for each fact its plan needs that the request lacks (a new file to write, a
  number to compare with, a pattern, arithmetic, a table cell) or has only of another
  kind, and when only one of them asks "which X", when a writing plan meets a question,
  or a plan that writes nothing meets a request naming a new file; higher for each
  telling kind of fact both use and for the same statistic.
- ``role_overrides(example_args, ex_facts, facts, props) -> {arg: schema}``: each of
  the example's arguments narrowed to the new request's values of the same role (see
  its NOTE).
- ``adapt_refs(plan, facts) -> notes``: references in a generated plan pointed at the
  statistic, the end and the row label the request asks for.
- ``needs``, ``missing``, ``mismatched``: the facts an example's arguments came from.

Nothing here knows a particular request: roles are generic readings (``extract``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from llmos.shell.examples import Example, _ext_class
from llmos.shell.extract import Facts, spans
from llmos.shell.plan import REF_RE, Plan

__all__ = ["fit", "role_overrides", "adapt_refs", "needs", "missing", "mismatched", "AGG_FIELDS"]


def _num(text: str) -> int | float:
    f = float(text)
    return int(f) if f.is_integer() else f


_STRICT_ROLES = ("globs", "outside", "paths", "expression", "delay", "numbers", "cells", "terms")
AGG_FIELDS = ("sum", "mean", "min", "max", "count", "median")
_EXTREMES = ("min", "max")   # a statistic maps onto one of its own class: sum <-> mean, min <-> max
ROLE_MISS_PENALTY = 0.4   # retrieval score x this per fact an example needs that the request lacks
ROLE_MATCH_BONUS = 1.3    # retrieval score x this per telling kind of fact both use
_TELLING = ("globs", "outside", "expression", "delay", "cells")
TARGET_MISMATCH = 0.7     # retrieval score x this when only one of two table questions asks "which X"
QUESTION_WRITES = 0.5    # x this for a plan that writes, when the request only asks
NEW_UNWRITTEN = 0.6      # x this for a plan that writes nothing, when the request names a new file
CLASS_MISMATCH = 0.7      # x this per path the request has only of another kind (a table for a text file)


def _names(f: Facts) -> set[str]:
    return {n for n, _ in f.files} | set(f.dirs)


def _roles(value: Any, f: Facts) -> list[str]:
    """Which facts of its own request an example's argument value was taken from."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        return ["numbers"] if any(_num(n) == value for n in f.numbers) else []
    if not isinstance(value, str):
        return []
    v = value.strip()
    found = []
    for role in ("globs", "outside", "paths", "expression", "text", "terms", "delay", "columns", "cells",
                 "cellcols"):
        if v and v in _role_values(role, f):
            found.append(role)
    if "outside" in found and "paths" in found:
        found.remove("paths")
    return found


def _role_values(role: str, f: Facts) -> list[Any]:
    if role == "paths":
        return [m for m in f.mentioned if m not in f.outside]
    return {"globs": f.globs, "outside": f.outside,
            "expression": [f.expression] if f.expression else [],
            "text": [*f.quoted, *([f.payload] if f.payload else [])], "terms": [*f.terms, *f.quoted],
            "delay": [f.delay] if f.delay else [], "columns": f.named_columns,
            "cells": f.named_values, "cellcols": f.value_columns,
            "numbers": [_num(n) for n in f.numbers], "span": spans(f.request)}[role]


def _stand_ins(role: str, f: Facts) -> list[Any]:
    """Facts that may stand in for a missing role: a named existing file for a pattern
    (the tools that take "*.py" take "app.log" as well), quoted text for a search word."""
    if role == "globs":
        return [m for m in f.existing if m not in f.outside]
    return [*f.quoted, *([f.payload] if f.payload else [])] if role == "terms" else []


def _all_columns(f: Facts) -> list[str]:
    return list(dict.fromkeys(c for cols in f.columns.values() for c in cols))


def _refine_paths(value: str, ex: Facts, cands: list[Any], facts: Facts) -> list[Any]:
    """Keep the candidates like the example's path: existing or new, same suffix (or a folder)."""
    existed = value in _names(ex)
    now = _names(facts)
    for keep in (lambda c: (c in now) == existed,
                 lambda c: Path(c).suffix.lower() == Path(value).suffix.lower()):
        narrowed = [c for c in cands if keep(c)]
        if narrowed:
            cands = narrowed
    return cands


def _typed_columns(value: str, ex: Facts, cands: list[str], facts: Facts) -> list[str]:
    """Columns of the same kind (numbers or not) as the example's column; named ones first
    when ``cands`` holds any, else every column of that kind in the tables."""
    numeric = value in ex.numeric_columns
    same = [c for c in cands if (c in facts.numeric_columns) == numeric]
    if same:
        return same
    return [c for c in _all_columns(facts) if (c in facts.numeric_columns) == numeric]


def needs(example_args: dict, ex: Facts) -> list[tuple[str, Any]]:
    """The strict facts an example's arguments were drawn from: (role, example value)."""
    out = []
    for value in example_args.values():
        for role in _roles(value, ex):
            if role in _STRICT_ROLES:
                out.append((role, value))
    return out


def missing(example_args: dict, ex: Facts, facts: Facts) -> int:
    """How many of the facts an example needs this request lacks (a new file to write,
    a number to compare with, a pattern, an arithmetic expression, ...)."""
    return sum(not cands for _, _, cands in _needed(example_args, ex, facts))


def _needed(example_args: dict, ex: Facts, facts: Facts) -> list[tuple[str, Any, list]]:
    """(role, example value, the request's candidates of that role and kind) per need."""
    out = []
    for role, value in needs(example_args, ex):
        cands = _role_values(role, facts) or _stand_ins(role, facts)
        if role == "paths" and cands:
            existed = value in _names(ex)
            cands = [c for c in cands if (c in _names(facts)) == existed]
        out.append((role, value, cands))
    return out


def _kind(path: str, names: set[str]) -> str:
    """A path's kind for fit: table, code, image, text, or folder."""
    suffix = Path(path).suffix.lstrip(".")
    return _ext_class(suffix) if suffix else ("folder" if path in names or "/" not in path else "text")


def mismatched(example_args: dict, ex: Facts, facts: Facts) -> int:
    """Paths the example needs that the request has only of another kind."""
    n = 0
    for role, value, cands in _needed(example_args, ex, facts):
        if role == "paths" and cands:
            want = _kind(value, _names(ex))
            n += not any(_kind(c, _names(facts)) == want for c in cands)
    return n


def fit(ex: Example, facts: Facts, writes: bool = False) -> float:
    """How well an example's plan fits the request's facts, as a factor on its retrieval
    score: lower for each fact it needs that the request lacks, higher for each kind of
    telling fact both use (a pattern, an outside path, arithmetic, a delay, a table cell)
    and when both ask for the same statistic; lower for a plan that ``writes`` when the
    request is a question that changes nothing, or that writes nothing when the request
    names a new file."""
    f = 1.0
    used: set[str] = set()
    for s in ex.plan["steps"]:
        args = s.get("args", {})
        f *= ROLE_MISS_PENALTY ** missing(args, ex.fact_obj, facts)
        f *= CLASS_MISMATCH ** mismatched(args, ex.fact_obj, facts)
        used |= {role for role, _ in needs(args, ex.fact_obj)}
    for role in used & set(_TELLING):
        if _role_values(role, facts):
            f *= ROLE_MATCH_BONUS
    if ex.fact_obj.aggregate and ex.fact_obj.aggregate == facts.aggregate:
        f *= ROLE_MATCH_BONUS                    # both ask for a total, an average, a count ...
    if bool(ex.fact_obj.target) != bool(facts.target) and (ex.fact_obj.columns and facts.columns):
        f *= TARGET_MISMATCH                     # one asks "which store", the other for a number
    if writes and facts.question:
        f *= QUESTION_WRITES                     # "what is on my list?" is not "add to my list"
    if not writes and any(m not in facts.outside for m in facts.new_files):
        f *= NEW_UNWRITTEN                       # "... and save them to errors.txt" must write it
    return f


def role_overrides(example_args: dict, ex: Facts, facts: Facts,
                   props: dict | None = None) -> dict[str, dict]:
    """Narrow an argument to the request's own values of the role the example's value had.

    NOTE: case-based adaptation. When an example's argument equals one of its request's
    facts (a named path, a pattern, the quoted text, the arithmetic, a number, a column
    or a table cell it names), the analogous argument of the new request is offered only
    the new request's facts of that role; paths keep to the example's kind (an existing
    file or a new one, its suffix or a folder), columns to the example's kind (numbers or
    not). A boolean that follows the example's sort order (or the end it asked for:
    highest, cheapest) follows the new request's. A free-text argument copied from the
    example's words (a reminder's message, an event's title) is offered the new request's
    word spans. With no fact of that role, the argument keeps its general schema.
    Nothing here knows a particular request.
    """
    out: dict[str, dict] = {}
    props = props or {}
    for arg, value in example_args.items():
        if isinstance(value, bool):
            if ex.order and facts.order:
                out[arg] = {"const": value if ex.order == facts.order else not value}
            elif ex.extreme and facts.extreme and arg in ("descending", "reverse"):
                out[arg] = {"const": value if ex.extreme == facts.extreme else not value}
            elif ex.order and not facts.order and not facts.extreme and arg in ("descending", "reverse"):
                out[arg] = {"const": value if ex.order == "ascending" else not value}   # plain "sort": ascending
            continue
        allowed = props.get(arg, {}).get("enum")
        if (isinstance(value, str) and ex.aggregate and value == ex.aggregate and facts.aggregate
                and (allowed is None or facts.aggregate in allowed)
                and (value in _EXTREMES) == (facts.aggregate in _EXTREMES)):
            out[arg] = {"const": facts.aggregate}      # "total" -> sum, as "average" was -> mean
            continue
        roles = _roles(value, ex)
        cands: list[Any] = []
        for role in roles:
            for c in _role_values(role, facts) or _stand_ins(role, facts):
                if c not in cands:
                    cands.append(c)
        if cands and "paths" in roles:
            cands = _refine_paths(value, ex, cands, facts)
        if value in (".", "./") and arg in (props or {}) and not roles:
            # the whole workspace: still the whole workspace, or what the request names
            cands = [".", *[m for m in facts.existing if m not in facts.outside], *facts.globs]
        is_column = isinstance(value, str) and value in _all_columns(ex) and facts.columns
        if is_column and "cells" not in roles:
            cands = _typed_columns(value, ex, [c for c in cands if c in _all_columns(facts)], facts)
        if (not roles and isinstance(value, str) and not is_column and _free_text_arg(props.get(arg, {}))
                and _is_span(value, ex.request)):
            cands = _role_values("span", facts)
        if cands:
            out[arg] = {"enum": cands}
    return out


def _free_text_arg(prop: dict) -> bool:
    return prop.get("type") == "string" and "enum" not in prop and "pattern" not in prop


def _is_span(value: str, request: str) -> bool:
    v = value.strip().lower()
    return bool(v) and re.search(rf"(?<!\w){re.escape(v)}(?!\w)", request.lower()) is not None


_MAX_TO_MIN = {"largest": "smallest", "highest": "lowest", "biggest": "smallest", "most": "least",
               "maximum": "minimum", "greatest": "least"}
_MIN_TO_MAX = {"smallest": "largest", "lowest": "highest", "least": "most", "minimum": "maximum"}


def _flip_words(answer: str, extreme: str) -> str:
    """Extreme words outside references, turned to the end the request asks for."""
    table = _MAX_TO_MIN if extreme == "min" else _MIN_TO_MAX
    parts = re.split(r"(\$(?:step\d+\.output|item)(?:\.[A-Za-z0-9_]+)*)", answer)
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"\b(" + "|".join(table) + r")\b",
                          lambda m: _case(table[m.group(1).lower()], m.group(1)), parts[i], flags=re.I)
    return "".join(parts)


def _case(word: str, like: str) -> str:
    return word.capitalize() if like[:1].isupper() else word


def adapt_refs(plan: Plan, facts: Facts) -> list[str]:
    """Point references at the statistic, the end and the row label the request asks for.

    An example's ``$step1.output.sum`` becomes ``.max`` for "the largest number",
    ``.largest`` becomes ``.smallest`` for "the lowest total", and a row's name field
    copied from the example's table (``rows.0.hotel``) becomes this table's first text
    column: the model copies the example's reference; the request decides what it names."""
    swaps: dict[str, str] = {}
    stats = [a for a in AGG_FIELDS if a != "count"]     # "count" names too many other things
    if facts.aggregate in stats:
        for agg in stats:
            if agg != facts.aggregate:
                swaps[agg] = facts.aggregate
    if facts.extreme:
        want, other = ("largest", "smallest") if facts.extreme == "max" else ("smallest", "largest")
        swaps[other] = want
    cols = _all_columns(facts)
    table = next((t for t in facts.mentioned if t in facts.columns), next(iter(facts.columns), None))
    label = facts.target or next((c for c in facts.columns.get(table, []) if c not in facts.numeric_columns),
                                 None)
    if not swaps and not label:
        return []
    notes: list[str] = []
    flipped: list[bool] = []

    def fix(text: str) -> str:
        def one(m: re.Match) -> str:
            parts = m.group(3).split(".")
            new = [swaps.get(p, p) if p in swaps else p for p in parts]
            # a row's name field copied from the example's table (or the filter's own column,
            # whose value the request already said): this table's label column
            if (label and len(new) >= 3 and (new[-1] not in cols or new[-1] in facts.value_columns)
                    and (new[-3] == "rows" and new[-2].isdigit() or new[-2] == "first")):
                new[-1] = label
            if new != parts:
                if any(p in ("largest", "smallest") and p != q for p, q in zip(parts, new, strict=True)):
                    flipped.append(True)
                changed = m.group(0)[: m.start(3) - m.start(0)] + ".".join(new)
                notes.append(f"reference {m.group(0)} -> {changed} (the request asks for that)")
                return changed
            return m.group(0)
        return REF_RE.sub(one, text)

    for step in plan.steps:
        for k, v in step.args.items():
            if isinstance(v, str) and REF_RE.search(v):
                step.args[k] = fix(v)
    plan.answer = fix(plan.answer)
    if flipped:          # the words around a flipped reference follow it
        plan.answer = _flip_words(plan.answer, facts.extreme or "max")
    if facts.target:     # "which store ...?" is answered by naming the store
        rows = [m for m in REF_RE.finditer(plan.answer) if m.group(1)
                and re.match(r"\.(?:first|rows\.\d+)(?:\.|$)", m.group(3))]
        named = any(m.group(3).endswith("." + facts.target) for m in REF_RE.finditer(plan.answer))
        if rows and not named:
            head = re.match(r"\.(?:first|rows\.\d+)", rows[0].group(3)).group(0)
            ref = f"$step{rows[0].group(1)}.output{head}.{facts.target}"
            plan.answer = plan.answer.rstrip(". ") + f" ({ref})."
            notes.append(f"answer: added {ref} (the request asks which {facts.target})")
    return notes
