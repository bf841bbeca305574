"""Durable timers (reminders): set, cancel, list, fire — and fire late after downtime.

Map:
- ``Timer``: one reminder (owner agent, due time, message, state).
- ``Timers``: the table (journaled), ``run()`` — the task that sleeps on the kernel's
  clock until the next due time and fires — and ``fire_overdue()`` used at boot:
  every pending timer whose time passed while the kernel was down fires at once,
  marked ``late``.
- ``wait_due(clock, due_s, changed)``: one wait of such a loop: until ``due_s`` on the
  clock or until ``changed`` is set (the workflows' clock loop waits the same way).

Firing journals the new state and calls ``on_fire(timer)`` (the kernel publishes an
event and appends the message to the owner's context), then ``delivery`` takes it to the
person outside the kernel. A repeating timer (``every_s``) stays pending with its next due
time: the first one after now, so downtime gives one late firing, never a burst.

- ``Delivery``: where a fired reminder goes beyond the event stream (which an open
  ``llmos shell`` and the dashboard follow): a desktop notification (``notify-send``, where
  the machine has one and a display) and a webhook (the config's ``reminder_webhook``:
  ``[reminders] webhook``, ``LLMOS_REMINDER_WEBHOOK`` or ``--reminder-webhook``; a JSON
  POST). Both run in the background; a failure is a warning in the log, never a lost timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmos.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from llmos.clock import Clock
    from llmos.kernel.storage import Journal

__all__ = ["Timer", "Timers", "Delivery", "LATE_AFTER_S", "wait_due"]

log = logging.getLogger(__name__)

LATE_AFTER_S = 1.0   # a timer fired this long after its due time is reported late
DELIVERY_TIMEOUT_S = 10.0   # a webhook or notify-send that takes longer is given up (warned)
_COLS = "id, owner, due_s, message, created_s, state, fired_s, late, every_s"


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
    every_s: float | None = None    # repeating: seconds between firings (None: once)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _timer(r: tuple) -> Timer:
    return Timer(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8])


async def wait_due(clock: Clock, due_s: float | None, changed: asyncio.Event) -> None:
    """Wait until ``due_s`` on ``clock`` (None: no time is due) or until ``changed`` is
    set, whichever comes first; the caller clears ``changed`` before it looks at what is due."""
    waits = [asyncio.ensure_future(changed.wait())]
    if due_s is not None:
        waits.append(asyncio.ensure_future(clock.sleep(max(0.0, due_s - clock.time()))))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await w


class Delivery:
    """A fired reminder to the person: ``notify-send`` and a webhook, in the background."""

    def __init__(self, *, webhook: str | None = None, notify: bool | None = None) -> None:
        self.webhook = webhook                       # URL that gets a JSON POST per firing, or None
        self.notify = (shutil.which("notify-send") is not None
                       and bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
                       ) if notify is None else notify
        self._tasks: set[asyncio.Task] = set()

    @classmethod
    def from_config(cls, cfg: Any) -> Delivery:
        """The config's webhook (``[reminders] webhook``, ``LLMOS_REMINDER_WEBHOOK`` or
        ``llmos serve --reminder-webhook``, checked by ``load_config``)."""
        return cls(webhook=getattr(cfg, "reminder_webhook", None),
                   notify=False if os.environ.get("LLMOS_NOTIFY") == "0" else None)

    @classmethod
    def from_env(cls) -> Delivery:
        return cls(webhook=os.environ.get("LLMOS_REMINDER_WEBHOOK") or None,
                   notify=False if os.environ.get("LLMOS_NOTIFY") == "0" else None)

    def channels(self) -> list[str]:
        return ["events"] + (["notify-send"] if self.notify else []) + (["webhook"] if self.webhook else [])

    def deliver(self, t: Timer) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for coro in ([self._notify(t)] if self.notify else []) + ([self._post(t)] if self.webhook else []):
            task = loop.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _notify(self, t: Timer) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                "notify-send", "--app-name=llmos", "Reminder" + (" (late)" if t.late else ""), t.message,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            await asyncio.wait_for(proc.wait(), DELIVERY_TIMEOUT_S)
        except (OSError, TimeoutError) as e:
            log.warning("timer %d: notify-send failed: %s", t.id, e)

    async def _post(self, t: Timer) -> None:
        import httpx

        try:
            async with httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_S) as c:
                resp = await c.post(self.webhook or "", json={"type": "reminder", **t.to_dict()})
            if resp.status_code >= 400:
                log.warning("timer %d: webhook %s answered %d", t.id, self.webhook, resp.status_code)
        except httpx.HTTPError as e:
            log.warning("timer %d: webhook %s failed: %s", t.id, self.webhook, e)


class Timers:
    def __init__(self, journal: Journal, clock: Clock,
                 on_fire: Callable[[Timer], None] = lambda t: None,
                 delivery: Delivery | None = None) -> None:
        self._journal = journal
        self._clock = clock
        self._on_fire = on_fire
        self.delivery = delivery if delivery is not None else Delivery.from_env()   # boot or tests set it
        self._timers: dict[int, Timer] = {}   # id -> timer (pending and recent); set/cancel/fire
        self._next_id = 1
        self._changed = asyncio.Event()       # set when the earliest due time may have moved
        self._closed = False

    def load(self) -> None:
        rows = self._journal.query(f"SELECT {_COLS} FROM timers ORDER BY id")
        for r in rows:
            t = _timer(r)
            self._next_id = max(self._next_id, t.id + 1)
            if t.state == "pending":
                self._timers[t.id] = t

    def set(self, owner: str, due_s: float, message: str, every_s: float | None = None) -> Timer:
        if not isinstance(message, str) or not message.strip():
            raise InvalidArgument("message: expected a non-empty string", field="message",
                                  expected="non-empty string")
        now = self._clock.time()
        if every_s is not None and every_s <= 0:
            raise InvalidArgument("every_s: expected a positive number of seconds", field="every_s",
                                  expected="seconds between firings, more than 0")
        t = Timer(self._next_id, owner, float(due_s), message, now, every_s=every_s)
        self._next_id += 1
        self._timers[t.id] = t
        self._journal.write("INSERT INTO timers(id, owner, due_s, message, created_s, state, late, every_s) "
                            "VALUES (?,?,?,?,?,?,0,?)", (t.id, owner, t.due_s, message, now, t.state, every_s))
        self._changed.set()
        return t

    def get(self, timer_id: int) -> Timer:
        t = self._timers.get(timer_id)
        if t is None:
            rows = self._journal.query(f"SELECT {_COLS} FROM timers WHERE id = ?", (timer_id,))
            if not rows:
                raise NotFound(f"no timer with id {timer_id}", hint="run timer.list to see them")
            t = _timer(rows[0])
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
        sql = f"SELECT {_COLS} FROM timers"
        args: tuple = ()
        if owner is not None:
            sql += " WHERE owner = ?"
            args = (owner,)
        rows = self._journal.query(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [_timer(r) for r in rows]

    def pending(self) -> int:
        return len(self._timers)

    # ── firing ─────────────────────────────────────────────────────────────
    def _fire(self, t: Timer, *, late: bool) -> None:
        now = self._clock.time()
        t.fired_s = now
        t.late = late or (now - t.due_s) > LATE_AFTER_S
        if t.every_s:
            fired = Timer(**t.to_dict())
            fired.state = "fired"
            steps = int((now - t.due_s) // t.every_s) + 1        # the first due time after now
            t.due_s += steps * t.every_s
            self._journal.write("UPDATE timers SET due_s = ?, fired_s = ?, late = ? WHERE id = ?",
                                (t.due_s, now, int(fired.late), t.id))
            self._changed.set()
        else:
            t.state = "fired"
            self._timers.pop(t.id, None)
            self._journal.write("UPDATE timers SET state = 'fired', fired_s = ?, late = ? WHERE id = ?",
                                (now, int(t.late), t.id))
            fired = t
        self._on_fire(fired)
        self.delivery.deliver(fired)

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
            await wait_due(self._clock, min((t.due_s for t in self._timers.values()), default=None),
                           self._changed)

    def close(self) -> None:
        self._closed = True
        self._changed.set()
