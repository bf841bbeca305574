from __future__ import annotations

import asyncio


async def _settle():
    for _ in range(5):
        await asyncio.sleep(0)


async def test_timer_fires_on_the_kernel_clock(kernel, clock):
    events: list[dict] = []

    async def watch():
        async for ev in kernel.events():
            if ev["type"] == "timer":
                events.append(ev)
                return
    w = asyncio.ensure_future(watch())
    await _settle()
    res = await kernel.syscall("root", "timer.set", {"in_s": 2, "message": "stretch"})
    assert res.ok and res.value["state"] == "pending"
    await _settle()
    clock.advance(1.0)
    await _settle()
    assert not events
    clock.advance(1.5)
    await asyncio.wait_for(w, 2)
    assert events[0]["message"] == "stretch" and events[0]["state"] == "fired" and not events[0]["late"]
    ctx = (await kernel.syscall("root", "memory.context", {})).value["messages"]
    assert ctx[-1] == {"ts": ctx[-1]["ts"], "role": "system", "content": "reminder: stretch"}


async def test_earlier_timer_set_later_still_fires_first(kernel, clock):
    await kernel.syscall("root", "timer.set", {"in_s": 100, "message": "late one"})
    await _settle()
    await kernel.syscall("root", "timer.set", {"at": clock.time() + 5, "message": "early one"})
    await _settle()
    clock.advance(6)
    await _settle()
    timers = (await kernel.syscall("root", "timer.list", {"all": True})).value["timers"]
    states = {t["message"]: t["state"] for t in timers}
    assert states == {"late one": "pending", "early one": "fired"}


async def test_cancel_and_bad_arguments(kernel, clock):
    tid = (await kernel.syscall("root", "timer.set", {"in_s": 5, "message": "x"})).value["id"]
    assert (await kernel.syscall("root", "timer.cancel", {"id": tid})).value["state"] == "cancelled"
    assert (await kernel.syscall("root", "timer.cancel", {"id": tid})).error.code == "invalid_argument"
    assert (await kernel.syscall("root", "timer.cancel", {"id": 999})).error.code == "not_found"
    clock.advance(10)
    await _settle()
    assert (await kernel.syscall("root", "timer.list", {})).value["timers"] == []
    for args in ({"message": "x"}, {"in_s": 1, "at": 5.0, "message": "x"}, {"in_s": -1, "message": "x"},
                 {"in_s": 1, "message": ""}, {"at": clock.time() + 1e12, "message": "x"}):
        res = await kernel.syscall("root", "timer.set", args)
        assert res.error.code == "invalid_argument", args


async def test_timers_of_other_agents(kernel):
    await kernel.syscall("root", "agent.create", {"name": "a", "capabilities": {"syscalls": ["timer.*"]}})
    tid = (await kernel.syscall("root", "timer.set", {"in_s": 5, "message": "root's"})).value["id"]
    assert (await kernel.syscall("a", "timer.list", {})).value["timers"] == []
    res = await kernel.syscall("a", "timer.cancel", {"id": tid})
    assert res.error.code == "permission_denied"


async def test_tool_context_set_timer_hook(kernel):
    hook = kernel._timer_hook("root")
    out = await asyncio.to_thread(hook, 30.0, "from a tool")
    assert out["message"] == "from a tool" and out["owner"] == "root"
    assert [t.message for t in kernel.timers.list()] == ["from a tool"]
