"""Tool syscalls: ``tool.list`` and ``tool.call`` (thin decoders).

``tool.call`` is a ``tool`` process: its arguments are checked at admission
(``specs``: schema, resolved paths against the agent's roots, network, risk and
confirmation), it runs in the executor's tool pool, and its idempotency key makes a
retried call return the first call's process instead of running twice.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from llmos.errors import NotFound
from llmos.kernel.argtypes import Args, Pid, Priority, text
from llmos.kernel.syscall import Call, KernelView, Syscall

__all__ = ["ROWS"]


class ListArgs(Args):
    kind: text(32, 1) | None = None      # type: ignore[valid-type]


class CallArgs(Args):
    tool: text(100, 1)                   # type: ignore[valid-type]
    args: dict[str, Any] = Field(default_factory=dict)
    workdir: text(4096, 1) | None = None   # type: ignore[valid-type]
    confirmed: bool = False
    idempotency_key: text(200, 1) | None = None   # type: ignore[valid-type]
    priority: Priority = 0
    parent: Pid | None = None


async def list_(k: KernelView, call: Call, a: ListArgs) -> dict:
    if k.tools is None:
        raise NotFound("no tool registry is configured in this kernel")
    return {"tools": [{**t.schema(), "risk": t.risk.name.lower(), "kind": t.kind,
                       "idempotent": t.idempotent, "path_args": dict(t.path_args)}
                      for t in k.tools.list(a.kind)]}


async def call_(k: KernelView, call: Call, a: CallArgs) -> dict:
    spec: dict[str, Any] = {"tool": a.tool, "args": a.args}
    if a.workdir is not None:
        spec["workdir"] = a.workdir
    p, _ = await k.spawn(call, "tool", spec, priority=a.priority, parent=a.parent,
                         idem_key=a.idempotency_key, confirmed=a.confirmed)
    value = await k.result(p.pid)
    return {**value, "pid": p.pid}


ROWS = [
    Syscall("tool.list", ListArgs, "tool.list", list_, "the tools, with schemas and risk classes"),
    Syscall("tool.call", CallArgs, "tool.call", call_,
            "run a tool as a process (access-checked; risky calls need confirmed=true)"),
]
