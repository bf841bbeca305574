"""A development run's agent in the kernel: every model call and every test run is its syscall.

Map:
- ``TestRun``: one run of the project's tests: passed, exit code, output (stdout and
  stderr together), seconds, and the limit that stopped it (a timeout), if one did.
- ``DevSession``: ``generate(messages, max_tokens, timeout_s=)`` (an ``llm.generate`` syscall:
  scheduled, accounted, audited like the shell planner's; past ``timeout_s`` the kernel
  stops the generation and it raises ``TimedOut``), ``run_tests(command, timeout_s)`` (a
  ``tool.call`` of ``shell.run`` in the scratch copy: the kernel's sandbox, no network),
  ``close()``.
- ``open_local(kernel, scratch, model=, priority=)``: in a kernel booted in this process.
- ``open_daemon(client, scratch, model=, priority=)``: in the daemon: the admin client
  creates the agent, the agent's own token makes its model calls; the test runs are the
  person's ``tool.call`` (the admin token), since the daemon never lets an agent's token
  confirm its own exec step, made as the run's agent (``as_agent``): the person's yes,
  the agent's process, roots and quotas (the scratch copy only).

The agent is created per run (``dev-<id>``) with the scratch copy as its only read and
write root, no network, and ``may.risky`` so ``shell.run`` may run (the person asked for
the tests to run by starting ``llmos dev``). It never sees the repository itself.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmos import params
from llmos.errors import LLMOSError, SandboxError, TimedOut, ToolError
from llmos.types import Message

__all__ = ["TestRun", "DevSession", "open_local", "open_daemon", "EXIT_MARK"]

EXIT_MARK = "__llmos_dev_exit="     # the test command's exit status, echoed after its output
SYSCALLS = ["llm.generate", "tool.call", "may.risky"]

Call = Callable[[str, dict[str, Any]], Awaitable[Any]]   # (syscall, args) -> value, or raises


@dataclass
class TestRun:
    passed: bool
    exit_code: int | None          # None: stopped by a limit before it exited
    output: str                    # stdout and stderr together (cut by the sandbox's output limit)
    seconds: float
    limit: str | None = None       # the sandbox limit that stopped it (e.g. a timeout), with why


class DevSession:
    def __init__(self, call: Call, scratch: Path, agent: str, *, model: str | None, priority: int,
                 close: Callable[[], Awaitable[None]] | None = None, test_call: Call | None = None) -> None:
        self._call = call              # the agent's syscalls
        self._test_call = test_call or call   # who runs the tests (the person, in the daemon)
        self.scratch = scratch         # the agent's only root
        self.agent = agent
        self.model = model             # None: the kernel's default engine
        self.priority = priority
        self._close = close
        self.llm_calls: list[dict] = []    # per generation: pid, seconds, usage (appended here only)

    async def generate(self, messages: list[Message], max_tokens: int, temperature: float = 0.0, *,
                       timeout_s: float | None = None) -> str:
        args: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                                "priority": self.priority}
        if self.model:
            args["model"] = self.model
        if timeout_s is not None:
            args["timeout_s"] = timeout_s     # the kernel kills the generation past it (TimedOut)
        t0 = time.monotonic()
        try:
            v = await self._call("llm.generate", args) or {}
        except TimedOut:
            self.llm_calls.append({"pid": None, "seconds": round(time.monotonic() - t0, 3), "usage": None,
                                   "finish": "timed_out"})
            raise
        self.llm_calls.append({"pid": v.get("pid"), "seconds": round(time.monotonic() - t0, 3),
                               "usage": v.get("usage"), "finish": v.get("finish_reason")})
        return v.get("text", "") or ""

    async def run_tests(self, command: str, timeout_s: float) -> TestRun:
        line = f"( {command} ) 2>&1; echo \"{EXIT_MARK}$?\""
        t0 = time.monotonic()
        try:
            v = await self._test_call("tool.call", {"tool": "shell.run", "workdir": str(self.scratch),
                                               "confirmed": True, "priority": self.priority,
                                               "args": {"command": line, "timeout_s": int(timeout_s)}})
        except SandboxError as e:            # a limit stopped it: a timeout, memory, processes
            res = getattr(e, "result", None) or {}
            return TestRun(False, None, str(res.get("stdout", "")) + str(res.get("stderr", "")),
                           round(time.monotonic() - t0, 3), limit=e.message)
        except ToolError as e:               # the wrapper itself failed (it always exits 0 otherwise)
            res = getattr(e, "result", None) or {}
            return TestRun(False, res.get("exit_code"), str(res.get("stdout", "")) + str(res.get("stderr", ""))
                           or e.message, round(time.monotonic() - t0, 3))
        out = (v.get("output") or {})
        text = str(out.get("stdout", "")) + str(out.get("stderr", ""))
        code: int | None = None
        head, sep, rest = text.rpartition(EXIT_MARK)
        if sep:
            try:
                code = int(rest.strip().split()[0])
            except (ValueError, IndexError):
                code = None
            text = head
        return TestRun(code == 0, code, text, round(time.monotonic() - t0, 3),
                       limit=None if code is not None else "the output was cut before the exit status")

    async def close(self) -> None:
        if self._close is not None:
            await self._close()


def _caps(scratch: Path) -> dict[str, Any]:
    return {"syscalls": SYSCALLS, "read_roots": [str(scratch)], "write_roots": [str(scratch)],
            "network": False}


async def open_local(kernel: Any, scratch: Path, *, model: str | None,
                     priority: int = params.PRIORITY_DEFAULT) -> DevSession:
    name = f"dev-{uuid.uuid4().hex[:8]}"
    res = await kernel.syscall("root", "agent.create", {"name": name, "capabilities": _caps(scratch)})
    if not res.ok:
        raise res.error

    async def call(syscall: str, args: dict[str, Any]) -> Any:
        r = await kernel.syscall(name, syscall, args)
        if not r.ok:
            raise r.error
        return r.value
    return DevSession(call, scratch, name, model=model, priority=priority)


async def open_daemon(client: Any, scratch: Path, *, model: str | None,
                      priority: int = params.PRIORITY_DEFAULT) -> DevSession:
    from llmos.sdk.client import AsyncClient

    name = f"dev-{uuid.uuid4().hex[:8]}"
    made = await client.syscall("agent.create", {"name": name, "capabilities": _caps(scratch)})
    token = (made or {}).get("token")
    if not token:
        raise LLMOSError("the daemon created the development agent but gave no token for it",
                         hint="upgrade the daemon, or stop it so llmos dev runs in this process")
    agent_client = AsyncClient(client.base_url, token)

    async def call(syscall: str, args: dict[str, Any]) -> Any:   # the HTTP wait outlasts the kernel's limit
        return await agent_client.syscall(syscall, args, timeout=max(900.0, float(args.get("timeout_s") or 0) + 60))

    async def person(syscall: str, args: dict[str, Any]) -> Any:   # the person's yes, the agent's rights
        return await client.syscall(syscall, args, timeout=900, as_agent=name)
    return DevSession(call, scratch, name, model=model, priority=priority, close=agent_client.aclose,
                      test_call=person)
