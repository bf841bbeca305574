"""Runs as data: the ordered run and step lifecycles and the typed records the API, the
shell and the SDK exchange (a run is one plain-language request carried out as steps).

Map:
- ``RunStatus``: PLANNING < RUNNING < PENDING < SUCCEEDED < PLANNED < FAILED < DENIED <
  NEEDS_CONFIRMATION < REJECTED < CANCELLED; ``finished`` is derived from the order
  (anything from SUCCEEDED on), ``ok`` is SUCCEEDED or PLANNED (a plan-only run).
- ``StepStatus``: PLANNED < RUNNING < SUCCEEDED < FAILED < SKIPPED < DENIED <
  NEEDS_CONFIRMATION; ``finished`` from SUCCEEDED on, ``had_effect`` says whether the
  step may have changed something (it ran: RUNNING, SUCCEEDED or FAILED).
- ``Step``: one step and what it did; ``public()`` is the form a run shows (``llmos run
  --json``, the API), ``to_dict()`` the form the shell's store keeps.
- ``Run``: one run as the API shows it (frozen; read from its JSON with ``from_dict``).
- ``RunRecord``: everything the shell recorded of one run (plan, steps, notes, timings,
  the planner's calls, the kernel's decisions), as ``shell.db`` keeps it; owned by the
  run in progress, then by ``ShellStore``; ``llmos explain`` renders it.

Statuses are ``str`` enums whose value is the lower-case name (``"needs_confirmation"``),
so a record is written as JSON, to SQLite or in an event exactly as the plain strings were
before; order comparisons take the declared order (a status compared for order with
anything but its own kind raises ``TypeError``). ``parse`` reads a status and names the
expected values when one is unknown. Every ``from_dict`` keeps the keys its record does
not name in ``extra`` and writes them back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any

from llmos.errors import InvalidArgument

__all__ = ["RunStatus", "StepStatus", "Run", "Step", "RunRecord"]


class _Named(enum.StrEnum):
    """A lifecycle: string values for the wire, order from the declaration."""

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
        return self.value

    @property
    def rank(self) -> int:
        """Its place in the lifecycle (declaration order, from 0)."""
        return type(self)._member_names_.index(self.name)

    @classmethod
    def labels(cls, members: Any = None) -> tuple[str, ...]:
        return tuple(s.label for s in (cls if members is None else members))

    def _other(self, other: Any) -> int:
        if type(other) is not type(self):
            raise TypeError(f"{type(self).__name__} is ordered only against itself, not {other!r}")
        return other.rank

    def __lt__(self, other: Any) -> bool:
        return self.rank < self._other(other)

    def __le__(self, other: Any) -> bool:
        return self.rank <= self._other(other)

    def __gt__(self, other: Any) -> bool:
        return self.rank > self._other(other)

    def __ge__(self, other: Any) -> bool:
        return self.rank >= self._other(other)


class RunStatus(_Named):
    """Lifecycle of a run. Order matters: ``finished`` means ``>= SUCCEEDED``."""

    PLANNING = enum.auto()            # the planner is writing (or revising) the plan
    RUNNING = enum.auto()             # steps are being carried out
    PENDING = enum.auto()             # a step waits for the person's yes or no
    SUCCEEDED = enum.auto()           # every step done, the answer given
    PLANNED = enum.auto()             # plan only (nothing was run), as asked
    FAILED = enum.auto()
    DENIED = enum.auto()              # the agent's rights refused a step
    NEEDS_CONFIRMATION = enum.auto()  # stopped before a risky step nobody approved
    REJECTED = enum.auto()            # the person said no
    CANCELLED = enum.auto()           # the caller gave up on it

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

    PLANNED = enum.auto()             # in the plan, not started
    RUNNING = enum.auto()
    SUCCEEDED = enum.auto()
    FAILED = enum.auto()
    SKIPPED = enum.auto()             # its ``when`` guard was false
    DENIED = enum.auto()              # refused by the agent's rights; nothing ran
    NEEDS_CONFIRMATION = enum.auto()  # waited for a yes that did not come; nothing ran

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


_PUBLIC = ("tool", "args", "why", "risk", "status", "summary", "error", "each", "when")


def _known(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls)) - {"extra"}


@dataclass
class Step:
    """One step of a run: what the planner asked for and what it did. Changed only by
    the run it belongs to, while that run is in progress."""

    tool: str                                  # registry name of the tool (or "llm")
    args: dict[str, Any] = field(default_factory=dict)   # as planned; the filled-in call once it ran
    status: StepStatus = StepStatus.PLANNED
    why: str = ""                              # the planner's reason for the step
    risk: str = ""                             # read | write | destructive | exec | network
    summary: str = ""                          # one line on what it did
    error: str | None = None
    each: Any = None                           # the list it runs over, when it is an ``each`` step
    when: Any = None                           # its guard, when it has one
    seconds: float | None = None               # wall seconds its calls took, all items together
    pids: list[int | None] = field(default_factory=list)   # the kernel processes of its calls
    output: str | None = None                  # its output, cut short (``OUTPUT_KEEP_CHARS``)
    files: list[str] | None = None             # workspace paths it wrote, as the tool said
    extra: dict[str, Any] = field(default_factory=dict)   # keys this record does not name

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        seconds = d.get("seconds")
        return cls(tool=str(d.get("tool", "")), args=dict(d.get("args") or {}),
                   status=StepStatus.parse(d.get("status") or "planned"), why=str(d.get("why") or ""),
                   risk=str(d.get("risk") or ""), summary=str(d.get("summary") or ""),
                   error=None if d.get("error") is None else str(d.get("error")),
                   each=d.get("each"), when=d.get("when"),
                   seconds=None if seconds is None else float(seconds), pids=list(d.get("pids") or []),
                   output=d.get("output"), files=None if d.get("files") is None else list(d["files"]),
                   extra={k: v for k, v in d.items() if k not in _STEP_KNOWN})

    def update(self, **changes: Any) -> None:
        """Set the named fields (a step's progress: status, summary, output, error...)."""
        for k, v in changes.items():
            if k not in _STEP_KNOWN:
                raise AttributeError(f"Step has no field {k!r}")
            setattr(self, k, v)

    def public(self) -> dict[str, Any]:
        """The step as a run shows it (``llmos run --json``, the API): what was asked, its
        status and its one-line result; empty fields left out."""
        d = {k: getattr(self, k) for k in _PUBLIC}
        return {**{k: v for k, v in d.items() if v not in (None, "")}, **self.extra}

    def to_dict(self) -> dict[str, Any]:
        """The step as the shell's store keeps it (every field it has; ``each`` always)."""
        d: dict[str, Any] = {"tool": self.tool, "args": self.args, "why": self.why, "each": self.each,
                             "risk": self.risk, "status": self.status}
        if self.when is not None:
            d["when"] = self.when
        if self.seconds is not None:
            d["seconds"] = self.seconds
        if self.pids:
            d["pids"] = self.pids
        if self.summary or self.output is not None:   # a result's summary, even an empty one
            d["summary"] = self.summary
        for k in ("output", "files", "error"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return {**d, **self.extra}


_STEP_KNOWN = _known(Step)
_RUN_KEYS = ("id", "request", "owner", "status", "created", "updated", "plan", "steps", "pending",
             "answer", "explanation", "error")


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
                "steps": [s.public() for s in self.steps], "pending": self.pending, "answer": self.answer,
                "explanation": self.explanation, "error": self.error, **self.extra}


@dataclass
class RunRecord:
    """Everything the shell recorded of one run. Written by the run in progress
    (``shell.execution``), then kept by ``ShellStore`` (``rating`` and ``note`` are the
    store's columns, set when the person rates the run; they are not part of the JSON).

    Fields after ``revisions`` are ``None`` until the run gets that far; ``to_dict``
    leaves them out until then, in the order a run sets them."""

    run: str                                   # the run id ("r" + 8 hex digits)
    created: float = 0.0                       # wall-clock seconds (epoch)
    user: str = ""                             # the person the run is for
    request: str = ""                          # the person's words
    workdir: str = ""                          # the workspace, absolute
    model: str = ""                            # the planner's model, "" for the kernel's default
    status: RunStatus = RunStatus.FAILED       # FAILED until the run says otherwise
    answer: str = ""
    steps: list[Step] = field(default_factory=list)      # the current plan's steps, numbered from 1
    notes: list[str] = field(default_factory=list)       # what the run noticed on the way
    habits: list[str] = field(default_factory=list)      # habits applied to the plan
    timings: dict[str, float] = field(default_factory=dict)   # phase -> seconds
    llm_calls: list[dict[str, Any]] = field(default_factory=list)   # the planner's and llm steps' calls
    revisions: int = 0                         # re-plans after steps ran
    agent: str | None = None                   # the run's own kernel agent
    pid: int | None = None                     # the kernel's run process
    facts: list[str] | None = None             # the workspace facts the planner saw
    memory: list[str] | None = None            # past runs recalled into the prompt
    asked: dict[str, Any] | None = None        # the planner's question and the person's answer
    plan: dict[str, Any] | None = None         # the plan as the planner wrote it (planner shape)
    examples: list[Any] | None = None          # ids of the examples the planner was shown
    deps: dict[str, Any] | None = None         # step number (as text) -> the steps it reads
    replaced: list[Step] | None = None         # steps a revision replaced, as they ended
    error: dict[str, Any] | None = None        # the error that ended the run, when one did
    kernel: dict[str, Any] | None = None       # the kernel's view of the run process
    rating: str | None = None                  # good | bad, from the store
    note: str | None = None                    # the person's note with the rating
    extra: dict[str, Any] = field(default_factory=dict)   # keys this record does not name

    @property
    def ok(self) -> bool:
        return self.status.ok

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        def steps(v: Any) -> list[Step]:
            return [Step.from_dict(s) for s in v or ()]

        known = {k: d[k] for k in _RECORD_JSON if k in d}
        known.update(status=RunStatus.parse(d.get("status") or "failed"), steps=steps(d.get("steps")),
                     run=str(d.get("run", "")), request=str(d.get("request", "")))
        if d.get("replaced") is not None:
            known["replaced"] = steps(d["replaced"])
        return cls(**known, extra={k: v for k, v in d.items() if k not in _RECORD_JSON})

    @classmethod
    def from_run(cls, run: Run) -> RunRecord:
        """What a run seen through the API says of itself (a daemon's run, from the CLI)."""
        return cls(run=str(run.extra.get("shell_run") or run.id), request=run.request,
                   created=run.created, user=run.owner, workdir=str(run.extra.get("workdir") or ""),
                   status=run.status, answer=run.answer or "", steps=list(run.steps),
                   pid=run.extra.get("pid"), error=run.error)

    def public_steps(self) -> list[dict[str, Any]]:
        return [s.public() for s in self.steps]

    def to_dict(self) -> dict[str, Any]:
        """The record as ``shell.db`` keeps it (JSON-ready; statuses as their names)."""
        d: dict[str, Any] = {}
        for k in _RECORD_JSON:
            v = getattr(self, k)
            if v is None:
                continue
            d[k] = [s.to_dict() for s in v] if k in ("steps", "replaced") else v
        return {**d, **self.extra}


_RECORD_JSON = tuple(f.name for f in fields(RunRecord) if f.name not in ("rating", "note", "extra"))
