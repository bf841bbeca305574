"""Live HiGHS placement vs list scheduling on a simulated mixed load.

The machine (simulated, figures stated below): two local llama.cpp engines (one on a
GPU: 4 lanes, fast, power-hungry; one on the CPU: 2 lanes, slow), a remote
OpenAI-compatible endpoint (8 lanes, mid speed, priced per token), the CPU (2 lanes:
tools and jobs) and a GPU device (1 lane, fast for jobs). Work arrives in bursts
(one every ``GAP_S`` seconds of simulated time, 8–30 processes each): generations
(50–600 tokens, any engine), jobs (1–12 units, CPU or GPU) and tools (0.2–2 s, CPU).

Each run is a discrete-event simulation on a fake clock. The kernel steps when a
burst arrives and whenever work ends; each step it dispatches from the queue, in
order, as many processes as it has free slots (``SLOTS``, the lanes in all) and places
each, as ``Kernel._place`` does; the rest stays queued. Resources run their
placements first-in first-out on their lanes; a placement's true run time is its predicted time × lognormal noise
(σ = 0.25, the allocator does not know it), and every finished run is fed back
(``Allocator.release(seconds=...)``: the allocator learns each resource's speed).

- baseline: ``Allocator.place`` alone (list scheduling, throughput mode);
- live: the same allocator with ``alloc.live.LiveSolver`` (HiGHS batches of the
  queue within ``LIVE_BUDGET_S``, backlog pinned, duals as prices), as the kernel runs it.

Same seeds, same arrivals, same noise for both, interleaved per seed. Reported: the
makespan (first arrival to last end), total cost, total joules (idle power over the
makespan + marginal power while busy), solver milliseconds per kernel step and per
batch (wall), batches used vs fallen back to list scheduling.

    python bench/alloc_live.py [--quick]
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import statistics
import sys

import numpy as np

from llmos.alloc import Allocator, Resource, Task
from llmos.alloc.live import LIVE_BUDGET_S, LiveSolver
from llmos.clock import FakeClock

GAP_S = 8.0           # simulated s between bursts (--gap)
NOISE = 0.25          # σ of log(true / predicted run time)
SLOTS = 17            # processes running at once (the kernel's slots; here the lanes in all)
SLOWER = {"engine:gpu": 1.3, "engine:cpu": 0.8, "remote:api": 1.5, "cpu": 1.0, "gpu:0": 1.2}  # true/stated time


def resources() -> list[Resource]:
    return [
        Resource("engine:gpu", kind="engine", lanes=4, speed=60.0, cost_per_unit=0.0, power_w=90.0,
                 idle_w=15.0, provides=frozenset({"llm"})),
        Resource("engine:cpu", kind="engine", lanes=2, speed=12.0, cost_per_unit=0.0, power_w=20.0,
                 idle_w=5.0, provides=frozenset({"llm"})),
        Resource("remote:api", kind="remote", lanes=8, speed=25.0, cost_per_unit=2e-5, power_w=30.0,
                 idle_w=0.0, provides=frozenset({"llm"})),
        Resource("cpu", kind="cpu", lanes=2, speed=1.0, cost_per_unit=0.0, power_w=15.0, idle_w=4.0,
                 provides=frozenset({"tool", "job", "cpu"})),
        Resource("gpu:0", kind="gpu", lanes=1, speed=3.0, cost_per_unit=0.0, power_w=200.0, idle_w=30.0,
                 provides=frozenset({"job", "gpu"})),
    ]


def workload(seed: int, bursts: int, gap_s: float = GAP_S) -> list[tuple[float, list[Task]]]:
    rng = np.random.default_rng(seed)
    out = []
    for b in range(bursts):
        tasks = []
        for i in range(int(rng.integers(8, 31))):
            kind = rng.choice(["llm", "job", "tool"], p=[0.5, 0.25, 0.25])
            name = f"b{b}.{i}"
            if kind == "llm":
                tasks.append(Task(name, kind="llm", work=float(rng.integers(50, 601)), needs=frozenset({"llm"})))
            elif kind == "job":
                tasks.append(Task(name, kind="job:train", work=float(rng.uniform(1, 12)), needs=frozenset({"job"})))
            else:
                tasks.append(Task(name, kind="tool:x", work=float(rng.uniform(0.2, 2)), needs=frozenset({"tool"})))
        out.append((b * gap_s, tasks))
    return out


def simulate(seed: int, bursts: int, live_on: bool, slots: int | None = SLOTS, gap_s: float = GAP_S) -> dict:
    clock = FakeClock()
    t_start = clock.monotonic()
    alloc = Allocator(resources(), mode="throughput", clock=clock)
    live = LiveSolver(alloc) if live_on else None
    if live is not None:
        live.wait_ready()
    noise = np.random.default_rng(seed + 1000)
    true_factor: dict[str, float] = {}                     # task name -> true/predicted (same for both runs)
    for _, tasks in workload(seed, bursts, gap_s):
        for t in tasks:
            true_factor[t.name] = float(np.exp(noise.normal(0.0, NOISE)))
    res = {r.name: r for r in resources()}
    fifo: dict[str, list] = {r: [] for r in res}           # placements waiting for a lane, in order
    free = {r: res[r].lanes for r in res}
    busy_s = dict.fromkeys(res, 0.0)
    cost = 0.0
    ends: list[tuple[float, int, object]] = []             # (time, seq, placement)
    seq = 0
    steps = 0
    last_end = 0.0

    def start_ready(now: float) -> None:
        nonlocal seq, cost
        for r in res:
            while free[r] > 0 and fifo[r]:
                pl = fifo[r].pop(0)
                free[r] -= 1
                alloc.started(pl, now=now)
                # true run time: the stated speed is off by a fixed factor per resource (learned
                # from releases), times this task's noise
                dur = pl.task.work / res[r].speed * SLOWER[r] * true_factor[pl.task.name]
                seq += 1
                heapq.heappush(ends, (now + dur, seq, pl, dur))
                busy_s[r] += dur
                cost += pl.task.work * (res[r].cost_per_unit or 0.0)

    arrivals = workload(seed, bursts, gap_s)
    ai = 0
    queue: dict[str, Task] = {}
    while ai < len(arrivals) or ends:
        t_next_arrival = t_start + arrivals[ai][0] if ai < len(arrivals) else float("inf")
        if ends and ends[0][0] <= t_next_arrival:
            now, _, pl, dur = heapq.heappop(ends)
            clock.advance(max(0.0, now - clock.monotonic()))
            free[pl.resource] += 1
            alloc.release(pl, seconds=dur, now=now)
            last_end = max(last_end, now)
        else:
            now = t_next_arrival
            clock.advance(max(0.0, now - clock.monotonic()))
            for t in arrivals[ai][1]:
                queue[t.name] = t
            ai += 1
        steps += 1                                         # the kernel steps on each event
        if queue:
            if live is not None:
                live.update(queue, "throughput", now=now)
            room = len(queue) if slots is None else slots - len(ends) - sum(len(f) for f in fifo.values())
            for name, t in list(queue.items())[: max(0, room)]:
                pl = alloc.place(t, now=now, solved=live.choice(name) if live else None)
                fifo[pl.resource].append(pl)
                del queue[name]
            if live is not None:
                live.update(queue, "throughput", now=now)   # spends the answers of the placed
        start_ready(now)
    makespan = last_end - t_start
    joules = sum(res[r].idle_w * res[r].lanes * makespan + (res[r].power_w - res[r].idle_w) * busy_s[r]
                 for r in res)
    out = {"makespan_s": makespan, "cost": cost, "joules": joules, "steps": steps}
    if live is not None:
        out.update(batches=live.solved, fallbacks=live.fallbacks, solver_ms=live.solver_s * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 seeds × 6 bursts instead of 10 × 12")
    ap.add_argument("--gap", type=float, default=GAP_S, help="simulated seconds between bursts (load)")
    args = ap.parse_args()
    if not args.gap > 0:
        ap.error(f"--gap: expected a positive number of seconds, got {args.gap}")
    seeds, bursts = (range(4), 6) if args.quick else (range(10), 12)
    print(f"simulated mixed load: {len(resources())} resources, {bursts} bursts of 8-30 processes "
          f"every {args.gap:g} s, {SLOTS} slots, "
          f"live budget {LIVE_BUDGET_S * 1e3:.0f} ms; load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores", file=sys.stderr)
    rows = []
    for s in seeds:
        base = simulate(s, bursts, live_on=False, gap_s=args.gap)
        live = simulate(s, bursts, live_on=True, gap_s=args.gap)
        row = {"seed": s, "list": base, "live": live,
               "makespan_ratio": live["makespan_s"] / base["makespan_s"],
               "cost_ratio": live["cost"] / base["cost"] if base["cost"] else None,
               "joules_ratio": live["joules"] / base["joules"]}
        rows.append(row)
        print(f"seed {s}: makespan {live['makespan_s']:.1f} s live vs {base['makespan_s']:.1f} s list "
              f"({row['makespan_ratio']:.3f}); cost {live['cost']:.4f} vs {base['cost']:.4f}; "
              f"joules {live['joules']:.0f} vs {base['joules']:.0f}; {live['batches']} batches "
              f"({live['fallbacks']} fell back), solver {live['solver_ms'] / live['steps']:.2f} ms/step",
              file=sys.stderr)
    ratio = statistics.geometric_mean([r["makespan_ratio"] for r in rows])
    cost_ratio = statistics.geometric_mean([r["cost_ratio"] for r in rows if r["cost_ratio"]])
    joules_ratio = statistics.geometric_mean([r["joules_ratio"] for r in rows])
    steps = sum(r["live"]["steps"] for r in rows)
    batches = sum(r["live"]["batches"] for r in rows)
    solver_ms = sum(r["live"]["solver_ms"] for r in rows)
    per_step = solver_ms / steps
    per_batch = solver_ms / max(1, batches + sum(r["live"]["fallbacks"] for r in rows))
    ok = ratio < 1.0 and per_step <= LIVE_BUDGET_S * 1e3
    print(json.dumps({
        "bench": "alloc_live", "metric": "makespan_live_over_list", "value": round(ratio, 4),
        "baseline": 1.0, "ratio": round(ratio, 4), "unit": "makespan ratio (geometric mean over seeds)",
        "target": f"ratio < 1 and solver_ms_per_step <= {LIVE_BUDGET_S * 1e3:g}", "ok": ok,
        "quick": args.quick, "gap_s": args.gap, "cost_ratio": round(cost_ratio, 4), "joules_ratio": round(joules_ratio, 4),
        "solver_ms_per_step": round(per_step, 3), "solver_ms_per_batch": round(per_batch, 3),
        "batches": batches, "fallbacks": sum(r["live"]["fallbacks"] for r in rows), "steps": steps,
        "budget_ms": LIVE_BUDGET_S * 1e3, "load_avg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "seeds": [{"seed": r["seed"], "makespan_ratio": round(r["makespan_ratio"], 4),
                   "cost_ratio": r["cost_ratio"] and round(r["cost_ratio"], 4),
                   "joules_ratio": round(r["joules_ratio"], 4)} for r in rows]}))


if __name__ == "__main__":
    main()
