"""Processes: the ordered lifecycle enum, the process record and the table.

Map:
- ``ProcState``: NEW < QUEUED < RUNNING < WAITING < PREEMPTED < SUCCEEDED < FAILED < KILLED;
  ``finished`` is derived from the order (anything from SUCCEEDED on).
- ``Process``: one unit of work an agent asked for (llm generation, tool call, a run
  that parents plan steps, a job), with owner, priority, timestamps and usage.
- ``ProcessTable``: the in-memory table (pid -> Process, parent -> children) whose
  every change goes through ``transition`` — the ONE function that validates a state
  change, stamps it and journals it. ``create`` journals the birth row.
  ``before_transition`` hooks may add field changes to a move (energy of the attempt
  that ends); ``on_transition`` listeners hear about it afterwards.

The journal (``storage.Journal``) is the source of truth; this table is its cache,
rebuilt from it at boot by ``recovery``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmos.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from llmos.kernel.storage import Journal

__all__ = ["ProcState", "Process", "ProcessTable", "KINDS", "TRANSITIONS", "energy_label"]

KINDS = ("llm", "tool", "run", "job")


class ProcState(enum.IntEnum):
    """Lifecycle of a process. Order matters: ``finished`` means ``>= SUCCEEDED``."""

    NEW = 0         # row committed, not yet admitted to the scheduler
    QUEUED = 1      # admitted, waiting for the scheduler to pick it
    RUNNING = 2     # handed to the executor
    WAITING = 3     # blocked: on children (a run), or on a person (needs_confirmation)
    PREEMPTED = 4   # stopped by the scheduler; resumable
    SUCCEEDED = 5
    FAILED = 6
    KILLED = 7

    @property
    def finished(self) -> bool:
        return self >= ProcState.SUCCEEDED

    @classmethod
    def parse(cls, value: str | int) -> ProcState:
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            raise InvalidArgument(f"state: unknown process state {value!r}", field="state",
                                  expected=", ".join(s.name.lower() for s in cls)) from None


def energy_label(joules: float | None, modelled: float | None) -> str | None:
    """How a joule figure was obtained: ``measured`` (hardware counters), ``modelled``
    (stated power figures), ``mixed``, ``none`` (metered, nothing spent); None when
    never metered."""
    if joules is None:
        return None
    m = modelled or 0.0
    if joules <= 0.0:
        return "none"
    if m <= 0.0:
        return "measured"
    return "modelled" if m >= joules - 1e-12 else "mixed"


S = ProcState
# Allowed moves. A finished process never moves again; anything live may fail or be killed.
TRANSITIONS: dict[ProcState, frozenset[ProcState]] = {
    S.NEW: frozenset({S.QUEUED, S.WAITING, S.FAILED, S.KILLED}),
    S.QUEUED: frozenset({S.RUNNING, S.WAITING, S.SUCCEEDED, S.FAILED, S.KILLED}),
    S.RUNNING: frozenset({S.QUEUED, S.WAITING, S.PREEMPTED, S.SUCCEEDED, S.FAILED, S.KILLED}),
    S.WAITING: frozenset({S.QUEUED, S.RUNNING, S.SUCCEEDED, S.FAILED, S.KILLED}),
    S.PREEMPTED: frozenset({S.QUEUED, S.RUNNING, S.FAILED, S.KILLED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.KILLED: frozenset(),
}


@dataclass
class Process:
    """One process. Only ``ProcessTable.transition`` changes ``state``; usage fields are
    added to by the kernel loop when the executor reports an outcome."""

    pid: int
    kind: str                         # llm | tool | run | job
    owner: str                        # agent id
    spec: dict[str, Any]              # what to run (JSON); immutable after create
    priority: int = 0                 # nice-like, -20..19; changed by proc.nice only
    parent: int | None = None         # pid of the run this is a step of
    state: ProcState = ProcState.NEW
    reason: str = ""                  # why the last transition happened (for explain)
    idem_key: str | None = None       # idempotency key (tool calls); unique per owner
    created_s: float = 0.0            # wall-clock seconds (epoch)
    updated_s: float = 0.0            # wall-clock seconds of the last transition
    started_s: float | None = None    # first time it became RUNNING
    finished_s: float | None = None
    attempts: int = 0                 # times it became RUNNING (re-runs after recovery count)
    began: int = 0                    # tool/job: the last attempt whose work really began (set by
    #                                   the executor's worker, journaled before the work's first
    #                                   effect); began < attempts while RUNNING: dispatched, not begun
    tokens_in: int = 0                # prompt tokens, summed over attempts
    tokens_out: int = 0               # generated tokens
    cpu_s: float = 0.0                # CPU seconds spent by tool/job code
    wall_s: float = 0.0               # seconds spent RUNNING
    joules: float | None = None       # J attributed over all attempts (measured + modelled); None: not metered
    joules_modelled: float | None = None  # J of ``joules`` that came from power models, not counters
    placed_on: str | None = None      # allocator resource of the latest attempt ("cpu", "engine:x")
    result: Any = None                # JSON value on success
    error: dict | None = None         # LLMOSError.to_dict() on failure
    children: list[int] = field(default_factory=list)   # derived from parent links

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def joules_label(self) -> str | None:
        """``measured``, ``modelled`` or ``mixed`` (None when never metered)."""
        return energy_label(self.joules, self.joules_modelled)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in (
            "pid", "kind", "owner", "spec", "priority", "parent", "reason", "idem_key",
            "created_s", "updated_s", "started_s", "finished_s", "attempts", "tokens_in",
            "tokens_out", "cpu_s", "wall_s", "joules", "joules_modelled", "placed_on", "result",
            "error", "children")}
        d["joules_label"] = self.joules_label
        d["state"] = self.state.name.lower()
        d["children"] = list(self.children)
        return d

    def row(self) -> tuple:
        """The ``processes`` table row (column order of ``storage.PROC_COLUMNS``)."""
        return (self.pid, self.kind, self.owner, json.dumps(self.spec), self.priority,
                self.parent, int(self.state), self.reason, self.idem_key, self.created_s,
                self.updated_s, self.started_s, self.finished_s, self.attempts,
                self.tokens_in, self.tokens_out, self.cpu_s, self.wall_s, self.joules,
                None if self.result is None else json.dumps(self.result, default=str),
                None if self.error is None else json.dumps(self.error), self.joules_modelled,
                self.placed_on, self.began)

    @classmethod
    def from_row(cls, r: tuple) -> Process:
        return cls(pid=r[0], kind=r[1], owner=r[2], spec=json.loads(r[3]), priority=r[4],
                   parent=r[5], state=ProcState(r[6]), reason=r[7] or "", idem_key=r[8],
                   created_s=r[9], updated_s=r[10], started_s=r[11], finished_s=r[12],
                   attempts=r[13], tokens_in=r[14], tokens_out=r[15], cpu_s=r[16],
                   wall_s=r[17], joules=r[18],
                   result=None if r[19] is None else json.loads(r[19]),
                   error=None if r[20] is None else json.loads(r[20]),
                   joules_modelled=r[21], placed_on=r[22], began=r[23] if len(r) > 23 else 0)


Listener = Callable[[Process, ProcState, str], None]
# Asked inside ``transition`` before anything is applied, with (process, target state);
# returns extra field changes to apply and journal with the move (e.g. the joules an
# energy meter measured for the attempt that is ending), or None.
Before = Callable[[Process, ProcState], "dict[str, Any] | None"]


class ProcessTable:
    """pid -> Process, with parent/child links and idempotency-key lookup.

    Owner: the kernel. Every state change goes through ``transition``.
    """

    def __init__(self, journal: Journal, clock_time: Callable[[], float]) -> None:
        self._journal = journal
        self._now = clock_time
        self._procs: dict[int, Process] = {}                 # pid -> process
        self._by_key: dict[tuple[str, str], int] = {}        # (owner, idem_key) -> pid
        self._next_pid = 1                                   # next pid to hand out
        self._listeners: list[Listener] = []                 # called after each transition
        self._before: list[Before] = []                      # asked before each transition
        self.counts: list[int] = [0] * len(ProcState)        # processes per state (index = state)
        self._live: dict[str, int] = {}                      # owner -> unfinished processes

    # ── reading ────────────────────────────────────────────────────────────
    def __len__(self) -> int:
        return len(self._procs)

    def __contains__(self, pid: object) -> bool:
        return pid in self._procs

    def __iter__(self):
        return iter(self._procs.values())

    def find(self, pid: int) -> Process | None:
        return self._procs.get(pid)

    def live_count(self, owner: str) -> int:
        return self._live.get(owner, 0)

    def _count(self, p: Process, sign: int) -> None:
        self.counts[p.state] += sign
        if not p.state.finished:
            self._live[p.owner] = self._live.get(p.owner, 0) + sign

    def get(self, pid: int) -> Process:
        p = self._procs.get(pid)
        if p is None:
            raise NotFound(f"no process with pid {pid}", hint="run `llmos ps` to list processes")
        return p

    def by_key(self, owner: str, key: str) -> Process | None:
        pid = self._by_key.get((owner, key))
        return None if pid is None else self._procs[pid]

    def live(self) -> Iterable[Process]:
        return (p for p in self._procs.values() if not p.state.finished)

    def on_transition(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def before_transition(self, hook: Before) -> None:
        self._before.append(hook)

    # ── writing ────────────────────────────────────────────────────────────
    def load(self, procs: Iterable[Process]) -> None:
        """Fill the table from journal rows (boot only; nothing is journaled)."""
        for p in procs:
            self._procs[p.pid] = p
            if p.idem_key:
                self._by_key[(p.owner, p.idem_key)] = p.pid
            self._next_pid = max(self._next_pid, p.pid + 1)
            self._count(p, +1)
        for p in self._procs.values():
            if p.parent is not None and p.parent in self._procs:
                self._procs[p.parent].children.append(p.pid)

    def create(self, *, kind: str, owner: str, spec: dict, priority: int = 0,
               parent: int | None = None, idem_key: str | None = None,
               reason: str = "spawned") -> Process:
        """Make a NEW process and journal its row. The caller awaits ``journal.durable()``
        before acknowledging the pid."""
        if kind not in KINDS:
            raise InvalidArgument(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}",
                                  field="kind", expected=" | ".join(KINDS))
        if parent is not None:
            par = self.get(parent)
            if par.state.finished:
                raise InvalidArgument(f"parent: process {parent} already finished",
                                      field="parent", expected="a live process")
        now = self._now()
        p = Process(pid=self._next_pid, kind=kind, owner=owner, spec=spec, priority=priority,
                    parent=parent, idem_key=idem_key, created_s=now, updated_s=now,
                    reason=reason)
        self._next_pid += 1
        self._procs[p.pid] = p
        if idem_key:
            self._by_key[(owner, idem_key)] = p.pid
        if parent is not None:
            self._procs[parent].children.append(p.pid)
        self._count(p, +1)
        self._journal.insert_process(p)
        self._journal.log_transition(p.pid, now, None, p.state, reason)
        return p

    def transition(self, p: Process, to: ProcState, reason: str, **changes: Any) -> Process:
        """The one way a process changes state. Validates the move, applies ``changes``
        (usage, result, error, priority), stamps times, journals row + history, notifies.

        Raises InvalidArgument when the move is not allowed (e.g. out of a final state).
        """
        frm = p.state
        if to != frm and to not in TRANSITIONS[frm]:
            raise InvalidArgument(
                f"process {p.pid} cannot go from {frm.name.lower()} to {to.name.lower()}",
                field="state", expected=", ".join(s.name.lower() for s in TRANSITIONS[frm]) or
                "nothing (finished)")
        for hook in self._before:
            extra = hook(p, to)
            if extra:
                changes = {**changes, **extra}
        now = self._now()
        for k, v in changes.items():
            if not hasattr(p, k) or k in ("pid", "kind", "owner", "spec", "state", "children"):
                raise InvalidArgument(f"transition: {k!r} is not a mutable process field",
                                      field=k, expected="a usage/result field")
            setattr(p, k, v)
        if to == ProcState.RUNNING and frm != ProcState.RUNNING:
            p.attempts += 1
            if p.started_s is None:
                p.started_s = now
        if to.finished:
            p.finished_s = now
        self._count(p, -1)
        p.state = to
        self._count(p, +1)
        p.reason = reason
        p.updated_s = now
        self._journal.update_process(p)
        self._journal.log_transition(p.pid, now, frm, to, reason)
        for fn in self._listeners:
            fn(p, frm, reason)
        return p
