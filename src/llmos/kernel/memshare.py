"""Collections of long-term memory and their shares between agents.

Map:
- ``check_collection(name)``: a collection name as given (letters, digits, ``.``, ``_``,
  ``-``, starting with a letter or digit, no ``..``), else ``InvalidArgument`` naming the
  field: a name is never a pattern or a path.
- ``MemoryShares``: the ``shares`` table in ``memory.db`` (owner, collection, grantee,
  mode ``r`` | ``rw``). ``give`` / ``take_back`` / ``grant`` (the mode one share gives,
  asked on every call, so taking a share back refuses the grantee's next call) / ``of``
  (given and received). Owned by ``longterm.LongTermMemory`` (its connection and lock).

What a share allows is decided in the access layer (``access.MemoryRef`` with the grant
read here): ``r`` recall and list, ``rw`` also remember and forget, within that one
collection of the owner.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from llmos.errors import InvalidArgument, NotFound

__all__ = ["MemoryShares", "check_collection", "DEFAULT_COLLECTION", "COLLECTION_MAX", "SHARE_MODES",
           "SHARES_SCHEMA", "scope_sql"]

DEFAULT_COLLECTION = "default"  # the collection a memory goes to when none is named
COLLECTION_MAX = 64           # characters in a collection name
SHARE_MODES = ("r", "rw")     # a share: read (recall, list) | read-write (also remember, forget)
_COLLECTION = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{COLLECTION_MAX - 1}}}")

SHARES_SCHEMA = """
CREATE TABLE IF NOT EXISTS shares (
    owner TEXT NOT NULL, collection TEXT NOT NULL, grantee TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('r', 'rw')), created_s REAL NOT NULL,
    PRIMARY KEY (owner, collection, grantee)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS shares_grantee ON shares(grantee);
"""


def check_collection(name: object) -> str:
    """A collection name as given, or InvalidArgument naming the field: never a pattern or a path."""
    if not isinstance(name, str) or not _COLLECTION.fullmatch(name) or ".." in name:
        shown = repr(name)[:40]
        raise InvalidArgument(f"collection: expected 1..{COLLECTION_MAX} letters, digits, '.', '_' or '-' "
                              f"(starting with a letter or digit, no '..'), got {shown}", field="collection",
                              expected=f"a name of 1..{COLLECTION_MAX} characters [A-Za-z0-9._-]")
    return name


class MemoryShares:
    """Build with the owner's ``db(what)`` context (the connection under its lock, errors
    mapped) and the kernel clock."""

    def __init__(self, db: Callable[[str], AbstractContextManager[Any]], clock_time: Callable[[], float]) -> None:
        self._db = db
        self._now = clock_time

    def give(self, owner: str, collection: str, grantee: str, mode: str) -> dict[str, Any]:
        """Let ``grantee`` read (``r``) or also write and forget (``rw``) ``owner``'s
        ``collection``; a share given again replaces the mode."""
        collection = check_collection(collection)
        if mode not in SHARE_MODES:
            raise InvalidArgument(f"mode: expected r or rw, got {mode!r}", field="mode",
                                  expected="r (read-only) | rw (read-write)")
        if grantee == owner:
            raise InvalidArgument("agent: an agent's own memory needs no share", field="agent",
                                  expected="another agent's id")
        with self._db("share") as c, c:
            c.execute("INSERT INTO shares(owner, collection, grantee, mode, created_s) VALUES (?,?,?,?,?) "
                      "ON CONFLICT(owner, collection, grantee) DO UPDATE SET mode = excluded.mode, "
                      "created_s = excluded.created_s", (owner, collection, grantee, mode, self._now()))
        return {"owner": owner, "collection": collection, "agent": grantee, "mode": mode}

    def take_back(self, owner: str, collection: str, grantee: str) -> dict[str, Any]:
        """Take a share back; the next call of the grantee is refused."""
        collection = check_collection(collection)
        with self._db("unshare") as c, c:
            gone = c.execute("DELETE FROM shares WHERE owner = ? AND collection = ? AND grantee = ? RETURNING mode",
                             (owner, collection, grantee)).fetchall()
        if not gone:
            raise NotFound(f"collection {collection!r} is not shared with agent {grantee!r}",
                           hint="memory.shares lists the shares you gave")
        return {"owner": owner, "collection": collection, "agent": grantee, "mode": gone[0][0]}

    def grant(self, owner: str, collection: str, grantee: str) -> str | None:
        """The mode ``owner`` shared ``collection`` with ``grantee`` in (``r`` | ``rw``), or None."""
        with self._db("shares") as c:
            row = c.execute("SELECT mode FROM shares WHERE owner = ? AND collection = ? AND grantee = ?",
                            (owner, collection, grantee)).fetchall()
        return row[0][0] if row else None

    def of(self, agent: str) -> dict[str, list[dict[str, Any]]]:
        """The shares ``agent`` gave and those it received."""
        def rows(where: str) -> list[dict[str, Any]]:
            return [{"owner": o, "collection": col, "agent": g, "mode": m, "created_s": t}
                    for o, col, g, m, t in c.execute(
                        "SELECT owner, collection, grantee, mode, created_s FROM shares WHERE "
                        f"{where} = ? ORDER BY owner, collection, grantee", (agent,))]
        with self._db("shares") as c:
            return {"given": rows("owner"), "received": rows("grantee")}


def scope_sql(agent: str | None, collection: str | None) -> tuple[str, list[Any]]:
    """The condition on ``memories`` of one agent's (None: any agent's) memories in one
    collection (None: any; the name is checked): ``" AND agent = ? ..."`` and its arguments."""
    sql, args = "", []
    if agent is not None:
        sql += " AND agent = ?"
        args.append(agent)
    if collection is not None:
        sql += " AND collection = ?"
        args.append(check_collection(collection))
    return sql, args
