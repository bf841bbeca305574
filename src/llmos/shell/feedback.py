"""Feedback learning: ratings, approved plans as examples, habits, measured costs.

Map:
- ``rate(store, run, good, note) -> (record, habit evidence)``: store the rating. Good: the run's plan becomes an
  approved example (retrieved for similar requests by the planner) and the run's
  choices count as habit evidence. Bad: every approved copy of that plan is marked
  bad and the plan is blocked, so it is never retrieved or run again for that request.
- Habits (per user): ``output_dir`` (the folder new files go to) and ``arg:TOOL.ARG``
  (a preferred value of an enum argument, e.g. a chart style). Learned from rated-good
  runs (``HABIT_MIN_EVIDENCE`` of them agree) or set explicitly; ``active_habits``
  returns the ones in force; ``apply_habits(plan, workspace, request, habits, registry)``
  applies them where the request does not say otherwise and returns what it applied
  (recorded with the run and shown by ``llmos explain``).
- ``observe_costs(kernel, record)``: measured step seconds into the kernel's estimates,
  when the kernel exposes ``estimates.observe``.
"""

from __future__ import annotations

import logging
import posixpath
import re
from typing import Any

from llmos.runs import RunRecord, StepStatus
from llmos.shell.context import Workspace, mentioned
from llmos.shell.plan import REF_RE, Plan

__all__ = ["rate", "active_habits", "apply_habits", "learn_habits", "observe_costs",
           "HABIT_MIN_EVIDENCE"]

log = logging.getLogger(__name__)

HABIT_MIN_EVIDENCE = 2     # rated-good runs that must agree before a learned habit applies


def _enum_args(registry: Any, tool: str) -> dict[str, list[str]]:
    try:
        props = registry.get(tool).parameters.get("properties", {})
    except Exception:  # noqa: BLE001 - a tool removed since the run: no evidence
        return {}
    return {k: list(v["enum"]) for k, v in props.items() if isinstance(v, dict) and "enum" in v}


def _mentions(request: str, value: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(value.lower())}(?!\w)", request.lower()) is not None


def learn_habits(store: Any, user: str, rec: RunRecord, registry: Any = None) -> list[str]:
    """Habit evidence from one rated-good run; returns what was counted."""
    seen: list[str] = []
    for s in rec.steps:
        if s.status is not StepStatus.SUCCEEDED:
            continue
        for f in s.files or []:
            folder = posixpath.dirname(f)
            if folder and not folder.startswith(("/", "..")):
                seen.append(f"output_dir={folder}")
                store.habit_evidence(user, "output_dir", folder)
        if registry is not None:
            for arg, values in _enum_args(registry, s.tool).items():
                v = s.args.get(arg)
                if isinstance(v, str) and v in values and not _mentions(rec.request, v):
                    key = f"arg:{s.tool}.{arg}"
                    seen.append(f"{key}={v}")
                    store.habit_evidence(user, key, v)
    return seen


def rate(store: Any, run: str, good: bool, note: str | None = None, *, user: str = "",
         registry: Any = None) -> tuple[RunRecord, list[str]]:
    """The rated run's record and the habit evidence a good rating counted."""
    rec = store.rate(run, good, note)
    return rec, (learn_habits(store, user or rec.user, rec, registry) if good else [])


def active_habits(store: Any, user: str) -> dict[str, tuple[str, int]]:
    """key -> (value, evidence) for habits in force (explicit, or learned often enough)."""
    out: dict[str, tuple[str, int]] = {}
    for h in store.habits(user):          # ordered by key, evidence desc
        if h["key"] in out:
            continue
        if h["evidence"] >= HABIT_MIN_EVIDENCE:
            out[h["key"]] = (h["value"], h["evidence"])
    return out


def _why(evidence: int) -> str:
    return "set by you" if evidence >= 1000 else f"learned from {evidence} rated runs"


def apply_habits(plan: Plan, facts: Workspace, request: str, habits: dict[str, tuple[str, int]],
                 registry: Any) -> list[str]:
    """Apply habits to ``plan`` in place; returns one line per habit applied."""
    applied: list[str] = []
    named = set(mentioned(request, facts.paths))
    named |= {w for w in re.findall(r"[\w.\-/]+\.\w{1,5}\b", request)}   # new files it names
    folder = habits.get("output_dir")
    for i, step in enumerate(plan.steps, 1):
        try:
            tool = registry.get(step.tool)
        except Exception:  # noqa: BLE001 - check_plan reports unknown tools
            continue
        if folder:
            for arg, mode in tool.path_args.items():
                v = step.args.get(arg)
                if (mode == "w" and isinstance(v, str) and v and "/" not in v and not REF_RE.search(v)
                        and v not in named and not any(f == v for f, _ in facts.files)
                        and not _mentions(request, folder[0])):
                    new = posixpath.join(folder[0], v)
                    _replace_everywhere(plan, v, new)
                    applied.append(f"output_dir={folder[0]} ({_why(folder[1])}): step {i} writes {new}")
        for arg, values in _enum_args(registry, step.tool).items():
            h = habits.get(f"arg:{step.tool}.{arg}")
            if not h or h[0] not in values:
                continue
            current = step.args.get(arg)
            if isinstance(current, str) and _mentions(request, current):
                continue          # the person asked for this value
            if current != h[0]:
                step.args[arg] = h[0]
                applied.append(f"{step.tool}.{arg}={h[0]} ({_why(h[1])}): step {i}")
    plan.notes.extend(f"habit applied: {a}" for a in applied)
    return applied


def _replace_everywhere(plan: Plan, old: str, new: str) -> None:
    """A renamed output file is renamed in every later argument and in the answer too."""
    for step in plan.steps:
        for k, v in list(step.args.items()):
            if v == old:
                step.args[k] = new
    plan.answer = plan.answer.replace(old, new)


def observe_costs(kernel: Any, rec: RunRecord) -> int:
    """Feed measured step seconds to the kernel's estimates; returns observations made."""
    est = getattr(kernel, "estimates", None)
    observe = getattr(est, "observe", None)
    if observe is None:
        return 0
    n = 0
    agent = rec.agent or "shell"
    for s in rec.steps:
        if s.seconds is None or s.status is not StepStatus.SUCCEEDED:
            continue
        try:
            observe((agent, f"tool:{s.tool}", "-"), 0, s.seconds)
            n += 1
        except Exception as e:  # noqa: BLE001 - estimates are advisory; never fail a run
            log.debug("estimates.observe failed: %s", e)
    return n
