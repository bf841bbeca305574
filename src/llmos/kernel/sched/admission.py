"""Admission control: the scheduler's policy for engines without token-level steps.

A remote OpenAI-compatible server batches on its own; the kernel can still
decide how many requests are in flight there and in which order, and can
preempt by cancel-and-resume (the request stops streaming, and later goes on
from the text it already has).

Map:
- ``AdmissionController(scheduler, max_in_flight)``: wraps a private Scheduler
  (any policy); its running set is what is in flight.
- ``Slot``: one request's ticket, an async context manager:

      async with controller.slot(request_id, owner, priority) as slot:
          async for chunk in stream(...):           # admitted: may send
              slot.charge(tokens=1, seconds=dt)     # lets rr / fair preempt
              if slot.preempted.is_set():           # asked to yield
                  cancel the stream; await slot.resume(); re-send with the text so far

  Leaving the block finishes the request and admits the next.

While a preempted request is still winding down its stream, in flight may
exceed ``max_in_flight`` by the preemptions under way (one chunk, usually).
"""

from __future__ import annotations

import asyncio

from llmos.errors import InvalidArgument, NotFound
from llmos.kernel.sched.base import Outcome, Plan, Scheduler, Task

__all__ = ["AdmissionController", "Slot"]


class Slot:
    def __init__(self, controller: AdmissionController, request_id: str, task: Task) -> None:
        self.controller = controller
        self.request_id = request_id
        self.task = task
        self.admitted = asyncio.Event()     # set while the request may send / stream
        self.preempted = asyncio.Event()    # set when the controller asks it to yield
        self.reason = ""                    # the last decision about it, for explain

    async def __aenter__(self) -> Slot:
        self.controller._enter(self)
        try:
            await self.admitted.wait()
        except BaseException:
            self.controller._leave(self)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.controller._leave(self)

    def charge(self, tokens: int = 0, seconds: float = 0.0) -> None:
        self.controller._charge(self, tokens, seconds)

    async def resume(self) -> None:
        """After yielding (stream cancelled), wait to be admitted again."""
        await self.admitted.wait()
        self.preempted.clear()


class AdmissionController:
    def __init__(self, scheduler: Scheduler, max_in_flight: int) -> None:
        self.sched = scheduler                      # private: owned by this controller
        self._slots: dict[int, Slot] = {}           # pid -> slot, while entered
        self._by_rid: dict[str, int] = {}           # request id -> pid
        self._next = 1                              # next pid to hand out
        self.max_in_flight = 1                      # requests; set_max_in_flight() only
        self.set_max_in_flight(max_in_flight)

    def set_max_in_flight(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidArgument(f"max_in_flight: expected a positive integer, got {n!r}",
                                  field="max_in_flight", expected="integer >= 1")
        self.max_in_flight = n
        self._pump()

    def slot(self, request_id: str, owner: str = "root", priority: int = 0,
             est_tokens: float | None = None, kind: str = "llm") -> Slot:
        if request_id in self._by_rid:
            raise InvalidArgument(f"request {request_id!r} already holds a slot", field="request_id",
                                  expected="a request id not in flight or waiting")
        task = Task(self._next, owner, priority, self.sched.clock.time(), kind, est_tokens=est_tokens)
        task.validate()
        self._next += 1
        return Slot(self, request_id, task)

    def in_flight(self) -> list[str]:
        return [self._slots[p].request_id for p in self.sched.running()]

    def waiting(self) -> list[str]:
        now = self.sched.clock.time()
        order = self.sched._order((self.sched.get(p) for p in self.sched.ready()), now)
        return [self._slots[t.pid].request_id for t in order]

    def renice(self, request_id: str, priority: int) -> None:
        pid = self._by_rid.get(request_id)
        if pid is None:
            raise NotFound(f"no request {request_id!r} in admission control")
        self.sched.renice(pid, priority)
        self._pump()

    def explain(self, request_id: str) -> list[str]:
        pid = self._by_rid.get(request_id)
        return [] if pid is None else self.sched.explain(pid)

    # ── internals, called by Slot ──────────────────────────────────────────
    def _enter(self, slot: Slot) -> None:
        if slot.request_id in self._by_rid:
            raise InvalidArgument(f"request {slot.request_id!r} already holds a slot",
                                  field="request_id", expected="a request id not in flight or waiting")
        self.sched.add(slot.task)
        self._slots[slot.task.pid] = slot
        self._by_rid[slot.request_id] = slot.task.pid
        self._pump()

    def _leave(self, slot: Slot) -> None:
        pid = slot.task.pid
        if self._slots.pop(pid, None) is None:
            return
        del self._by_rid[slot.request_id]
        self.sched.update(Plan(at_s=self.sched.clock.time()), Outcome(finished={pid}))
        slot.admitted.clear()
        self._pump()

    def _charge(self, slot: Slot, tokens: int, seconds: float) -> None:
        pid = slot.task.pid
        if pid not in self._slots:
            return
        self.sched.update(Plan(at_s=self.sched.clock.time()), Outcome(usage={pid: (tokens, seconds)}))
        self._pump()

    def _pump(self) -> None:
        now = self.sched.clock.time()
        plan = self.sched.schedule(now, self.max_in_flight - len(self.sched.running()))
        if not plan.run and not plan.preempt:
            return
        self.sched.update(plan, Outcome())
        for pid in plan.preempt:
            s = self._slots[pid]
            s.reason = plan.reasons.get(pid, "preempted")
            s.admitted.clear()
            s.preempted.set()
        for pid in plan.run:
            s = self._slots[pid]
            s.reason = plan.reasons.get(pid, "admitted")
            s.admitted.set()
