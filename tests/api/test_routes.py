"""REST routes under /api/v1: each one a syscall as the calling agent."""

from __future__ import annotations

import pytest


async def test_process_lifecycle(api):
    c = api.client
    r = await c.post("/api/v1/processes", json={"kind": "llm", "spec": {"prompt": "hello world"},
                                                "priority": 5})
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["kind"] == "llm" and p["owner"] == "root" and p["priority"] == 5
    done = (await c.post(f"/api/v1/processes/{p['pid']}/wait", json={"timeout_s": 10})).json()
    assert done["state"] == "succeeded" and done["timed_out"] is False
    assert done["result"]["text"] == "hello world"
    assert done["tokens_out"] == 2
    listed = (await c.get("/api/v1/processes", params={"state": "succeeded"})).json()["processes"]
    assert [x["pid"] for x in listed] == [p["pid"]]
    got = (await c.get(f"/api/v1/processes/{p['pid']}")).json()
    assert got["pid"] == p["pid"] and got["state"] == "succeeded"
    # a finished process cannot be reniced: the kernel says why, the route passes it on
    r = await c.post(f"/api/v1/processes/{p['pid']}/nice", json={"priority": -3})
    assert r.status_code in (400, 409, 422) and r.json()["message"]


async def test_kill_and_nice_a_live_process(api):
    c = api.client
    r = await c.post("/api/v1/processes", json={"kind": "run", "spec": {"title": "a long run"}})
    pid = r.json()["pid"]
    r = await c.post(f"/api/v1/processes/{pid}/nice", json={"priority": -7})
    assert r.status_code == 200 and r.json()["priority"] == -7
    r = await c.post(f"/api/v1/processes/{pid}/kill", json={"reason": "not needed"})
    assert r.status_code == 200 and r.json()["state"] == "killed"
    r = await c.delete(f"/api/v1/processes/{pid}")
    assert r.status_code in (200, 400, 409)
    live = (await c.get("/api/v1/processes", params={"state": "live"})).json()["processes"]
    assert pid not in [x["pid"] for x in live]


async def test_an_agent_cannot_touch_another_agents_process(api):
    c = api.client
    pid = (await c.post("/api/v1/processes", json={"kind": "run", "spec": {}})).json()["pid"]
    tok = (await c.post("/api/v1/agents", json={"name": "mallory", "capabilities": {
        "syscalls": ["proc.*"]}})).json()["token"]
    async with api.as_agent(tok) as m:
        for method, path, body in (("GET", f"/api/v1/processes/{pid}", None),
                                   ("POST", f"/api/v1/processes/{pid}/kill", {}),
                                   ("POST", f"/api/v1/processes/{pid}/nice", {"priority": 10})):
            r = await m.request(method, path, json=body)
            assert r.status_code == 403, (path, r.text)
            assert r.json()["error"] == "permission_denied" and r.json()["reason"]
        assert (await m.get("/api/v1/processes")).json()["processes"] == []
    assert (await c.get(f"/api/v1/processes/{pid}")).json()["state"] != "killed"


async def test_syscall_passthrough(api):
    r = await api.client.post("/api/v1/syscall", json={"name": "llm.generate",
                                                        "args": {"prompt": "one two", "max_tokens": 1}})
    v = r.json()["value"]
    assert r.status_code == 200 and v["text"] == "one" and v["finish_reason"] == "length"


async def test_agents_and_capabilities(api):
    c = api.client
    r = await c.post("/api/v1/agents", json={"name": "reader", "issue_token": False,
                                             "capabilities": {"syscalls": ["tool.list"], "network": False}})
    assert r.status_code == 201 and r.json()["token"] is None
    ids = [a["id"] for a in (await c.get("/api/v1/agents")).json()["agents"]]
    assert "root" in ids and "reader" in ids
    r = await c.post("/api/v1/agents", json={"name": "reader"})
    assert r.status_code == 400 and r.json()["field"] == "name"
    r = await c.post("/api/v1/agents", json={"name": "x", "capabilities": {"syscalls": ["nope.nope"]}})
    assert r.status_code == 400 and "syscalls" in r.json()["field"]
    r = await c.post("/api/v1/agents", json={"name": "green", "capabilities": {"alloc_mode": "energy"}})
    assert r.status_code == 201
    r = await c.post("/api/v1/agents", json={"name": "y", "capabilities": {"alloc_mode": "fastest"}})
    assert r.status_code == 422 and "alloc_mode" in r.json()["field"]


async def test_tools_timers_memory(api):
    c = api.client
    tools = (await c.get("/api/v1/tools")).json()["tools"]
    byname = {t["name"]: t for t in tools}
    assert byname["files.delete"]["risk"] == "destructive" and byname["files.read"]["parameters"]
    t = (await c.post("/api/v1/timers", json={"message": "stand up", "in_s": 600})).json()
    assert t["message"] == "stand up" and t["state"] == "pending"
    assert [x["id"] for x in (await c.get("/api/v1/timers")).json()["timers"]] == [t["id"]]
    assert (await c.delete(f"/api/v1/timers/{t['id']}")).status_code == 200
    assert (await c.get("/api/v1/timers")).json()["timers"] == []
    assert (await c.delete("/api/v1/timers/999")).status_code == 404
    assert (await c.post("/api/v1/memory", json={"key": "notes/fruit", "value": "apples and pears"})).status_code == 201
    got = (await c.get("/api/v1/memory/notes/fruit")).json()
    assert got["value"] == "apples and pears"
    found = (await c.post("/api/v1/memory/search", json={"query": "pears"})).json()["results"]
    assert [f["key"] for f in found] == ["notes/fruit"]
    assert (await c.delete("/api/v1/memory/notes/fruit")).status_code == 200
    assert (await c.get("/api/v1/memory/notes/fruit")).status_code == 404


async def test_system_snapshot(api):
    s = (await api.client.get("/api/v1/system")).json()
    assert s["cpu"]["name"] == "Fake CPU" and s["memory"]["total_bytes"] > 0
    assert s["gpus"] and s["gpus"][0]["name"]
    assert all(e["label"] in ("measured", "modelled") for e in s["energy"])
    assert s["engines"][0]["name"] == "fake"


async def test_alloc_solves_the_seed_example(api):
    doc = {"tasks": [{"name": "T1", "cost": {"R1": 1, "R2": 2}},
                     {"name": "T2", "cost": {"R1": 2, "R2": 3}},
                     {"name": "T3", "cost": {"R1": 3, "R2": 5}}],
           "resources": [{"name": "R1"}, {"name": "R2"}], "objective": "cost"}
    r = await api.client.post("/api/v1/alloc", json=doc)
    assert r.status_code == 200, r.text
    sol = r.json()
    assert sol["assignment"] == {"T1": "R1", "T2": "R1", "T3": "R1"} and sol["value"] == pytest.approx(6)
    assert sol["optimal"] and sol["explanation"]
    bad = {**doc, "tasks": [{"name": "T1", "bogus": 1}]}
    r = await api.client.post("/api/v1/alloc", json=bad)
    assert r.status_code == 400 and r.json()["field"].startswith("tasks[0]")


async def test_metrics_exposition(api):
    c = api.client
    await c.post("/api/v1/syscall", json={"name": "llm.generate", "args": {"prompt": "a b c"}})
    await c.post("/v1/chat/completions", json={"model": "fake", "messages": [{"role": "user", "content": "x y"}]})
    text = (await c.get("/metrics")).text
    assert 'llmos_processes{state="succeeded"} 2.0' in text
    assert 'llmos_agent_tokens_total{agent="root",direction="out"} 5.0' in text
    assert "llmos_queue_depth 0.0" in text
    assert 'llmos_engine_tokens_generated_total{engine="fake"} 5.0' in text
    assert "llmos_time_to_first_token_seconds_count 1.0" in text
    assert 'llmos_energy_joules_total{' in text and 'label="modelled"' in text
    assert 'llmos_http_requests_total{method="POST",route="/api/v1/syscall",status="200"} 1.0' in text


async def test_post_timers_repeats_with_every_s(config):
    """``every_s`` makes a repeating reminder (alone: the first one every_s from now); it fires
    each time on the kernel clock and stays pending; a bad every_s is a 422 naming the field."""
    import asyncio
    import json

    import httpx

    from llmos.api.app import create_app, lifespan_services
    from llmos.clock import FakeClock
    from llmos.hal.fake import FakeHAL
    from llmos.kernel.timers import Delivery
    from llmos.llm.fake import FakeEngine

    clock = FakeClock()
    app = create_app(config, engines={"fake": FakeEngine()}, hal=FakeHAL(), clock=clock, preload_models=False)
    async with lifespan_services(app) as svc:
        svc.kernel.timers.delivery = Delivery(notify=False)
        headers = {"Authorization": f"Bearer {svc.tokens.admin_token()}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost",
                                     headers=headers) as c:
            r = await c.post("/api/v1/timers", json={"message": "stretch", "every_s": 100})
            assert r.status_code == 201, r.json()
            t = r.json()
            assert t["every_s"] == 100 and t["due_s"] == clock.time() + 100
            r = await c.post("/api/v1/timers", json={"message": "water", "in_s": 10, "every_s": 3600})
            assert r.status_code == 201 and r.json()["due_s"] == clock.time() + 10
            for _ in range(3):
                clock.advance(100)
                for _ in range(10):
                    await asyncio.sleep(0)
            got = {x["message"]: x for x in (await c.get("/api/v1/timers")).json()["timers"]}
            assert got["stretch"]["state"] == "pending" and got["stretch"]["due_s"] == clock.time() + 100
            assert got["water"]["due_s"] == clock.time() - 300 + 10 + 3600    # fired once, next in an hour
            for bad in (0, -5, "60", True, None, "soon"):
                body = {"message": "x", "in_s": 5, "every_s": bad} if bad is not None else \
                    {"message": "x", "in_s": 5, "every_s": float("nan")}
                r = await c.post("/api/v1/timers", content=json.dumps(body), headers={"content-type": "application/json"})
                assert r.status_code == 422, (bad, r.json())
                assert r.json()["field"] == "every_s" and r.json()["message"].startswith("every_s:"), r.json()
