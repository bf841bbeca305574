"""Run ``llmos dev``'s agent on the held-out repositories; report pass rate, tries, seconds.

    python eval/dev/run.py [--quick] [--model NAME] [--tries N] [--cases a,b] [--home DIR]

For each case in ``eval/dev/cases/`` (see README.md there): the repository is copied;
its ``check`` command runs on the untouched copy first (the baseline: every case must
fail it, or the case proves nothing); then the agent runs on the copy, in one kernel
booted in this process for all cases (one model load, one case at a time), as ``llmos
dev --yes`` would: its edits reach the copy only when its own test run passes. Then the
copy's protected test files are put back as they were, the hidden tests are copied in,
and ``check`` decides pass or fail.

The model is the planner tier's (``llm.tiers``) unless ``--model`` names another (a
configured ``[[remote]]`` too). ``--quick``: the first two cases, one try each.
Progress goes to stderr; the last stdout line is one JSON object (../../shared/BENCH.md):
``value`` is the pass rate, ``baseline`` the pass rate of the untouched copies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
CHECK_TIMEOUT_S = 120


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check(repo: Path, command: str) -> tuple[bool, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        p = subprocess.run(["/bin/sh", "-c", command], cwd=repo, env=env, capture_output=True, text=True,
                           timeout=CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {CHECK_TIMEOUT_S} s"
    lines = [ln.strip() for ln in (p.stdout + p.stderr).strip().splitlines() if ln.strip()]
    said = [ln for ln in lines if "warn" not in ln.lower()] or lines   # pytest-asyncio's notice is noise
    return p.returncode == 0, (said[-1] if said else f"exit {p.returncode}")[:200]


def prepare(case: Path, work: Path) -> Path:
    dest = work / case.name
    shutil.copytree(case / "repo", dest)
    return dest


def finish_check(case: Path, task: dict, repo: Path) -> tuple[bool, str]:
    """Protected tests back as they were, hidden tests in, then the check command."""
    for rel in task.get("protect", []):
        shutil.copyfile(case / "repo" / rel, repo / rel)
    for rel in task.get("hidden", []):
        shutil.copyfile(case / "hidden" / rel, repo / rel)
    return check(repo, task["check"])


async def run_cases(cases: list[Path], model: str | None, tries: int, work: Path
                    ) -> tuple[list[dict[str, Any]], str | None]:
    from llmos.cli.daemon import boot_kernel
    from llmos.config import load_config
    from llmos.dev import DevAgent, apply_to_repo, open_local, open_repo, scratch_copy
    from llmos.shell.runner import planner_model

    cfg = load_config()
    kernel = await boot_kernel(cfg)
    rows: list[dict[str, Any]] = []
    try:
        if model is None:
            model, why = planner_model(kernel)
            log(f"model: {why}")
        for case in cases:
            task = json.loads((case / "task.json").read_text())
            base_repo = prepare(case, work / "baseline")
            for rel in task.get("hidden", []):
                shutil.copyfile(case / "hidden" / rel, base_repo / rel)
            base_ok, _ = check(base_repo, task["check"])
            repo_dir = prepare(case, work / "agent")
            repo = open_repo(repo_dir)
            scratch = scratch_copy(repo)
            t0 = time.monotonic()
            session = await open_local(kernel, scratch, model=model)
            try:
                res = await DevAgent(session, repo, scratch, tries=tries).run(task["request"])
            finally:
                shutil.rmtree(scratch.parent, ignore_errors=True)
            seconds = time.monotonic() - t0
            applied = apply_to_repo(res, repo) if res.passed else []
            ok, last = finish_check(case, task, repo_dir)
            row = {"case": case.name, "kind": task.get("kind"), "pass": ok, "baseline_pass": base_ok,
                   "agent": res.outcome.word, "tries_used": len(res.tries),
                   "rejected": [t.reason for t in res.tries if not t.applied], "applied": applied,
                   "seconds": round(seconds, 1), "check": last,
                   "llm_s": round(sum(c["seconds"] for c in session.llm_calls), 1),
                   "tokens_out": sum((c.get("usage") or {}).get("completion_tokens", 0)
                                     for c in session.llm_calls)}
            rows.append(row)
            log(f"{case.name:16s} {'PASS' if ok else 'fail'}  agent={row['agent']:9s} tries={row['tries_used']} "
                f"{row['seconds']:6.1f} s  (llm {row['llm_s']} s)  {last}"
                + (f"  rejected: {'; '.join(r[:80] for r in row['rejected'])}" if row["rejected"] else ""))
    finally:
        await kernel.shutdown()
    return rows, model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the first two cases, one try each")
    ap.add_argument("--model", default=None, help="model name (default: the planner tier)")
    ap.add_argument("--tries", type=int, default=3)
    ap.add_argument("--cases", default=None, help="comma-separated case names")
    ap.add_argument("--home", default=None, help="state directory (default: a fresh temporary one)")
    args = ap.parse_args()
    cases = sorted(p for p in CASES.iterdir() if (p / "task.json").is_file())
    if args.cases:
        names = set(args.cases.split(","))
        cases = [c for c in cases if c.name in names]
    tries = args.tries
    if args.quick:
        cases, tries = cases[:2], 1
    home = args.home or tempfile.mkdtemp(prefix="llmos-eval-home-")
    os.environ["LLMOS_HOME"] = home
    os.environ.setdefault("LLMOS_SHELL_MEMORY", "0")
    work = Path(tempfile.mkdtemp(prefix="llmos-eval-dev-"))
    t0 = time.monotonic()
    try:
        rows, model = asyncio.run(run_cases(cases, args.model, tries, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)
    n = len(rows)
    rate = sum(r["pass"] for r in rows) / n if n else 0.0
    base = sum(r["baseline_pass"] for r in rows) / n if n else 0.0
    by_kind: dict[str, list[int]] = {}
    for r in rows:
        by_kind.setdefault(r["kind"] or "?", []).append(int(r["pass"]))
    summary = {"bench": "dev", "metric": "pass_rate", "value": round(rate, 3), "baseline": round(base, 3),
               "ratio": None, "unit": "fraction of cases", "target": "value > baseline",
               "ok": rate > base, "quick": args.quick, "model": model,
               "cases": n, "passed": sum(r["pass"] for r in rows), "tries": tries,
               "tries_used_mean": round(sum(r["tries_used"] for r in rows) / n, 2) if n else None,
               "seconds_per_case": round(sum(r["seconds"] for r in rows) / n, 1) if n else None,
               "by_kind": {k: f"{sum(v)}/{len(v)}" for k, v in by_kind.items()},
               "total_s": round(time.monotonic() - t0, 1), "rows": rows}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
