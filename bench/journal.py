"""Durable process transitions per second: group commit vs one commit per transition.

Both runs go through the kernel's own path: ``ProcessTable.transition`` (row upsert +
history row on the journal's writer thread) followed by ``await journal.durable()``
(returns once fsynced; WAL, synchronous=FULL).

- ``baseline``: one writer; each transition waits for its own commit before the next,
  so every transition costs one commit (one fsync);
- ``group``: ``WRITERS`` concurrent writers (agents submitting at once); the writer
  thread commits whatever queued up during the previous fsync in one transaction.

Last stdout line: JSON; target: group commit >= 5,000 durable transitions/s.

    python bench/journal.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from llmos.kernel.process import ProcessTable, ProcState
from llmos.kernel.storage import Journal

WRITERS = 64
S = ProcState
CYCLE = (S.QUEUED, S.RUNNING, S.PREEMPTED, S.QUEUED)   # a legal loop of moves


async def run(path: Path, writers: int, per_writer: int) -> tuple[float, int, int]:
    j = Journal(path)
    table = ProcessTable(j, time.time)
    procs = [table.create(kind="llm", owner=f"a{i % 8}", spec={"prompt": "x"}) for i in range(writers)]
    for p in procs:
        table.transition(p, S.QUEUED, "admitted")
    await j.durable()
    c0 = j.commits

    async def writer(p) -> None:
        for i in range(per_writer):
            to = CYCLE[(i + 1) % len(CYCLE)]
            table.transition(p, to, "bench")
            await j.durable()

    t0 = time.perf_counter()
    await asyncio.gather(*(writer(p) for p in procs))
    dt = time.perf_counter() - t0
    commits = j.commits - c0
    rows = j.query("SELECT COUNT(*) FROM transitions")[0][0]
    j.close()
    return writers * per_writer / dt, commits, rows


async def main(quick: bool) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="llmos-bench-journal-"))
    n_base = 150 if quick else 600
    per = 60 if quick else 250
    base, base_commits, _ = await run(tmp / "base.db", 1, n_base)
    group, group_commits, rows = await run(tmp / "group.db", WRITERS, per)
    base2, _, _ = await run(tmp / "base2.db", 1, n_base)    # interleaved: the disk may drift
    baseline = (base + base2) / 2
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"one commit per transition: {baseline:8.0f}/s ({base_commits} commits for {n_base})",
          file=sys.stderr)
    print(f"group commit, {WRITERS} writers: {group:8.0f}/s ({group_commits} commits for "
          f"{WRITERS * per}, {WRITERS * per / max(1, group_commits):.1f} per commit)", file=sys.stderr)
    return {"bench": "journal", "metric": "durable_transitions_per_s", "value": round(group),
            "baseline": round(baseline), "ratio": round(group / baseline, 2), "unit": "transitions/s",
            "target": "value >= 5000", "ok": group >= 5000, "quick": quick, "writers": WRITERS,
            "transitions_per_commit": round(WRITERS * per / max(1, group_commits), 1),
            "history_rows": rows, "machine": f"{os.cpu_count()} cores, {platform.machine()}"}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer transitions (< 60 s)")
    print(json.dumps(asyncio.run(main(ap.parse_args().quick))))
