"""Bearer tokens, the admin token file, and the loopback-only rule."""

from __future__ import annotations

import stat

import httpx
import pytest

from llmos.api.auth import AuthError, TokenStore, is_loopback
from llmos.errors import NotFound


def test_admin_token_created_once_with_mode_0600(tmp_path):
    store = TokenStore(tmp_path)
    tok = store.admin_token()
    path = tmp_path / "admin.token"
    assert path.read_text().strip() == tok
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert TokenStore(tmp_path).admin_token() == tok          # stable across restarts


def test_loose_admin_token_file_is_tightened(tmp_path):
    path = tmp_path / "admin.token"
    path.write_text("llmos-admin-handmade\n")
    path.chmod(0o644)
    assert TokenStore(tmp_path).admin_token() == "llmos-admin-handmade"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_agent_tokens_are_stored_as_digests_and_revocable(tmp_path):
    store = TokenStore(tmp_path)
    tok, tid = store.issue("alice", label="laptop")
    raw = (tmp_path / "tokens.json").read_text()
    assert tok not in raw and "alice" in raw
    assert stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode) == 0o600
    who = TokenStore(tmp_path).resolve(tok)                    # survives a restart
    assert who.agent == "alice" and not who.admin
    assert [t["id"] for t in store.list("alice")] == [tid]
    assert store.revoke(tid) == "alice"
    with pytest.raises(AuthError):
        store.resolve(tok)
    with pytest.raises(NotFound):
        store.revoke(tid)


def test_resolve_admin_and_rejects(tmp_path):
    store = TokenStore(tmp_path)
    assert store.resolve(store.admin_token()).admin
    for bad in (None, "", "llmos-nope"):
        with pytest.raises(AuthError) as e:
            store.resolve(bad)
        assert e.value.hint


@pytest.mark.parametrize("host,ok", [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True),
                                     ("10.0.0.5", False), ("192.168.1.2", False), ("example.org", False)])
def test_is_loopback(host, ok):
    assert is_loopback(host) is ok


async def test_missing_and_bad_tokens_are_401_json(api):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), base_url="http://localhost") as c:
        r = await c.get("/api/v1/processes")
        assert r.status_code == 401
        assert r.json()["error"] == "unauthorized" and r.json()["hint"]
        assert r.headers["www-authenticate"] == "Bearer"
        r = await c.get("/api/v1/processes", headers={"Authorization": "Bearer llmos-wrong"})
        assert r.status_code == 401
        r = await c.get("/api/v1/health")                     # liveness needs no token
        assert r.status_code == 200


async def test_agent_token_acts_as_that_agent(api):
    r = await api.client.post("/api/v1/agents", json={"name": "alice", "capabilities": {
        "syscalls": ["proc.*", "llm.generate", "agent.list"]}})
    assert r.status_code == 201
    tok = r.json()["token"]
    async with api.as_agent(tok) as alice:
        me = (await alice.get("/api/v1/whoami")).json()
        assert me == {"agent": "alice", "admin": False}
        # the kernel, not the route, refuses what alice may not do
        r = await alice.get("/api/v1/tools")
        assert r.status_code == 403 and r.json()["error"] == "permission_denied"
        # extra tokens: alice may make her own, not someone else's
        r = await alice.post("/api/v1/agents/alice/tokens", json={"label": "ci"})
        assert r.status_code == 201
        extra = r.json()["token"]
        r = await alice.post("/api/v1/agents/root/tokens", json={})
        assert r.status_code == 403
    async with api.as_agent(extra) as alice2:
        assert (await alice2.get("/api/v1/whoami")).json()["agent"] == "alice"
    tokens = (await api.client.get("/api/v1/agents/alice/tokens")).json()["tokens"]
    assert [t["label"] for t in tokens] == ["agent.create by root", "ci"]   # one store for both
    tid = tokens[1]["id"]
    r = await api.client.delete(f"/api/v1/agents/alice/tokens/{tid}")
    assert r.status_code == 200
    async with api.as_agent(extra) as alice2:
        assert (await alice2.get("/api/v1/whoami")).status_code == 401


async def test_tokens_of_unknown_agent_404(api):
    r = await api.client.post("/api/v1/agents/nobody/tokens", json={})
    assert r.status_code == 404 and r.json()["error"] == "not_found"


@pytest.mark.parametrize("allow", [False, True])
async def test_remote_peer_refused_unless_allowed(config, allow):
    from llmos.api.app import create_app, lifespan_services
    from llmos.hal.fake import FakeHAL
    from llmos.llm.fake import FakeEngine

    app = create_app(config, engines={"fake": FakeEngine()}, hal=FakeHAL(), allow_remote=allow,
                     preload_models=False)
    async with lifespan_services(app) as svc:
        transport = httpx.ASGITransport(app=app, client=("10.0.0.5", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.1:8420") as c:  # the daemon's IP
            r = await c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {svc.tokens.admin_token()}"})
    if allow:
        assert r.status_code == 200
    else:
        assert r.status_code == 403
        body = r.json()
        assert body["error"] == "forbidden" and "10.0.0.5" in body["message"] and "--allow-remote" in body["hint"]


async def test_only_the_admin_token_calls_as_another_agent(api, tmp_path):
    """``/syscall`` with ``agent``: the person's call made with that agent's rights (its roots,
    its process), the person's yes still counting; an agent's token may not use it."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (tmp_path / "outside.txt").write_text("not bob's")
    r = await api.client.post("/api/v1/agents", json={"name": "bob", "capabilities": {
        "syscalls": ["tool.call", "may.risky"], "read_roots": [str(ws)], "write_roots": [str(ws)]}})
    assert r.status_code == 201
    bob = r.json()["token"]
    read = {"tool": "files.read", "args": {"path": str(tmp_path / "outside.txt")}, "workdir": str(ws)}
    r = await api.client.post("/api/v1/syscall", json={"name": "tool.call", "args": read, "agent": "bob"})
    assert r.status_code == 403 and "outside.txt" in r.json()["message"]       # bob's roots, not root's
    r = await api.client.post("/api/v1/syscall", json={"name": "tool.call", "args": read})
    assert r.status_code == 200                                                # root reads it
    run = {"tool": "shell.run", "args": {"command": "echo hi > made.txt"}, "workdir": str(ws), "confirmed": True}
    r = await api.client.post("/api/v1/syscall", json={"name": "tool.call", "args": run, "agent": "bob"})
    assert r.status_code == 200, r.json()                                      # the person's yes counts
    pid = r.json()["value"]["pid"]
    assert (await api.client.get(f"/api/v1/processes/{pid}")).json()["owner"] == "bob"
    async with api.as_agent(bob) as b:
        r = await b.post("/api/v1/syscall", json={"name": "tool.call", "args": run})
        assert r.status_code == 409 and r.json()["error"] == "needs_confirmation"   # bob's own yes does not
        r = await b.post("/api/v1/syscall", json={"name": "tool.call", "args": run, "agent": "root"})
        assert r.status_code == 403 and "only the admin token" in r.json()["message"]
    r = await api.client.post("/api/v1/syscall", json={"name": "tool.list", "agent": "nobody"})
    assert r.status_code == 403 and "unknown agent" in r.json()["message"]
