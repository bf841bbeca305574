"""Memory syscalls: notes (put/get/delete/search), context (append/context) and long-term
memory by meaning (remember/recall/forget/list, and embed: the vectors it uses).

Each agent sees only its own memory (``memory.Memory`` and ``longterm.LongTermMemory`` key
everything by the calling agent; no argument names another). Long-term calls embed and
touch their database in a worker thread, so the kernel loop never waits on the model.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from llmos.kernel.argtypes import Args, Key, text
from llmos.kernel.longterm import TAG_MAX, TAGS_MAX, RecallFilter
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


Tag = Annotated[str, Field(min_length=1, max_length=TAG_MAX)]
Tags = Annotated[list[Tag], Field(max_length=TAGS_MAX)]
MemoryId = Annotated[int, Field(ge=1, le=1 << 62)]
EMBED_INPUTS_MAX = 2048       # texts per memory.embed call (as OpenAI's /v1/embeddings)


class RememberArgs(Args):
    text: str                             # size and content checked by LongTermMemory (limit stated)
    tags: Tags = []


class FilterArgs(Args):
    tags: Tags = []                       # the memory carries all of them
    after_s: float | None = Field(default=None, allow_inf_nan=False)   # created at or after (wall-clock s)
    before_s: float | None = Field(default=None, allow_inf_nan=False)  # created before


class RecallArgs(Args):
    query: text(1000, 1)                  # type: ignore[valid-type]
    k: int = Field(default=5, ge=1, le=50)
    filter: FilterArgs | None = None


class ForgetArgs(Args):
    id: MemoryId


class ListArgs(Args):
    tags: Tags = []
    limit: int = Field(default=50, ge=1, le=500)
    before_id: MemoryId | None = None     # page on: only memories older than this id


class EmbedArgs(Args):
    input: Annotated[list[text(VALUE_MAX_BYTES, 1)], Field(min_length=1,  # type: ignore[valid-type]
                                                            max_length=EMBED_INPUTS_MAX)]


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


async def remember(k: Kernel, call: Call, a: RememberArgs) -> dict:
    lt = k.memory.longterm
    return await asyncio.to_thread(lt.remember, call.agent.id, a.text, a.tags)


async def recall(k: Kernel, call: Call, a: RecallArgs) -> dict:
    f = a.filter or FilterArgs()
    filt = RecallFilter(tuple(f.tags), f.after_s, f.before_s)
    lt = k.memory.longterm
    return {"results": await asyncio.to_thread(lt.recall, call.agent.id, a.query, a.k, filt)}


async def forget(k: Kernel, call: Call, a: ForgetArgs) -> dict:
    lt = k.memory.longterm
    return await asyncio.to_thread(lt.forget, call.agent.id, a.id)


async def list_memories(k: Kernel, call: Call, a: ListArgs) -> dict:
    lt = k.memory.longterm
    items = await asyncio.to_thread(lt.list, call.agent.id, a.tags, a.limit, a.before_id)
    return {"memories": items, "usage": lt.usage(call.agent.id)}


async def embed(k: Kernel, call: Call, a: EmbedArgs) -> dict:
    lt = k.memory.longterm

    def run() -> dict:
        model = lt.embedder
        vecs = model.embed(a.input)
        tokens = sum(model.count_tokens(t) for t in a.input)
        return {"model": model.name, "dim": model.dim, "embeddings": vecs.tolist(), "tokens": tokens}

    return await asyncio.to_thread(run)


ROWS = [
    Syscall("memory.put", PutArgs, "memory.put", put, "store a note (key -> text)"),
    Syscall("memory.get", KeyArgs, "memory.get", get, "read a note"),
    Syscall("memory.delete", KeyArgs, "memory.delete", delete, "delete a note"),
    Syscall("memory.search", SearchArgs, "memory.search", search, "full-text search over notes"),
    Syscall("memory.append", AppendArgs, "memory.append", append, "add a message to the context"),
    Syscall("memory.context", ContextArgs, "memory.context", context, "the latest context messages"),
    Syscall("memory.remember", RememberArgs, "memory.remember", remember,
            "keep a text (and tags) in long-term memory, searchable by meaning"),
    Syscall("memory.recall", RecallArgs, "memory.recall", recall,
            "the k memories nearest a query (meaning and words), optionally filtered"),
    Syscall("memory.forget", ForgetArgs, "memory.forget", forget, "delete a long-term memory by id"),
    Syscall("memory.list", ListArgs, "memory.list", list_memories,
            "your long-term memories, newest first, with usage against the quota"),
    Syscall("memory.embed", EmbedArgs, "memory.embed", embed,
            "embedding vectors of texts, from the model long-term memory uses"),
]
