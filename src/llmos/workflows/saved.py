"""A run of a workflow's saved plan through the shell's runner.

``SavedPlanRunner(kernel, plan, ...)`` is a ``Runner`` whose first plan is the approved,
saved one (checked again against the registry and today's workspace) instead of a fresh
one from the model; a revision after a failed step still asks the planner, and is
checked like any revised step. ``idempotent(plan, registry)`` says whether every step of
the plan may run twice safely (a failed run is retried only then).
"""

from __future__ import annotations

from typing import Any

from llmos.shell.execution import Execution
from llmos.shell.plan import LLM_TOOL, Plan
from llmos.shell.planner import PlanError, check_plan
from llmos.shell.runner import Runner

__all__ = ["SavedPlanRunner", "idempotent"]


class _SavedExecution(Execution):
    async def _plan(self, request: str) -> Plan:
        saved = getattr(self.r, "saved_plan", None)
        if saved is None or getattr(self, "_saved_used", False):
            return await super()._plan(request)
        self._saved_used = True
        try:
            return check_plan(Plan.from_dict(saved, request, source="workflow"), self.r.registry, self.ws)
        except PlanError:
            self.rec.notes.append("the saved plan no longer checks; planning afresh")
            return await super()._plan(request)


class SavedPlanRunner(Runner):
    execution = _SavedExecution

    def __init__(self, kernel: Any, plan: dict[str, Any] | None, **kw: Any) -> None:
        super().__init__(kernel, **kw)
        self.saved_plan = plan          # Plan.to_dict(); None: plan from the model


def idempotent(plan: dict[str, Any], registry: Any) -> tuple[bool, str]:
    """(True, "") when every step's tool is idempotent, else (False, the first one that is not)."""
    for i, s in enumerate(plan.get("steps") or [], 1):
        name = s.get("tool")
        if name == LLM_TOOL:
            continue
        try:
            tool = registry.get(name)
        except Exception:    # noqa: BLE001 - a tool gone from the registry is not known to be safe
            return False, f"step {i} ({name}) is not a known tool"
        if not getattr(tool, "idempotent", False):
            return False, f"step {i} ({name}) is not idempotent"
    return True, ""
