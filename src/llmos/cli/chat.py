"""``llmos chat`` through the kernel: the daemon's when one serves the state directory,
else a kernel booted in this process (as ``llmos run`` does, ``cli.daemon``).

Either way each reply is one ``conversation.say`` syscall: an ``llm`` process of the
person's agent, scheduled, accounted and audited by the one kernel that owns the
engine, with the history kept within the model's window (older turns summarized,
originals kept: ``conversation.history``).

Map:
- ``LocalChat``: ``kernel.syscall_stream("root", "conversation.say", ...)`` on the
  in-process kernel (``daemon.boot_kernel``), shut down by ``aclose``.
- ``DaemonChat``: ``conversation.open`` over ``/api/v1/syscall``, each turn streamed from
  ``/v1/chat/completions`` with the ``X-LLMOS-Conversation`` header.
- ``open_chat(cfg, notice=...)``: whichever applies.
- ``begin(session, model, system, conversation)``: a new conversation, or an existing one
  checked to exist (``NotFound`` with a hint otherwise).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from llmos.cli import daemon as daemon_cli
from llmos.config import Config
from llmos.errors import InvalidArgument, LLMOSError

__all__ = ["LocalChat", "DaemonChat", "open_chat", "begin", "check_message", "PERSON"]

PERSON = "root"     # the agent the person at the terminal acts as in-process (the daemon: its token's)


def check_message(text: str | None) -> str:
    """The message to send, or InvalidArgument for an empty one."""
    if text is None or not text.strip():
        raise InvalidArgument("message: expected some text, got an empty message", field="message",
                              expected="a non-empty message")
    return text


class LocalChat:
    mode = "in-process"

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel          # owned: shut down by aclose

    async def syscall(self, name: str, args: dict) -> Any:
        res = await self.kernel.syscall(PERSON, name, args)
        if not res.ok:
            raise res.error
        return res.value

    async def say(self, conv: str, text: str, **opts: Any) -> AsyncIterator[str]:
        from llmos.errors import error_from_dict

        args = {"id": conv, "content": text, "stream": True, **{k: v for k, v in opts.items() if v is not None}}
        pid: int | None = None
        try:
            async for item in self.kernel.syscall_stream(PERSON, "conversation.say", args):
                if item["type"] == "started":
                    pid = item["pid"]
                elif item["type"] == "chunk":
                    yield item["text"]
                elif item["type"] == "result":
                    pid = None
                    if not item.get("ok", True):
                        raise error_from_dict(item.get("error") or {"error": "error", "message": "the reply failed"})
        finally:
            if pid is not None:       # interrupted (Ctrl-C): the reply stops, not resumed at the next boot
                await asyncio.shield(self.kernel.syscall(PERSON, "proc.kill",
                                                         {"pid": pid, "reason": "chat interrupted"}))

    async def aclose(self) -> None:
        await self.kernel.shutdown()


class DaemonChat:
    mode = "daemon"

    def __init__(self, client: Any) -> None:
        self.client = client          # AsyncClient, owned: closed by aclose

    async def syscall(self, name: str, args: dict) -> Any:
        return await self.client.syscall(name, args)

    async def say(self, conv: str, text: str, **opts: Any) -> AsyncIterator[str]:
        async for chunk in self.client.chat_stream([{"role": "user", "content": text}], conversation=conv,
                                                   **{k: v for k, v in opts.items() if v is not None}):
            for choice in chunk.get("choices") or ():
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    yield piece

    async def aclose(self) -> None:
        await self.client.aclose()


async def open_chat(cfg: Config, *, notice: Callable[[str], None] | None = None) -> LocalChat | DaemonChat:
    client = await daemon_cli.find_daemon(cfg, notice=notice)
    if client is not None:
        return DaemonChat(client)
    return LocalChat(await daemon_cli.boot_kernel(cfg))


async def begin(session: LocalChat | DaemonChat, *, model: str | None, system: str | None,
                conversation: str | None) -> dict[str, Any]:
    """The conversation to talk in: ``conversation`` (which must exist) or a new one."""
    if conversation is not None:
        if model is not None or system is not None:
            raise InvalidArgument("--model/--system: a conversation keeps the model and system prompt it "
                                  "was opened with", field="conversation",
                                  expected="--conversation alone, or --model/--system for a new one")
        try:
            hist = await session.syscall("conversation.history", {"id": conversation, "limit": 1})
        except LLMOSError as e:
            if e.code == "not_found":
                e.hint = "omit --conversation to start a new one"
            raise
        return hist["conversation"]
    args = {k: v for k, v in (("model", model), ("system", system)) if v is not None}
    return await session.syscall("conversation.open", args)
