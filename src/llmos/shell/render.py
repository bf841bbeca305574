"""Words for people: the answer sentence, plan listings and the ``explain`` report.

Map:
- ``fill_answer(template, outputs, summaries) -> str``: the plan's answer template with
  every ``$stepN.output[.field]`` replaced by the tool's value. A reference the output
  cannot satisfy falls back to the deepest part it names, or the step's headline value
  (a short text or number) or its summary; an empty value reads "none"; a template that
  names no step, or that needed a fallback, gets the last step's one-line summary added
  (a template that names no step: the summary of every branch end, ``leaves``), so the
  answer always states what the tools computed (never a number the model guessed).
- ``short(value, n)``: a value as at most ``n`` characters of one line.
- ``plan_lines(plan, risks)``: numbered steps with risk and reason (for ``llmos shell``).
- ``explain_text(record) -> str``: every recorded fact of a run (a ``RunRecord``), for
  ``llmos explain``.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from llmos.runs import RunRecord
from llmos.shell.plan import REF_RE, Unresolved, render_value, resolve_ref

__all__ = ["fill_answer", "cut_repeats", "short", "plan_lines", "explain_text", "primary"]

_PRIMARY_KEYS = ("value", "result", "answer", "text", "total", "count")


def primary(value: Any) -> Any:
    """The headline of a tool output: a record's value/result/... field, else the output."""
    if isinstance(value, dict):
        for k in _PRIMARY_KEYS:
            if k in value and not isinstance(value[k], (dict, list)):
                return value[k]
    return value


def short(value: Any, n: int = 120) -> str:
    s = value if isinstance(value, str) else json.dumps(value, default=str)
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


_MISSING = object()


def _step(v: Any, key: str) -> Any:
    if isinstance(v, dict):
        return v.get(key, _MISSING)
    if isinstance(v, list) and key.isdigit():
        return v[int(key)] if int(key) < len(v) else _MISSING
    return _MISSING


def cut_repeats(text: str, min_len: int = 12) -> str:
    """Cut a template where a phrase of ``min_len``+ characters starts repeating (a small
    model's loop), keeping the first occurrence."""
    best = len(text)
    for w in range(min_len, min(60, len(text) // 2) + 1):
        seen: dict[str, int] = {}
        for i in range(len(text) - w + 1):
            chunk = text[i:i + w]
            if chunk in seen and i >= seen[chunk] + w:
                best = min(best, i)
                break
            seen.setdefault(chunk, i)
    return text[:best].rstrip(" ,;:") if best < len(text) else text


def _cut_template(template: str) -> str:
    """``cut_repeats`` on the words only: each reference counts as one distinct mark."""
    refs: list[str] = []

    def mark(m) -> str:
        refs.append(m.group(0))
        return f"\x00{len(refs) - 1}\x00"
    masked = cut_repeats(REF_RE.sub(mark, template))
    return re.sub("\x00(\\d+)\x00", lambda m: refs[int(m.group(1))], masked)


HEADLINE_MAX_CHARS = 400   # a step's headline value stands in for a bad reference up to this size


def _headline(output: Any, summary: str | None) -> str:
    """What a reference to a missing field shows: the output's headline value (a file's
    text, a computed value) when it is short, else the step's one-line summary."""
    head = primary(output)
    if head is not output and not isinstance(head, bool):
        text = render_value(head)
        if text and len(text) <= HEADLINE_MAX_CHARS:
            return text
    return summary or render_value(head)


LEAVES_SAID = 8            # most branch ends an answer without a template lists


def fill_answer(template: str, outputs: dict[int, Any], summaries: dict[int, str],
                leaves: list[int] | None = None) -> str:
    """``leaves``: the steps whose results no later step reads (the ends of the plan's
    branches); a template that names no step gets all of their summaries, in order."""
    template = _cut_template(template or "")
    used: set[int] = set()
    fell_back = False

    def one(m) -> str:
        nonlocal fell_back
        n = int(m.group(1)) if m.group(1) else None
        if n is not None:
            used.add(n)
        try:
            v = resolve_ref(m, outputs)
            text = render_value(primary(v) if not m.group(3) else v)
        except Unresolved:
            fell_back = True
            if n is None or n not in outputs:
                return "(unknown)"
            v, depth = outputs[n], 0
            for key in [p for p in m.group(3).split(".") if p]:
                nxt = _step(v, key)
                if nxt is _MISSING:
                    break
                v, depth = nxt, depth + 1
            text = render_value(v) if depth else _headline(outputs[n], summaries.get(n))
        if not text.strip():      # an empty list or text: say so, and add the step's summary
            fell_back = True
            text = "none"
        if "\n" in text:          # a list inside a sentence: one item per line after a colon
            text = "\n" + text
        return text

    text = REF_RE.sub(one, template or "").strip()
    if not used and outputs and leaves:
        ends = [n for n in leaves if n in outputs][-LEAVES_SAID:]
        said = [x for n in ends if (x := summaries.get(n) or render_value(primary(outputs[n]))) and x not in text]
        if len(said) > 1:
            return "\n".join([text, *said] if text else said)
    if (not used or fell_back) and outputs:
        last = max(outputs)
        extra = summaries.get(last) or render_value(primary(outputs[last]))
        if extra and extra not in text:
            text = f"{text} ({extra})" if text else extra
    return text


def plan_lines(steps: list[dict[str, Any]]) -> list[str]:
    out = []
    for i, s in enumerate(steps, 1):
        each = f" for each of {s['each']}" if s.get("each") else ""
        risk = s.get("risk", "")
        out.append(f"{i}. [{risk}] {s['tool']}{each} {short(s.get('args', {}), 100)}"
                   + (f" — {s['why']}" if s.get("why") else ""))
    return out


def explain_text(rec: RunRecord) -> str:
    """A run's full record, as text."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec.created))
    lines = [f"run {rec.run}  {when}  status: {rec.status.label}",
             f"request: {rec.request}",
             f"workspace: {rec.workdir}   model: {rec.model}   user: {rec.user}"]
    if rec.rating:
        lines.append(f"rated: {rec.rating}" + (f" ({rec.note})" if rec.note else ""))
    if rec.examples:
        lines.append("examples shown to the planner: " + ", ".join(rec.examples))
    if rec.facts:
        lines.append("facts the planner saw:")
        lines += [f"  {f}" for f in rec.facts]
    for h in rec.habits:
        lines.append(f"habit applied: {h}")
    for n in rec.notes:
        lines.append(f"note: {n}")
    if rec.timings:
        lines.append("timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in rec.timings.items()))
    lines.append("plan:")
    deps = rec.deps or {}
    for i, s in enumerate(rec.steps, 1):
        dep = deps.get(str(i)) or deps.get(i) or []
        after = f" after step {', '.join(map(str, dep))}" if dep else ""
        lines.append(f"  {i}. {s.tool} [{s.risk or '?'}] {s.status.label}{after}")
        if s.why:
            lines.append(f"     why: {s.why}")
        lines.append(f"     args: {short(s.args, 200)}")
        if s.summary:
            lines.append(f"     result: {short(s.summary, 200)}")
        if s.error:
            lines.append(f"     error: {s.error}")
        if s.seconds is not None:
            lines.append(f"     took {s.seconds:.3f} s")
    if rec.kernel:
        lines.append("kernel decisions:")
        for k, v in rec.kernel.items():
            lines.append(f"  {k}: {short(v, 200)}")
    lines.append(f"answer: {rec.answer}")
    return "\n".join(lines)
