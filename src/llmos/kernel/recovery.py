"""Crash recovery: rebuild the kernel's tables from the journal at boot.

NOTE (what happens to each unfinished process). The journal holds the last
committed state of every process; a tool or job is marked RUNNING and committed
*before* it starts, so RUNNING means "its side effect may have happened".

- NEW / QUEUED: re-queued (NEW was committed, hence acknowledged).
- RUNNING / PREEMPTED llm: re-queued; the generation starts over (no side effects).
- RUNNING tool or job whose spec says ``idempotent``: re-queued, same idempotency key.
- RUNNING tool or job that is not idempotent: WAITING with reason
  ``needs_confirmation: ...``; ``proc.confirm`` runs it again, ``proc.kill`` drops it.
- jobs made by ``add_task`` (a callable held in memory): FAILED, the callable is gone.
- WAITING (a run, or already waiting for confirmation): left as it is.
- timers whose time passed while the kernel was down fire now, marked late.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llmos.kernel.process import Process, ProcState

if TYPE_CHECKING:
    from llmos.kernel.core import Kernel

__all__ = ["RecoveryReport", "recover"]

S = ProcState


@dataclass
class RecoveryReport:
    processes: int = 0                                   # rows read from the journal
    requeued: list[int] = field(default_factory=list)    # pids put back in the queue
    needs_confirmation: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    late_timers: list[int] = field(default_factory=list)
    seconds: float = 0.0                                 # wall time the replay took

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def recover(k: Kernel) -> RecoveryReport:
    t0 = time.perf_counter()
    rep = RecoveryReport()
    procs = [Process.from_row(r) for r in k.journal.load_processes()]
    rep.processes = len(procs)
    k.procs.load(procs)
    k.usage.seed(procs)
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
        else:
            what = p.spec.get("tool") or p.spec.get("type")
            k.procs.transition(p, S.WAITING,
                               f"needs_confirmation: {p.kind} {what} may have run before the restart "
                               f"(attempt {p.attempts} started, no result recorded) and is not "
                               f"idempotent; proc.confirm runs it again, proc.kill drops it")
            rep.needs_confirmation.append(p.pid)
    k.timers.load()
    rep.late_timers = [t.id for t in k.timers.fire_overdue()]
    rep.seconds = time.perf_counter() - t0
    return rep


def _requeue(k: Kernel, p: Process, reason: str | None, rep: RecoveryReport) -> None:
    if reason is not None:
        k.procs.transition(p, S.QUEUED, reason)
    k._enqueue(p, arrival_s=p.created_s)   # keeps its place: it has waited since it was made
    rep.requeued.append(p.pid)
