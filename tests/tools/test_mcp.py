"""The MCP client: other servers' tools mounted in the registry, over each transport."""

from __future__ import annotations

import sys
import textwrap
import threading
import time

import pytest

from llmos.config import McpServer, load_config
from llmos.errors import ConfigError, LLMOSError, ToolError
from llmos.tools.mcp import McpMounts, bound_schema, mount_from_config, tool_name
from llmos.tools.registry import ToolContext, ToolRegistry, check_schema
from llmos.types import Risk

SERVER_SRC = textwrap.dedent('''
    from mcp.server.mcpserver import MCPServer

    srv = MCPServer("demo")

    @srv.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @srv.tool()
    def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    if __name__ == "__main__":
        srv.run()
''')


def demo_server():
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError as McpToolError

    srv = MCPServer("demo", log_level="CRITICAL")

    @srv.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @srv.tool()
    def delete_all(confirm: bool = False) -> str:
        """Pretends to delete everything."""
        raise McpToolError("refusing: this demo deletes nothing")

    return srv


@pytest.fixture
def ctx(tmp_path):
    return ToolContext(workdir=tmp_path)


@pytest.fixture
def mounts():
    m = McpMounts()
    yield m
    m.close()


def test_mount_in_process_server(mounts, ctx):
    reg = ToolRegistry()
    names = mounts.mount(demo_server(), reg, name="demo")
    assert names == ["demo.add", "demo.delete_all"]
    add = reg.get("demo.add")
    assert add.risk == Risk.EXEC and add.risk.needs_confirmation   # unknown tools default to exec
    assert add.idempotent is False
    res = reg.call("demo.add", {"a": 2, "b": 40}, ctx)
    assert res.output == {"result": 42} and "42" in res.summary
    with pytest.raises(ToolError) as e:
        reg.call("demo.delete_all", {}, ctx)
    assert "refusing" in e.value.message
    with pytest.raises(LLMOSError):                     # schema checked before the server sees it
        reg.call("demo.add", {"a": "two", "b": 1}, ctx)


def test_per_tool_risk_and_server_risk(mounts):
    reg = ToolRegistry()
    mounts.mount(demo_server(), reg, name="calc", tool_risks={"add": "read"})
    assert reg.get("calc.add").risk == Risk.READ and reg.get("calc.add").idempotent
    assert reg.get("calc.delete_all").risk == Risk.EXEC
    with pytest.raises(ConfigError):
        mounts.mount(demo_server(), ToolRegistry(), name="x", tool_risks={"add": "harmless"})


def test_stdio_transport(tmp_path, mounts, ctx):
    script = tmp_path / "server.py"
    script.write_text(SERVER_SRC)
    reg = ToolRegistry()
    names = mounts.mount(McpServer(name="py", command=(sys.executable, str(script)), risk="write"), reg)
    assert sorted(names) == ["py.add", "py.shout"]
    assert reg.get("py.shout").risk == Risk.WRITE
    assert reg.call("py.shout", {"text": "hi"}, ctx).output == {"result": "HI"}


def test_streamable_http_transport(mounts, ctx):
    import uvicorn

    from llmos.api.server import free_port

    port = free_port()
    app = demo_server().streamable_http_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.02)
        reg = ToolRegistry()
        mounts.mount(McpServer(name="web", url=f"http://127.0.0.1:{port}/mcp"), reg)
        assert reg.call("web.add", {"a": 1, "b": 2}, ctx).output == {"result": 3}
    finally:
        server.should_exit = True
        t.join(10)


def test_mount_from_config_reports_failures(tmp_path):
    (tmp_path / "config.toml").write_text(textwrap.dedent('''
        [[mcp]]
        name = "broken"
        command = ["/nonexistent/mcp-server"]
    '''))
    cfg = load_config(env={"LLMOS_HOME": str(tmp_path)})
    reg = ToolRegistry()
    with mount_from_config(cfg, reg) as m:
        assert "broken" in m.errors and m.errors["broken"]
        assert reg.list() == []


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"},
                                      "tags": {"type": "array", "items": {"type": "string"}},
                                      "opts": {"type": "object"}}, "required": ["q", "missing"]},
    {"type": "object", "properties": {"p": {"$ref": "#/$defs/P"}}, "$defs": {
        "P": {"type": "object", "properties": {"x": {"type": "number"}}}}},
    {"type": "object", "properties": {"u": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                                      "c": {"const": 3}, "e": {"enum": ["a", "b"]},
                                      "m": {"allOf": [{"properties": {"a": {"type": "string"}}}]}}},
    {},
])
def test_bound_schema_meets_the_registry_conventions(schema):
    out = bound_schema(schema)
    check_schema(out)
    assert set(out.get("required", [])) <= set(out["properties"])


def test_tool_names():
    assert tool_name("my server", "get/weather") == "my_server.get_weather"
