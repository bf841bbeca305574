"""An agent's long-term memory attached to a chat request: the ``X-LLMOS-Memory: k`` header.

Map:
- ``memory_k(header)``: the header read once: None when absent or ``0``, else k in
  ``1..MEMORY_K_MAX``; anything else is a 400 naming ``X-LLMOS-Memory``.
- ``await attach(svc, who, k, messages) -> (messages, ids)``: the calling agent's own
  ``memory.recall`` (its syscall, under its rights, audited) with the last user message
  as the query; the ``k`` nearest memories go into the system message under a label
  that says they are recalled memory, not instructions, one quoted line each, within
  4 KiB (``longterm.context_block``). A request without a user message, or one without
  words, gets nothing attached. With ``X-LLMOS-Conversation`` the daemon does the same
  inside ``conversation.say`` (its ``memory`` argument): the memories join that turn's
  system prompt and are not stored in the conversation.
"""

from __future__ import annotations

import re
from typing import Any

from llmos.errors import InvalidArgument
from llmos.kernel.longterm import CONTEXT_LABEL, context_block

__all__ = ["memory_k", "attach", "MEMORY_K_MAX", "LABEL"]

MEMORY_K_MAX = 20             # memories one request may attach
QUERY_CHARS = 1000            # characters of the last user message used as the query
HEADER = "X-LLMOS-Memory"
LABEL = CONTEXT_LABEL
_WORD = re.compile(r"\w", re.UNICODE)


def memory_k(value: str | None) -> int | None:
    if value is None:
        return None
    v = value.strip()
    if not v.isdigit() or int(v) > MEMORY_K_MAX:
        raise InvalidArgument(f"{HEADER}: expected an integer in [0, {MEMORY_K_MAX}] (memories to attach), "
                              f"got {value[:20]!r}", field=HEADER, expected=f"an integer in [0, {MEMORY_K_MAX}]")
    return int(v) or None


async def attach(svc: Any, who: Any, k: int, messages: list[dict[str, str]]
                 ) -> tuple[list[dict[str, str]], list[int]]:
    """``messages`` with the agent's ``k`` nearest memories in the system message; their ids."""
    from llmos.api.deps import call

    query = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    if not _WORD.search(query):
        return messages, []
    res = await call(svc, who, "memory.recall", {"query": query[:QUERY_CHARS], "k": k})
    block, ids = context_block(res.get("results", []))
    if not ids:
        return messages, []
    out = list(messages)
    if out and out[0]["role"] == "system":
        out[0] = {"role": "system", "content": (out[0]["content"] + "\n\n" + block).strip()}
    else:
        out.insert(0, {"role": "system", "content": block})
    return out, ids
