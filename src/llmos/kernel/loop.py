"""The kernel loop: ``step()`` is three calls — schedule, run, update — with the
allocator placing the plan between the first two.

Map:
- ``KernelLoop.step()``: ``plan = scheduler.schedule(now, free_slots)``;
  ``place(plan)`` (the kernel asks the allocator where each started process runs,
  incrementally, and drops from ``plan.run`` what has no room yet);
  ``outcome = await executor.run(plan)`` (starts/pauses what the plan says, returns
  when something finished or new work woke it); ``update(plan, outcome)`` (the kernel
  folds it into the scheduler and the journal).
- ``start`` / ``stop``: the background task that steps forever; a failing step is
  logged and retried with backoff, never allowed to kill the kernel.
- ``free_slots``: how many more processes may run now (``slots`` minus running).

Backpressure lives at the door: ``proc.spawn`` answers Busy (with ``retry_after``)
when ``Kernel.queue_max`` processes are already queued, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmos.clock import Clock
    from llmos.executor.base import Executor, Outcome
    from llmos.kernel.sched import Plan, Scheduler

__all__ = ["KernelLoop"]

log = logging.getLogger(__name__)

BACKOFF_MAX_S = 1.0   # longest pause after a failing step


class KernelLoop:
    def __init__(self, scheduler: Scheduler, executor: Executor,
                 update: Callable[[Any, Outcome], None], clock: Clock, *, slots: int,
                 place: Callable[[Any], None] | None = None) -> None:
        self.scheduler = scheduler
        self.executor = executor
        self.update = update
        self.place = place                   # plan -> None: places plan.run, may shorten it
        self.clock = clock
        self.slots = slots                   # processes that may run at once
        self.plan: Plan | None = None        # the plan being run now (claim reads its reasons)
        self.steps = 0                       # steps completed
        self.failures = 0                    # steps that raised (logged)
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def free_slots(self) -> int:
        return self.slots - len(self.scheduler.running())

    async def step(self) -> Outcome:
        plan = self.scheduler.schedule(self.clock.time(), self.free_slots())
        if self.place is not None:
            self.place(plan)
        self.plan = plan
        outcome = await self.executor.run(plan)
        self.update(plan, outcome)
        self.steps += 1
        return outcome

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._forever(), name="llmos-kernel-loop")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _forever(self) -> None:
        backoff = 0.0
        while True:
            try:
                await self.step()
                backoff = 0.0
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures += 1
                log.exception("kernel step failed (%d so far)", self.failures)
                backoff = min(BACKOFF_MAX_S, max(0.01, backoff * 2))
                await asyncio.sleep(backoff)
