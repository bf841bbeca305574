"""Durable timers (reminders): set, cancel, list, fire — and fire late after downtime.

Map:
- ``Timer``: one reminder (owner agent, due time, message, state).
- ``Timers``: the table (journaled), ``run()`` — the task that sleeps on the kernel's
  clock until the next due time and fires — and ``fire_overdue()`` used at boot:
  every pending timer whose time passed while the kernel was down fires at once,
  marked ``late``.

Firing journals the new state and calls ``on_fire(timer)`` (the kernel publishes an
event and appends the message to the owner's context).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmos.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from llmos.clock import Clock
    from llmos.kernel.storage import Journal

__all__ = ["Timer", "Timers", "LATE_AFTER_S"]

LATE_AFTER_S = 1.0   # a timer fired this long after its due time is reported late


@dataclass
class Timer:
    id: int
    owner: str            # agent id
    due_s: float          # wall-clock seconds (epoch)
    message: str
    created_s: float
    state: str = "pending"          # pending | fired | cancelled
    fired_s: float | None = None
    late: bool = False              # fired after downtime or more than LATE_AFTER_S past due

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Timers:
    def __init__(self, journal: Journal, clock: Clock,
                 on_fire: Callable[[Timer], None] = lambda t: None) -> None:
        self._journal = journal
        self._clock = clock
        self._on_fire = on_fire
        self._timers: dict[int, Timer] = {}   # id -> timer (pending and recent); set/cancel/fire
        self._next_id = 1
        self._changed = asyncio.Event()       # set when the earliest due time may have moved
        self._closed = False

    def load(self) -> None:
        rows = self._journal.query("SELECT id, owner, due_s, message, created_s, state, fired_s, late "
                                   "FROM timers ORDER BY id")
        for r in rows:
            t = Timer(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]))
            self._next_id = max(self._next_id, t.id + 1)
            if t.state == "pending":
                self._timers[t.id] = t

    def set(self, owner: str, due_s: float, message: str) -> Timer:
        if not isinstance(message, str) or not message.strip():
            raise InvalidArgument("message: expected a non-empty string", field="message",
                                  expected="non-empty string")
        now = self._clock.time()
        t = Timer(self._next_id, owner, float(due_s), message, now)
        self._next_id += 1
        self._timers[t.id] = t
        self._journal.write("INSERT INTO timers(id, owner, due_s, message, created_s, state, late) "
                            "VALUES (?,?,?,?,?,?,0)", (t.id, owner, t.due_s, message, now, t.state))
        self._changed.set()
        return t

    def get(self, timer_id: int) -> Timer:
        t = self._timers.get(timer_id)
        if t is None:
            rows = self._journal.query("SELECT id, owner, due_s, message, created_s, state, fired_s, "
                                       "late FROM timers WHERE id = ?", (timer_id,))
            if not rows:
                raise NotFound(f"no timer with id {timer_id}", hint="run timer.list to see them")
            r = rows[0]
            t = Timer(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]))
        return t

    def cancel(self, timer_id: int) -> Timer:
        t = self.get(timer_id)
        if t.state != "pending":
            raise InvalidArgument(f"timer {timer_id} is already {t.state}", field="id",
                                  expected="a pending timer")
        t.state = "cancelled"
        self._timers.pop(timer_id, None)
        self._journal.write("UPDATE timers SET state = 'cancelled' WHERE id = ?", (timer_id,))
        self._changed.set()
        return t

    def list(self, owner: str | None = None, *, include_done: bool = False,
             limit: int = 100) -> list[Timer]:
        if not include_done:
            out = [t for t in self._timers.values() if owner is None or t.owner == owner]
            return sorted(out, key=lambda t: t.due_s)[:limit]
        sql = "SELECT id, owner, due_s, message, created_s, state, fired_s, late FROM timers"
        args: tuple = ()
        if owner is not None:
            sql += " WHERE owner = ?"
            args = (owner,)
        rows = self._journal.query(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [Timer(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7])) for r in rows]

    def pending(self) -> int:
        return len(self._timers)

    # ── firing ─────────────────────────────────────────────────────────────
    def _fire(self, t: Timer, *, late: bool) -> None:
        now = self._clock.time()
        t.state = "fired"
        t.fired_s = now
        t.late = late or (now - t.due_s) > LATE_AFTER_S
        self._timers.pop(t.id, None)
        self._journal.write("UPDATE timers SET state = 'fired', fired_s = ?, late = ? WHERE id = ?",
                            (now, int(t.late), t.id))
        self._on_fire(t)

    def fire_due(self, *, late: bool = False) -> list[Timer]:
        """Fire every pending timer whose time has come; returns them in due order."""
        now = self._clock.time()
        due = sorted((t for t in self._timers.values() if t.due_s <= now), key=lambda t: t.due_s)
        for t in due:
            self._fire(t, late=late)
        return due

    def fire_overdue(self) -> list[Timer]:
        """At boot: timers that came due while the kernel was down fire now, marked late."""
        return self.fire_due(late=True)

    async def run(self) -> None:
        """Sleep until the next due time on the kernel's clock, fire, repeat."""
        while not self._closed:
            self.fire_due()
            self._changed.clear()
            nxt = min((t.due_s for t in self._timers.values()), default=None)
            waiter = asyncio.ensure_future(self._changed.wait())
            tasks = [waiter]
            if nxt is not None:
                tasks.append(asyncio.ensure_future(self._clock.sleep(max(0.0, nxt - self._clock.time()))))
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    def close(self) -> None:
        self._closed = True
        self._changed.set()
