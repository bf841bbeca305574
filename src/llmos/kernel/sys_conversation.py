"""Conversation syscalls: ``conversation.open`` / ``say`` / ``history`` / ``list``.

``conversation.say`` adds a person's message and answers it with one ``llm.generate``
process of the calling agent (scheduled, accounted, audited; streamed with
``stream: true`` through ``Kernel.syscall_stream``, ``started`` naming the reply's pid).
Before that, if the window (system prompt + summary + turns + the new message) would
not fit the model's budget (``conversation.Window``), the oldest turns are folded:
summarized by ``llm`` processes at the lowest priority (nice ``PRIORITY_MAX``), and the
summary takes their place. Folded turns stay in ``conversation.history``.

The turns are stored only once the reply succeeded, so a failed or killed generation
leaves the conversation as it was. ``memory: k`` recalls the calling agent's k long-term
memories nearest the new message into this turn's system prompt (``longterm.context_block``,
counted in the window, never stored in the conversation; needs ``memory.recall``).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from pydantic import Field

from llmos import params
from llmos.errors import InvalidArgument
from llmos.kernel.argtypes import Args, MaxTokens, Name, Priority, Temperature, TopP, text, upto
from llmos.kernel.conversation import (
    DEFAULT_SYSTEM,
    MESSAGE_OVERHEAD,
    Conversation,
    Turn,
    Window,
    summary_request,
)
from llmos.kernel.longterm import context_block
from llmos.kernel.memory import VALUE_MAX_BYTES
from llmos.kernel.syscall import Call, KernelView, Syscall

__all__ = ["ROWS", "SUMMARY_PRIORITY", "SUMMARY_LABEL"]

SUMMARY_PRIORITY = params.PRIORITY_MAX     # summaries run after everything more urgent
ConvId = text(64, 1)


class OpenArgs(Args):
    model: Name | None = None                         # type: ignore[valid-type]
    system: text(VALUE_MAX_BYTES) | None = None       # type: ignore[valid-type]


class SayArgs(Args):
    id: ConvId                                        # type: ignore[valid-type]
    content: text(VALUE_MAX_BYTES)                    # type: ignore[valid-type]
    max_tokens: MaxTokens = params.ENGINE_MAX_TOKENS_DEFAULT
    temperature: Temperature | None = None
    top_p: TopP | None = None
    seed: int | None = None
    stop: list[Name] | None = None                    # type: ignore[valid-type]
    priority: Priority = 0
    stream: bool = False
    memory: int = Field(default=0, ge=0, le=20)      # long-term memories recalled into this turn


class HistoryArgs(Args):
    id: ConvId                                        # type: ignore[valid-type]
    limit: int = upto(200, 1000)
    after_id: int = Field(default=0, ge=0)


class ListArgs(Args):
    limit: int = upto(50, 500)


async def open_(k: KernelView, call: Call, a: OpenArgs) -> dict:
    if a.model is not None:
        k.check_model(a.model)                        # ModelNotFound names the known ones
    conv = k.memory.conversations.open(call.agent.id, a.model, a.system or DEFAULT_SYSTEM)
    call.resources.append(f"conversation {conv.id}")
    return conv.to_dict()


async def say(k: KernelView, call: Call, a: SayArgs) -> dict:
    call.require("llm.generate", why="a conversation's reply is a generation")
    if not a.content.strip():
        raise InvalidArgument("content: the message is empty", field="content",
                              expected="a message with some text")
    store = k.memory.conversations
    conv = store.get(call.agent.id, a.id)
    call.resources.append(f"conversation {conv.id}")
    engine = await k.engine_set.get(conv.model)
    win = Window.for_engine(engine, a.max_tokens)
    new = win.message(a.content)
    recalled, ids = await _recall(k, call, a)
    folded = await _fit(k, call, conv, win, new + (win.message(recalled) if recalled else 0))
    system = _system(conv, store.summary(conv)) + (f"\n\n{recalled}" if recalled else "")
    turns = store.active(conv)
    messages = ([{"role": "system", "content": system}] + [{"role": t.role, "content": t.content} for t in turns]
                + [{"role": "user", "content": a.content}])
    spec: dict[str, Any] = {"messages": messages, "max_tokens": a.max_tokens, "prefix_messages": 1}
    for f in ("temperature", "top_p", "seed", "stop"):
        if getattr(a, f) is not None:
            spec[f] = getattr(a, f)
    if conv.model is not None:
        spec["model"] = conv.model
    p, _ = await k.spawn(call, "llm", spec, priority=a.priority, sink=call.sink if a.stream else None)
    if call.started is not None:
        call.started(p.pid)
    value = await k.result(p.pid)
    reply = str(value.get("text", ""))
    store.add(conv, [("user", a.content, new, None), ("assistant", reply, win.message(reply), p.pid)])
    window = win.message(system) + sum(t.tokens for t in turns) + new
    return {**value, "pid": p.pid, "conversation": conv.id, "folded": folded,
            "window_tokens": window, "budget_tokens": win.budget, "exact_tokens": win.exact,
            **({"memories": ids} if a.memory else {})}


async def _recall(k: KernelView, call: Call, a: SayArgs) -> tuple[str, list[int]]:
    """The agent's ``a.memory`` memories nearest the new message, as prompt text, and their ids."""
    if not a.memory or not re.search(r"\w", a.content):
        return "", []
    call.require("memory.recall", why="memory= recalls the agent's long-term memory")
    lt = k.memory.longterm
    results = await asyncio.to_thread(lt.recall, call.agent.id, a.content[:1000], a.memory)
    return context_block(results)


SUMMARY_LABEL = "\n\nEarlier in this conversation (summary): "   # joins the summary to the system prompt


def _system(conv: Conversation, summary: tuple[str, int] | None) -> str:
    if summary is None:
        return conv.system
    return conv.system + SUMMARY_LABEL + summary[0]


async def _fit(k: KernelView, call: Call, conv: Conversation, win: Window, new: int) -> int:
    """Fold the oldest turns into the summary until ``new`` fits; how many were folded.

    NOTE: a fold's own prompt (instructions + the summary so far + the turns) must fit the
    model too, so the turns go in chunks that do, each chunk one low-priority generation
    whose answer becomes the next summary. A single turn larger than a chunk is clipped in
    the prompt (never in the store)."""
    store = k.memory.conversations
    turns = store.active(conv)
    summary = store.summary(conv)
    fixed = win.message(conv.system)
    n = win.to_fold(fixed, summary[1] if summary else 0, [t.tokens for t in turns], new)
    done = 0
    words = max(8, win.summary_tokens * 3 // 5)     # ~0.6 words a token, leaving room for the cap
    while done < n:
        prev = summary[0] if summary else None
        head = win.message(summary_request(prev, [], words)[0]["content"]) + 2 * MESSAGE_OVERHEAD
        cap = win.usable - win.summary_tokens - head - (summary[1] if summary else 0)
        chunk: list[Turn] = []
        used = 0
        for t in turns[done:n]:
            if chunk and used + t.tokens > cap:
                break
            chunk.append(t if t.tokens <= cap else Turn(t.id, t.role, win.clip(t.content, cap - 8), cap))
            used += min(t.tokens, cap)
        spec: dict[str, Any] = {"messages": summary_request(prev, chunk, words),
                                "max_tokens": win.summary_tokens - MESSAGE_OVERHEAD, "temperature": 0.0}
        if conv.model is not None:
            spec["model"] = conv.model
        p, _ = await k.spawn(call, "llm", spec, priority=SUMMARY_PRIORITY)
        value = await k.result(p.pid)
        label = win.count(SUMMARY_LABEL)
        text_ = win.clip(str(value.get("text", "")).strip(), win.summary_tokens - MESSAGE_OVERHEAD - label)
        summary = (text_, win.message(text_) + label)      # as much as it adds to the window
        store.fold(conv, chunk[-1].id, text_, summary[1], p.pid)
        call.resources.append(f"folded turns up to {chunk[-1].id} (pid {p.pid})")
        done += len(chunk)
    return done


async def history(k: KernelView, call: Call, a: HistoryArgs) -> dict:
    store = k.memory.conversations
    conv = store.get(call.agent.id, a.id)
    call.resources.append(f"conversation {conv.id}")
    return store.history(conv, a.limit, a.after_id)


async def list_(k: KernelView, call: Call, a: ListArgs) -> dict:
    return {"conversations": [c.to_dict() for c in k.memory.conversations.list(call.agent.id, a.limit)]}


ROWS = [
    Syscall("conversation.open", OpenArgs, "conversation.open", open_,
            "start a conversation (model, system prompt); its turns are kept within the model's window"),
    Syscall("conversation.say", SayArgs, "conversation.say", say,
            "add a message and generate the reply; older turns are summarized when the window is full"),
    Syscall("conversation.history", HistoryArgs, "conversation.history", history,
            "every original turn of a conversation (summarized or not) and its summaries"),
    Syscall("conversation.list", ListArgs, "conversation.list", list_, "your conversations, latest first"),
]
