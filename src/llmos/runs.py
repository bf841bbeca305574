"""Runs as data: the ordered run and step lifecycles and the typed records the API, the
shell and the SDK exchange (a run is one plain-language request carried out as steps).

Map:
- ``RunStatus``: PLANNING < RUNNING < PENDING < SUCCEEDED < PLANNED < FAILED < DENIED <
  NEEDS_CONFIRMATION < REJECTED < CANCELLED; ``finished`` is derived from the order
  (anything from SUCCEEDED on), ``ok`` is SUCCEEDED or PLANNED (a plan-only run).
- ``StepStatus``: PLANNED < RUNNING < SUCCEEDED < FAILED < SKIPPED < DENIED <
  NEEDS_CONFIRMATION; ``finished`` from SUCCEEDED on, ``had_effect`` says whether the
  step may have changed something (it ran: RUNNING, SUCCEEDED or FAILED).
- ``Step`` / ``Run``: frozen records read once from the JSON a run travels as
  (``from_dict``, unknown keys kept in ``extra``) and written back with ``to_dict``.

Statuses travel as lower-case names (``"needs_confirmation"``); ``parse`` reads them
and names the expected values when one is unknown.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from llmos.errors import InvalidArgument

__all__ = ["RunStatus", "StepStatus", "Run", "Step"]


class _Named(enum.IntEnum):
    @classmethod
    def parse(cls, value: Any) -> Any:
        if isinstance(value, cls):
            return value
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            raise InvalidArgument(f"status: unknown {cls.__name__} {value!r}", field="status",
                                  expected=", ".join(s.label for s in cls)) from None

    @property
    def label(self) -> str:
        """The status as it travels in JSON."""
        return self.name.lower()

    @classmethod
    def labels(cls, members: Any = None) -> tuple[str, ...]:
        return tuple(s.label for s in (cls if members is None else members))


class RunStatus(_Named):
    """Lifecycle of a run. Order matters: ``finished`` means ``>= SUCCEEDED``."""

    PLANNING = 0            # the planner is writing (or revising) the plan
    RUNNING = 1             # steps are being carried out
    PENDING = 2             # a step waits for the person's yes or no
    SUCCEEDED = 3           # every step done, the answer given
    PLANNED = 4             # plan only (nothing was run), as asked
    FAILED = 5
    DENIED = 6              # the agent's rights refused a step
    NEEDS_CONFIRMATION = 7  # stopped before a risky step nobody approved
    REJECTED = 8            # the person said no
    CANCELLED = 9           # the caller gave up on it

    @property
    def finished(self) -> bool:
        return self >= RunStatus.SUCCEEDED

    @property
    def ok(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.PLANNED)

    @classmethod
    def final(cls) -> tuple[str, ...]:
        """The labels of the finished statuses, in order."""
        return cls.labels(s for s in cls if s.finished)


class StepStatus(_Named):
    """Lifecycle of one step of a run. ``finished`` means ``>= SUCCEEDED``."""

    PLANNED = 0             # in the plan, not started
    RUNNING = 1
    SUCCEEDED = 2
    FAILED = 3
    SKIPPED = 4             # its ``when`` guard was false
    DENIED = 5              # refused by the agent's rights; nothing ran
    NEEDS_CONFIRMATION = 6  # waited for a yes that did not come; nothing ran

    @property
    def finished(self) -> bool:
        return self >= StepStatus.SUCCEEDED

    @property
    def had_effect(self) -> bool:
        """Whether the step may have changed something (it started)."""
        return self in (StepStatus.RUNNING, StepStatus.SUCCEEDED, StepStatus.FAILED)

    @classmethod
    def no_effect(cls) -> tuple[str, ...]:
        return cls.labels(s for s in cls if not s.had_effect)


_STEP_KEYS = ("tool", "args", "why", "risk", "status", "summary", "error", "each", "when")
_RUN_KEYS = ("id", "request", "owner", "status", "created", "updated", "plan", "steps", "pending",
             "answer", "explanation", "error")


@dataclass(frozen=True)
class Step:
    """One step of a run as the API shows it."""

    tool: str                                  # registry name of the tool (or "llm")
    args: dict[str, Any] = field(default_factory=dict)
    status: StepStatus = StepStatus.PLANNED
    why: str = ""                              # the planner's reason for the step
    risk: str = ""                             # read | write | destructive | exec | network
    summary: str = ""                          # one line on what it did
    error: str | None = None
    each: Any = None                           # the list it runs over, when it is an ``each`` step
    when: Any = None                           # its guard, when it has one
    extra: dict[str, Any] = field(default_factory=dict)   # keys this record does not name

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        return cls(tool=str(d.get("tool", "")), args=dict(d.get("args") or {}),
                   status=StepStatus.parse(d.get("status") or "planned"), why=str(d.get("why") or ""),
                   risk=str(d.get("risk") or ""), summary=str(d.get("summary") or ""),
                   error=None if d.get("error") is None else str(d.get("error")),
                   each=d.get("each"), when=d.get("when"),
                   extra={k: v for k, v in d.items() if k not in _STEP_KEYS})

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"tool": self.tool, "args": self.args, "why": self.why, "risk": self.risk,
                             "status": self.status.label}
        for k in ("summary", "error", "each", "when"):
            v = getattr(self, k)
            if v not in (None, ""):
                d[k] = v
        return {**d, **self.extra}


@dataclass(frozen=True)
class Run:
    """One run as the API shows it (``GET /api/v1/runs/{id}``)."""

    id: str
    request: str
    owner: str
    status: RunStatus
    created: float = 0.0                       # wall-clock seconds (epoch)
    updated: float = 0.0
    plan: tuple[dict[str, Any], ...] = ()      # the planned steps, as the planner wrote them
    steps: tuple[Step, ...] = ()               # the steps with their status
    pending: dict[str, Any] | None = None      # the step waiting for a yes or no
    answer: str | None = None
    explanation: Any = None
    error: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)   # keys this record does not name

    @property
    def finished(self) -> bool:
        return self.status.finished

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Run:
        return cls(id=str(d.get("id", "")), request=str(d.get("request", "")), owner=str(d.get("owner", "")),
                   status=RunStatus.parse(d.get("status") or "planning"),
                   created=float(d.get("created") or 0.0), updated=float(d.get("updated") or 0.0),
                   plan=tuple(d.get("plan") or ()), steps=tuple(Step.from_dict(s) for s in d.get("steps") or ()),
                   pending=d.get("pending"), answer=d.get("answer"), explanation=d.get("explanation"),
                   error=d.get("error"), extra={k: v for k, v in d.items() if k not in _RUN_KEYS})

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "request": self.request, "owner": self.owner, "status": self.status.label,
                "created": self.created, "updated": self.updated, "plan": list(self.plan),
                "steps": [s.to_dict() for s in self.steps], "pending": self.pending, "answer": self.answer,
                "explanation": self.explanation, "error": self.error, **self.extra}
