"""Memory syscalls: notes (put/get/delete/search) and context (append/context).

Each agent sees only its own memory (``memory.Memory`` keys everything by agent).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from llmos.kernel.argtypes import Args, Key, text
from llmos.kernel.memory import VALUE_MAX_BYTES
from llmos.kernel.syscall import Call, Syscall

if TYPE_CHECKING:
    from llmos.kernel.core import Kernel

__all__ = ["ROWS"]


class PutArgs(Args):
    key: Key
    value: text(VALUE_MAX_BYTES)          # type: ignore[valid-type]


class KeyArgs(Args):
    key: Key


class SearchArgs(Args):
    query: text(1000, 1)                  # type: ignore[valid-type]
    limit: int = Field(default=10, ge=1, le=100)


class AppendArgs(Args):
    role: Literal["system", "user", "assistant", "tool"]
    content: text(VALUE_MAX_BYTES)        # type: ignore[valid-type]


class ContextArgs(Args):
    limit: int = Field(default=50, ge=1, le=500)


async def put(k: Kernel, call: Call, a: PutArgs) -> dict:
    k.memory.put(call.agent.id, a.key, a.value)
    await k.journal.durable()
    return {"key": a.key}


async def get(k: Kernel, call: Call, a: KeyArgs) -> dict:
    await k.journal.durable()    # read your writes (and the kernel's: fired reminders)
    return k.memory.get(call.agent.id, a.key)


async def delete(k: Kernel, call: Call, a: KeyArgs) -> dict:
    k.memory.delete(call.agent.id, a.key)
    await k.journal.durable()
    return {"key": a.key}


async def search(k: Kernel, call: Call, a: SearchArgs) -> dict:
    await k.journal.durable()    # read your writes (and the kernel's: fired reminders)
    return {"results": k.memory.search(call.agent.id, a.query, a.limit)}


async def append(k: Kernel, call: Call, a: AppendArgs) -> dict:
    k.memory.append(call.agent.id, a.role, a.content)
    await k.journal.durable()
    return {"role": a.role}


async def context(k: Kernel, call: Call, a: ContextArgs) -> dict:
    await k.journal.durable()    # read your writes (and the kernel's: fired reminders)
    return {"messages": k.memory.context(call.agent.id, a.limit)}


ROWS = [
    Syscall("memory.put", PutArgs, "memory.put", put, "store a note (key -> text)"),
    Syscall("memory.get", KeyArgs, "memory.get", get, "read a note"),
    Syscall("memory.delete", KeyArgs, "memory.delete", delete, "delete a note"),
    Syscall("memory.search", SearchArgs, "memory.search", search, "full-text search over notes"),
    Syscall("memory.append", AppendArgs, "memory.append", append, "add a message to the context"),
    Syscall("memory.context", ContextArgs, "memory.context", context, "the latest context messages"),
]
