"""``llmos mcp``: runs, processes and memory as MCP tools, over stdio.

Map:
- ``build_server(connect)``: an ``mcp`` ``MCPServer`` whose tools call the daemon
  through the SDK's ``AsyncClient`` (``connect()`` returns one): ``run_request``,
  ``run_get``, ``run_wait``, ``run_reject``, ``process_list``, ``process_get``,
  ``process_kill``, ``process_nice``, ``generate``, ``memory_put``, ``memory_get``,
  ``memory_search``. Errors come back as MCP tool errors with the LLM OS message.
- ``check_roots(config, roots)``: the directories the server's agent may use
  (``--root``, default the current directory), resolved, under the workspace rules of
  every run (``config.check_workspace``: not ``/``, the home directory itself, or a
  folder holding the state directory or the config file).
- ``agent_caps(roots, network)`` / ``ensure_agent(admin, roots, network)``: the server's
  own agent, ``mcp-<digest of its rights>``, created by the admin with those roots only
  (an agent of that name that the admin did not make, or with other rights, is refused,
  never reused); a token is issued for this session and revoked when it ends.
- ``backend(config, roots=..., network=..., app=None)``: an AsyncClient acting as that
  agent, on the live daemon when ``discover`` finds one, otherwise on an in-process app
  (its lifespan booted here; or ``app``, already running) through httpx's ASGI
  transport, so both paths run the same routes, auth and kernel checks.
- ``run_stdio(config, roots=..., network=...)``: serve until stdin closes.

NOTE (who approves). The client's model drives these tools, so none of them approves
anything: ``run_request`` has no ``yes``, and a risky step answers "waiting for the
person's confirmation (id ...)". The person answers with ``llmos confirm <id>`` /
``llmos reject <id>`` or in the dashboard (the admin token); ``run_wait`` then follows
the run. The admin token is used only to set up the agent and its token.

Waiting for a run polls ``GET /runs/{id}`` (``POLL_S``) rather than streaming, so it
behaves the same over a socket and in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from llmos.config import Config
from llmos.errors import ConfigError, InvalidArgument, LLMOSError, PermissionDenied
from llmos.sdk.client import RUN_FINAL, AsyncClient

__all__ = ["build_server", "backend", "run_stdio", "check_roots", "agent_caps", "ensure_agent",
           "POLL_S", "RUN_WAIT_S", "AGENT_SYSCALLS"]

POLL_S = 0.2          # seconds between polls while waiting for a run
RUN_WAIT_S = 300.0    # a run_request answers after this long even if the run goes on

# what the server's agent may call: its own runs (agent.create makes each run's agent
# within these), processes, generation, memory and timers; may.risky lets a step the
# person approved run. Nothing over other agents, no network unless asked.
AGENT_SYSCALLS = ("agent.create", "agent.list", "llm.generate", "tool.call", "tool.list", "may.risky",
                  "proc.spawn", "proc.get", "proc.exit", "proc.kill", "proc.list", "proc.nice",
                  "proc.wait", "timer.*", "memory.*")

Connect = Callable[[], Awaitable[AsyncClient]]


def check_roots(config: Config, roots: list[str] | tuple[str, ...] | None) -> list[str]:
    """The server agent's roots, resolved, under the workspace rules every run follows
    (``config.check_workspace``); ConfigError naming the bad one."""
    from llmos.config import check_workspace

    out: list[str] = []
    for r in list(roots or [os.getcwd()]):
        p = Path(os.path.expanduser(str(r)))
        if not p.is_dir():
            raise ConfigError(f"mcp root {r}: not a directory", hint="pass --root with an existing folder")
        try:
            wd = check_workspace(config, p, field="--root")
        except InvalidArgument as e:
            raise ConfigError(f"mcp root {r}: {e.message.removeprefix('--root: ')}",
                              hint="pick a project folder: llmos mcp --root ~/projects/notes") from None
        if str(wd) not in out:
            out.append(str(wd))
    return out


def agent_caps(roots: list[str], network: bool = False) -> dict[str, Any]:
    return {"syscalls": sorted(AGENT_SYSCALLS), "read_roots": list(roots), "write_roots": list(roots),
            "network": bool(network)}


def _agent_name(caps: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(caps, sort_keys=True).encode()).hexdigest()[:12]
    return f"mcp-{digest}"


async def ensure_agent(admin: AsyncClient, roots: list[str], network: bool = False) -> tuple[str, str, str]:
    """The server's agent (made by the admin if absent): ``(agent, token, token_id)``."""
    caps = agent_caps(roots, network)
    name = _agent_name(caps)
    found = next((a for a in await admin.agents() if a.get("id") == name), None)
    if found is None:
        await admin.create_agent(name, caps, token=False)
    else:
        have = found.get("capabilities") or {}
        same = (sorted(have.get("syscalls", [])) == caps["syscalls"]
                and have.get("read_roots") == roots and have.get("write_roots") == roots
                and bool(have.get("network")) == caps["network"] and not have.get("others"))
        if found.get("creator") != "root" or not same:
            raise PermissionDenied(f"agent {name} exists but was not made by the admin for these roots",
                                   reason="the MCP server never reuses an agent it did not make",
                                   hint="remove that agent, or run llmos mcp with other roots")
    tok = await admin.create_token(name, label=f"llmos mcp (pid {os.getpid()})")
    return name, tok["token"], tok["id"]


def _brief_run(run: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "status", "request", "answer", "steps", "pending", "error", "pid", "shell_run")
    return {k: run.get(k) for k in keep if run.get(k) is not None}


def _answer(run: dict[str, Any]) -> dict[str, Any]:
    out = _brief_run(run)
    if run.get("pending") and run.get("status") not in RUN_FINAL:
        p = run["pending"]
        out["status"] = "pending"
        out["message"] = (f"waiting for the person's confirmation (id {run['id']}): step {p.get('step')} "
                          f"({p.get('tool')}, {p.get('risk')}). The person answers with `llmos confirm "
                          f"{run['id']}` or `llmos reject {run['id']}`, or in the dashboard; then call "
                          f"run_wait.")
    return out


async def _wait_run(client: AsyncClient, run_id: str, limit_s: float, *,
                    through_pending: bool = False) -> dict[str, Any]:
    """Poll until the run ends, waits for the person (unless ``through_pending`` and the
    wait is the one already reported), or ``limit_s`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    seen = None
    while True:
        run = await client.get_run(run_id)
        pending = run.get("pending")
        step = pending.get("step") if isinstance(pending, dict) else None
        if seen is None and through_pending:
            seen = step if pending else -1
        if run.get("status") in RUN_FINAL or loop.time() >= deadline:
            return run
        if pending and not (through_pending and step == seen):
            return run
        await asyncio.sleep(POLL_S)


def build_server(connect: Connect, *, lifespan: Any = None, workdir: str | None = None) -> Any:
    """The MCP tools; ``workdir``: the run workspace when a call names none (the first root)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    default_wd = workdir
    srv = MCPServer("llmos", instructions=(
        "LLM OS: submit plain-language requests as runs (a risky step waits for the person's "
        "confirmation, given outside this conversation; then call run_wait), inspect and steer "
        "processes, and keep notes in the agent's memory."),
        lifespan=lifespan, log_level="WARNING")

    async def go(fn: Callable[[AsyncClient], Awaitable[Any]]) -> Any:
        try:
            return await fn(await connect())
        except LLMOSError as e:
            raise ToolError(e.message + (f" (hint: {e.hint})" if e.hint else "")) from None

    @srv.tool()
    async def run_request(request: str, workdir: str | None = None, dry_run: bool = False) -> dict:
        """Do something described in plain language, in the server's workspace. Answers when
        the run ends, or when a risky step waits for the person's confirmation (they answer
        it outside this conversation; then call run_wait)."""
        async def f(c: AsyncClient) -> dict:
            run = await c.submit_run(request, workdir=workdir or default_wd, dry_run=dry_run)
            return _answer(await _wait_run(c, run["id"], RUN_WAIT_S))
        return await go(f)

    @srv.tool()
    async def run_get(run_id: str) -> dict:
        """A run's status, plan, pending step and answer."""
        return await go(lambda c: c.get_run(run_id))

    @srv.tool()
    async def run_wait(run_id: str) -> dict:
        """Wait for a run to end or to wait for the person again (after their answer)."""
        async def f(c: AsyncClient) -> dict:
            return _answer(await _wait_run(c, run_id, RUN_WAIT_S, through_pending=True))
        return await go(f)

    @srv.tool()
    async def run_reject(run_id: str, step: int | None = None, reason: str | None = None) -> dict:
        """Refuse the run's pending step (nothing of the plan runs). Refusing is always
        allowed; approving is the person's alone."""
        async def f(c: AsyncClient) -> dict:
            await c.reject(run_id, step, reason)
            return _answer(await _wait_run(c, run_id, RUN_WAIT_S))
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
async def _admin(config: Config, app: Any) -> AsyncIterator[tuple[AsyncClient, Callable[[str], AsyncClient]]]:
    """The admin client (for setup only) and a factory of clients for another token."""
    import httpx

    from llmos.api.auth import TokenStore

    if app is None:
        from llmos.sdk.discover import async_discover

        client = await async_discover(config)
        if client is not None:
            async with client:
                yield client, lambda tok: AsyncClient(client.base_url, token=tok, timeout=RUN_WAIT_S + 30)
            return
        from llmos.api.app import create_app, lifespan_services

        app = create_app(config)
        async with lifespan_services(app), _admin(config, app) as pair:
            yield pair
        return

    def make(tok: str) -> AsyncClient:
        return AsyncClient("http://localhost", token=tok, transport=httpx.ASGITransport(app=app),
                           timeout=RUN_WAIT_S + 30)

    async with make(TokenStore(config.home).admin_token()) as admin:
        yield admin, make


@contextlib.asynccontextmanager
async def backend(config: Config, *, roots: list[str] | None = None, network: bool = False,
                  app: Any = None) -> AsyncIterator[AsyncClient]:
    """An AsyncClient acting as the server's own agent (see the module map)."""
    wanted = check_roots(config, roots)
    async with _admin(config, app) as (admin, make):
        name, token, token_id = await ensure_agent(admin, wanted, network)
        try:
            async with make(token) as client:
                yield client
        finally:
            with contextlib.suppress(LLMOSError, OSError):
                await admin.revoke_token(name, token_id)


def run_stdio(config: Config, *, roots: list[str] | None = None, network: bool = False) -> None:
    """Serve the MCP tools on stdin/stdout until the client goes away."""
    wanted = check_roots(config, roots)          # a bad root is one line before anything starts
    holder: dict[str, AsyncClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_server: Any) -> AsyncIterator[None]:
        async with backend(config, roots=wanted, network=network) as client:
            holder["client"] = client
            yield

    async def connect() -> AsyncClient:
        return holder["client"]

    srv = build_server(connect, lifespan=lifespan, workdir=wanted[0])
    asyncio.run(srv.run_stdio_async())
