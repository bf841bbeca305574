"""Agent memory: a per-agent context (recent messages) and long-term notes.

Map:
- context: ``append(agent, role, content)`` / ``context(agent, limit)``; each agent keeps
  its last ``CONTEXT_KEEP`` messages (reminders that fire land here too).
- notes: ``put`` / ``get`` / ``delete`` / ``search`` — key/value text per agent, searched
  with SQLite FTS5 (bm25 ranking). A query is split into words and each is quoted, so
  user text can never be FTS5 syntax.
- long-term memory by meaning: ``longterm`` (``kernel.longterm.LongTermMemory``, its own
  database ``memory.db`` beside the journal, opened on first use) remembers texts with
  their embeddings (``embedder``: the packaged MiniLM unless a test sets a fake first).
- conversations: ``conversations`` (``kernel.conversation.Conversations``, its own database
  ``conversations.db`` beside the journal, opened on first use): turns kept within a model's
  window, older turns folded into summaries, every original kept.

Context and notes live in the journal database. Writers await ``journal.durable()`` before
answering, so a read after a write sees it. An agent only ever sees its own memory, except
a long-term collection another agent shared with it (``memshare``, checked in ``access``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmos.errors import InvalidArgument, NotFound
from llmos.llm.embed import Embedder, default_embedder

if TYPE_CHECKING:
    from llmos.kernel.conversation import Conversations
    from llmos.kernel.longterm import LongTermMemory
    from llmos.kernel.storage import Journal

__all__ = ["Memory", "CONTEXT_KEEP", "KEY_MAX", "VALUE_MAX_BYTES", "LONGTERM_FILE"]

CONTEXT_KEEP = 500            # messages kept per agent
KEY_MAX = 200                 # characters in a note key
VALUE_MAX_BYTES = 64 << 10    # bytes in a note value or a context message
LONGTERM_FILE = "memory.db"   # long-term memory's database, beside the journal's
_WORD = re.compile(r"\w+", re.UNICODE)


class Memory:
    def __init__(self, journal: Journal, clock_time: Callable[[], float]) -> None:
        self._journal = journal
        self._now = clock_time
        # the embedding model, or what makes it; replace before first use (tests: FakeEmbedder)
        self.embedder: Embedder | Callable[[], Embedder] = default_embedder
        self._longterm: LongTermMemory | None = None
        self._conversations: Conversations | None = None

    # ── long-term memory ───────────────────────────────────────────────────
    @property
    def longterm(self) -> LongTermMemory:
        """Remember / recall / forget by meaning; the database opens on first use."""
        if self._longterm is None:
            from llmos.kernel.longterm import LongTermMemory

            self._longterm = LongTermMemory(self._journal.path.with_name(LONGTERM_FILE),
                                            self.embedder, self._now)
        return self._longterm

    @property
    def conversations(self) -> Conversations:
        """Conversations within a token budget; the database opens on first use."""
        if self._conversations is None:
            from llmos.kernel.conversation import CONVERSATIONS_FILE, Conversations

            self._conversations = Conversations(self._journal.path.with_name(CONVERSATIONS_FILE), self._now)
        return self._conversations

    def close(self) -> None:
        if self._longterm is not None:
            self._longterm.close()
            self._longterm = None
        if self._conversations is not None:
            self._conversations.close()
            self._conversations = None

    # ── context ────────────────────────────────────────────────────────────
    def append(self, agent: str, role: str, content: str) -> None:
        if role not in ("system", "user", "assistant", "tool"):
            raise InvalidArgument(f"role: expected system, user, assistant or tool, got {role!r}",
                                  field="role", expected="system | user | assistant | tool")
        _check_size(content, "content")
        self._journal.write("INSERT INTO context(agent, ts, role, content) VALUES (?,?,?,?)",
                            (agent, self._now(), role, content))
        self._journal.write(
            "DELETE FROM context WHERE agent = ? AND id <= (SELECT id FROM context WHERE agent = ? "
            "ORDER BY id DESC LIMIT 1 OFFSET ?)", (agent, agent, CONTEXT_KEEP))

    def context(self, agent: str, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._journal.query("SELECT ts, role, content FROM context WHERE agent = ? "
                                   "ORDER BY id DESC LIMIT ?", (agent, limit))
        return [{"ts": ts, "role": role, "content": c} for ts, role, c in reversed(rows)]

    # ── notes ──────────────────────────────────────────────────────────────
    def put(self, agent: str, key: str, value: str) -> None:
        _check_key(key)
        _check_size(value, "value")
        self._journal.write(
            "INSERT INTO notes(agent, key, value, updated_s) VALUES (?,?,?,?) "
            "ON CONFLICT(agent, key) DO UPDATE SET value = excluded.value, updated_s = excluded.updated_s",
            (agent, key, value, self._now()))

    def get(self, agent: str, key: str) -> dict[str, Any]:
        _check_key(key)
        rows = self._journal.query("SELECT key, value, updated_s FROM notes WHERE agent = ? AND key = ?",
                                   (agent, key))
        if not rows:
            raise NotFound(f"no note {key!r}", hint="memory.search finds notes by their words")
        k, v, t = rows[0]
        return {"key": k, "value": v, "updated_s": t}

    def delete(self, agent: str, key: str) -> None:
        self.get(agent, key)
        self._journal.write("DELETE FROM notes WHERE agent = ? AND key = ?", (agent, key))

    def search(self, agent: str, query: str, limit: int = 10) -> list[dict[str, Any]]:
        words = _WORD.findall(query or "")
        if not words:
            raise InvalidArgument("query: expected at least one word", field="query",
                                  expected="text with at least one word")
        match = " OR ".join('"' + w.replace('"', '') + '"' for w in words[:32])
        rows = self._journal.query(
            "SELECT n.key, n.value, n.updated_s, bm25(notes_fts) AS score FROM notes_fts "
            "JOIN notes n ON n.rowid = notes_fts.rowid "
            "WHERE notes_fts MATCH ? AND n.agent = ? ORDER BY score LIMIT ?",
            (match, agent, limit))
        return [{"key": k, "value": v, "updated_s": t, "score": -s} for k, v, t, s in rows]


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not key or len(key) > KEY_MAX:
        raise InvalidArgument(f"key: expected a non-empty string of at most {KEY_MAX} characters",
                              field="key", expected=f"string, 1..{KEY_MAX} characters")
    _check_size(key, "key")


def _check_size(text: object, field: str) -> None:
    if not isinstance(text, str):
        raise InvalidArgument(f"{field}: expected a string", field=field, expected="string")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument(f"{field}: expected valid Unicode text (no lone surrogates)",
                              field=field, expected="UTF-8 encodable string") from None
    if size > VALUE_MAX_BYTES:
        raise InvalidArgument(f"{field}: at most {VALUE_MAX_BYTES} bytes", field=field,
                              expected=f"string of at most {VALUE_MAX_BYTES} bytes")
