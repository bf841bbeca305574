"""Planner: valid-plan rate and plan latency (time until the first step may start), per tier.

Each tier (a planner model from ``llmos models``) plans a fixed set of varied requests,
written for this bench (not from any eval set), each in a fresh workspace, through the
real runner (``dry_run``: plan and check, run nothing) on an in-process kernel with the
embedded engine. A plan is valid when the runner reaches ``planned`` (it parsed, named
existing tools with well-typed arguments, passed the checks) or the model refused with
a reason; the grammar should make this 100 %. Latency is the run's planning time: the
moment its first step could start.

Baseline, in the same process: the first plan of a tier in a fresh state directory,
which pays for the fixed prompt prefix (rules, tools, worked examples); the measured
plans then find it in the engine's cache or its file on disk, as every later
``llmos run`` does. ratio = cold / warm p50.

    python bench/planner.py [--quick] [--tiers smollm2-135m,qwen2.5-coder-1.5b]

``--quick``: the default tier only, 3 requests. The last stdout line is the JSON of the
default tier, with ``valid_rate`` (0-1), ``p50_s`` and ``p95_s``.
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

REQUESTS = [
    ({"orders.csv": "id,city,total\n1,Oslo,30\n2,Rome,45\n3,Oslo,12\n"}, "which city spent the most in orders.csv?"),
    ({"todo.txt": "- water plants\n"}, "put 'renew passport' on my todo list"),
    ({}, "what's 18% of 2,450?"),
    ({"a.log": "ok\nERROR disk\n", "b.log": "ERROR net\nok\n"},
     "gather every ERROR line from the .log files into problems.txt"),
    ({"essay.txt": "Cities grow when jobs appear. Transport follows. Housing lags behind demand.\n"},
     "summarize essay.txt in one sentence"),
    ({}, "write fizz.py that prints fizzbuzz up to 15 and run it"),
    ({"x.tmp": "1", "notes.md": "hi\n"}, "delete the temporary files"),
    ({}, "book me a table for two at an italian restaurant tonight"),
]
TARGET_P50 = {"qwen2.5-coder-1.5b": 20.0, "smollm2-135m": 8.0}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def run_tier(model: str, requests: list, home: str) -> dict:
    from llmos.config import ensure_home, load_config
    from llmos.kernel import Kernel
    from llmos.runs import RunStatus
    from llmos.shell.runner import Runner
    from llmos.tools.registry import default_registry

    cfg = load_config(overrides={"home": home})
    ensure_home(cfg.home)
    kernel = await Kernel.boot(cfg, tools=default_registry())
    rows = []
    try:
        for n, (setup, request) in enumerate([requests[0], *requests]):
            with tempfile.TemporaryDirectory(prefix="bench-planner-") as d:
                for name, text in setup.items():
                    Path(d, name).write_text(text)
                t0 = time.monotonic()
                res = await Runner(kernel, user="bench", model=model).run(request, workdir=d, dry_run=True)
                took = res.record.timings.get("plan", time.monotonic() - t0)
                valid = res.status is RunStatus.PLANNED or res.answer.startswith("I can't do that")
                rows.append({"request": request, "seconds": round(took, 2), "valid": valid,
                             "cold": n == 0, "plan": [s.tool for s in res.steps], "answer": res.answer[:120]})
                print(f"  {model:<20} {'cold' if n == 0 else 'warm'} {took:6.1f}s "
                      f"{'valid' if valid else 'INVALID'} {request[:50]!r} -> {rows[-1]['plan'] or res.answer[:60]}",
                      file=sys.stderr, flush=True)
    finally:
        await kernel.shutdown()
    warm = [r for r in rows if not r["cold"]]
    lat = [r["seconds"] for r in warm]
    return {"model": model, "cold_s": rows[0]["seconds"], "p50_s": round(statistics.median(lat), 2),
            "p95_s": round(pct(lat, 0.95), 2), "valid_rate": round(sum(r["valid"] for r in warm) / len(warm), 3),
            "n": len(warm), "rows": rows}


def default_tier() -> tuple[str, str]:
    try:
        from llmos.config import load_config
        from llmos.hal import detect
        from llmos.llm.tiers import choose_planner

        hal = detect()
        try:
            info, why = choose_planner(hal.snapshot(), load_config())
        finally:
            hal.close()
        return info.name, why
    except Exception as e:  # noqa: BLE001 - no tier rule: the embedded default
        return "smollm2-135m", f"tier rule unavailable ({type(e).__name__})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tiers", help="comma list of planner models (default: every installed tier)")
    a = ap.parse_args()
    os.environ.setdefault("LLMOS_LOG", "warning")
    default, why = default_tier()
    if a.tiers:
        tiers = a.tiers.split(",")
    elif a.quick:
        tiers = [default]
    else:
        tiers = [default] + [t for t in ("smollm2-135m", "qwen2.5-coder-1.5b") if t != default]
    requests = REQUESTS[:3] if a.quick else REQUESTS
    print(f"planner bench: {len(requests)} requests; default tier {default} ({why})", file=sys.stderr)
    results = {}
    for t in tiers:
        with tempfile.TemporaryDirectory(prefix="bench-planner-home-") as home:
            try:
                results[t] = asyncio.run(run_tier(t, requests, home))
            except Exception as e:  # noqa: BLE001 - a tier that is not installed is reported, not fatal
                print(f"  {t}: skipped ({type(e).__name__}: {e})", file=sys.stderr)
    for t, r in results.items():
        print(f"{t:<20} valid {r['valid_rate']:.0%}  p50 {r['p50_s']:.1f} s  p95 {r['p95_s']:.1f} s  "
              f"cold {r['cold_s']:.1f} s  (n={r['n']})")
    main_t = default if default in results else next(iter(results), default)
    r = results.get(main_t, {"p50_s": float("nan"), "p95_s": float("nan"), "valid_rate": 0.0, "cold_s": float("nan")})
    target_p50 = TARGET_P50.get(main_t, 20.0)
    ok = r["valid_rate"] == 1.0 and r["p50_s"] <= target_p50
    print(json.dumps({
        "bench": "planner", "metric": "plan_p50_s", "value": r["p50_s"], "baseline": r["cold_s"],
        "ratio": round(r["cold_s"] / r["p50_s"], 2) if r["p50_s"] else None, "unit": "s",
        "target": f"valid_rate == 1 and p50_s <= {target_p50:g}", "ok": ok, "quick": a.quick,
        "tier": main_t, "valid_rate": r["valid_rate"], "p50_s": r["p50_s"], "p95_s": r["p95_s"],
        "tiers": {t: {k: v for k, v in x.items() if k != "rows"} for t, x in results.items()},
        "machine": {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine()}}))


if __name__ == "__main__":
    main()
