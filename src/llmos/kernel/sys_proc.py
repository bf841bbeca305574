"""Process syscalls: spawn, kill, wait, nice, list, get, confirm, exit (thin decoders).

The work lives in ``core.Kernel`` (spawn/kill/nice/...) and ``process.ProcessTable``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from llmos.errors import InvalidArgument
from llmos.kernel.access import ProcRef
from llmos.kernel.argtypes import Args, Pid, Priority, text
from llmos.kernel.process import ProcState
from llmos.kernel.syscall import Call, KernelView, Syscall

__all__ = ["ROWS"]


class SpawnArgs(Args):
    kind: Literal["llm", "tool", "run", "job"]
    spec: dict[str, Any] = Field(default_factory=dict)
    priority: Priority = 0
    parent: Pid | None = None
    idempotency_key: text(200, 1) | None = None   # type: ignore[valid-type]
    confirmed: bool = False


class PidArgs(Args):
    pid: Pid


class GetArgs(Args):
    pid: Pid
    history: bool = False


class KillArgs(Args):
    pid: Pid
    reason: text(200) | None = None   # type: ignore[valid-type]


class WaitArgs(Args):
    pid: Pid
    timeout_s: float | None = Field(default=None, ge=0, le=86400)


class NiceArgs(Args):
    pid: Pid
    priority: Priority


class ListArgs(Args):
    owner: text(64) | None = None     # type: ignore[valid-type]
    state: Literal["new", "queued", "running", "waiting", "preempted", "succeeded", "failed",
                   "killed", "live", "finished"] | None = None
    parent: Pid | None = None
    limit: int = Field(default=100, ge=1, le=10000)


class ExitArgs(Args):
    pid: Pid
    ok: bool = True
    result: Any = None
    message: text(2000) | None = None   # type: ignore[valid-type]


async def spawn(k: KernelView, call: Call, a: SpawnArgs) -> dict:
    p, dedup = await k.spawn(call, a.kind, a.spec, priority=a.priority, parent=a.parent,
                             idem_key=a.idempotency_key, confirmed=a.confirmed)
    return {"pid": p.pid, "state": p.state.name.lower(), "deduplicated": dedup}


async def kill(k: KernelView, call: Call, a: KillArgs) -> dict:
    p = await k.kill(call, a.pid, a.reason or f"killed by {call.agent.id}")
    return {"pid": p.pid, "state": p.state.name.lower()}


async def wait(k: KernelView, call: Call, a: WaitArgs) -> dict:
    k.process(call, a.pid)
    p, done = await k.wait(a.pid, a.timeout_s)
    return {**k.view(p), "timed_out": not done}


async def nice(k: KernelView, call: Call, a: NiceArgs) -> dict:
    p = await k.nice(call, a.pid, a.priority)
    return {"pid": p.pid, "priority": p.priority}


async def get(k: KernelView, call: Call, a: GetArgs) -> dict:
    p = k.process(call, a.pid)
    if a.history:
        await k.journal.durable()    # the history is read back from the journal
    return k.view(p, history=a.history)


async def list_(k: KernelView, call: Call, a: ListArgs) -> dict:
    owner = a.owner
    if not call.agent.caps.others:
        if owner not in (None, call.agent.id):
            call.check(ProcRef(0, owner))        # denied, and audited with the reason
        owner = call.agent.id
    out = []
    for p in reversed(list(k.procs)):
        if owner is not None and p.owner != owner:
            continue
        if a.parent is not None and p.parent != a.parent:
            continue
        if a.state == "live" and p.state.finished or a.state == "finished" and not p.state.finished:
            continue
        if a.state not in (None, "live", "finished") and p.state != ProcState.parse(a.state):
            continue
        out.append(k.view(p))
        if len(out) >= a.limit:
            break
    return {"processes": out}


async def confirm(k: KernelView, call: Call, a: PidArgs) -> dict:
    p = await k.confirm(call, a.pid)
    return {"pid": p.pid, "state": p.state.name.lower()}


async def exit_(k: KernelView, call: Call, a: ExitArgs) -> dict:
    if a.ok is False and not a.message:
        raise InvalidArgument("message: a failed exit needs a message", field="message",
                              expected="why the process failed")
    p = await k.exit(call, a.pid, ok=a.ok, result=a.result, message=a.message)
    return {"pid": p.pid, "state": p.state.name.lower()}


ROWS = [
    Syscall("proc.spawn", SpawnArgs, "proc.spawn", spawn,
            "start a process (llm | tool | run | job); acknowledged once journaled"),
    Syscall("proc.kill", KillArgs, "proc.kill", kill, "kill a process and its live children"),
    Syscall("proc.wait", WaitArgs, "proc.wait", wait, "wait until a process finishes (or timeout_s)"),
    Syscall("proc.nice", NiceArgs, "proc.nice", nice, "change a process's priority (-20..19)"),
    Syscall("proc.list", ListArgs, "proc.list", list_, "list processes (own, or all with 'others')"),
    Syscall("proc.get", GetArgs, "proc.get", get, "one process, optionally with its state history"),
    Syscall("proc.confirm", PidArgs, "proc.confirm", confirm,
            "approve a process waiting for confirmation (re-queues it)"),
    Syscall("proc.exit", ExitArgs, "proc.exit", exit_, "finish a run or job process you drive"),
]
