"""``llmos mcp``: runs, processes and memory as MCP tools, over stdio.

Map:
- ``build_server(connect)``: an ``mcp`` ``MCPServer`` whose tools call the daemon
  through the SDK's ``AsyncClient`` (``connect()`` returns one): ``run_request``,
  ``run_get``, ``run_confirm``, ``run_reject``, ``process_list``, ``process_get``,
  ``process_kill``, ``process_nice``, ``generate``, ``memory_put``, ``memory_get``,
  ``memory_search``. Errors come back as MCP tool errors with the LLM OS message.
- ``backend(config)``: the live daemon when ``discover`` finds one; otherwise an
  in-process app (its lifespan booted here) reached through httpx's ASGI transport,
  so both paths run the same routes, auth and kernel checks.
- ``run_stdio(config)``: serve until stdin closes.

Waiting for a run polls ``GET /runs/{id}`` (``POLL_S``) rather than streaming, so it
behaves the same over a socket and in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from llmos.config import Config
from llmos.errors import LLMOSError
from llmos.sdk.client import RUN_FINAL, AsyncClient

__all__ = ["build_server", "backend", "run_stdio", "POLL_S", "RUN_WAIT_S"]

POLL_S = 0.2          # seconds between polls while waiting for a run
RUN_WAIT_S = 300.0    # a run_request answers after this long even if the run goes on

Connect = Callable[[], Awaitable[AsyncClient]]


def _brief_run(run: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "status", "request", "answer", "steps", "pending", "error", "pid", "shell_run")
    return {k: run.get(k) for k in keep if run.get(k) is not None}


async def _wait_run(client: AsyncClient, run_id: str, limit_s: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        run = await client.get_run(run_id)
        if run.get("status") in RUN_FINAL or run.get("pending") or loop.time() >= deadline:
            return run
        await asyncio.sleep(POLL_S)


def build_server(connect: Connect, *, lifespan: Any = None) -> Any:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    srv = MCPServer("llmos", instructions=(
        "LLM OS: submit plain-language requests as runs (risky steps wait for run_confirm), "
        "inspect and steer processes, and keep notes in the agent's memory."),
        lifespan=lifespan, log_level="WARNING")

    async def go(fn: Callable[[AsyncClient], Awaitable[Any]]) -> Any:
        try:
            return await fn(await connect())
        except LLMOSError as e:
            raise ToolError(e.message + (f" (hint: {e.hint})" if e.hint else "")) from None

    @srv.tool()
    async def run_request(request: str, workdir: str | None = None, yes: bool = False,
                          dry_run: bool = False) -> dict:
        """Do something described in plain language. Answers when the run ends, or when a
        risky step waits for approval (then call run_confirm or run_reject)."""
        async def f(c: AsyncClient) -> dict:
            run = await c.submit_run(request, workdir=workdir, yes=yes, dry_run=dry_run)
            return _brief_run(await _wait_run(c, run["id"], RUN_WAIT_S))
        return await go(f)

    @srv.tool()
    async def run_get(run_id: str) -> dict:
        """A run's status, plan, pending step and answer."""
        return await go(lambda c: c.get_run(run_id))

    @srv.tool()
    async def run_confirm(run_id: str, step: int | None = None) -> dict:
        """Approve the run's pending step; answers when the run ends or waits again."""
        async def f(c: AsyncClient) -> dict:
            await c.confirm(run_id, step)
            return _brief_run(await _wait_run(c, run_id, RUN_WAIT_S))
        return await go(f)

    @srv.tool()
    async def run_reject(run_id: str, step: int | None = None, reason: str | None = None) -> dict:
        """Refuse the run's pending step (nothing of the plan runs)."""
        async def f(c: AsyncClient) -> dict:
            await c.reject(run_id, step, reason)
            return _brief_run(await _wait_run(c, run_id, RUN_WAIT_S))
        return await go(f)

    @srv.tool()
    async def process_list(state: str | None = None, limit: int = 50) -> list[dict]:
        """Processes (state: new, queued, running, waiting, preempted, succeeded, failed,
        killed, live or finished)."""
        return await go(lambda c: c.ps(state=state, limit=limit))

    @srv.tool()
    async def process_get(pid: int) -> dict:
        """One process: state, owner, priority, usage, result or error."""
        return await go(lambda c: c.get_process(pid))

    @srv.tool()
    async def process_kill(pid: int, reason: str | None = None) -> dict:
        """Kill a process (and its live children)."""
        return await go(lambda c: c.kill(pid, reason))

    @srv.tool()
    async def process_nice(pid: int, priority: int) -> dict:
        """Change a process's priority: -20 most urgent .. 19 least."""
        return await go(lambda c: c.nice(pid, priority))

    @srv.tool()
    async def generate(prompt: str, max_tokens: int = 256, priority: int = 0) -> dict:
        """Generate text as a scheduled LLM process; answers the text and its pid."""
        async def f(c: AsyncClient) -> dict:
            v = await c.syscall("llm.generate", {"prompt": prompt, "max_tokens": max_tokens,
                                                 "priority": priority})
            return {k: v.get(k) for k in ("text", "finish_reason", "pid", "usage")}
        return await go(f)

    @srv.tool()
    async def memory_put(key: str, value: str) -> dict:
        """Store a note under a key in this agent's memory."""
        return await go(lambda c: c.memory_put(key, value))

    @srv.tool()
    async def memory_get(key: str) -> dict:
        """Read a note by key."""
        return await go(lambda c: c.memory_get(key))

    @srv.tool()
    async def memory_search(query: str, limit: int = 10) -> list[dict]:
        """Full-text search over this agent's notes."""
        return await go(lambda c: c.memory_search(query, limit))

    return srv


@contextlib.asynccontextmanager
async def backend(config: Config) -> AsyncIterator[AsyncClient]:
    """An AsyncClient for the daemon, or for an in-process app booted for the duration."""
    from llmos.sdk.discover import async_discover

    client = await async_discover(config)
    if client is not None:
        async with client:
            yield client
        return
    import httpx

    from llmos.api.app import create_app, lifespan_services

    app = create_app(config)
    async with lifespan_services(app) as svc:
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient("http://llmos.local", token=svc.tokens.admin_token(),
                               transport=transport, timeout=RUN_WAIT_S + 30) as client:
            yield client


def run_stdio(config: Config) -> None:
    """Serve the MCP tools on stdin/stdout until the client goes away."""
    holder: dict[str, AsyncClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_server: Any) -> AsyncIterator[None]:
        async with backend(config) as client:
            holder["client"] = client
            yield

    async def connect() -> AsyncClient:
        return holder["client"]

    srv = build_server(connect, lifespan=lifespan)
    asyncio.run(srv.run_stdio_async())
