"""The event hub: bounded fan-out, filters, resumption, and the SSE encoding."""

from __future__ import annotations

import asyncio
import json

from llmos.api import events as ev_mod
from llmos.api.events import EventHub, event_owner, sse_format, sse_stream


async def test_fan_out_with_type_and_owner_filters():
    hub = EventHub(clock=lambda: 1.0)
    everything = hub.subscribe()
    procs = hub.subscribe(["proc"])
    alice = hub.subscribe(agent="alice")
    hub.publish({"type": "process", "pid": 1, "owner": "alice"})
    hub.publish({"type": "process", "pid": 2, "owner": "bob"})
    hub.publish({"type": "run.plan", "run": {"owner": "alice"}})
    hub.publish({"type": "system.stats", "system": {}})
    assert [e["id"] for e in _drain(everything)] == [1, 2, 3, 4]
    assert [e["pid"] for e in _drain(procs)] == [1, 2]
    assert [e["id"] for e in _drain(alice)] == [1, 3, 4]       # system-wide events reach everyone
    assert hub.subscribers == 3
    for s in (everything, procs, alice):
        s.close()
    assert hub.subscribers == 0


async def test_slow_subscriber_loses_events_and_is_told(monkeypatch):
    monkeypatch.setattr(ev_mod, "SUBSCRIBER_QUEUE_MAX", 3)
    hub = EventHub()
    sub = hub.subscribe()
    for i in range(10):
        hub.publish({"type": "process", "pid": i})
    got = [await sub.get(timeout=0.1) for _ in range(4)]
    assert [g["pid"] for g in got[:3]] == [0, 1, 2]
    assert got[3] == {"type": "stream.dropped", "count": 7, "id": 10}


async def test_replay_after_last_event_id():
    hub = EventHub()
    for i in range(5):
        hub.publish({"type": "timer", "n": i})
    sub = hub.subscribe(last_id=3)
    assert [e["n"] for e in _drain(sub)] == [3, 4]
    assert [e["n"] for e in hub.recent(2)] == [3, 4]


async def test_pump_restarts_a_failing_source():
    hub = EventHub()
    calls = []

    async def source():
        calls.append(1)
        yield {"type": "process", "pid": len(calls)}
        raise RuntimeError("source broke")

    task = asyncio.create_task(hub.pump(source, retry_s=0.01))
    await asyncio.sleep(0.1)
    task.cancel()
    assert len(calls) >= 2 and hub.published == len(calls)


async def test_sse_encoding_and_heartbeat():
    hub = EventHub()
    sub = hub.subscribe()
    stream = sse_stream(sub, heartbeat_s=0.01)
    assert await stream.__anext__() == b"retry: 2000\n\n"
    assert await stream.__anext__() == b": keep-alive\n\n"
    hub.publish({"type": "process", "pid": 7})
    raw = (await stream.__anext__()).decode()
    assert raw.startswith("id: 1\nevent: process\ndata: ") and raw.endswith("\n\n")
    assert json.loads(raw.split("data: ", 1)[1])["pid"] == 7
    await stream.aclose()
    assert hub.subscribers == 0                                  # closed with the stream
    assert sse_format({"type": "x", "id": 2, "v": float("nan")})  # never raises on odd values


def test_event_owner():
    assert event_owner({"owner": "a"}) == "a"
    assert event_owner({"run": {"owner": "b"}}) == "b"
    assert event_owner({"type": "system.stats"}) is None


def _drain(sub):
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out
