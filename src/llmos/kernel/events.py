"""The kernel's event bus: process transitions, timer firings, shutdown.

Every subscriber has a bounded queue; a slow one loses its oldest events instead of
stalling the kernel. ``close`` ends every subscription.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["EventBus", "EVENT_QUEUE_MAX"]

EVENT_QUEUE_MAX = 1000     # events kept per slow subscriber (oldest dropped)


class EventBus:
    def __init__(self) -> None:
        self._queues: list[asyncio.Queue] = []     # one per live subscription

    @property
    def watched(self) -> bool:
        return bool(self._queues)

    def publish(self, ev: dict[str, Any]) -> None:
        for q in self._queues:
            if q.full():
                q.get_nowait()
            q.put_nowait(ev)

    def close(self) -> None:
        for q in self._queues:
            if q.full():
                q.get_nowait()
            q.put_nowait(None)

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        q: asyncio.Queue = asyncio.Queue(EVENT_QUEUE_MAX)
        self._queues.append(q)
        try:
            while True:
                ev = await q.get()
                if ev is None:
                    return
                yield ev
        finally:
            self._queues.remove(q)
