"""The Ray executor: per-step overhead against the local executor, and throughput as
workers are added (Ray nodes on this machine standing in for machines).

Setup: a Ray head in this process (``ray.cluster_utils.Cluster``) with no CPUs (it only
schedules), and worker nodes with one CPU each, each started by ``ray start --block`` in
a session of its own, so "N workers" is N separate raylets, each running one task at a
time, as N one-core machines would. Linux shares the CPUs between sessions (autogroup
scheduling), so a node gets its own share of this busy machine, as a machine would have
its own cores; nodes in one session would split one share. Every process is stopped by
PID at the end (a node: SIGTERM to its ``ray start``; the head: ``Cluster.shutdown``) and
checked gone.

1. Overhead. The same steps go through ``LocalExecutor`` and ``RayExecutor``
   (``calc.eval``, a read-only builtin tool: Ray runs it on a worker through the same
   ``ToolRegistry.call``), with 2 worker nodes up:
   - batched: N steps in one plan, wall time / N (the executor's per-step cost when
     work is plentiful; Ray's own batched submit is about 0.75 ms here);
   - one at a time: the latency of a single step through each.
   Overhead = Ray minus local, per step; the rounds alternate local / Ray. A third
   driver sends the same steps with the node the kernel's allocator would have chosen
   (``Work.node``, the two nodes in turn: Ray's soft node affinity), and the cluster view
   the placer reads every second (``ClusterView.nodes``) is timed.
2. Scaling. M CPU-bound jobs (each a fixed loop, about 0.1 s of one core) through the
   Ray executor with 1 worker node, then 2, alternating (a node is added, then removed
   again); throughput = jobs / wall s; efficiency = (throughput with 2 / with 1) / 2.
   Each job also reports when it ran, so the share of the time the workers were busy
   (the executor's dispatch, apart from how fast the shared cores ran the jobs) is shown.

Target: batched overhead <= 5 ms a step and efficiency >= 0.7 with 2 workers.

The machine has 2 cores shared with other work: the head's own processes (GCS,
raylets, this driver) compete with the two workers for them, so the 2-worker figure
is a floor. The load average before and after is printed with the result.

    python bench/ray.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

# this file is named ray.py: its folder must not shadow the ray package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

STEPS_QUICK, STEPS_FULL = 200, 1000         # batched steps per round
SEQ_QUICK, SEQ_FULL = 30, 200               # one-at-a-time steps per round
JOBS_QUICK, JOBS_FULL = 12, 32              # CPU-bound jobs per scaling round
ROUNDS_QUICK, ROUNDS_FULL = 2, 4            # alternations of each comparison
JOB_ITERS = 1_500_000                       # loop iterations of one job (about 0.1 s on an idle core)


def busy(iters: int) -> list[float]:
    """A CPU-bound job: a fixed amount of pure-Python work (no I/O, no GIL release);
    returns when it ran (wall clock of this machine, s)."""
    t0, c0 = time.time(), time.process_time()
    acc = 0
    for i in range(iters):
        acc = (acc + i * i) % 1_000_003
    return [t0, time.time(), time.process_time() - c0, os.getpid(), float(acc)]


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Node:
    """One worker node: ``ray start --address HEAD --num-cpus 1 --block`` in a session of
    its own, as a separate machine would be (the kernel's autogroup scheduler shares the
    CPUs between sessions, so nodes in the driver's session would split one share).
    Stopped by SIGTERM to that process's PID; its session's processes are checked gone."""

    def __init__(self, address: str) -> None:
        import subprocess

        ray_cli = str(Path(sys.executable).with_name("ray"))
        self.proc = subprocess.Popen(
            [ray_cli, "start", "--address", address, "--num-cpus", "1", "--object-store-memory",
             str(80 << 20), "--block", "--disable-usage-stats"], start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def session_pids(self) -> list[int]:
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if os.getsid(int(d)) == self.proc.pid:
                        out.append(int(d))
                except OSError:
                    pass
        return out

    def stop(self) -> list[int]:
        """Stop the node: SIGTERM to its ``ray start``, which stops what it started; what is
        still running in its session after 20 s is SIGKILLed, by PID, and returned."""
        import signal

        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except Exception:
            pass
        end = time.monotonic() + 20
        left = [p for p in self.session_pids() if _running(p)]
        while left and time.monotonic() < end:
            time.sleep(0.2)
            left = [p for p in self.session_pids() if _running(p)]
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.wait(5)
        return left


class Driver:
    """An executor with a claim over hand-built Works; ``go(works)`` runs them all."""

    def __init__(self, make):
        self.works = {}

        async def claim(pids):
            return {p: self.works[p] for p in pids if p in self.works}
        self.ex = make(claim)
        self.next_pid = 1

    async def go(self, works, spans: list | None = None) -> float:
        from llmos.kernel.sched import Plan

        pids = []
        for w in works:
            w.pid = self.next_pid
            self.next_pid += 1
            self.works[w.pid] = w
            pids.append(w.pid)
        t0 = time.perf_counter()
        done: set[int] = set()
        plan = Plan(run=list(pids))
        while len(done) < len(pids):
            out = await self.ex.run(plan)
            plan = Plan()
            for pid, res in out.results.items():
                if not res.ok:
                    raise SystemExit(f"bench: step {pid} failed: {res.error}")
                if spans is not None:
                    spans.append(res.value[:4])
            done |= out.finished
        return time.perf_counter() - t0


def tool_work(ws: str):
    from llmos.executor.base import Work

    return Work(0, "tool", "root", 0, {"tool": "calc.eval", "args": {"expression": "6 * 7"}, "risk": "read",
                                      "idempotent": True}, workdir=ws, read_roots=(ws,), write_roots=(ws,))


def job_work():
    import functools

    from llmos.executor.base import Work

    return Work(0, "job", "root", 0, {"type": "busy", "idempotent": True}, call=functools.partial(busy, JOB_ITERS))


async def overhead(local: Driver, remote: Driver, ws: str, steps: int, seq: int, rounds: int,
                   nodes: tuple[str, ...] = ()) -> dict:
    import itertools

    batched = {"local": [], "ray": [], "placed": []}
    single = {"local": [], "ray": [], "placed": []}
    turn = itertools.cycle(nodes)

    def works(name: str, n: int) -> list:
        out = [tool_work(ws) for _ in range(n)]
        for w in out if name == "placed" else ():
            w.node = next(turn)                                   # the allocator's node, in turn
        return out
    await remote.go(works("ray", 20))                             # warm the workers (imports)
    await local.go(works("local", 20))
    for r in range(rounds):
        order = [("local", local), ("ray", remote), ("placed", remote)]
        for name, d in order if r % 2 == 0 else order[::-1]:
            batched[name].append(await d.go(works(name, steps)) / steps * 1000)
        for name, d in order if r % 2 == 0 else order[::-1]:
            ts = [await d.go(works(name, 1)) for _ in range(seq)]
            single[name].append(statistics.median(ts) * 1000)
    out = {k: {n: statistics.median(v) for n, v in d.items()} for k, d in
           (("batched_ms", batched), ("single_ms", single))}
    print(f"per step, batched ({steps} in one plan): local {out['batched_ms']['local']:.3f} ms, "
          f"ray {out['batched_ms']['ray']:.3f} ms  (rounds: local {fmt(batched['local'])}, "
          f"ray {fmt(batched['ray'])})", file=sys.stderr)
    print(f"per step, one at a time (median): local {out['single_ms']['local']:.3f} ms, "
          f"ray {out['single_ms']['ray']:.3f} ms  (rounds: local {fmt(single['local'])}, "
          f"ray {fmt(single['ray'])})", file=sys.stderr)
    print(f"placed on a node (soft affinity): batched {out['batched_ms']['placed']:.3f} ms, one at a time "
          f"{out['single_ms']['placed']:.3f} ms  (rounds: {fmt(batched['placed'])}; {fmt(single['placed'])})",
          file=sys.stderr)
    return out


def fmt(xs) -> str:
    return "/".join(f"{x:.2f}" for x in xs)


async def scaling(address: str, remote: Driver, extra: list, jobs: int, rounds: int, wait_nodes) -> dict:
    """Throughput with 1 and 2 worker nodes, alternating; ``extra[0]`` is the second node."""
    tput: dict[int, list[float]] = {1: [], 2: []}
    busy_share: dict[int, list[float]] = {1: [], 2: []}
    await remote.go([job_work() for _ in range(4)])               # warm both workers
    for r in range(rounds):
        for n in ((2, 1) if r % 2 == 0 else (1, 2)):
            if n == 1 and extra[0] is not None:
                extra.append(extra[0].stop())          # what it left running (checked at the end)
                extra[0] = None
                wait_nodes(2)
            elif n == 2 and extra[0] is None:
                extra[0] = Node(address)
                wait_nodes(3)
                await remote.go([job_work() for _ in range(4)])   # the new node's worker starts
            spans: list = []
            wall = await remote.go([job_work() for _ in range(jobs)], spans)
            tput[n].append(jobs / wall)
            share = sum(b - a for a, b, _, _ in spans) / (n * wall)   # how busy the executor kept the workers
            cpu = sum(c for _, _, c, _ in spans) / wall                # cores' worth the jobs got
            busy_share[n].append(share)
            print(f"  round {r + 1}: {n} worker(s): {jobs} jobs in {wall:.2f} s = {jobs / wall:.2f} jobs/s; "
                  f"workers busy {share:.0%} of the time, {len({p for *_, p in spans})} worker processes, "
                  f"the jobs got {cpu:.2f} cores", file=sys.stderr)
    t1, t2 = statistics.median(tput[1]), statistics.median(tput[2])
    return {"jobs_per_s": {"1": t1, "2": t2}, "efficiency_2": t2 / t1 / 2,
            "rounds": {"1": tput[1], "2": tput[2]},
            "workers_busy": {str(k): statistics.median(v) for k, v in busy_share.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and rounds (under a minute)")
    a = ap.parse_args()
    q = a.quick
    steps, seq = (STEPS_QUICK, SEQ_QUICK) if q else (STEPS_FULL, SEQ_FULL)
    jobs, rounds = (JOBS_QUICK, ROUNDS_QUICK) if q else (JOBS_FULL, ROUNDS_FULL)
    load0 = os.getloadavg()[0]
    t_start = time.perf_counter()

    import ray
    from ray import cloudpickle
    from ray.cluster_utils import Cluster

    from llmos.executor.local import LocalExecutor
    from llmos.executor.ray import RayExecutor
    from llmos.executor.ray_connect import RayConnection
    from llmos.hal.cluster import ClusterView, ray_reader
    from llmos.tools.registry import default_registry

    if __name__ != "__main__":        # __main__'s functions travel by value already
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "object_store_memory": 80 << 20})
    ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)

    def wait_nodes(n: int) -> None:
        for _ in range(2400):
            if sum(1 for x in ray.nodes() if x["Alive"]) == n:
                return
            time.sleep(0.05)
        raise RuntimeError(f"the cluster did not reach {n} nodes in 120 s")

    first, extra = None, [None]
    try:
        first = Node(cluster.address)
        wait_nodes(2)
        extra[0] = Node(cluster.address)
        wait_nodes(3)
    except BaseException:
        for node in (first, extra[0]):
            if node is not None:
                node.stop()
        ray.shutdown()
        cluster.shutdown()
        raise

    start_s = time.perf_counter() - t0
    pids = [p.process.pid for node in cluster.list_all_nodes() for ps in node.all_processes.values() for p in ps]
    print(f"ray cluster: head (0 CPUs) + 2 worker nodes (1 CPU each, each in its own session) started "
          f"in {start_s:.1f} s", file=sys.stderr)
    tools = default_registry()
    conn = RayConnection(cluster.address, False, view=ClusterView(ray_reader(), address=cluster.address),
                         owner=False)
    try:
        with tempfile.TemporaryDirectory() as ws:
            async def run() -> tuple[dict, dict]:
                local = Driver(lambda claim: LocalExecutor(claim, tools=tools))
                remote = Driver(lambda claim: RayExecutor(claim, connection=conn, tools=tools))
                try:
                    nodes = tuple(n.node_id for n in conn.view.nodes() if n.cpus > 0)
                    reads = []
                    for _ in range(20):                   # what the placer reads every second
                        t = time.perf_counter()
                        conn.view.nodes()
                        reads.append((time.perf_counter() - t) * 1000)
                    ov = await overhead(local, remote, ws, steps, seq, rounds, nodes)
                    ov["nodes_read_ms"] = statistics.median(reads)
                    sc = await scaling(cluster.address, remote, extra, jobs, rounds, wait_nodes)
                finally:
                    await local.ex.close()
                    await remote.ex.close()
                return ov, sc
            ov, sc = asyncio.run(run())
    finally:
        stragglers = first.stop() + (extra[0].stop() if extra[0] is not None else [])   # by PID
        stragglers += [p for st in extra[1:] for p in st]
        ray.shutdown()
        cluster.shutdown()            # the head's processes, by their PIDs
    time.sleep(0.5)
    left = [p for p in pids + stragglers if _running(p)]
    load1 = os.getloadavg()[0]
    over = ov["batched_ms"]["ray"] - ov["batched_ms"]["local"]
    over_single = ov["single_ms"]["ray"] - ov["single_ms"]["local"]
    eff = sc["efficiency_2"]
    over_placed = ov["batched_ms"]["placed"] - ov["batched_ms"]["local"]
    print(f"overhead per step: batched {over:.3f} ms, one at a time {over_single:.3f} ms; placed on a node: "
          f"batched {over_placed:.3f} ms; reading the cluster's nodes {ov['nodes_read_ms']:.2f} ms",
          file=sys.stderr)
    print(f"scaling: 1 worker {sc['jobs_per_s']['1']:.2f} jobs/s, 2 workers {sc['jobs_per_s']['2']:.2f} jobs/s, "
          f"efficiency {eff:.2f}", file=sys.stderr)
    print(f"load average {load0:.2f} before, {load1:.2f} after; head processes left running: {len(left)}",
          file=sys.stderr)
    ok = max(over, over_placed) <= 5.0 and eff >= 0.7 and not left
    print(json.dumps({
        "bench": "ray", "metric": "per_step_overhead_ms", "value": round(over, 3),
        "baseline": round(ov["batched_ms"]["local"], 3), "ray_ms": round(ov["batched_ms"]["ray"], 3),
        "ratio": round(ov["batched_ms"]["ray"] / ov["batched_ms"]["local"], 2), "unit": "ms",
        "target": "overhead <= 5 ms a step (batched) and efficiency >= 0.7 with 2 workers", "ok": ok,
        "quick": q, "overhead_single_ms": round(over_single, 3), "placed_overhead_ms": round(over_placed, 3),
        "placed_ms": {k: round(ov[k]["placed"], 3) for k in ("batched_ms", "single_ms")},
        "nodes_read_ms": round(ov["nodes_read_ms"], 3),
        "single_ms": {k: round(v, 3) for k, v in ov["single_ms"].items() if k != "placed"},
        "jobs_per_s": {k: round(v, 3) for k, v in sc["jobs_per_s"].items()}, "efficiency_2": round(eff, 3),
        "rounds_jobs_per_s": {k: [round(x, 3) for x in v] for k, v in sc["rounds"].items()},
        "workers_busy": {k: round(v, 3) for k, v in sc["workers_busy"].items()},
        "cluster_start_s": round(start_s, 2), "processes_left": len(left),
        "node_processes_sigkilled": len(stragglers),
        "load_avg": [round(load0, 2), round(load1, 2)], "wall_s": round(time.perf_counter() - t_start, 1),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "ray": ray.__version__}))


if __name__ == "__main__":
    main()
