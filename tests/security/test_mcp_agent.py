"""Issue 12, item 4: ``llmos mcp`` acts as its own agent, and approval is the person's.

- The MCP server makes its calls with a token of its own agent (``mcp-...``), created by
  the admin with the configured roots only, never with the admin token.
- A directory outside those roots is refused; ``/`` or a folder holding the state
  directory is refused as a root.
- ``run_request`` has no ``yes`` argument and there is no tool that approves: a risky
  step answers "waiting for the person's confirmation (id ...)", and runs only after the
  person's yes (CLI or dashboard, the admin token).
"""

from __future__ import annotations

import contextlib
import json

import httpx
import pytest
from mcp import Client

from llmos.api.app import create_app, lifespan_services
from llmos.api.mcp_server import backend, build_server, check_roots
from llmos.errors import ConfigError
from llmos.hal.fake import FakeHAL
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import default_registry

DELETE_PLAN = json.dumps({"steps": [{"tool": "files.delete", "args": {"path": "old.txt"},
                                     "why": "remove it"}], "answer": "Deleted old.txt."})


@pytest.fixture
def ws(ws):
    (ws / "old.txt").write_text("x")
    return ws


@contextlib.asynccontextmanager
async def mcp_session(config, ws):
    app = create_app(config, engines={"fake": FakeEngine(DELETE_PLAN, model="fake")},
                     tools=default_registry(), hal=FakeHAL(), preload_models=False)
    async with lifespan_services(app) as svc, backend(config, roots=[str(ws)], app=app) as client:
        async def connect():
            return client
        async with Client(build_server(connect)) as mcp_client:
            admin = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost",
                                      headers={"Authorization": f"Bearer {svc.tokens.admin_token()}"})
            async with admin:
                yield mcp_client, client, admin


def payload(result):
    assert not result.is_error, result.content
    data = result.structured_content
    if data is None:
        data = json.loads(result.content[0].text)
    return data.get("result", data) if isinstance(data, dict) and set(data) == {"result"} else data


async def test_the_mcp_server_is_its_own_agent_with_the_configured_roots(config, ws):
    async with mcp_session(config, ws) as (_mcp, client, admin):
        me = await client.whoami()
        assert not me["admin"] and me["agent"].startswith("mcp-")
        agents = {a["id"]: a for a in (await admin.get("/api/v1/agents")).json()["agents"]}
        caps = agents[me["agent"]]["capabilities"]
        assert caps["write_roots"] == [str(ws.resolve())] and caps["read_roots"] == [str(ws.resolve())]
        assert caps["network"] is False and "*" not in caps["syscalls"]


async def test_no_yes_argument_and_no_approving_tool(config, ws):
    async with mcp_session(config, ws) as (mcp_client, _c, _a):
        tools = {t.name: t for t in (await mcp_client.list_tools()).tools}
    assert "yes" not in tools["run_request"].input_schema.get("properties", {})
    assert "run_confirm" not in tools


async def test_a_risky_step_waits_for_the_persons_confirmation(config, ws):
    async with mcp_session(config, ws) as (mcp_client, _client, admin):
        out = payload(await mcp_client.call_tool("run_request", {"request": "delete old.txt",
                                                                 "workdir": str(ws)}))
        assert out["status"] == "pending"
        assert "waiting for the person's confirmation" in out["message"] and out["id"] in out["message"]
        assert (ws / "old.txt").exists()
        r = await admin.post(f"/api/v1/runs/{out['id']}/confirm", json={})    # the person's yes
        assert r.status_code == 200, r.text
        done = payload(await mcp_client.call_tool("run_wait", {"run_id": out["id"]}))
        assert done["status"] == "succeeded", done
        assert not (ws / "old.txt").exists()


async def test_a_directory_outside_the_roots_is_refused(config, ws, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    async with mcp_session(config, ws) as (mcp_client, _c, _a):
        res = await mcp_client.call_tool("run_request", {"request": "delete old.txt", "workdir": str(other)})
    assert res.is_error and "outside" in res.content[0].text


def test_roots_follow_the_workspace_rules(config, tmp_path):
    with pytest.raises(ConfigError, match="root"):
        check_roots(config, ["/"])
    with pytest.raises(ConfigError, match="state"):
        check_roots(config, [str(config.home.parent)])
    with pytest.raises(ConfigError, match="not a directory"):
        check_roots(config, [str(tmp_path / "missing")])
    ok = tmp_path / "project"
    ok.mkdir()
    assert check_roots(config, [str(ok)]) == [str(ok.resolve())]


def test_the_person_answers_in_the_cli(config, ws, capsys):
    """``llmos pending`` shows the step the MCP agent's run waits on; ``llmos confirm`` runs it."""
    import asyncio

    from llmos.api.server import ServerThread
    from llmos.cli import main
    from llmos.sdk import Client

    srv = ServerThread(config, engines={"fake": FakeEngine(DELETE_PLAN, model="fake")},
                       tools=default_registry(), hal=FakeHAL(), preload_models=False).start()
    try:
        async def as_mcp_agent() -> str:
            async with backend(config, roots=[str(ws)]) as client:      # the live daemon
                run = await client.submit_run("delete old.txt", workdir=str(ws))
                for _ in range(200):
                    if (await client.get_run(run["id"])).get("pending"):
                        return run["id"]
                    await asyncio.sleep(0.05)
                raise AssertionError("the run never waited")
        rid = asyncio.run(as_mcp_agent())
        capsys.readouterr()
        assert main(["pending", "--json"]) == 0
        waiting = json.loads(capsys.readouterr().out)["runs"]
        assert [r["id"] for r in waiting] == [rid] and waiting[0]["owner"].startswith("mcp-")
        assert main(["confirm", rid]) == 0
        with Client(srv.url, token=srv.token) as admin:
            assert admin.wait_run(rid)["status"] == "succeeded"
        assert not (ws / "old.txt").exists()
        assert main(["confirm", "no such id!"]) != 0
        assert "run id" in capsys.readouterr().err
    finally:
        srv.stop()
