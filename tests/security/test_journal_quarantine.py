"""A damaged journal must not keep the daemon from starting. A process row that cannot
be read is quarantined (marked failed, its pid logged) and the kernel boots; a file
that is not a database at all is one clear line with a restore hint, never a traceback."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys

import pytest

from llmos.errors import JournalError
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel, ProcState
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import ToolRegistry

LLMOS = os.path.join(os.path.dirname(sys.executable), "llmos")


async def boot(config, clock, **kw) -> Kernel:
    return await Kernel.boot(config, engines={"fake": FakeEngine("ok")}, tools=ToolRegistry([]),
                             clock=clock, hal=FakeHAL(clock), **kw)


@pytest.mark.parametrize("column,value", [("state", 99), ("spec", "{not json"), ("state", "x"),
                                          ("result", "[1,"), ("kind", None)])
async def test_a_bad_process_row_is_quarantined_and_the_kernel_boots(config, clock, caplog, column, value):
    k = await boot(config, clock, run_loop=False)
    good = await k.submit("run", {"title": "good"})
    bad = await k.submit("run", {"title": "bad"})
    await k.shutdown()
    db = sqlite3.connect(config.db_path)
    if column == "kind":                     # NOT NULL in the schema: only a damaged file has it
        db.execute("PRAGMA writable_schema=ON")
        db.execute("UPDATE processes SET kind=x'ff' WHERE pid=?", (bad,))
    else:
        db.execute(f"UPDATE processes SET {column}=? WHERE pid=?", (value, bad))
    db.commit()
    db.close()
    caplog.set_level(logging.WARNING)
    k = await boot(config, clock, run_loop=False)
    try:
        p = k.procs.get(bad)
        assert p.state == ProcState.FAILED and "quarantined" in p.reason
        assert bad in k.recovery.quarantined
        assert k.procs.get(good).state != ProcState.FAILED
        assert any(f"pid {bad}" in r.getMessage() for r in caplog.records)
        res = await k.syscall("root", "proc.get", {"pid": bad})
        assert res.ok and res.value["state"] == "failed"
        assert await k.submit("run", {"title": "after"}) > bad       # pids go on counting
    finally:
        await k.shutdown()
    k = await boot(config, clock, run_loop=False)                     # the quarantine was journaled
    try:
        assert k.procs.get(bad).state == ProcState.FAILED and k.recovery.quarantined == []
    finally:
        await k.shutdown()


async def test_a_file_that_is_not_a_database_is_one_line_with_a_restore_hint(config, clock):
    config.home.mkdir(exist_ok=True)
    config.db_path.write_bytes(b"this is not a database, it is a shopping list\n" * 200)
    with pytest.raises(JournalError) as e:
        await boot(config, clock)
    msg = str(e.value)
    assert "\n" not in msg and "not a database" in msg and str(config.db_path) in msg
    assert "disk space" not in (e.value.hint or "") and "backup" in e.value.hint


def test_serve_on_a_file_that_is_not_a_database_says_so_in_one_line(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "llmos.db").write_bytes(b"garbage " * 1000)
    env = {**os.environ, "LLMOS_HOME": str(home)}
    r = subprocess.run([LLMOS, "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "not a database" in r.stderr and "backup" in r.stderr
    assert "disk space" not in r.stderr
