"""Run a natural-language task file (the eval's format) in one process, on the real model.

Map:
- ``load(path)``: the cases (id, kind, request, setup, yes, check).
- ``check(case, ws, out)``: the case's check expression, with the eval runner's names
  (``ws``, ``out``, ``answer``, ``json``, ``has``) and its ``has`` rule.
- ``run_cases(cases, verbose) -> list[dict]``: boots one kernel (real engine, tools and
  sandbox; a temporary state directory), runs every case in a fresh workspace through
  ``shell.Runner`` and returns one row per case: passed, seconds, status, answer, and
  whether the planner produced a valid plan.
- ``main()``: ``python tests/e2e/heldout.py [--tasks FILE] [--only KIND] [--verbose]``
  prints one line per case, the pass count per kind and the mean time per case.

Same checks as ``../shared/eval/run_eval.py``, but the model loads once, so a whole
set takes minutes less; the CLI runner stays the reference for reported numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import re
import sys
import tempfile
import time
from collections import defaultdict
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
HELDOUT = HERE / "heldout_tasks.jsonl"


def load(path: str | pathlib.Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()]


def check(case: dict, ws: pathlib.Path, out: dict) -> bool:
    answer = str(out.get("answer", "")).lower()

    def has(token: str) -> bool:   # the eval's rule: '5' is found in '5' and '5.0', not in '15'
        return re.search(r"(?<![\w.])" + re.escape(token.lower()) + r"(?!\w|\.\d*[1-9])", answer) is not None

    names = {"__builtins__": __builtins__, "ws": ws, "out": out, "answer": answer, "json": json, "has": has}
    try:
        return bool(eval(case["check"], names))   # the task file's own expression, as the eval does
    except Exception:
        return False


async def _run_all(cases: list[dict], verbose: bool, model: str | None = None) -> list[dict]:
    import llmos.shell.planner as planner_mod
    from llmos.config import ensure_home, load_config
    from llmos.kernel import Kernel
    from llmos.shell.runner import Runner
    from llmos.shell.store import ShellStore
    from llmos.tools.registry import default_registry

    raw: list[str] = []
    parse = planner_mod.parse_model_output

    def recording_parse(text: str) -> Any:   # keep the planner's raw output for --verbose
        raw.append(text)
        return parse(text)
    planner_mod.parse_model_output = recording_parse
    rows = []
    with tempfile.TemporaryDirectory(prefix="heldout-home-") as home:
        cfg = load_config(overrides={"home": home})
        ensure_home(cfg.home)
        kernel = await Kernel.boot(cfg, tools=default_registry())
        store = ShellStore(cfg.home / "shell.db")
        try:
            for case in cases:
                with tempfile.TemporaryDirectory(prefix=f"heldout-{case['id']}-") as d:
                    ws = pathlib.Path(d)
                    for name, content in case.get("setup", {}).items():
                        p = ws / name
                        p.parent.mkdir(parents=True, exist_ok=True)
                        p.write_text(content)
                    raw.clear()
                    t0 = time.monotonic()
                    res = await Runner(kernel, store=store, user="heldout", model=model).run(
                        case["request"], workdir=ws, yes=case.get("yes", True))
                    took = time.monotonic() - t0
                    out = json.loads(res.to_json())
                    ok = check(case, ws, out)
                    rows.append({"id": case["id"], "kind": case["kind"], "passed": ok, "seconds": took,
                                 "status": res.status, "answer": res.answer,
                                 "valid_plan": "could not make a valid plan" not in res.answer,
                                 "steps": out["steps"], "notes": res.record.notes})
                    line = f"{'PASS' if ok else 'FAIL'} {case['id']:<24} {took:5.1f}s  {res.status:<18} {res.answer[:90]!r}"
                    print(line, flush=True)
                    if verbose:
                        calls = res.record.llm_calls
                        print("      llm:", "; ".join(f"{c.get('seconds')} s {c.get('usage')}" for c in calls),
                              flush=True)
                    if verbose and not ok:
                        for s in out["steps"]:
                            print("     ", json.dumps(s)[:400], flush=True)
                        for text in raw:
                            print("      model:", text[:600], flush=True)
        finally:
            await kernel.shutdown()
            store.close()
    return rows


def run_cases(cases: list[dict], verbose: bool = False, model: str | None = None) -> list[dict]:
    return asyncio.run(_run_all(cases, verbose, model))


def summary(rows: list[dict]) -> str:
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        per[r["kind"]][0] += r["passed"]
        per[r["kind"]][1] += 1
    total = sum(r["passed"] for r in rows)
    mean = sum(r["seconds"] for r in rows) / max(1, len(rows))
    invalid = sum(not r["valid_plan"] for r in rows)
    return (" ".join(f"{k} {p}/{n}" for k, (p, n) in sorted(per.items()))
            + f" | total {total}/{len(rows)} | invalid plans {invalid} | mean {mean:.1f} s/case")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default=str(HELDOUT))
    ap.add_argument("--only", help="a kind, or a comma list of case ids")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--model", help="the planner model (a name from `llmos models` or a .gguf path)")
    a = ap.parse_args()
    cases = load(a.tasks)
    if a.only:
        keep = set(a.only.split(","))
        cases = [c for c in cases if c["kind"] in keep or c["id"] in keep]
    os.environ.setdefault("LLMOS_LOG", "warning")
    rows = run_cases(cases, a.verbose, a.model)
    print(summary(rows))
    sys.exit(0)


if __name__ == "__main__":
    main()
