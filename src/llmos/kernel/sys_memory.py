"""Memory syscalls: notes (put/get/delete/search), context (append/context) and long-term
memory by meaning (remember/recall/forget/list in named collections, share/unshare/shares,
and embed: the vectors it uses).

Each agent sees only its own memory (``memory.Memory`` and ``longterm.LongTermMemory`` key
everything by the agent). The one way into another agent's long-term memory is a share:
``owner`` + ``collection`` name a collection that owner shared with the caller, and the
access layer decides (``access.MemoryRef``, audited with the reason): ``r`` lets it recall
and list, ``rw`` also remember and forget, within that collection only. ``everyone``
(list, recall, forget) is every agent's memory: the person's view, only with the
``others`` capability. Long-term calls embed and touch their database in a worker
thread, so the kernel loop never waits on the model.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from pydantic import Field

from llmos.errors import InvalidArgument, NotFound
from llmos.kernel.access import MemoryRef
from llmos.kernel.argtypes import Args, Id, Key, Name, text, upto
from llmos.kernel.longterm import TAG_MAX, TAGS_MAX, RecallFilter
from llmos.kernel.memory import VALUE_MAX_BYTES
from llmos.kernel.memshare import COLLECTION_MAX, DEFAULT_COLLECTION, check_collection
from llmos.kernel.syscall import Call, KernelView, Syscall

__all__ = ["ROWS"]


class PutArgs(Args):
    key: Key
    value: text(VALUE_MAX_BYTES)          # type: ignore[valid-type]


class KeyArgs(Args):
    key: Key


Query = text(1000, 1)


class SearchArgs(Args):
    query: Query                          # type: ignore[valid-type]
    limit: int = upto(10, 100)


class AppendArgs(Args):
    role: Literal["system", "user", "assistant", "tool"]
    content: text(VALUE_MAX_BYTES)        # type: ignore[valid-type]


class ContextArgs(Args):
    limit: int = upto(50, 500)


Tag = Annotated[str, Field(min_length=1, max_length=TAG_MAX)]
Tags = Annotated[list[Tag], Field(max_length=TAGS_MAX)]
EMBED_INPUTS_MAX = 2048       # texts per memory.embed call (as OpenAI's /v1/embeddings)
Collection = text(COLLECTION_MAX, 1)      # the name's characters checked by memshare.check_collection


class RememberArgs(Args):
    text: str                             # size and content checked by LongTermMemory (limit stated)
    tags: Tags = []
    collection: Collection = DEFAULT_COLLECTION   # type: ignore[valid-type]
    owner: Name | None = None             # type: ignore[valid-type]  # another agent's, shared rw with you


class ReachArgs(Args):
    """Whose long-term memory a call reaches (``_reach``): the caller's own by default."""

    collection: Collection | None = None  # type: ignore[valid-type]  # None: all of the owner's
    owner: Name | None = None             # type: ignore[valid-type]  # another agent's, shared with you
    everyone: bool = False                # every agent's memory (needs 'others')


class FilterArgs(Args):
    tags: Tags = []                       # the memory carries all of them
    after_s: float | None = Field(default=None, allow_inf_nan=False)   # created at or after (wall-clock s)
    before_s: float | None = Field(default=None, allow_inf_nan=False)  # created before


class RecallArgs(ReachArgs):
    query: Query                          # type: ignore[valid-type]
    k: int = upto(5, 50)
    filter: FilterArgs | None = None


class ForgetArgs(ReachArgs):
    id: Id | None = None
    all: bool = False                     # every memory in reach (of the owner, the collection)


class ListArgs(ReachArgs):
    tags: Tags = []
    limit: int = upto(50, 500)
    before_id: Id | None = None           # page on: only memories older than this id


class ShareArgs(Args):
    collection: Collection                # type: ignore[valid-type]
    agent: Name                           # type: ignore[valid-type]  # who gets it
    mode: Literal["r", "rw"] = "r"        # read-only | read-write


class UnshareArgs(Args):
    collection: Collection                # type: ignore[valid-type]
    agent: Name                           # type: ignore[valid-type]


class SharesArgs(Args):
    pass


class EmbedArgs(Args):
    input: Annotated[list[text(VALUE_MAX_BYTES, 1)], Field(min_length=1,  # type: ignore[valid-type]
                                                            max_length=EMBED_INPUTS_MAX)]


async def put(k: KernelView, call: Call, a: PutArgs) -> dict:
    k.memory.put(call.agent.id, a.key, a.value)
    await k.journal.durable()
    return {"key": a.key}


async def get(k: KernelView, call: Call, a: KeyArgs) -> dict:
    await k.journal.durable()    # read your writes (and the kernel's: fired reminders)
    return k.memory.get(call.agent.id, a.key)


async def delete(k: KernelView, call: Call, a: KeyArgs) -> dict:
    k.memory.delete(call.agent.id, a.key)
    await k.journal.durable()
    return {"key": a.key}


async def search(k: KernelView, call: Call, a: SearchArgs) -> dict:
    await k.journal.durable()    # read your writes (and the kernel's: fired reminders)
    return {"results": k.memory.search(call.agent.id, a.query, a.limit)}


async def append(k: KernelView, call: Call, a: AppendArgs) -> dict:
    k.memory.append(call.agent.id, a.role, a.content)
    await k.journal.durable()
    return {"role": a.role}


async def context(k: KernelView, call: Call, a: ContextArgs) -> dict:
    await k.journal.durable()    # read your writes (and the kernel's: fired reminders)
    return {"messages": k.memory.context(call.agent.id, a.limit)}


async def _reach(k: KernelView, call: Call, a: ReachArgs | RememberArgs, mode: Literal["r", "rw"]) -> str | None:
    """Whose memory the call reaches (None: every agent's), after the access check: the
    caller's own; another agent's ``collection`` it shared with the caller; or, with
    ``everyone``, all (the ``others`` capability)."""
    owner, collection, everyone = a.owner, a.collection, getattr(a, "everyone", False)
    if collection is not None:
        check_collection(collection)
    if everyone:
        if owner is not None:
            raise InvalidArgument("owner: not with everyone (everyone is every agent's memory)", field="owner",
                                  expected="owner or everyone, not both")
        call.check(MemoryRef(None, collection, mode))
        return None
    who = owner if owner is not None else call.agent.id
    granted = None
    if who != call.agent.id and not call.agent.caps.others:
        if collection is None:
            raise InvalidArgument("collection: required with owner (the collection that agent shared "
                                  "with you)", field="collection", expected="a collection name")
        lt = k.memory.longterm
        granted = await asyncio.to_thread(lt.shares.grant, who, collection, call.agent.id)  # type: ignore[assignment]
    call.check(MemoryRef(who, collection, mode, granted))
    return who


async def remember(k: KernelView, call: Call, a: RememberArgs) -> dict:
    lt = k.memory.longterm
    who = await _reach(k, call, a, "rw")
    return await asyncio.to_thread(lt.remember, who, a.text, a.tags, a.collection)


async def recall(k: KernelView, call: Call, a: RecallArgs) -> dict:
    f = a.filter or FilterArgs()
    who = await _reach(k, call, a, "r")
    filt = RecallFilter(tuple(f.tags), f.after_s, f.before_s, a.collection)
    lt = k.memory.longterm
    return {"results": await asyncio.to_thread(lt.recall, who, a.query, a.k, filt)}


async def forget(k: KernelView, call: Call, a: ForgetArgs) -> dict:
    if (a.id is None) == (not a.all):
        raise InvalidArgument("memory.forget: give an id or all=true (not both)", field="id",
                              expected="a memory id (memory.list shows them), or all: true")
    lt = k.memory.longterm
    who = await _reach(k, call, a, "rw")
    if a.all:
        return await asyncio.to_thread(lt.forget_all, who, a.collection)
    return await asyncio.to_thread(lt.forget, who, a.id, a.collection)


async def list_memories(k: KernelView, call: Call, a: ListArgs) -> dict:
    lt = k.memory.longterm
    who = await _reach(k, call, a, "r")
    items = await asyncio.to_thread(lt.list, who, a.tags, a.limit, a.before_id, a.collection)
    return {"memories": items, "usage": lt.usage(who)}


async def share(k: KernelView, call: Call, a: ShareArgs) -> dict:
    check_collection(a.collection)
    if k.agents.find(a.agent) is None:
        raise NotFound(f"no agent {a.agent!r}", hint="llmos agents lists them")
    call.check(MemoryRef(call.agent.id, a.collection, "rw"))
    return await asyncio.to_thread(k.memory.longterm.shares.give, call.agent.id, a.collection, a.agent, a.mode)


async def unshare(k: KernelView, call: Call, a: UnshareArgs) -> dict:
    call.check(MemoryRef(call.agent.id, check_collection(a.collection), "rw"))
    return await asyncio.to_thread(k.memory.longterm.shares.take_back, call.agent.id, a.collection, a.agent)


async def shares(k: KernelView, call: Call, a: SharesArgs) -> dict:
    return await asyncio.to_thread(k.memory.longterm.shares.of, call.agent.id)


async def embed(k: KernelView, call: Call, a: EmbedArgs) -> dict:
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
            "keep a text (and tags) in long-term memory, in a collection, searchable by meaning"),
    Syscall("memory.recall", RecallArgs, "memory.recall", recall,
            "the k memories nearest a query (meaning and words), optionally filtered"),
    Syscall("memory.forget", ForgetArgs, "memory.forget", forget,
            "delete a long-term memory by id, or all of them (all=true)"),
    Syscall("memory.list", ListArgs, "memory.list", list_memories,
            "your long-term memories, newest first, with usage against the quota"),
    Syscall("memory.share", ShareArgs, "memory.share", share,
            "let another agent read (r) or also write (rw) one collection of your long-term memory"),
    Syscall("memory.unshare", UnshareArgs, "memory.unshare", unshare,
            "take back a share; the agent's next call into that collection is refused"),
    Syscall("memory.shares", SharesArgs, "memory.shares", shares,
            "the shares of long-term memory you gave and received"),
    Syscall("memory.embed", EmbedArgs, "memory.embed", embed,
            "embedding vectors of texts, from the model long-term memory uses"),
]
