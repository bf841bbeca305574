"""``llmos mcp``: runs, processes and memory as MCP tools, checked with the official ``mcp`` client."""

from __future__ import annotations

import contextlib
import json
import os
import sys

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from llmos.api.mcp_server import build_server
from llmos.sdk import AsyncClient

PLAN = json.dumps({"steps": [{"tool": "files.write", "args": {"path": "hello.txt", "content": "hi"},
                              "why": "write the greeting"}], "answer": "Wrote hello.txt."})


@pytest.fixture
def script():
    return PLAN


@contextlib.asynccontextmanager
async def session(api):
    """An MCP client session on the server, in this task (anyio scopes stay in one task)."""
    sdk = AsyncClient("http://localhost", token=api.token, transport=httpx.ASGITransport(app=api.app))

    async def connect() -> AsyncClient:
        return sdk

    try:
        async with Client(build_server(connect)) as client:
            yield client
    finally:
        await sdk.aclose()


def payload(result):
    """The tool's value: structured content when the server sent it, else the JSON text."""
    assert not result.is_error, result.content
    data = result.structured_content
    if data is None:
        texts = [b.text for b in result.content if getattr(b, "type", "") == "text"]
        data = json.loads(texts[0]) if len(texts) == 1 else [json.loads(t) for t in texts]
    return data.get("result", data) if isinstance(data, dict) and set(data) == {"result"} else data


async def test_tools_listed(api):
    async with session(api) as mcp_client:
        names = {t.name for t in (await mcp_client.list_tools()).tools}
    assert {"run_request", "run_wait", "run_reject", "run_get", "process_list", "process_get",
            "process_kill", "process_nice", "generate", "memory_put", "memory_get",
            "memory_search"} <= names


async def test_processes_and_memory(api):
    async with session(api) as mcp_client:
        gen = payload(await mcp_client.call_tool("generate", {"prompt": "unused", "max_tokens": 3}))
        assert gen["pid"] >= 1 and gen["finish_reason"] in ("stop", "length")
        procs = payload(await mcp_client.call_tool("process_list", {"limit": 10}))
        assert gen["pid"] in [p["pid"] for p in procs]
        assert payload(await mcp_client.call_tool("process_get", {"pid": gen["pid"]}))["state"] == "succeeded"
        await mcp_client.call_tool("memory_put", {"key": "plan", "value": "ship the release on friday"})
        assert payload(await mcp_client.call_tool("memory_get", {"key": "plan"}))["value"].startswith("ship")
        hits = payload(await mcp_client.call_tool("memory_search", {"query": "release"}))
        assert [h["key"] for h in hits] == ["plan"]
        bad = await mcp_client.call_tool("process_get", {"pid": 99999})
        assert bad.is_error and "no process with pid 99999" in bad.content[0].text


async def test_run_request_over_mcp(api, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    async with session(api) as mcp_client:
        run = payload(await mcp_client.call_tool("run_request", {"request": "write hi to hello.txt",
                                                                 "workdir": str(ws)}))
        assert run["status"] == "succeeded", run
        assert (ws / "hello.txt").read_text() == "hi"
        assert payload(await mcp_client.call_tool("run_get", {"run_id": run["id"]}))["status"] == "succeeded"


async def test_llmos_mcp_over_stdio(tmp_path):
    env = {**os.environ, "LLMOS_HOME": str(tmp_path / "home")}
    llmos = os.path.join(os.path.dirname(sys.executable), "llmos")
    ws = tmp_path / "ws"
    ws.mkdir()
    params = StdioServerParameters(command=llmos, args=["mcp", "--root", str(ws)], env=env)
    async with Client(params, read_timeout_seconds=60) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "run_request" in names and "process_list" in names
        await client.call_tool("memory_put", {"key": "k", "value": "over stdio"})
        got = await client.call_tool("memory_get", {"key": "k"})
        assert not got.is_error and "over stdio" in got.content[0].text
        assert not (await client.call_tool("process_list", {})).is_error


DELETE_PLAN = json.dumps({"steps": [{"tool": "files.delete", "args": {"path": "old.txt"},
                                     "why": "remove it"}], "answer": "Deleted old.txt."})


@pytest.mark.parametrize("script", [DELETE_PLAN])
async def test_risky_step_waits_for_the_persons_confirmation(api, tmp_path):
    tmp_path = tmp_path / "ws"
    tmp_path.mkdir()
    (tmp_path / "old.txt").write_text("x")
    async with session(api) as mcp_client:
        run = payload(await mcp_client.call_tool("run_request", {"request": "delete old.txt",
                                                                 "workdir": str(tmp_path)}))
        assert run["status"] == "pending" and run["pending"]["tool"] == "files.delete"
        assert "waiting for the person's confirmation" in run["message"]
        assert (tmp_path / "old.txt").exists()
        r = await api.client.post(f"/api/v1/runs/{run['id']}/confirm", json={})   # the person, not the model
        assert r.status_code == 200, r.text
        done = payload(await mcp_client.call_tool("run_wait", {"run_id": run["id"]}))
        assert done["status"] == "succeeded" and not (tmp_path / "old.txt").exists()
        again = await mcp_client.call_tool("run_reject", {"run_id": run["id"]})
        assert again.is_error and "no step waiting" in again.content[0].text
