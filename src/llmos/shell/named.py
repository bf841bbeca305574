"""The files a request names, and whether a plan uses them.

Map:
- ``named_files(request)``: the file names the request states, in order, without repeats
  (a stem and a suffix of letters: notes.txt, q1_report.md, data/2024.csv; not part of an
  address or a URL).
- ``unused_names(plan, ws)``: the named files no step of the plan touches (by name,
  through a pattern, or as the existing file a name resolves to).
- ``strings(value)``: every string inside an argument value.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from typing import Any

from llmos.shell.context import Workspace
from llmos.shell.normalize import resolve_path
from llmos.shell.plan import Plan

__all__ = ["named_files", "unused_names", "strings"]


# a file name as people write one: a stem and a suffix of letters (notes.txt, q1_report.md,
# data/2024.csv); not part of an address (a@b.com, http://x.org/a.html)
_FILE_RE = re.compile(r"(?<![\w@/.:~-])((?:[\w-]+/)*[\w][\w.-]*\.[A-Za-z][A-Za-z0-9]{0,4})(?![\w@/-])")


def named_files(request: str) -> list[str]:
    """The file names the request states, in order, without repeats."""
    out: list[str] = []
    for m in _FILE_RE.finditer(request):
        name = m.group(1)
        end = request[m.end():m.end() + 1]
        if end == "." and request[m.end() + 1:m.end() + 2].isalnum():
            continue                      # "a.b.c" cut short
        if "://" in request[max(0, m.start() - 12):m.start()]:
            continue
        stem, _, suffix = posixpath.basename(name).rpartition(".")
        if len(stem) == 1 and len(suffix) == 1:
            continue                      # "e.g", "i.e"
        if name.lower() not in (n.lower() for n in out):
            out.append(name)
    return out


def unused_names(plan: Plan, ws: Workspace) -> list[str]:
    """The files the request names that no step of ``plan`` touches: by name in any
    argument, through a pattern that matches it, or as the existing file a step's
    name resolves to. A refusal or a question uses none and is not asked to."""
    if not plan.steps or plan.refuse or plan.ask:
        return []
    texts = [s.lower() for st in plan.steps for s in strings(st.args)]
    texts += [str(st.each).lower() for st in plan.steps if st.each]
    pats = [t for t in texts if any(c in t for c in "*?")]
    missed = []
    for name in named_files(plan.request):
        low = name.lower()
        base = posixpath.basename(low)
        if any(low in t or base in t for t in texts):
            continue
        if any(fnmatch.fnmatch(base, posixpath.basename(p)) for p in pats):
            continue
        fixed = resolve_path(name, ws.paths)
        if fixed and any(fixed.lower() in t for t in texts):
            continue
        missed.append(name)
    return missed


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []
