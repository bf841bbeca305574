"""Timer syscalls: ``timer.set`` / ``timer.cancel`` / ``timer.list`` (thin decoders).

Timers are durable (``timers.Timers``): a reminder set before a restart fires after
it, marked ``late`` when its time passed while the kernel was down; ``every_s`` repeats it.
"""

from __future__ import annotations

from pydantic import Field

from llmos.errors import InvalidArgument
from llmos.kernel.access import ProcRef
from llmos.kernel.argtypes import Args, text
from llmos.kernel.syscall import Call, KernelView, Syscall

__all__ = ["ROWS", "MAX_DELAY_S"]

MAX_DELAY_S = 10 * 365 * 86400.0   # ten years


class SetArgs(Args):
    in_s: float | None = Field(default=None, ge=0, le=MAX_DELAY_S)
    at: float | None = Field(default=None, ge=0)
    message: text(1000, 1)              # type: ignore[valid-type]
    every_s: float | None = Field(default=None, ge=1, le=MAX_DELAY_S)   # repeat this often (seconds)


class IdArgs(Args):
    id: int = Field(ge=1)


class ListArgs(Args):
    all: bool = False
    limit: int = Field(default=100, ge=1, le=10000)


async def set_(k: KernelView, call: Call, a: SetArgs) -> dict:
    if (a.in_s is None) == (a.at is None):
        raise InvalidArgument("timer.set: expected exactly one of in_s or at", field="in_s",
                              expected="seconds from now (in_s) or an epoch time (at)")
    now = k.clock.time()
    due = now + a.in_s if a.in_s is not None else float(a.at)  # type: ignore[arg-type]
    if due > now + MAX_DELAY_S:
        raise InvalidArgument("timer.set: at is more than ten years away", field="at",
                              expected="a time within ten years")
    t = k.timers.set(call.agent.id, due, a.message, a.every_s)
    await k.journal.durable()
    return t.to_dict()


async def cancel(k: KernelView, call: Call, a: IdArgs) -> dict:
    await k.journal.durable()    # finished timers are read back from the journal
    t = k.timers.get(a.id)
    call.check(ProcRef(0, t.owner))     # own timers, or the 'others' capability
    t = k.timers.cancel(a.id)
    await k.journal.durable()
    return t.to_dict()


async def list_(k: KernelView, call: Call, a: ListArgs) -> dict:
    owner = None if call.agent.caps.others else call.agent.id
    if a.all:
        await k.journal.durable()
    return {"timers": [t.to_dict() for t in k.timers.list(owner, include_done=a.all, limit=a.limit)]}


ROWS = [
    Syscall("timer.set", SetArgs, "timer.set", set_,
            "a durable reminder: in_s seconds from now, or at; every_s repeats it"),
    Syscall("timer.cancel", IdArgs, "timer.cancel", cancel, "cancel a pending reminder"),
    Syscall("timer.list", ListArgs, "timer.list", list_, "pending reminders (all=true: fired too)"),
]
