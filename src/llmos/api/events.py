"""Live events for SSE clients: one hub, many bounded subscriber queues.

Map:
- ``EventHub.publish(event)``: stamp an id and a time, keep it in a short history ring,
  and hand it to every subscriber whose filter matches. Never blocks: a subscriber
  whose queue is full loses the event and is told how many it lost.
- ``EventHub.subscribe(types, last_id)``: an async iterator of events; replays the
  history after ``last_id`` first (SSE ``Last-Event-ID`` resumption).
- ``EventHub.pump(source)``: copy an async iterator of events (``kernel.events()``)
  into the hub until cancelled; restarts the source if it ends or fails.
- ``sse_format(event)`` / ``sse_stream(sub)``: the text/event-stream encoding, with
  a comment line every ``HEARTBEAT_S`` so proxies keep the connection open.

An event is a JSON object with at least ``type`` (``proc.*``, ``run.*``, ``timer.*``...).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

__all__ = ["EventHub", "Subscription", "event_owner", "sse_format", "sse_stream", "HEARTBEAT_S"]

log = logging.getLogger("llmos.api.events")

HEARTBEAT_S = 15.0          # seconds between keep-alive comments on an idle stream
SUBSCRIBER_QUEUE_MAX = 1024  # events buffered per slow subscriber before it loses some
HISTORY_MAX = 512            # events kept for Last-Event-ID replay and the dashboard


def event_type(event: dict) -> str:
    return str(event.get("type") or event.get("event") or event.get("kind") or "message")


def event_owner(event: dict) -> str | None:
    """The agent an event concerns (None for system-wide events)."""
    for key in ("owner", "agent"):
        v = event.get(key)
        if isinstance(v, str):
            return v
    for key in ("process", "proc", "run"):
        inner = event.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("owner"), str):
            return inner["owner"]
    return None


class Subscription:
    """One subscriber's bounded queue; iterate it to receive events."""

    def __init__(self, hub: EventHub, types: tuple[str, ...], agent: str | None = None) -> None:
        self._hub = hub
        self.types = types                  # type prefixes wanted; () = everything
        self.agent = agent                  # only this agent's events; None = everyone's (admin)
        self.queue: asyncio.Queue[dict] = asyncio.Queue(SUBSCRIBER_QUEUE_MAX)
        self.dropped = 0                    # events lost because the queue was full

    def wants(self, event: dict) -> bool:
        if self.agent is not None:
            owner = event_owner(event)
            if owner is not None and owner != self.agent:
                return False
        if not self.types:
            return True
        t = event_type(event)
        return any(t.startswith(p.rstrip("*")) for p in self.types)

    def offer(self, event: dict) -> None:
        if not self.wants(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def get(self, timeout: float | None = None) -> dict | None:
        """Next event, a ``stream.dropped`` notice after losses, or None on timeout."""
        if self.dropped and self.queue.empty():
            n, self.dropped = self.dropped, 0
            return {"type": "stream.dropped", "count": n, "id": self._hub.last_id}
        try:
            if timeout is None:
                return await self.queue.get()
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        self._hub._subs.discard(self)

    def __aiter__(self) -> AsyncIterator[dict]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[dict]:
        while True:
            ev = await self.get()
            if ev is not None:
                yield ev

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """Fan-out of events to subscribers. Owned by the app; touched only on its loop."""

    def __init__(self, *, history: int = HISTORY_MAX, clock: Callable[[], float] = time.time) -> None:
        self._subs: set[Subscription] = set()
        self._history: collections.deque[dict] = collections.deque(maxlen=history)
        self._clock = clock
        self.last_id = 0                    # id of the newest event published
        self.published = 0                  # events published since start
        self._listeners: list[Callable[[dict], None]] = []

    def add_listener(self, fn: Callable[[dict], None]) -> None:
        """Call ``fn(event)`` synchronously for every event (metrics, run tracking)."""
        self._listeners.append(fn)

    def publish(self, event: dict[str, Any]) -> dict:
        self.last_id += 1
        self.published += 1
        ev = dict(event)
        ev.setdefault("type", event_type(ev))
        ev.setdefault("ts", self._clock())
        ev["id"] = self.last_id
        self._history.append(ev)
        for fn in self._listeners:
            try:
                fn(ev)
            except Exception:  # a listener bug must not stop the stream
                log.exception("event listener failed")
        for sub in list(self._subs):
            sub.offer(ev)
        return ev

    def subscribe(self, types: Iterable[str] = (), last_id: int | None = None,
                  agent: str | None = None) -> Subscription:
        """``types``: type prefixes ("proc" matches "process"); ``agent``: only its events."""
        sub = Subscription(self, tuple(t for t in types if t), agent)
        if last_id is not None:
            for ev in self._history:
                if ev["id"] > last_id:
                    sub.offer(ev)
        self._subs.add(sub)
        return sub

    def recent(self, n: int = 50, types: Iterable[str] = (), agent: str | None = None) -> list[dict]:
        probe = Subscription(self, tuple(types), agent)
        return [ev for ev in self._history if probe.wants(ev)][-n:]

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    async def pump(self, source: Callable[[], AsyncIterator[dict]], *, retry_s: float = 1.0) -> None:
        """Publish everything ``source()`` yields, until cancelled."""
        while True:
            try:
                async for ev in source():
                    if isinstance(ev, dict):
                        self.publish(ev)
                    elif hasattr(ev, "to_dict"):
                        self.publish(ev.to_dict())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("kernel event stream failed; reconnecting")
            await asyncio.sleep(retry_s)


def sse_format(event: dict) -> bytes:
    data = json.dumps(event, separators=(",", ":"), default=str)
    return f"id: {event.get('id', '')}\nevent: {event_type(event)}\ndata: {data}\n\n".encode()


async def sse_stream(sub: Subscription, *, heartbeat_s: float = HEARTBEAT_S,
                     first: Iterable[dict] = ()) -> AsyncIterator[bytes]:
    """The text/event-stream body for one subscription; closes it when the client leaves."""
    try:
        yield b"retry: 2000\n\n"
        for ev in first:
            yield sse_format(ev)
        while True:
            ev = await sub.get(timeout=heartbeat_s)
            yield b": keep-alive\n\n" if ev is None else sse_format(ev)
    finally:
        sub.close()
