"""MCP client: mount the tools of MCP servers (stdio or streamable HTTP) in the registry.

Map:
- ``McpMounts``: owns one background thread with its own event loop, where every MCP
  session lives; tool functions (which the registry calls synchronously, from any
  thread) hand their call to that loop and wait, so an MCP tool behaves like any
  builtin. ``mount(server, registry)`` connects, lists the tools and registers each as
  ``<server>.<tool>``; ``close()`` ends the sessions and the thread.
- ``mount_from_config(config, registry)``: mount every ``[[mcp]]`` entry; a server
  that fails to start is reported in ``McpMounts.errors`` and skipped.
- ``bound_schema(schema)``: rewrite a server's JSON schema into the registry's
  conventions (bounded strings, numbers and arrays; closed objects), so the planner
  can build a grammar from it.

Risk. Each server has a risk class from config (default ``exec``: the person confirms
every call); ``tool_risks`` may set it per tool. The server's own tool annotations are
hints from an untrusted party and never lower a risk. Tool output is data.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from llmos import params
from llmos.config import Config, McpServer
from llmos.errors import ConfigError, LLMOSError, ToolError, map_foreign
from llmos.tools.registry import Tool, ToolContext, ToolRegistry, ToolResult
from llmos.types import Risk

__all__ = ["McpMounts", "mount_from_config", "bound_schema", "tool_name"]

log = logging.getLogger("llmos.tools.mcp")

CONNECT_TIMEOUT_S = 20.0               # seconds to start a server and list its tools
CALL_TIMEOUT_S = params.SANDBOX_TIMEOUT_S  # seconds one tool call may take
STRING_MAX = 16384                     # maxLength given to unbounded strings
ARRAY_MAX = 256                        # maxItems given to unbounded arrays
NUMBER_BOUND = 1e15                    # |x| bound given to unbounded numbers
_NAME_OK = re.compile(r"[^A-Za-z0-9_-]+")


def tool_name(server: str, tool: str) -> str:
    """Registry name of an MCP tool: ``<server>.<tool>`` with odd characters replaced."""
    return f"{_NAME_OK.sub('_', server)}.{_NAME_OK.sub('_', tool)}"


# ── schema normalisation ────────────────────────────────────────────────────
def _resolve_ref(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    if not ref.startswith("#/"):
        return {}
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part, {}) if isinstance(node, Mapping) else {}
    return node if isinstance(node, Mapping) else {}


def _bound_value(s: Any, root: Mapping[str, Any], depth: int) -> dict[str, Any]:
    if not isinstance(s, Mapping) or depth > 8:
        return {"type": "string", "maxLength": STRING_MAX}
    if "$ref" in s:
        return _bound_value(_resolve_ref(str(s["$ref"]), root), root, depth + 1)
    keep = {k: s[k] for k in ("description", "default", "title") if k in s}
    if "enum" in s:
        return {**keep, "enum": list(s["enum"])}
    if "const" in s:
        return {**keep, "enum": [s["const"]]}
    for key in ("anyOf", "oneOf"):
        if key in s and isinstance(s[key], list) and s[key]:
            return {**keep, "anyOf": [_bound_value(a, root, depth + 1) for a in s[key]]}
    if "allOf" in s and isinstance(s["allOf"], list) and s["allOf"]:
        merged: dict[str, Any] = {}
        for part in s["allOf"]:
            part = _resolve_ref(part["$ref"], root) if isinstance(part, Mapping) and "$ref" in part else part
            if isinstance(part, Mapping):
                for k, v in part.items():
                    if k == "properties":
                        merged.setdefault("properties", {}).update(v)
                    elif k == "required":
                        merged.setdefault("required", []).extend(v)
                    else:
                        merged.setdefault(k, v)
        return {**keep, **_bound_value(merged, root, depth + 1)}
    types = s.get("type")
    types = [types] if isinstance(types, str) else [t for t in (types or []) if isinstance(t, str)]
    if not types:
        types = ["object"] if "properties" in s else ["string", "number", "boolean", "null"]
    out: dict[str, Any] = {**keep, "type": types[0] if len(types) == 1 else types}
    if "string" in types:
        out["maxLength"] = min(int(s.get("maxLength", STRING_MAX)), STRING_MAX)
        if "minLength" in s:
            out["minLength"] = s["minLength"]
        if "pattern" in s:
            out["pattern"] = s["pattern"]
    if "integer" in types or "number" in types:
        out["minimum"] = s.get("minimum", -NUMBER_BOUND)
        out["maximum"] = s.get("maximum", NUMBER_BOUND)
    if "array" in types:
        out["items"] = _bound_value(s.get("items", {}), root, depth + 1)
        out["maxItems"] = min(int(s.get("maxItems", ARRAY_MAX)), ARRAY_MAX)
        if "minItems" in s:
            out["minItems"] = s["minItems"]
    if "object" in types:
        props = s.get("properties")
        if isinstance(props, Mapping) and props:
            out["properties"] = {k: _bound_value(v, root, depth + 1) for k, v in props.items()}
            out["additionalProperties"] = False
            req = [r for r in s.get("required", []) if r in props]
            if req:
                out["required"] = req
        else:
            ap = s.get("additionalProperties")
            out["additionalProperties"] = _bound_value(
                ap if isinstance(ap, Mapping) else {}, root, depth + 1)
    return out


def bound_schema(schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """A tool-parameters schema in the registry's conventions (top level: closed object)."""
    schema = dict(schema or {})
    props = schema.get("properties") or {}
    out: dict[str, Any] = {"type": "object", "additionalProperties": False,
                           "properties": {k: _bound_value(v, schema, 0) for k, v in props.items()}}
    req = [r for r in schema.get("required", []) if r in props]
    if req:
        out["required"] = req
    return out


# ── results ─────────────────────────────────────────────────────────────────
def _content_text(result: Any) -> str:
    parts = []
    for block in getattr(result, "content", None) or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            parts.append(f"[{kind} {getattr(block, 'mime_type', '')}]")
        elif kind == "resource_link":
            parts.append(f"[resource {getattr(block, 'uri', '')}]")
        else:
            parts.append(f"[{kind}]")
    text = "\n".join(parts)
    cap = params.SANDBOX_OUTPUT_BYTES
    return text if len(text) <= cap else text[:cap] + f"\n[... cut at {cap} characters]"


def _to_tool_result(name: str, result: Any) -> ToolResult:
    text = _content_text(result)
    if getattr(result, "is_error", False):
        raise ToolError(f"{name}: {text.strip().splitlines()[0] if text.strip() else 'the MCP tool failed'}")
    structured = getattr(result, "structured_content", None)
    output = structured if structured is not None else text
    first = text.strip().splitlines()[0] if text.strip() else json.dumps(output, default=str)[:200]
    return ToolResult(output=output, summary=f"{name}: {first[:200]}")


# ── mounts ──────────────────────────────────────────────────────────────────
class McpMounts:
    """MCP sessions of one process, on their own loop thread. Owner: whoever booted it."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="llmos-mcp", daemon=True)
        self._thread.start()
        self._sessions: list[tuple[asyncio.Task, asyncio.Event]] = []  # one task per server; _loop only
        self._clients: dict[str, Any] = {}              # server name -> mcp.Client
        self.tools: dict[str, list[str]] = {}           # server name -> registered tool names
        self.errors: dict[str, str] = {}                # server name -> why it is not mounted
        self._closed = False

    def _run(self, coro: Any, timeout: float) -> Any:
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout)
        except FutureTimeout:
            fut.cancel()
            raise ToolError(f"MCP call timed out after {timeout:g} s") from None

    async def _session(self, target: Any, ready: asyncio.Future, stop: asyncio.Event) -> None:
        """One server's session, entered and exited in this one task (anyio requires it)."""
        from mcp import Client

        try:
            async with Client(target, read_timeout_seconds=CALL_TIMEOUT_S) as client:
                listing = await client.list_tools()
                ready.set_result((client, list(listing.tools)))
                await stop.wait()
        except Exception as e:  # noqa: BLE001 - reported to mount() through ready, or logged
            if not ready.done():
                ready.set_exception(e)
            else:
                log.warning("MCP session ended: %s", map_foreign(e).message)

    async def _connect(self, server: McpServer | Any) -> Any:
        from mcp.client.stdio import StdioServerParameters

        if isinstance(server, McpServer) and server.command:
            target: Any = StdioServerParameters(command=server.command[0], args=list(server.command[1:]),
                                                env=dict(server.env) or None)
        elif isinstance(server, McpServer) and server.url:
            target = server.url
        else:
            target = server   # an in-process mcp Server / MCPServer (tests, embedding)
        ready: asyncio.Future = self._loop.create_future()
        stop = asyncio.Event()
        task = self._loop.create_task(self._session(target, ready, stop))
        try:
            client, tools = await ready
        except BaseException:
            task.cancel()
            raise
        self._sessions.append((task, stop))
        return client, tools

    def mount(self, server: McpServer | Any, registry: ToolRegistry, *,
              tool_risks: Mapping[str, str | Risk] | None = None, name: str | None = None) -> list[str]:
        """Connect to ``server``, register its tools, return their registry names.

        ``server`` is a config ``McpServer`` (stdio ``command`` or ``url``) or, for
        embedding and tests, an ``mcp`` server object (then pass ``name``).
        """
        if self._closed:
            raise ToolError("MCP mounts are closed")
        sname = name or getattr(server, "name", None)
        if not sname:
            raise ConfigError("mcp: a server needs a name")
        try:
            base_risk = Risk.parse(getattr(server, "risk", "exec") or "exec")
            per_tool = {k: Risk.parse(v) for k, v in (tool_risks or {}).items()}
        except ValueError as e:
            raise ConfigError(f"mcp {sname}: risk: {e}") from None
        try:
            client, tools = self._run(self._connect(server), CONNECT_TIMEOUT_S)
        except LLMOSError:
            raise
        except Exception as e:  # noqa: BLE001 - spawn/connect failures of a foreign server
            raise map_foreign(e, context=f"mcp server {sname}") from e
        self._clients[sname] = client
        names = []
        for t in tools:
            rname = tool_name(sname, t.name)
            if rname in registry:
                log.warning("mcp %s: tool %s clashes with a registered tool; skipped", sname, rname)
                continue
            risk = per_tool.get(t.name, base_risk)
            registry.register(Tool(
                name=rname, description=(t.description or f"{t.name} (MCP server {sname})").strip()[:500],
                parameters=bound_schema(t.input_schema), risk=risk,
                fn=self._tool_fn(sname, t.name, rname),
                kind="net" if risk >= Risk.NETWORK else "assistant",
                idempotent=risk == Risk.READ))
            names.append(rname)
        self.tools[sname] = names
        return names

    def _tool_fn(self, server: str, tool: str, rname: str):
        def call(ctx: ToolContext, args: dict) -> ToolResult:
            if threading.current_thread() is self._thread:
                raise ToolError(f"{rname}: called from the MCP thread itself")
            client = self._clients.get(server)
            if client is None:
                raise ToolError(f"{rname}: MCP server {server} is not connected")
            try:
                result = self._run(client.call_tool(tool, args), CALL_TIMEOUT_S + 1)
            except LLMOSError:
                raise
            except Exception as e:  # noqa: BLE001 - protocol or transport failure
                raise ToolError(f"{rname}: {map_foreign(e).message}") from e
            return _to_tool_result(rname, result)
        return call

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sessions:
            try:
                self._run(self._stop_all(), 10.0)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                log.warning("closing MCP sessions failed", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()

    async def _stop_all(self) -> None:
        for _, stop in self._sessions:
            stop.set()
        await asyncio.gather(*(t for t, _ in self._sessions), return_exceptions=True)

    def __enter__(self) -> McpMounts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mount_from_config(config: Config, registry: ToolRegistry) -> McpMounts:
    """Mount every ``[[mcp]]`` server of ``config``; failures land in ``.errors``."""
    mounts = McpMounts()
    for server in config.mcp:
        try:
            mounts.mount(server, registry)
        except LLMOSError as e:
            mounts.errors[server.name] = e.message
            log.warning("mcp server %s not mounted: %s", server.name, e.message)
    return mounts
