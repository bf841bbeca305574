from __future__ import annotations

import asyncio
import sqlite3

import pytest

from llmos.errors import JournalError, StateDirError
from llmos.kernel.storage import MIGRATIONS, SCHEMA_VERSION, Journal, Reader, StateLock


def test_wal_full_and_schema_version(tmp_path):
    j = Journal(tmp_path / "j.db")
    try:
        assert j.query("PRAGMA journal_mode")[0][0] == "wal"
        assert j._wconn.execute("PRAGMA synchronous").fetchone()[0] == 2   # FULL
        assert j.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION == j.version
    finally:
        j.close()


async def test_group_commit_batches_concurrent_writers(tmp_path):
    j = Journal(tmp_path / "j.db")

    async def writer(i: int) -> None:
        j.audit(float(i), "a", "x", None, True, "ok")
        await j.durable()

    await asyncio.gather(*(writer(i) for i in range(200)))
    assert j.query("SELECT COUNT(*) FROM audit")[0][0] == 200
    assert j.commits < 200          # many writers shared commits
    j.close()


def test_each_mode_commits_every_write(tmp_path):
    j = Journal(tmp_path / "j.db", group=False)
    for i in range(20):
        j.audit(float(i), "a", "x", None, True, "ok")
    j.flush()
    assert j.commits >= 20
    j.close()


def test_migrations_apply_in_order_and_refuse_newer(tmp_path):
    path = tmp_path / "j.db"
    v1 = [(1, "CREATE TABLE t (a INTEGER);")]
    Journal(path, migrations=v1).close()
    v2 = v1 + [(2, "ALTER TABLE t ADD COLUMN b TEXT; INSERT INTO t VALUES (1, 'x');")]
    j = Journal(path, migrations=v2)
    assert j.version == 2 and j.query("SELECT a, b FROM t") == [(1, "x")]
    j.close()
    with pytest.raises(JournalError, match="newer than this llmos"):
        Journal(path, migrations=v1)


def test_failed_migration_rolls_back(tmp_path):
    path = tmp_path / "j.db"
    bad = [(1, "CREATE TABLE t (a INTEGER);"), (2, "CREATE TABLE u (a); SELECT nope FROM nowhere;")]
    with pytest.raises(JournalError, match="migration to version 2"):
        Journal(path, migrations=bad)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'u'").fetchall() == []
    conn.close()


def test_bad_statement_fails_the_waiters_of_its_batch(tmp_path):
    j = Journal(tmp_path / "j.db")
    j.write("INSERT INTO nowhere VALUES (1)")
    with pytest.raises(JournalError, match="journal write failed"):
        j.flush()
    j.audit(1.0, "a", "x", None, True, "ok")   # the next batch is fine
    j.flush()
    j.close()
    with pytest.raises(JournalError, match="closed"):
        j.write("SELECT 1")


def test_reader_sees_committed_rows_only_read_only(tmp_path):
    j = Journal(tmp_path / "j.db")
    j.audit(1.0, "a", "x", None, True, "ok")
    j.flush()
    r = Reader(tmp_path / "j.db")
    assert r.query("SELECT agent FROM audit") == [("a",)]
    with pytest.raises(JournalError):
        r.query("INSERT INTO audit(ts, agent, call, allowed) VALUES (1, 'b', 'y', 1)")
    r.close()
    j.close()
    with pytest.raises(StateDirError):
        Reader(tmp_path / "missing.db")


def test_state_lock_is_exclusive_and_released(tmp_path):
    a, b = StateLock(tmp_path), StateLock(tmp_path)
    assert a.holder() is None
    a.acquire()
    with pytest.raises(StateDirError, match="another kernel"):
        b.acquire()
    assert b.holder() is not None
    a.release()
    b.acquire()
    b.release()


def test_audit_text_is_sanitized(tmp_path):
    j = Journal(tmp_path / "j.db")
    j.audit(1.0, "a\ud800", "x", None, False, "r" * 5000)
    j.flush()
    agent, reason = j.query("SELECT agent, reason FROM audit")[0]
    assert agent == "a?" and len(reason) == 2000
    j.close()


def test_every_migration_has_a_higher_version():
    versions = [v for v, _ in MIGRATIONS]
    assert versions == sorted(set(versions)) and versions[0] == 1
