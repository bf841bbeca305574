"""Syscall dispatch cost: ``kernel.syscall("root", "proc.get", {...})`` vs the bare call.

Measures, in one process, per-call latency (perf_counter_ns) of
- ``bare``: ``kernel.view(kernel.procs.get(pid))`` awaited through a plain coroutine —
  the work the syscall does, without the door;
- ``syscall``: the full path — table lookup, capability check, pydantic validation,
  the handler's access check, the result value and the audit row (queued to the journal);
interleaved in rounds so both see the same machine. Also reports ``proc.list`` and a
durable ``proc.spawn`` (one fsync, group-committed) for context.

Last stdout line: JSON; target: syscall p50 <= 20 us.

    python bench/syscall.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time

from llmos.config import load_config
from llmos.kernel import Kernel


def pct(xs: list[int], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] / 1000.0   # ns -> us


async def main(quick: bool) -> dict:
    n = 20_000 if quick else 100_000
    rounds = 10
    home = tempfile.mkdtemp(prefix="llmos-bench-syscall-")
    k = await Kernel.boot(load_config(env={"LLMOS_HOME": home}), run_loop=False)
    try:
        pid = await k.submit("run", {"title": "bench"})
        args = {"pid": pid}

        async def bare(a: dict) -> dict:
            return k.view(k.procs.get(a["pid"]))

        for _ in range(2000):   # warm up both paths
            await bare(args)
            await k.syscall("root", "proc.get", args)
        t_bare: list[int] = []
        t_sys: list[int] = []
        per = n // rounds
        clock = time.perf_counter_ns
        for _ in range(rounds):
            for _ in range(per):
                t0 = clock()
                await bare(args)
                t_bare.append(clock() - t0)
            for _ in range(per):
                t0 = clock()
                res = await k.syscall("root", "proc.get", args)
                t_sys.append(clock() - t0)
            assert res.ok
            await k.journal.durable()     # audit rows drain between rounds
        t_list: list[int] = []
        for _ in range(per):
            t0 = clock()
            await k.syscall("root", "proc.list", {"limit": 1})
            t_list.append(clock() - t0)
        t_spawn: list[int] = []
        for _ in range(200 if quick else 1000):
            t0 = clock()
            await k.syscall("root", "proc.spawn", {"kind": "run"})
            t_spawn.append(clock() - t0)
    finally:
        await k.shutdown()
    p50, p99 = pct(t_sys, 0.5), pct(t_sys, 0.99)
    b50, b99 = pct(t_bare, 0.5), pct(t_bare, 0.99)
    table = {"bare_p50_us": b50, "bare_p99_us": b99, "syscall_p50_us": p50, "syscall_p99_us": p99,
             "proc_list_p50_us": pct(t_list, 0.5), "spawn_durable_p50_us": pct(t_spawn, 0.5),
             "spawn_durable_p99_us": pct(t_spawn, 0.99)}
    for key, v in table.items():
        print(f"{key:>24}: {v:9.1f}", file=sys.stderr)
    return {"bench": "syscall", "metric": "proc_get_p50_us", "value": round(p50, 2),
            "baseline": round(b50, 2), "ratio": round(p50 / b50, 2) if b50 else None, "unit": "us",
            "target": "value <= 20", "ok": p50 <= 20.0, "quick": quick,
            "p99_us": round(p99, 2), "baseline_p99_us": round(b99, 2),
            **{k: round(v, 2) for k, v in table.items()}, "calls": len(t_sys),
            "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
            "median_all_us": round(statistics.median(t_sys) / 1000, 2)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls (< 60 s)")
    out = asyncio.run(main(ap.parse_args().quick))
    print(json.dumps(out))
