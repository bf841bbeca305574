"""Time as a dependency: ``Clock`` for production, ``FakeClock`` for tests.

Anything that reads time or sleeps takes a Clock, so tests advance time
themselves instead of waiting on the wall clock.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "FakeClock"]


@runtime_checkable
class Clock(Protocol):
    def time(self) -> float: ...          # wall-clock seconds since the epoch
    def monotonic(self) -> float: ...     # seconds, only differences are meaningful
    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when told to. ``sleep`` waits for ``advance``."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._t = float(start)       # seconds; only advance() changes it
        self._start = float(start)
        self._sleepers: list[tuple[float, int, asyncio.Future]] = []
        self._seq = 0

    def time(self) -> float:
        return self._t

    def monotonic(self) -> float:
        return self._t - self._start

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._sleepers, (self._t + seconds, self._seq, fut))
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline passed."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._t += seconds
        while self._sleepers and self._sleepers[0][0] <= self._t:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)
