"""The journal holds prompts, file contents, memory and the audit log: only its owner may
read it. The state directory is 0700 and every database file (with its -wal and -shm)
0600, for a fresh state directory and for one an older llmos left world-readable."""

from __future__ import annotations

import os
import sqlite3
import stat

from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import ToolRegistry


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def db_files(home) -> list:
    return sorted(p for p in home.iterdir() if p.name.endswith((".db", ".db-wal", ".db-shm")))


async def boot(config, clock) -> Kernel:
    return await Kernel.boot(config, engines={"fake": FakeEngine("ok")}, tools=ToolRegistry([]),
                             clock=clock, hal=FakeHAL(clock))


async def test_a_fresh_state_directory_is_private(config, clock):
    os.chmod(config.home, 0o755)                  # what mkdir under the usual umask gives
    k = await boot(config, clock)
    try:
        await k.submit("run", {"title": "r"})      # something written: -wal and -shm exist
        assert mode(config.home) == 0o700
        files = db_files(config.home)
        assert config.db_path in files and any(p.name.endswith("-wal") for p in files)
        for p in files:
            assert mode(p) == 0o600, (p.name, oct(mode(p)))
    finally:
        await k.shutdown()


async def test_boot_fixes_a_world_readable_journal(config, clock):
    k = await boot(config, clock)
    await k.submit("run", {"title": "r"})
    await k.shutdown()
    other = config.home / "shell.db"               # another database in the state directory
    sqlite3.connect(other).close()
    os.chmod(config.home, 0o755)
    for p in db_files(config.home):
        os.chmod(p, 0o644)
    k = await boot(config, clock)
    try:
        assert mode(config.home) == 0o700
        for p in db_files(config.home):
            assert mode(p) == 0o600, (p.name, oct(mode(p)))
    finally:
        await k.shutdown()
