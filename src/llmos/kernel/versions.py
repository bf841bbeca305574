"""Versioned files: the bytes a file tool replaced, kept so a run can be undone.

Map:
- ``State``: what stood at a path: ``kind`` (absent | file | link | dir | other), the
  sha256 of its content (a dir's is the hash of its manifest), its permission bits.
- ``VersionStore(home, quota_bytes, max_age_s, clock)``: content-addressed blobs under
  ``home/versions/blobs/`` (sha256 names, files 0600, folders 0700) and one row per
  change in ``home/versions/versions.db`` (0600). ``put_stream`` / ``put_bytes`` keep a
  blob; ``record`` writes a change with the blobs it holds; ``run_changes``,
  ``history``, ``version`` read them back, filtered by agent unless ``agent`` is None.
- ``Recorder``: the store bound to one tool call (agent, run, pid); the kernel's
  executor puts it in ``ToolContext.versions`` and the file helpers call it.
- ``prune()``: changes older than ``max_age_s`` go, then the oldest until the blobs fit
  ``quota_bytes``; unreferenced blobs are deleted. Said in the log.

NOTE (what a change holds): ``before`` is the state the change replaced, kept as blobs
(``kept`` is 0 when it was too large for the quota); ``after`` is only a hash, the
state the change left, so undo can tell a path that changed again since. A move keeps
``path`` (the source) and ``dest``; ``dest_before`` is what the move replaced there.
Each change lists every blob it needs in ``refs`` (a dir's manifest and all below), so
pruning a change frees exactly the blobs no other change holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmos import params
from llmos.errors import InvalidArgument, JournalError, NotFound

__all__ = ["State", "ABSENT", "VersionStore", "Recorder", "run_of", "QUOTA_BYTES", "MAX_AGE_S"]

log = logging.getLogger(__name__)

QUOTA_BYTES = params.VERSIONS_QUOTA_BYTES               # bytes of kept blobs in all (config [versions])
MAX_AGE_S = params.VERSIONS_MAX_AGE_DAYS * 86400.0       # seconds a change is kept
CHUNK = 1 << 20                  # bytes per read when copying a blob
PRUNE_EVERY_S = 3600.0           # seconds between age prunes (a quota overrun prunes at once)

SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY,           -- the version id, in the order changes were made
    ts REAL NOT NULL,                 -- wall-clock seconds
    agent TEXT NOT NULL,              -- who made it
    run TEXT NOT NULL,                -- shell run id, else the tool process id
    pid INTEGER,                      -- the tool process
    op TEXT NOT NULL,                 -- write | append | copy | move | delete | mkdir | restore
    path TEXT NOT NULL,               -- resolved; a move's source
    dest TEXT,                        -- a move's destination
    before_kind TEXT NOT NULL, before_hash TEXT, before_mode INTEGER,
    after_kind TEXT NOT NULL, after_hash TEXT,
    dest_kind TEXT, dest_hash TEXT, dest_mode INTEGER,   -- what a move replaced at dest
    bytes INTEGER NOT NULL DEFAULT 0, -- size of the blobs this change added
    kept INTEGER NOT NULL DEFAULT 1,  -- 0: the previous bytes were not kept (over the quota)
    undone REAL                       -- when an undo restored it
);
CREATE INDEX IF NOT EXISTS changes_run ON changes(run, agent);
CREATE INDEX IF NOT EXISTS changes_path ON changes(path);
CREATE INDEX IF NOT EXISTS changes_dest ON changes(dest);
CREATE INDEX IF NOT EXISTS changes_ts ON changes(ts);
CREATE TABLE IF NOT EXISTS blobs (hash TEXT PRIMARY KEY, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS refs (change INTEGER NOT NULL, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS refs_change ON refs(change);
CREATE INDEX IF NOT EXISTS refs_hash ON refs(hash);
"""


@dataclass(frozen=True)
class State:
    kind: str                    # absent | file | link | dir | other (a fifo, a device)
    hash: str | None = None      # sha256 hex of the content (dir: of its manifest)
    mode: int | None = None      # permission bits

    def same(self, other: State) -> bool:
        return self.kind == other.kind and self.hash == other.hash

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "hash": self.hash}


ABSENT = State("absent")


def run_of(idempotency_key: str | None, pid: int | None) -> str:
    """The run a tool call belongs to: the shell run id its key starts with
    (``r1a2b3c4d:3:...``), else its process id."""
    head = (idempotency_key or "").split(":", 1)[0]
    if len(head) == 9 and head[0] == "r" and all(c in "0123456789abcdef" for c in head[1:]):
        return head
    return str(pid) if pid is not None else "none"


class VersionStore:
    """Blobs and change rows for one state directory. Thread-safe (one lock)."""

    def __init__(self, home: str | os.PathLike, *, quota_bytes: int = QUOTA_BYTES,
                 max_age_s: float = MAX_AGE_S, clock: Callable[[], float] | None = None) -> None:
        import time

        self.root = Path(home) / "versions"
        self.blob_dir = self.root / "blobs"
        self.quota_bytes = int(quota_bytes)          # bytes of blobs kept at most
        self.max_age_s = float(max_age_s)            # seconds a change is kept
        self._now = clock or time.time
        self._lock = threading.RLock()
        self._pending: Counter[str] = Counter()      # blobs put but not yet recorded (not pruned)
        self._bytes = 0                              # bytes of blobs (SUM(blobs.size)); under _lock
        self._pruned_at = float("-inf")              # clock time of the last full prune
        os.makedirs(self.blob_dir, mode=0o700, exist_ok=True)
        os.chmod(self.root, 0o700)
        os.chmod(self.blob_dir, 0o700)
        db = self.root / "versions.db"
        if not db.exists():
            os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        os.chmod(db, 0o600)
        try:
            self._db = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise JournalError(f"version database {db} cannot be opened: {e}",
                               hint=f"move {db} away; older versions are lost, new ones are kept") from e
        for suffix in ("-wal", "-shm"):
            p = Path(f"{db}{suffix}")
            if p.exists():
                os.chmod(p, 0o600)
        self.prune()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ── blobs ──────────────────────────────────────────────────────────────
    def blob_path(self, h: str) -> Path:
        if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
            raise InvalidArgument(f"blob: {h!r} is not a sha256 hash", field="hash", expected="64 hex digits")
        return self.blob_dir / h[:2] / h[2:]

    def put_stream(self, read: Callable[[int], bytes]) -> tuple[str, int]:
        """Copy a stream into a blob (named by its sha256); (hash, size). Marked pending
        until a change records it, so pruning never takes it in between."""
        sha, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.blob_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := read(CHUNK):
                    sha.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            h = sha.hexdigest()
            final = self.blob_path(h)
            with self._lock:
                os.makedirs(final.parent, mode=0o700, exist_ok=True)
                if final.exists():
                    os.unlink(tmp)
                else:
                    os.replace(tmp, final)
                if self._db.execute("INSERT OR IGNORE INTO blobs(hash, size) VALUES (?, ?)",
                                    (h, size)).rowcount == 1:
                    self._bytes += size
                self._pending[h] += 1
            return h, size
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        view = memoryview(data)
        pos = 0

        def read(n: int) -> bytes:
            nonlocal pos
            chunk = bytes(view[pos:pos + n])
            pos += len(chunk)
            return chunk
        return self.put_stream(read)

    def open_blob(self, h: str) -> Any:
        try:
            return open(self.blob_path(h), "rb")
        except FileNotFoundError:
            raise NotFound(f"version blob {h[:12]} is gone (pruned)") from None

    def read_blob(self, h: str) -> bytes:
        with self.open_blob(h) as f:
            return f.read()

    def hold(self, h: str) -> bool:
        """Mark kept blob ``h`` pending (as ``put_stream`` does) if the store has it."""
        with self._lock:
            if self._db.execute("SELECT 1 FROM blobs WHERE hash = ?", (h,)).fetchone() is None:
                return False
            if not self.blob_path(h).exists():
                return False
            self._pending[h] += 1
            return True

    def release(self, hashes: Iterable[str]) -> None:
        """Blobs put for changes now recorded (or not made): no longer pending."""
        with self._lock:
            for h in hashes:
                self._pending[h] -= 1
                if self._pending[h] <= 0:
                    del self._pending[h]
            if self._bytes > self.quota_bytes:        # what was held back from pruning may go now
                self.prune()

    # ── changes ────────────────────────────────────────────────────────────
    def record(self, *, agent: str, run: str, pid: int | None, op: str, path: str,
               before: State, after: State, blobs: Iterable[str] = (), dest: str | None = None,
               dest_before: State | None = None) -> int:
        """Write one change holding ``blobs``; returns its version id. Prunes after. The
        caller releases the blobs it put (``release``) once every change is recorded."""
        blobs = list(blobs)
        uniq = sorted(set(blobs))
        with self._lock:
            size = 0
            if uniq:
                marks = ",".join("?" * len(uniq))
                size = self._db.execute(f"SELECT COALESCE(SUM(size), 0) FROM blobs WHERE hash IN ({marks})",
                                        uniq).fetchone()[0]
            kept = 1
            if size > self.quota_bytes:
                log.warning("versions: the previous content of %s (%d bytes) is larger than the version "
                            "quota (%d bytes); not kept", path, size, self.quota_bytes)
                kept, uniq = 0, []
            db = dest_before or ABSENT
            self._db.execute("BEGIN IMMEDIATE")      # the change and its refs together, or neither
            try:
                cur = self._db.execute(
                    "INSERT INTO changes(ts, agent, run, pid, op, path, dest, before_kind, before_hash, "
                    "before_mode, after_kind, after_hash, dest_kind, dest_hash, dest_mode, bytes, kept) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (self._now(), agent, run, pid, op, path, dest, before.kind, before.hash, before.mode,
                     after.kind, after.hash, db.kind if dest else None, db.hash if dest else None,
                     db.mode if dest else None, size if kept else 0, kept))
                vid = int(cur.lastrowid)
                self._db.executemany("INSERT INTO refs(change, hash) VALUES (?, ?)", [(vid, h) for h in uniq])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if self._bytes > self.quota_bytes or self._now() - self._pruned_at > PRUNE_EVERY_S:
                self.prune()
            return vid

    def mark_undone(self, vid: int) -> None:
        with self._lock:
            self._db.execute("UPDATE changes SET undone = ? WHERE id = ?", (self._now(), vid))

    _COLS = ("id", "ts", "agent", "run", "pid", "op", "path", "dest", "before_kind", "before_hash",
             "before_mode", "after_kind", "after_hash", "dest_kind", "dest_hash", "dest_mode", "bytes",
             "kept", "undone")

    def _rows(self, where: str, args: tuple, order: str = "id") -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(self._COLS)} FROM changes WHERE {where}"
                                    + (f" ORDER BY {order}" if order else ""), args).fetchall()
        return [dict(zip(self._COLS, r, strict=True)) for r in rows]

    def run_changes(self, run: str, agent: str | None) -> list[dict[str, Any]]:
        """The changes of run ``run`` in the order made (only ``agent``'s unless None)."""
        if agent is None:
            return self._rows("run = ?", (run,))
        return self._rows("run = ? AND agent = ?", (run, agent))

    def history(self, path: str, agent: str | None, limit: int = 100) -> list[dict[str, Any]]:
        """Changes to ``path`` itself, moves to or from it, and changes to a folder above
        it (a deleted or moved folder held it), newest first."""
        where = ("(path = ? OR dest = ? OR substr(?, 1, length(path) + 1) = path || '/' "
                 "OR substr(?, 1, length(dest) + 1) = dest || '/')")
        args: tuple = (path, path, path, path)
        if agent is not None:
            where += " AND agent = ?"
            args += (agent,)
        return self._rows(f"{where} ORDER BY id DESC LIMIT {int(limit)}", args, "")

    def version(self, vid: int, agent: str | None) -> dict[str, Any]:
        rows = self._rows("id = ?" + ("" if agent is None else " AND agent = ?"),
                          (vid,) if agent is None else (vid, agent))
        if not rows:
            raise NotFound(f"version {vid}: no such version of yours",
                           hint="llmos history PATH lists the versions of a file")
        return rows[0]

    def usage(self) -> dict[str, int]:
        with self._lock:
            b, n = self._db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM blobs").fetchone()
            c = self._db.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
        return {"bytes": int(b), "blobs": int(n), "changes": int(c), "quota_bytes": self.quota_bytes}

    # ── pruning ────────────────────────────────────────────────────────────
    def prune(self) -> int:
        """Drop changes older than ``max_age_s``, then the oldest while the blobs exceed
        ``quota_bytes``; delete blobs nothing holds (rows first, in one transaction, then
        the files). Returns the changes dropped."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                old = [r[0] for r in self._db.execute("SELECT id FROM changes WHERE ts < ?",
                                                      (self._now() - self.max_age_s,))]
                self._drop(old)
                unlink = self._orphans()
                over = []
                busy = self._pending_bytes()          # blobs being recorded: not yet counted
                while self._total() - busy > self.quota_bytes:
                    row = self._db.execute("SELECT id FROM changes ORDER BY id LIMIT 1").fetchone()
                    if row is None:
                        break
                    self._drop([row[0]])
                    over.append(row[0])
                    unlink += self._orphans()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            for h in unlink:
                try:
                    os.unlink(self.blob_path(h))
                except FileNotFoundError:
                    pass
            self._bytes = self._total()
            self._pruned_at = self._now()
        if old:
            log.info("versions: pruned %d changes older than %g days", len(old), self.max_age_s / 86400)
        if over:
            log.warning("versions: pruned the %d oldest changes to stay within the quota of %d bytes",
                        len(over), self.quota_bytes)
        return len(old) + len(over)

    def _pending_bytes(self) -> int:
        hs, total = list(self._pending), 0
        for i in range(0, len(hs), 500):
            part = hs[i:i + 500]
            total += self._db.execute(f"SELECT COALESCE(SUM(size), 0) FROM blobs WHERE hash IN "
                                      f"({','.join('?' * len(part))})", part).fetchone()[0]
        return int(total)

    def _total(self) -> int:
        return int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM blobs").fetchone()[0])

    def _drop(self, ids: list[int]) -> None:
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            marks = ",".join("?" * len(part))
            self._db.execute(f"DELETE FROM refs WHERE change IN ({marks})", part)
            self._db.execute(f"DELETE FROM changes WHERE id IN ({marks})", part)

    def _orphans(self) -> list[str]:
        """Blob rows no change holds (and none is being recorded with), deleted; their hashes."""
        gone = [r[0] for r in self._db.execute("SELECT hash FROM blobs WHERE hash NOT IN (SELECT hash FROM refs)")
                if r[0] not in self._pending]
        self._db.executemany("DELETE FROM blobs WHERE hash = ?", [(h,) for h in gone])
        return gone

    def bind(self, agent: str, run: str, pid: int | None) -> Recorder:
        return Recorder(self, agent, run, pid)


@dataclass(frozen=True)
class Recorder:
    """The version store bound to one tool call: what the file helpers record with."""

    store: VersionStore
    agent: str                   # who makes the changes
    run: str                     # shell run id, else the tool's pid (see ``run_of``)
    pid: int | None = None

    def record(self, **kw: Any) -> int:
        return self.store.record(agent=self.agent, run=self.run, pid=self.pid, **kw)


def manifest(entries: list[tuple[str, State]]) -> bytes:
    """A folder's manifest: its entries by name, each with kind, hash and mode."""
    return json.dumps([[n, s.kind, s.hash, s.mode] for n, s in sorted(entries)],
                      separators=(",", ":")).encode()


def read_manifest(data: bytes) -> list[tuple[str, State]]:
    return [(n, State(k, h, m)) for n, k, h, m in json.loads(data)]
