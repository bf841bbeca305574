"""Issue 12, item 10: one token store, with revoke and disable-agent, through API and CLI.

- The token ``agent.create`` hands out (over ``POST /agents`` or the ``/syscall`` door) is
  in the same store as every other token: listed by ``GET /agents/{a}/tokens``, revoked by
  ``DELETE``, after which it answers 401.
- Disabling an agent revokes all its tokens, refuses new ones, refuses its syscalls
  (in-process too), kills its live processes, and disables the agents it created.
- The CLI does the same: ``llmos tokens list|create|revoke`` and ``llmos disable``.
"""

from __future__ import annotations

import json

import httpx
import pytest

from llmos.api.app import create_app, lifespan_services
from llmos.hal.fake import FakeHAL
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import default_registry


def _client(app, token):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost",
                             headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
async def running(config):
    app = create_app(config, engines={"fake": FakeEngine(model="fake")}, tools=default_registry(),
                     hal=FakeHAL(), preload_models=False)
    async with lifespan_services(app) as svc, _client(app, svc.tokens.admin_token()) as admin:
        yield app, svc, admin


async def test_agent_create_tokens_are_listed_and_revocable(running):
    app, svc, admin = running
    r = await admin.post("/api/v1/agents", json={"name": "a1", "capabilities": {"syscalls": ["proc.*"]}})
    assert r.status_code == 201
    tok = r.json()["token"]
    r = await admin.post("/api/v1/syscall", json={"name": "agent.create", "args": {
        "name": "a2", "capabilities": {"syscalls": ["proc.*"]}}})
    tok2 = r.json()["value"]["token"]
    for name, t in (("a1", tok), ("a2", tok2)):
        listed = (await admin.get(f"/api/v1/agents/{name}/tokens")).json()["tokens"]
        assert len(listed) == 1, listed
        async with _client(app, t) as agent:
            assert (await agent.get("/api/v1/whoami")).status_code == 200
        r = await admin.delete(f"/api/v1/agents/{name}/tokens/{listed[0]['id']}")
        assert r.status_code == 200, r.text
        async with _client(app, t) as agent:
            assert (await agent.get("/api/v1/whoami")).status_code == 401


async def test_a_disabled_agent_can_do_nothing(running):
    app, svc, admin = running
    r = await admin.post("/api/v1/agents", json={"name": "boss", "capabilities": {
        "syscalls": ["agent.*", "proc.*", "llm.generate"]}})
    boss = r.json()["token"]
    async with _client(app, boss) as c:
        r = await c.post("/api/v1/agents", json={"name": "minion", "capabilities": {"syscalls": ["proc.*"]}})
        assert r.status_code == 201, r.text
        minion = r.json()["token"]
    r = await admin.post("/api/v1/agents/boss/disable")
    assert r.status_code == 200, r.text
    assert set(r.json()["disabled"]) == {"boss", "minion"}
    for t in (boss, minion):
        async with _client(app, t) as c:
            assert (await c.get("/api/v1/whoami")).status_code == 401
    r = await admin.post("/api/v1/agents/boss/tokens", json={})
    assert r.status_code in (403, 409) and "disabled" in r.json()["message"]
    res = await svc.kernel.syscall("boss", "proc.list", {})          # in-process too
    assert not res.ok and "disabled" in res.error.message
    r = await admin.get("/api/v1/agents")
    rows = {a["id"]: a for a in r.json()["agents"]}
    assert rows["boss"]["disabled"] is True


async def test_an_agent_cannot_disable_one_it_did_not_create(running):
    app, svc, admin = running
    r = await admin.post("/api/v1/agents", json={"name": "x", "capabilities": {"syscalls": ["agent.*"]}})
    x = r.json()["token"]
    await admin.post("/api/v1/agents", json={"name": "y", "capabilities": {"syscalls": ["proc.*"]}})
    async with _client(app, x) as c:
        r = await c.post("/api/v1/agents/y/disable")
    assert r.status_code == 403, r.text


def test_cli_lists_revokes_and_disables(config, home, capsys):
    from llmos.cli import main

    assert main(["tokens", "create", "root", "--metrics", "--label", "prom"]) == 0
    capsys.readouterr()
    assert main(["tokens", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["tokens"]
    assert [t["scope"] for t in rows] == ["metrics"]
    assert main(["tokens", "revoke", rows[0]["id"]]) == 0
    capsys.readouterr()
    assert main(["tokens", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == []
    assert main(["disable", "nobody"]) != 0
    assert "nobody" in capsys.readouterr().err
    assert main(["tokens", "revoke", "feedbeef"]) != 0
    assert "no token" in capsys.readouterr().err
