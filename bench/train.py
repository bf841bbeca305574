"""Training jobs: samples/s with 1 vs 2 data-parallel workers; checkpoint and resume time.

The same tiny MLP (synthetic data, DDP over gloo, one thread per worker) runs with 1 and
with 2 worker processes, interleaved (1, 2, 1, 2, ...); samples/s is measured from the
job's own progress log between the first step after warm-up and the last (process start,
torch import and process-group set-up are reported apart as ``start_s``). Then a 2-worker
run is killed with SIGKILL halfway (no warning: what ``kill -9`` does) and launched
again: it must resume from its last checkpoint and reproduce the uninterrupted run's loss
curve step for step (``ok``). ``checkpoint_s``: median time of one checkpoint (full state
dicts gathered, written, fsynced, renamed); ``resume_s``: launch to the first new step of
the resumed run, against ``start_s`` for a fresh one.

2 cores shared with other work: samples/s moves with the load (printed as load_avg).

Last stdout line: JSON; target: the resumed run's loss curve equals the uninterrupted one.

    python bench/train.py [--quick]
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
from pathlib import Path

from llmos.train.checkpoint import JobDir, latest, read_progress
from llmos.train.launcher import LocalLauncher
from llmos.train.spec import parse_spec

WARM = 5      # steps left out of samples/s (first-step allocations, gloo buffers)


def spec_for(workers: int, steps: int) -> dict:
    return {"name": f"bench-{workers}", "recipe": "ddp", "workers": workers, "steps": steps,
            "batch_size": 256, "checkpoint_every": 20, "lr": 0.01, "demand": {"cores": float(workers)},
            "dataset": {"kind": "synthetic", "samples": 8192, "features": 64}, "model": {"hidden": 512}}


async def run(job: JobDir, spec, *, kill_at: int | None = None) -> dict:
    job.create(spec.to_dict())
    lau = LocalLauncher(job, spec.workers, threads=1)
    t0 = time.perf_counter()
    await lau.start()
    me = lau.pids[0]                        # rank 0 writes the progress lines
    first: float | None = None
    while True:
        codes = await lau.wait(0.01)
        rows = [r for r in read_progress(job) if r.get("pid") == me]
        if first is None and rows:
            first = time.perf_counter() - t0
        if codes is not None:
            if any(codes):
                raise SystemExit(f"workers exited {codes}: {lau.tail(0)}")
            break
        if kill_at is not None and rows and rows[-1]["step"] >= kill_at:
            lau.kill()
            await lau.wait()
            break
    rows = [r for r in read_progress(job) if r.get("pid") == me]
    steady = rows[WARM:]
    sps = None
    if len(steady) >= 2:
        sps = spec.batch_size * (len(steady) - 1) / (steady[-1]["t"] - steady[0]["t"])
    return {"first_step_s": first, "samples_per_s": sps, "wall_s": time.perf_counter() - t0}


async def main(quick: bool) -> dict:
    steps = 60 if quick else 200
    reps = 1 if quick else 3
    root = Path(tempfile.mkdtemp(prefix="llmos-bench-train-"))
    sps: dict[int, list[float]] = {1: [], 2: []}
    starts: list[float] = []
    load0 = os.getloadavg()[0]
    for rep in range(reps):
        for workers in (1, 2):
            job = JobDir(root / f"w{workers}-{rep}")
            r = await run(job, parse_spec(spec_for(workers, steps)))
            sps[workers].append(r["samples_per_s"])
            starts.append(r["first_step_s"])
            print(f"workers={workers} rep={rep}: {r['samples_per_s']:.0f} samples/s, first step after "
                  f"{r['first_step_s']:.2f} s", file=sys.stderr)
    ref = latest(JobDir(root / f"w2-{reps - 1}"))
    # kill -9 halfway, resume, compare
    spec = parse_spec(spec_for(2, steps))
    job = JobDir(root / "killed")
    await run(job, spec, kill_at=steps // 2 + 3)
    at = latest(job).step
    res = await run(job, spec)
    curve = latest(job).losses
    same = len(curve) == len(ref.losses) and max(abs(a - b) for a, b in zip(curve, ref.losses, strict=True)) < 1e-6
    ck_s = [e["seconds"] for e in JobDir(root / "w2-0").read_events() if e["event"] == "checkpoint"]
    s1, s2 = statistics.median(sps[1]), statistics.median(sps[2])
    print(f"killed at step >= {steps // 2 + 3}, resumed from the step-{at} checkpoint; "
          f"curves equal: {same}; resume: first new step after {res['first_step_s']:.2f} s", file=sys.stderr)
    return {"bench": "train", "metric": "samples_per_s_2_workers", "value": round(s2, 1),
            "baseline": round(s1, 1), "ratio": round(s2 / s1, 3), "unit": "samples/s",
            "target": "resumed loss curve == uninterrupted (max |diff| < 1e-6)", "ok": bool(same),
            "quick": quick, "scaling_efficiency": round(s2 / (2 * s1), 3),
            "samples_per_s_1": [round(x, 1) for x in sps[1]], "samples_per_s_2": [round(x, 1) for x in sps[2]],
            "checkpoint_s": round(statistics.median(ck_s), 4) if ck_s else None,
            "resume_s": round(res["first_step_s"], 3), "start_s": round(statistics.median(starts), 3),
            "resumed_from": at, "steps": steps, "model": "mlp 64-512-512-4, batch 256, DDP/gloo, 1 thread/worker",
            "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "machine": f"{os.cpu_count()} cores, {platform.machine()}"}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and repetitions (< 60 s)")
    print(json.dumps(asyncio.run(main(ap.parse_args().quick))))
