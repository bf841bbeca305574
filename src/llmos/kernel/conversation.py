"""Conversations: turns kept within a model's context window, older turns summarized.

Map:
- ``Conversations`` (the store, ``conversations.db`` beside the journal, opened on first
  use by ``Memory.conversations``): ``open`` / ``get`` / ``list`` a conversation, ``add``
  turns, ``active`` (the turns still in the window), ``fold`` (mark the oldest turns as
  summarized and keep the summary), ``history`` (every original turn and every summary).
  Folding never deletes a turn: the originals stay retrievable.
- ``Window``: the token budget of one model (its context length minus the room kept for
  the reply) and how tokens are counted (``count``); ``to_fold`` says how many of the
  oldest turns must be summarized for a new message to fit.
- ``summary_request``: the messages of the low-priority ``llm.generate`` that folds turns.

A conversation belongs to the agent that opened it; every read and write is keyed by
that agent, so another agent's id is "unknown" (``NotFound``), never a leak.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmos.errors import InvalidArgument, NotFound

__all__ = ["Conversations", "Conversation", "Turn", "Window", "summary_request", "CONVERSATIONS_FILE",
           "DEFAULT_SYSTEM", "MESSAGE_OVERHEAD", "CONTEXT_FALLBACK", "SUMMARY_TOKENS_MAX",
           "REPLY_ROOM_MIN"]

CONVERSATIONS_FILE = "conversations.db"
DEFAULT_SYSTEM = "You are a helpful assistant."
MESSAGE_OVERHEAD = 4        # tokens a chat template spends per message (role markers, separators)
CONTEXT_FALLBACK = 2048     # tokens assumed when an engine does not say its context length
SUMMARY_TOKENS_MAX = 200    # tokens a summary may take in the window (and its generation's max_tokens)
REPLY_ROOM_MIN = 16         # tokens of the window that must remain for turns after the reply room

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations(
  id TEXT PRIMARY KEY, agent TEXT NOT NULL, model TEXT, system TEXT NOT NULL,
  created_s REAL NOT NULL, updated_s REAL NOT NULL);
CREATE INDEX IF NOT EXISTS conversations_agent ON conversations(agent, updated_s);
CREATE TABLE IF NOT EXISTS turns(
  id INTEGER PRIMARY KEY, conv TEXT NOT NULL, ts REAL NOT NULL, role TEXT NOT NULL,
  content TEXT NOT NULL, tokens INTEGER NOT NULL, folded INTEGER NOT NULL DEFAULT 0, pid INTEGER);
CREATE INDEX IF NOT EXISTS turns_conv ON turns(conv, id);
CREATE TABLE IF NOT EXISTS summaries(
  id INTEGER PRIMARY KEY, conv TEXT NOT NULL, ts REAL NOT NULL, upto INTEGER NOT NULL,
  content TEXT NOT NULL, tokens INTEGER NOT NULL, pid INTEGER);
CREATE INDEX IF NOT EXISTS summaries_conv ON summaries(conv, id);
"""


@dataclass(frozen=True)
class Conversation:
    id: str
    agent: str                  # owner: the only agent that may read or extend it
    model: str | None           # None: the kernel's default engine
    system: str                 # the system prompt, first in every window
    created_s: float            # wall-clock seconds
    updated_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "system": self.system,
                "created_s": self.created_s, "updated_s": self.updated_s}


@dataclass(frozen=True)
class Turn:
    id: int
    role: str                   # user | assistant
    content: str
    tokens: int                 # counted with the conversation's model when added (MESSAGE_OVERHEAD included)


class Conversations:
    """The conversation store. Calls come from the kernel's event loop; a lock keeps the
    one connection safe if a worker thread reads too."""

    def __init__(self, path: Path, clock_time: Callable[[], float]) -> None:
        self.path = path
        self._now = clock_time
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _q(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ── conversations ───────────────────────────────────────────────────────
    def open(self, agent: str, model: str | None, system: str) -> Conversation:
        cid = "conv-" + uuid.uuid4().hex[:16]
        now = self._now()
        self._q("INSERT INTO conversations(id, agent, model, system, created_s, updated_s) "
                "VALUES (?,?,?,?,?,?)", (cid, agent, model, system, now, now))
        return Conversation(cid, agent, model, system, now, now)

    def get(self, agent: str, cid: str) -> Conversation:
        rows = self._q("SELECT id, agent, model, system, created_s, updated_s FROM conversations "
                       "WHERE id = ? AND agent = ?", (cid, agent))
        if not rows:
            raise NotFound(f"no conversation {cid!r}",
                           hint="conversation.open starts one; conversation.list shows yours")
        return Conversation(*rows[0])

    def list(self, agent: str, limit: int = 50) -> list[Conversation]:
        rows = self._q("SELECT id, agent, model, system, created_s, updated_s FROM conversations "
                       "WHERE agent = ? ORDER BY updated_s DESC, rowid DESC LIMIT ?", (agent, limit))
        return [Conversation(*r) for r in rows]

    # ── turns ───────────────────────────────────────────────────────────────
    def add(self, conv: Conversation, turns: Sequence[tuple[str, str, int, int | None]]) -> None:
        """Append (role, content, tokens, pid) turns in one transaction."""
        now = self._now()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO turns(conv, ts, role, content, tokens, pid) VALUES (?,?,?,?,?,?)",
                [(conv.id, now, r, c, t, p) for r, c, t, p in turns])
            self._db.execute("UPDATE conversations SET updated_s = ? WHERE id = ?", (now, conv.id))

    def active(self, conv: Conversation) -> list[Turn]:
        """The turns still in the window (not folded into a summary), oldest first."""
        rows = self._q("SELECT id, role, content, tokens FROM turns WHERE conv = ? AND folded = 0 "
                       "ORDER BY id", (conv.id,))
        return [Turn(*r) for r in rows]

    def summary(self, conv: Conversation) -> tuple[str, int] | None:
        """The latest summary (text, tokens): it stands in for every folded turn."""
        rows = self._q("SELECT content, tokens FROM summaries WHERE conv = ? ORDER BY id DESC LIMIT 1",
                       (conv.id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def fold(self, conv: Conversation, upto: int, summary: str, tokens: int, pid: int | None) -> None:
        """Turns up to id ``upto`` leave the window; ``summary`` covers them (and earlier
        summaries). The turns themselves are kept."""
        now = self._now()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("UPDATE turns SET folded = 1 WHERE conv = ? AND id <= ?", (conv.id, upto))
            self._db.execute("INSERT INTO summaries(conv, ts, upto, content, tokens, pid) "
                             "VALUES (?,?,?,?,?,?)", (conv.id, now, upto, summary, tokens, pid))

    def history(self, conv: Conversation, limit: int = 200, after_id: int = 0) -> dict[str, Any]:
        """Every original turn (folded or not) after ``after_id``, and every summary."""
        turns = self._q("SELECT id, ts, role, content, tokens, folded, pid FROM turns "
                        "WHERE conv = ? AND id > ? ORDER BY id LIMIT ?", (conv.id, after_id, limit))
        sums = self._q("SELECT id, ts, upto, content, tokens, pid FROM summaries WHERE conv = ? "
                       "ORDER BY id", (conv.id,))
        return {"conversation": conv.to_dict(),
                "turns": [{"id": i, "ts": ts, "role": r, "content": c, "tokens": t, "folded": bool(f),
                           "pid": p} for i, ts, r, c, t, f, p in turns],
                "summaries": [{"id": i, "ts": ts, "upto": u, "content": c, "tokens": t, "pid": p}
                              for i, ts, u, c, t, p in sums]}


class Window:
    """One model's token budget for a conversation.

    ``count(text)`` uses the engine's own tokenizer when it has one; otherwise it is an
    estimate of one token per 4 characters, rounded up (English prose runs about 4.2
    characters a token on BPE vocabularies; the estimate is kept honest by spending only
    90% of the context when it is used). Every message also costs ``MESSAGE_OVERHEAD``."""

    def __init__(self, context_length: int, reply_tokens: int,
                 tokenizer: Callable[[str], int] | None = None) -> None:
        self.context_length = context_length or CONTEXT_FALLBACK     # tokens
        self.exact = tokenizer is not None                           # counts come from the tokenizer
        self._tokenize = tokenizer
        usable = self.context_length if self.exact else int(self.context_length * 0.9)
        self.usable = usable                                         # tokens any one prompt + reply may take
        self.reply_tokens = reply_tokens                             # tokens kept free for the reply
        self.budget = usable - reply_tokens                          # tokens the window's messages may take
        if self.budget < REPLY_ROOM_MIN + MESSAGE_OVERHEAD:
            raise InvalidArgument(
                f"max_tokens: {reply_tokens} leaves no room for the conversation in this model's "
                f"{self.context_length}-token context", field="max_tokens",
                expected=f"at most {usable - REPLY_ROOM_MIN - MESSAGE_OVERHEAD}")
        self.summary_tokens = max(16, min(SUMMARY_TOKENS_MAX, self.budget // 4))   # a summary's cap

    @classmethod
    def for_engine(cls, engine: Any, reply_tokens: int) -> Window:
        from llmos.llm.base import Engine

        caps = getattr(engine, "capabilities", None)
        ctx = int(getattr(caps, "context_length", 0) or 0)
        own = type(engine).count_tokens is not Engine.count_tokens     # a real tokenizer
        return cls(ctx, reply_tokens, engine.count_tokens if own else None)

    def count(self, text: str) -> int:
        if self._tokenize is not None:
            return self._tokenize(text)
        return math.ceil(len(text) / 4)

    def message(self, text: str) -> int:
        """Tokens one message takes in the window."""
        return self.count(text) + MESSAGE_OVERHEAD

    def to_fold(self, fixed: int, summary: int, turns: Sequence[int], new: int) -> int:
        """How many of the oldest ``turns`` (their token counts) to summarize so that
        ``fixed`` (the system prompt) + the summary + the rest + ``new`` fit the budget.
        0 when everything fits. Raises InvalidArgument when ``new`` cannot fit at all."""
        if fixed + summary + sum(turns) + new <= self.budget:
            return 0
        room = self.budget - fixed - (self.summary_tokens + MESSAGE_OVERHEAD)
        if new > room:
            raise InvalidArgument(
                f"content: the message is {new} tokens; with the system prompt and the reply room "
                f"({self.reply_tokens} tokens) this model's {self.context_length}-token window holds "
                f"{max(room, 0)}", field="content", expected=f"a message of at most {max(room, 0)} tokens")
        rest = sum(turns)
        n = 0
        while n < len(turns) and rest + new > room:
            rest -= turns[n]
            n += 1
        return n

    def clip(self, text: str, tokens: int) -> str:
        """The longest prefix of ``text`` that counts at most ``tokens`` (marked when cut)."""
        if self.count(text) <= tokens:
            return text
        lo, hi = 0, len(text)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.count(text[:mid]) + 2 <= tokens:
                lo = mid
            else:
                hi = mid - 1
        return text[:lo] + " […]"


_SUMMARY_SYSTEM = ("You condense conversations. Summarize the conversation below in at most {words} "
                   "words. Keep facts, names, numbers, decisions, the person's preferences and open "
                   "questions. Write only the summary.")


def summary_request(previous: str | None, turns: Sequence[Turn], words: int) -> list[dict[str, str]]:
    """Messages asking for one summary of ``previous`` (an earlier summary) plus ``turns``."""
    lines = [f"{t.role}: {t.content}" for t in turns]
    body = ("Summary so far:\n" + previous + "\n\nLater turns:\n" if previous else "") + "\n".join(lines)
    return [{"role": "system", "content": _SUMMARY_SYSTEM.format(words=words)},
            {"role": "user", "content": body}]
