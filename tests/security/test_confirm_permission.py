"""Issue 12, item 5: a confirmation is the person's act, and risky steps are a capability.

- An agent's own syscall (its token over the API) cannot approve a risky step with
  ``confirmed=true``: only the person (the admin token, or the daemon's own runner after
  the person's yes) can.
- Running a destructive, exec or network step needs the ``may.risky`` capability, even
  with the person's yes.
- An MCP-mounted tool without path arguments needs an explicit ``mcp.<tool>`` grant.
- ``proc.confirm`` (re-running a step that waits for a person) is the person's too.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from llmos.api.app import create_app, lifespan_services
from llmos.config import McpServer
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.kernel.process import ProcState
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import Tool, ToolRegistry, ToolResult, default_registry
from llmos.types import Risk


def _client(app, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost",
                             headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
async def api(config):
    app = create_app(config, engines={"fake": FakeEngine(model="fake")}, tools=default_registry(),
                     hal=FakeHAL(), preload_models=False)
    async with lifespan_services(app) as svc, _client(app, svc.tokens.admin_token()) as admin:
        yield app, svc, admin


async def _agent(admin: httpx.AsyncClient, name: str, **caps) -> str:
    r = await admin.post("/api/v1/agents", json={"name": name, "capabilities": caps})
    assert r.status_code == 201, r.text
    return r.json()["token"]


async def test_an_agent_token_cannot_confirm_its_own_risky_step(api, tmp_path):
    app, svc, admin = api
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "keep.txt").write_text("keep me")
    token = await _agent(admin, "w", syscalls=["tool.*", "may.risky"], write_roots=[str(ws)])
    call = {"tool": "files.delete", "workdir": str(ws), "args": {"path": "keep.txt"}, "confirmed": True}
    async with _client(app, token) as agent:
        r = await agent.post("/api/v1/syscall", json={"name": "tool.call", "args": call})
    assert r.status_code in (403, 409), r.text
    body = r.json()
    assert body["error"] == "needs_confirmation" and "person" in body["message"]
    assert (ws / "keep.txt").exists()
    # the person (admin token) may approve the same call
    r = await admin.post("/api/v1/syscall", json={"name": "tool.call", "args": call})
    assert r.status_code == 200, r.text
    assert not (ws / "keep.txt").exists()


async def test_proc_confirm_is_the_persons(api, tmp_path):
    app, svc, admin = api
    ws = tmp_path / "ws"
    ws.mkdir()
    token = await _agent(admin, "w", syscalls=["tool.*", "proc.*"], write_roots=[str(ws)])
    k = svc.kernel
    # a step marked as waiting for a person (what recovery does after a crash)
    p = k.procs.create(kind="tool", owner="w", spec={"tool": "files.write", "args": {}, "workdir": str(ws)},
                       priority=0, parent=None, idem_key=None, reason="test")
    k.procs.transition(p, ProcState.WAITING, "needs_confirmation: may have run before the restart")
    async with _client(app, token) as agent:
        r = await agent.post(f"/api/v1/processes/{p.pid}/confirm")
    assert r.status_code == 403, r.text
    assert "person" in r.json()["message"]
    assert k.procs.get(p.pid).state == ProcState.WAITING


def _registry() -> ToolRegistry:
    def delete(ctx, args):
        ctx.resolve(args["path"], "w").unlink()
        return ToolResult(output=None, summary="deleted")

    def ping(ctx, args):
        return ToolResult(output="pong", summary="pong")

    schema = {"type": "object", "properties": {"path": {"type": "string", "maxLength": 400}}, "required": ["path"],
              "additionalProperties": False}
    return ToolRegistry([
        Tool(name="t.delete", description="delete", parameters=schema, risk=Risk.DESTRUCTIVE, fn=delete,
             kind="files", path_args={"path": "w"}),
        Tool(name="srv.ping", description="ping (mounted from MCP server srv)",
             parameters={"type": "object", "properties": {}, "additionalProperties": False},
             risk=Risk.READ, fn=ping, kind="assistant", idempotent=True),
    ])


@pytest.fixture
async def kernel(config, clock):
    cfg = config.replace(mcp=(McpServer(name="srv", command=("true",)),))
    k = await Kernel.boot(cfg, engines={"fake": FakeEngine("x")}, tools=_registry(), clock=clock,
                          hal=FakeHAL(clock))
    yield k
    await k.shutdown(grace_s=0.5)


async def test_a_risky_step_needs_the_risky_capability_even_when_confirmed(kernel, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "f.txt").write_text("x")
    res = await kernel.syscall("root", "agent.create", {"name": "plain", "capabilities": {
        "syscalls": ["tool.call"], "write_roots": [str(ws)]}})
    assert res.ok, res.error
    res = await kernel.syscall("plain", "tool.call", {"tool": "t.delete", "workdir": str(ws),
                                                     "args": {"path": "f.txt"}, "confirmed": True})
    assert res.error is not None and res.error.code == "permission_denied", res
    assert "may.risky" in res.error.message
    assert (ws / "f.txt").exists()
    res = await kernel.syscall("root", "agent.create", {"name": "trusted", "capabilities": {
        "syscalls": ["tool.call", "may.risky"], "write_roots": [str(ws)]}})
    assert res.ok, res.error
    res = await kernel.syscall("trusted", "tool.call", {"tool": "t.delete", "workdir": str(ws),
                                                       "args": {"path": "f.txt"}, "confirmed": True})
    assert res.ok, res.error
    assert not (ws / "f.txt").exists()


async def test_an_mcp_tool_without_path_arguments_needs_an_explicit_grant(kernel, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    res = await kernel.syscall("root", "agent.create", {"name": "a", "capabilities": {
        "syscalls": ["tool.call"], "write_roots": [str(ws)]}})
    assert res.ok
    res = await kernel.syscall("a", "tool.call", {"tool": "srv.ping", "workdir": str(ws), "args": {}})
    assert res.error is not None and res.error.code == "permission_denied", res
    assert "mcp.srv.ping" in res.error.message
    res = await kernel.syscall("root", "agent.create", {"name": "b", "capabilities": {
        "syscalls": ["tool.call", "mcp.srv.ping"], "write_roots": [str(ws)]}})
    assert res.ok, res.error
    res = await kernel.syscall("b", "tool.call", {"tool": "srv.ping", "workdir": str(ws), "args": {}})
    assert res.ok, res.error


DELETE_PLAN = ('{"steps": [{"tool": "files.delete", "args": {"path": "old.txt"}, "why": "remove it"}], '
               '"answer": "Deleted old.txt."}')


async def test_an_agent_cannot_approve_its_own_run(config, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "old.txt").write_text("bye")
    app = create_app(config, engines={"fake": FakeEngine(DELETE_PLAN, model="fake")},
                     tools=default_registry(), hal=FakeHAL(), preload_models=False)
    async with lifespan_services(app) as svc, _client(app, svc.tokens.admin_token()) as admin:
        token = await _agent(admin, "w", syscalls=["*"], write_roots=[str(ws)])
        async with _client(app, token) as agent:
            r = await agent.post("/api/v1/runs", json={"request": "delete old.txt", "workdir": str(ws),
                                                       "yes": True})
            assert r.status_code == 403, r.text
            r = await agent.post("/api/v1/runs", json={"request": "delete old.txt", "workdir": str(ws)})
            assert r.status_code == 202, r.text
            rid = r.json()["id"]
            for _ in range(200):
                run = (await agent.get(f"/api/v1/runs/{rid}")).json()
                if run["status"] == "pending":
                    break
                await asyncio.sleep(0.02)
            assert run["status"] == "pending", run
            r = await agent.post(f"/api/v1/runs/{rid}/confirm", json={})
            assert r.status_code == 403, r.text
            assert (ws / "old.txt").exists()
            # the person's yes runs it
            r = await admin.post(f"/api/v1/runs/{rid}/confirm", json={})
            assert r.status_code == 200, r.text
            for _ in range(200):
                run = (await agent.get(f"/api/v1/runs/{rid}")).json()
                if run["status"] not in ("running", "pending", "planning"):
                    break
                await asyncio.sleep(0.02)
            assert run["status"] == "succeeded", run
            assert not (ws / "old.txt").exists()
