"""Crash recovery: rebuild the kernel's tables from the journal at boot.

NOTE (what happens to each unfinished process). The journal holds the last
committed state of every process; a tool or job is marked RUNNING and committed
when it is dispatched, and its worker commits ``began`` (the attempt number) right
before the work's first effect. So RUNNING with ``began == attempts`` means "its side
effect may have happened"; RUNNING with ``began < attempts`` means it was handed to
the executor but still waited for a worker: nothing of it ran.

- NEW / QUEUED: re-queued (NEW was committed, hence acknowledged).
- RUNNING / PREEMPTED llm: re-queued; the generation starts over (no side effects).
- RUNNING tool or job whose spec says ``idempotent``: re-queued, same idempotency key.
- RUNNING tool or job that never began: re-queued (running it is its first run).
- RUNNING tool or job that began and is not idempotent: WAITING with reason
  ``needs_confirmation: ...``; ``proc.confirm`` runs it again, ``proc.kill`` drops it.
- jobs made by ``add_task`` (a callable held in memory): FAILED, the callable is gone.
- WAITING (a run, or already waiting for confirmation): left as it is. A run's driver
  may live outside the kernel (an SDK client); the daemon's run manager ends the runs
  it drove itself with ``end_run`` (their driver died with the old daemon).
- timers whose time passed while the kernel was down fire now, marked late.
- a row that cannot be read (bad state, JSON, types): quarantined, i.e. loaded as
  FAILED with the reason and the raw row in its error, its pid logged; the kernel
  boots. One damaged row must never keep the daemon from starting.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmos.kernel.process import KINDS, Process, ProcState
from llmos.kernel.storage import PROC_COLUMNS

if TYPE_CHECKING:
    from llmos.kernel.core import Kernel

__all__ = ["RecoveryReport", "recover", "end_run"]

log = logging.getLogger(__name__)

S = ProcState

# Column -> the Python types a well-formed row holds there (None allowed where listed).
_INT, _NUM, _TEXT = (int,), (int, float), (str,)
_TYPES: dict[str, tuple[tuple[type, ...], bool]] = {   # column -> (types, may be None)
    "pid": (_INT, False), "owner": (_TEXT, False), "priority": (_INT, False),
    "parent": (_INT, True), "reason": (_TEXT, True), "idem_key": (_TEXT, True),
    "created_s": (_NUM, True), "updated_s": (_NUM, True), "started_s": (_NUM, True),
    "finished_s": (_NUM, True), "attempts": (_INT, False), "tokens_in": (_INT, False),
    "tokens_out": (_INT, False), "cpu_s": (_NUM, False), "wall_s": (_NUM, False),
    "joules": (_NUM, True), "joules_modelled": (_NUM, True), "placed_on": (_TEXT, True),
}


@dataclass
class RecoveryReport:
    processes: int = 0                                   # rows read from the journal
    requeued: list[int] = field(default_factory=list)    # pids put back in the queue
    needs_confirmation: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    late_timers: list[int] = field(default_factory=list)
    quarantined: list[int] = field(default_factory=list)  # pids whose row could not be read
    seconds: float = 0.0                                 # wall time the replay took

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def recover(k: Kernel) -> RecoveryReport:
    t0 = time.perf_counter()
    rep = RecoveryReport()
    procs = [_read(r, rep) for r in k.journal.load_processes()]
    rep.processes = len(procs)
    k.procs.load(procs)
    k.usage.seed(procs)
    for pid in rep.quarantined:                     # journal the quarantine itself
        p = k.procs.get(pid)
        k.journal.update_process(p)
        k.journal.log_transition(pid, p.updated_s, None, p.state, p.reason)
    for p in procs:
        if p.state.finished or p.state == S.WAITING:
            continue
        if p.kind == "job" and p.spec.get("type") == "call":
            k._end(p, S.FAILED, "recovered: an in-process task's callable does not survive a restart",
                   error={"error": "kernel", "message": "callable lost in restart",
                          "hint": "submit the task again"})
            rep.failed.append(p.pid)
        elif p.state == S.QUEUED:
            _requeue(k, p, None, rep)
        elif p.state == S.NEW:
            _requeue(k, p, "recovered: admitted after restart", rep)
        elif p.kind == "llm":
            _requeue(k, p, f"recovered: was {p.state.name.lower()} at restart; generation starts over", rep)
        elif p.spec.get("idempotent"):
            what = p.spec.get("tool") or p.spec.get("type")
            _requeue(k, p, f"recovered: re-run after restart ({p.kind} {what} is idempotent)", rep)
        elif p.state == S.RUNNING and p.began < p.attempts:
            what = p.spec.get("tool") or p.spec.get("type")
            _requeue(k, p, f"recovered: {p.kind} {what} was dispatched but never began before the "
                           f"restart (it waited for a worker; nothing of it ran); runs now", rep)
        else:
            what = p.spec.get("tool") or p.spec.get("type")
            k.procs.transition(p, S.WAITING,
                               f"needs_confirmation: {p.kind} {what} may have run before the restart "
                               f"(attempt {p.began} began, no result recorded) and is not "
                               f"idempotent; proc.confirm runs it again, proc.kill drops it")
            rep.needs_confirmation.append(p.pid)
    k.timers.load()
    rep.late_timers = [t.id for t in k.timers.fire_overdue()]
    rep.seconds = time.perf_counter() - t0
    return rep


def end_run(k: Kernel, run: Process) -> list[int]:
    """End a run whose driver died with the previous kernel (FAILED), and its live steps
    (KILLED, each saying whether it may have run); return the pids ended. For the owner
    of the driver, right after boot, before the loop has stepped."""
    ended: list[int] = []
    for cpid in list(run.children):
        c = k.procs.find(cpid)
        if c is None or c.state.finished:
            continue
        if c.kind == "run":
            ended += end_run(k, c)
            continue
        what = f"{c.kind} {c.spec.get('tool') or c.spec.get('type') or ''}".strip()
        maybe = (c.kind in ("tool", "job") and c.began >= max(c.attempts, 1)
                 and (c.state == S.RUNNING or k.view(c)["needs_confirmation"]))
        why = (f"its run {run.pid} ended after a restart; {what} may have run before the restart "
               f"(attempt {c.began} began, no result recorded) and was not run again"
               if maybe else f"its run {run.pid} ended after a restart; {what} was not run")
        k._end(c, S.KILLED, why)
        ended.append(c.pid)
    k._end(run, S.FAILED, "its driver did not survive the restart (nothing would ever finish it); "
                          "its unfinished steps were stopped",
           error={"error": "restart", "message": "the daemon restarted while the run was in progress",
                  "hint": "check the workspace, then submit the request again"})
    return [*ended, run.pid]


def _read(row: tuple, rep: RecoveryReport) -> Process:
    """The process a journal row holds, or a FAILED stand-in when the row is damaged."""
    try:
        d = dict(zip(PROC_COLUMNS, row, strict=True))
        for col, (types, nullable) in _TYPES.items():
            v = d[col]
            if not (v is None and nullable) and (not isinstance(v, types) or isinstance(v, bool)):
                raise ValueError(f"{col} holds {type(v).__name__} {str(v)[:40]!r}")
        if d["kind"] not in KINDS:
            raise ValueError(f"kind {str(d['kind'])[:40]!r} is not one of {', '.join(KINDS)}")
        p = Process.from_row(row)
        if not isinstance(p.spec, dict):
            raise ValueError(f"spec is a JSON {type(p.spec).__name__}, not an object")
        return p
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        return _quarantine(row, f"{type(e).__name__}: {e}", rep)


def _quarantine(row: tuple, why: str, rep: RecoveryReport) -> Process:
    pid = row[0]
    d: dict[str, Any] = dict(zip(PROC_COLUMNS, row, strict=False))

    def keep(col: str, types: tuple[type, ...], default: Any) -> Any:
        v = d.get(col)
        return v if isinstance(v, types) and not isinstance(v, bool) else default

    now = time.time()
    why = why.splitlines()[0][:300]
    reason = (f"quarantined at boot: its journal row could not be read ({why}); "
              "the raw row is kept in this process's error")
    raw = json.dumps({c: (v if isinstance(v, (int, float, str)) or v is None else repr(v))
                      for c, v in d.items()}, default=repr)[:4000]
    p = Process(pid=pid, kind=keep("kind", _TEXT, "job") if d.get("kind") in KINDS else "job",
                owner=keep("owner", _TEXT, "root"), spec={}, priority=keep("priority", _INT, 0),
                parent=keep("parent", _INT, None), state=S.FAILED, reason=reason,
                idem_key=keep("idem_key", _TEXT, None), created_s=keep("created_s", _NUM, now),
                updated_s=now, finished_s=now, attempts=keep("attempts", _INT, 0),
                error={"error": "journal", "message": f"journal row could not be read: {why}",
                       "hint": "its work was not recovered; submit it again if it is still needed",
                       "row": raw})
    log.warning("journal: quarantined process pid %d (row unreadable: %s); marked failed", pid, why)
    rep.quarantined.append(pid)
    return p


def _requeue(k: Kernel, p: Process, reason: str | None, rep: RecoveryReport) -> None:
    if reason is not None:
        k.procs.transition(p, S.QUEUED, reason)
    k._enqueue(p, arrival_s=p.created_s)   # keeps its place: it has waited since it was made
    rep.requeued.append(p.pid)
