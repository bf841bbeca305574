"""The durable journal: one SQLite file in ``$LLMOS_HOME``, the kernel's source of truth.

Map:
- ``MIGRATIONS`` / ``SCHEMA_VERSION``: the schema, one script per version, applied in
  order on open (``PRAGMA user_version`` records how far a file got).
- ``Journal``: WAL, ``synchronous=FULL``; a writer thread that applies writes in the
  order they were made and commits them in groups; ``await durable()`` returns once
  everything written before the call is on disk (that is when a pid is acknowledged).
  Audit rows ride along in the same commits but nobody waits for them.
- ``Reader``: a read-only view for commands that inspect state without booting
  (``llmos ps`` / ``top`` / ``explain``).
- ``StateLock``: one kernel per state directory (an ``flock`` on ``kernel.lock``).
- ``make_private(home)``: the state directory 0700, every database file in it (with its
  ``-wal`` / ``-shm``) 0600; run at every boot, so an older world-readable one is fixed.

NOTE (group commit): writes go onto a queue; the writer thread takes everything
queued, runs it inside one transaction and commits (one fsync). While it fsyncs, new
writes pile up and go into the next commit, so N concurrent submitters cost about one
fsync per batch, not one each. A batch nobody waits on (audit only) lingers up to
``params.JOURNAL_GROUP_COMMIT_S`` to collect more rows; a batch with a waiter commits at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import logging
import os
import queue
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos import params
from llmos.errors import JournalError, StateDirError, map_foreign

if TYPE_CHECKING:
    from llmos.kernel.process import Process, ProcState

__all__ = ["Journal", "Reader", "StateLock", "MIGRATIONS", "SCHEMA_VERSION", "PROC_COLUMNS",
           "make_private", "PRIVATE_DIR_MODE", "PRIVATE_FILE_MODE", "check_journal", "damaged_journal"]

log = logging.getLogger(__name__)

PROC_COLUMNS = ("pid", "kind", "owner", "spec", "priority", "parent", "state", "reason",
                "idem_key", "created_s", "updated_s", "started_s", "finished_s", "attempts",
                "tokens_in", "tokens_out", "cpu_s", "wall_s", "joules", "result", "error",
                "joules_modelled", "placed_on", "began")

MIGRATIONS: list[tuple[int, str]] = [
    (1, """
    CREATE TABLE processes (
        pid INTEGER PRIMARY KEY, kind TEXT NOT NULL, owner TEXT NOT NULL, spec TEXT NOT NULL,
        priority INTEGER NOT NULL, parent INTEGER, state INTEGER NOT NULL, reason TEXT,
        idem_key TEXT, created_s REAL, updated_s REAL, started_s REAL, finished_s REAL,
        attempts INTEGER NOT NULL DEFAULT 0, tokens_in INTEGER NOT NULL DEFAULT 0,
        tokens_out INTEGER NOT NULL DEFAULT 0, cpu_s REAL NOT NULL DEFAULT 0,
        wall_s REAL NOT NULL DEFAULT 0, joules REAL, result TEXT, error TEXT);
    CREATE INDEX processes_state ON processes(state);
    CREATE UNIQUE INDEX processes_key ON processes(owner, idem_key) WHERE idem_key IS NOT NULL;
    CREATE TABLE transitions (
        id INTEGER PRIMARY KEY, pid INTEGER NOT NULL, ts REAL NOT NULL,
        from_state INTEGER, to_state INTEGER NOT NULL, reason TEXT);
    CREATE INDEX transitions_pid ON transitions(pid);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY, ts REAL NOT NULL, agent TEXT NOT NULL, call TEXT NOT NULL,
        resource TEXT, allowed INTEGER NOT NULL, reason TEXT, error TEXT);
    CREATE TABLE agents (
        id TEXT PRIMARY KEY, caps TEXT NOT NULL, created_s REAL NOT NULL, creator TEXT,
        token_hash TEXT);
    CREATE TABLE timers (
        id INTEGER PRIMARY KEY, owner TEXT NOT NULL, due_s REAL NOT NULL, message TEXT NOT NULL,
        created_s REAL NOT NULL, state TEXT NOT NULL, fired_s REAL, late INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX timers_state ON timers(state, due_s);
    CREATE TABLE notes (
        agent TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated_s REAL NOT NULL,
        PRIMARY KEY (agent, key));
    CREATE VIRTUAL TABLE notes_fts USING fts5(key, value, content='notes', content_rowid='rowid');
    CREATE TRIGGER notes_ai AFTER INSERT ON notes BEGIN
        INSERT INTO notes_fts(rowid, key, value) VALUES (new.rowid, new.key, new.value); END;
    CREATE TRIGGER notes_ad AFTER DELETE ON notes BEGIN
        INSERT INTO notes_fts(notes_fts, rowid, key, value) VALUES ('delete', old.rowid, old.key, old.value); END;
    CREATE TRIGGER notes_au AFTER UPDATE ON notes BEGIN
        INSERT INTO notes_fts(notes_fts, rowid, key, value) VALUES ('delete', old.rowid, old.key, old.value);
        INSERT INTO notes_fts(rowid, key, value) VALUES (new.rowid, new.key, new.value); END;
    CREATE TABLE context (
        id INTEGER PRIMARY KEY, agent TEXT NOT NULL, ts REAL NOT NULL, role TEXT NOT NULL,
        content TEXT NOT NULL);
    CREATE INDEX context_agent ON context(agent, id);
    """),
    (2, """
    ALTER TABLE processes ADD COLUMN joules_modelled REAL;
    ALTER TABLE processes ADD COLUMN placed_on TEXT;
    """),
    (3, """
    ALTER TABLE processes ADD COLUMN began INTEGER NOT NULL DEFAULT 0;
    UPDATE processes SET began = attempts;
    """),
    (4, """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, owner TEXT NOT NULL, request TEXT NOT NULL, workdir TEXT NOT NULL,
        options TEXT NOT NULL, status TEXT NOT NULL, created_s REAL NOT NULL, updated_s REAL NOT NULL,
        plan TEXT, steps TEXT, ran TEXT, answer TEXT, error TEXT, shell_run TEXT, pid INTEGER,
        restarts INTEGER NOT NULL DEFAULT 0, agent TEXT);
    CREATE INDEX runs_status ON runs(status);
    """),
    (5, """
    ALTER TABLE timers ADD COLUMN every_s REAL;
    """),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

_STOP = ("stop",)

PRIVATE_DIR_MODE = 0o700     # the state directory: prompts, files, memory, audit, tokens
PRIVATE_FILE_MODE = 0o600    # every database file in it
_DB_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal")


def make_private(home: Path) -> list[str]:
    """Make ``home`` 0700 and each database file directly in it 0600; return the names
    whose mode changed. Only files this user owns are touched."""
    changed: list[str] = []

    def fix(path: Path, want: int) -> None:
        try:
            st = os.lstat(path)
            if st.st_uid != os.getuid() or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                return
            if stat.S_IMODE(st.st_mode) != want:
                os.chmod(path, want)
                changed.append(path.name)
        except FileNotFoundError:
            return
        except OSError as e:
            raise StateDirError(f"cannot make {path} private ({e.strerror or e})",
                                hint=f"chmod {want:o} {path}") from e

    fix(home, PRIVATE_DIR_MODE)
    for entry in sorted(home.iterdir()):
        if entry.name.endswith(_DB_SUFFIXES):
            fix(entry, PRIVATE_FILE_MODE)
    return changed


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite opens it (its -wal and -shm then
    inherit that mode)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    except OSError:
        return                      # SQLite reports the real problem with a clear message
    try:
        if os.fstat(fd).st_uid == os.getuid():
            os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                                   isolation_level=None, timeout=5.0)
        else:
            conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                                   timeout=5.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()   # reads the header
        return conn
    except sqlite3.DatabaseError as e:
        if _damaged(e):
            raise damaged_journal(path, e) from e
        raise map_foreign(e, context=f"journal {path}") from e
    except sqlite3.Error as e:
        raise map_foreign(e, context=f"journal {path}") from e


def _damaged(e: BaseException) -> bool:
    """SQLite saying the file is not (or no longer) a database it can read."""
    msg = str(e).lower()
    return any(w in msg for w in ("not a database", "malformed", "encrypted", "corrupt"))


def damaged_journal(path: Path, e: BaseException) -> JournalError:
    """One line for a journal file SQLite cannot read, with how to restore it."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return JournalError(
        f"journal {path} is damaged: {msg} (it is not a database SQLite can read)",
        hint=f"restore it from a backup, or move it aside to start with an empty journal "
             f"(mv {path} {path}.broken); nothing in it is recovered then")


def check_journal(path: str | Path) -> None:
    """Raise the one-line ``JournalError`` now if ``path`` exists and is not a readable
    database (for commands that would otherwise fail deep inside a start-up)."""
    path = Path(path)
    if not path.exists():
        return
    conn = None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as e:
        if _damaged(e):
            raise damaged_journal(path, e) from e
    except sqlite3.Error:
        pass                        # busy, locked, ...: the kernel's boot reports those
    finally:
        if conn is not None:
            conn.close()


def migrate(conn: sqlite3.Connection, migrations: list[tuple[int, str]] = MIGRATIONS) -> int:
    """Apply every migration newer than the file's ``user_version``; return the version."""
    have = conn.execute("PRAGMA user_version").fetchone()[0]
    latest = migrations[-1][0]
    if have > latest:
        raise JournalError(f"journal schema version {have} is newer than this llmos knows ({latest})",
                           hint="upgrade llmos, or point LLMOS_HOME at another directory")
    for version, script in migrations:
        if version <= have:
            continue
        try:
            conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={int(version)};\nCOMMIT;")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise JournalError(f"journal migration to version {version} failed: {e}") from e
        have = version
    return have


class Journal:
    """Ordered, group-committed writes plus reads. Thread-safe to write from anywhere.

    ``group=False`` commits after every single write (the baseline in bench/journal.py).
    """

    def __init__(self, path: str | Path, *, group: bool = True,
                 linger_s: float = params.JOURNAL_GROUP_COMMIT_S,
                 migrations: list[tuple[int, str]] = MIGRATIONS) -> None:
        self.path = Path(path)
        self._group = group
        self._linger_s = linger_s          # seconds an unwaited batch waits for company
        _create_private(self.path)
        self._wconn = _connect(self.path)
        self.version = migrate(self._wconn, migrations)
        self._rconn = _connect(self.path)   # reads (sees committed rows only)
        self._rlock = threading.Lock()      # one reader at a time on the read connection
        self._q: queue.SimpleQueue = queue.SimpleQueue()   # pending ops, in write order
        self.commits = 0                    # commits done (for benches and tests)
        self.writes = 0                     # statements applied
        self.error: BaseException | None = None   # last write failure (kept for `explain`)
        self._closed = False
        self._thread = threading.Thread(target=self._writer, name="llmos-journal", daemon=True)
        self._thread.start()

    # ── writes ─────────────────────────────────────────────────────────────
    def write(self, sql: str, args: tuple | list = ()) -> None:
        if self._closed:
            raise JournalError("journal is closed")
        self._q.put((sql, args))

    def write_many(self, sql: str, rows: list) -> None:
        if self._closed:
            raise JournalError("journal is closed")
        self._q.put(("many", sql, rows))

    def insert_process(self, p: Process) -> None:
        self.write(_PROC_INSERT, p.row())

    def update_process(self, p: Process) -> None:
        self.write(_PROC_INSERT, p.row())

    def mark_began(self, pid: int, attempt: int, timeout: float | None = 30.0) -> None:
        """Record durably that attempt ``attempt`` of ``pid`` began its work; blocks until
        committed (called from the worker, before the tool's first effect)."""
        self.write("UPDATE processes SET began=? WHERE pid=?", (attempt, pid))
        self.flush(timeout)

    def log_transition(self, pid: int, ts: float, frm: ProcState | None, to: ProcState,
                       reason: str) -> None:
        self.write("INSERT INTO transitions(pid, ts, from_state, to_state, reason) VALUES (?,?,?,?,?)",
                   (pid, ts, None if frm is None else int(frm), int(to), reason))

    def audit(self, ts: float, agent: str, call: str, resource: str | None, allowed: bool,
              reason: str, error: str | None = None) -> None:
        self.write("INSERT INTO audit(ts, agent, call, resource, allowed, reason, error) "
                   "VALUES (?,?,?,?,?,?,?)", (ts, _text(agent), _text(call), _text(resource),
                                              int(allowed), _text(reason), error))

    # ── durability ─────────────────────────────────────────────────────────
    def _barrier(self) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self._closed:
            fut.set_exception(JournalError("journal is closed"))
        else:
            self._q.put(("barrier", fut))
        return fut

    async def durable(self) -> None:
        """Return once every write made before this call is committed (fsynced)."""
        await asyncio.wrap_future(self._barrier())

    def flush(self, timeout: float | None = 30.0) -> None:
        """Blocking ``durable()`` for synchronous callers."""
        try:
            self._barrier().result(timeout)
        except concurrent.futures.TimeoutError:
            raise JournalError(f"journal did not commit within {timeout} s",
                               hint="is the disk full or very slow?") from None

    # ── reads ──────────────────────────────────────────────────────────────
    def query(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        with self._rlock:
            try:
                return self._rconn.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                if _damaged(e):
                    raise damaged_journal(self.path, e) from e
                raise map_foreign(e, context="journal read") from e

    def load_processes(self) -> list[tuple]:
        return self.query(f"SELECT {', '.join(PROC_COLUMNS)} FROM processes ORDER BY pid")

    # ── lifecycle ──────────────────────────────────────────────────────────
    def close(self) -> None:
        """Commit what is queued, stop the writer, close both connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._q.put(_STOP)
        self._thread.join()
        self._wconn.close()
        self._rconn.close()

    # ── the writer thread ──────────────────────────────────────────────────
    def _take_batch(self) -> tuple[list, bool]:
        """Block for the first op, then take everything queued. Returns (ops, stop)."""
        ops = [self._q.get()]
        if ops[0] is _STOP:
            return [], True
        if not self._group:
            return ops, False
        deadline = None
        while True:
            try:
                op = self._q.get_nowait()
            except queue.Empty:
                if any(o[0] == "barrier" for o in ops):
                    return ops, False
                if deadline is None:
                    deadline = time.monotonic() + self._linger_s
                left = deadline - time.monotonic()
                if left <= 0:
                    return ops, False
                try:
                    op = self._q.get(timeout=left)
                except queue.Empty:
                    return ops, False
            if op is _STOP:
                self._q.put(_STOP)
                return ops, False
            ops.append(op)

    def _writer(self) -> None:
        conn = self._wconn
        while True:
            ops, stop = self._take_batch()
            if stop:
                return
            waiters = []
            failure: BaseException | None = None
            try:
                conn.execute("BEGIN")
                for sql, rows in _runs(ops, waiters):
                    try:
                        conn.executemany(sql, rows)
                        self.writes += len(rows)
                    except sqlite3.Error as e:   # one bad statement must not lose the batch
                        failure = e
                        log.error("journal write failed: %s (%s)", e, sql[:80])
                conn.execute("COMMIT")
                self.commits += 1
            except sqlite3.Error as e:
                failure = e
                log.error("journal commit failed: %s", e)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            if failure is not None:
                self.error = failure
            for fut in waiters:
                if fut.done():
                    continue
                if failure is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(JournalError(f"journal write failed: {failure}",
                                                   hint="check disk space and permissions"))


def _runs(ops: list, waiters: list) -> list[tuple[str, list]]:
    """Consecutive writes of the same statement merged into one ``executemany`` (order
    kept); barrier futures are moved to ``waiters``."""
    out: list[tuple[str, list]] = []
    for op in ops:
        if op[0] == "barrier":
            waiters.append(op[1])
            continue
        sql, rows = (op[1], list(op[2])) if op[0] == "many" else (op[0], [op[1]])
        if out and out[-1][0] == sql:
            out[-1][1].extend(rows)
        else:
            out.append((sql, rows))
    return out


def _text(s: object) -> str | None:
    """Text safe to bind (caller-supplied names may hold lone surrogates or be non-strings)."""
    if s is None:
        return None
    return str(s)[:2000].encode("utf-8", "replace").decode("utf-8")


_PROC_INSERT = (f"INSERT OR REPLACE INTO processes({', '.join(PROC_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(PROC_COLUMNS))})")


class Reader:
    """Read-only access to a state directory's journal, without booting a kernel."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise StateDirError(f"no kernel state at {self.path}",
                                hint="nothing has run yet in this LLMOS_HOME")
        self._conn = _connect(self.path, readonly=True)

    def query(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            if _damaged(e):
                raise damaged_journal(self.path, e) from e
            raise map_foreign(e, context="journal read") from e

    def close(self) -> None:
        self._conn.close()


class StateLock:
    """Exclusive ownership of a state directory by one kernel (``flock`` on kernel.lock).

    The lock dies with the process, so a crashed kernel never leaves a stale lock.
    """

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / "kernel.lock"
        self._fd: int | None = None

    def holder(self) -> int | None:
        """Pid recorded by the kernel holding the lock, or None when it is free."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        finally:
            os.close(fd)
        return None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            other = self.holder()
            raise StateDirError(f"another kernel (pid {other}) owns {self.path.parent}",
                                hint="stop it, or set LLMOS_HOME to another directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def rows_to_dicts(cols: Iterable[str], rows: list[tuple]) -> list[dict[str, Any]]:
    cols = list(cols)
    return [dict(zip(cols, r, strict=True)) for r in rows]
