"""The planner-tier model against the embedded default: load time, memory, prompt and decode speed.

Each model runs in its own child process (so RSS is its own), through the embedded
engine as the kernel builds it (``LlamaCppEngine`` from the registry, batch-invariant
default) with ``threads`` engine threads (default 2):
- ``load_s``: engine constructed and started (GGUF mapped, context allocated);
- ``rss_mib``: resident memory after the runs (weights paged in, KV cache allocated);
- ``prompt_tok_s``: a ~400-token chat prompt, prompt tokens / time to first token (median);
- ``decode_tok_s``: greedy generation of up to 96 tokens, tokens after the first / their time.

The baseline is SmolLM2-135M (``smollm2-135m``); the measured model is
``qwen2.5-coder-1.5b`` (installed by ``make``). The ratio is decode speed, 1.5B / 135M.
Target: the 1.5B decodes at least 5 tok/s (a 150-token plan in 30 s). ``--threads 1`` is
the engine's own default on a 2-core machine (all cores but one).
Last stdout line: JSON.

    python bench/planner_model.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time

BASELINE, MEASURED = "smollm2-135m", "qwen2.5-coder-1.5b"
TARGET_DECODE_TOK_S = 5.0

CONTEXT = "\n".join(f"- sales_{m}.csv: columns date, region, product, units, price; {100 + 7 * m} rows"
                    for m in range(1, 25))
QUESTION = "Which files would you read to plot monthly revenue by region? Answer in one sentence."


async def child(name: str, threads: int, reps: int) -> dict:
    import psutil

    from llmos.config import load_config
    from llmos.llm.base import GenerationRequest, SamplingParams
    from llmos.llm.llamacpp import LlamaCppEngine

    cfg = load_config()
    cfg = cfg.replace(engine=dataclasses.replace(cfg.engine, threads=threads))
    t0 = time.perf_counter()
    eng = LlamaCppEngine.from_config(cfg, name)
    await eng.start()
    load_s = time.perf_counter() - t0
    long = (
        {"role": "system", "content": "You plan tasks over the files of a workspace.\n" + CONTEXT},
        {"role": "user", "content": QUESTION},
    )
    prompt, decode = [], []
    n_prompt = n_out = 0
    text = ""
    for _ in range(reps):
        eng.clear_prefix_cache()
        done = await eng.generate(GenerationRequest(messages=long, params=SamplingParams(max_tokens=1)))
        n_prompt = done.usage.prompt_tokens
        prompt.append(n_prompt / done.usage.ttft_s)
        eng.clear_prefix_cache()
        done = await eng.generate(GenerationRequest(
            messages=({"role": "user", "content": "Write a Python function that returns the n-th "
                                                  "Fibonacci number, with a docstring."},),
            params=SamplingParams(max_tokens=96)))
        n_out, text = done.usage.completion_tokens, done.text
        if n_out > 1 and done.usage.decode_s > 0:
            decode.append((n_out - 1) / done.usage.decode_s)
    rss = psutil.Process().memory_info().rss
    await eng.close()
    return {"model": name, "load_s": round(load_s, 2), "rss_mib": round(rss / 2**20),
            "prompt_tokens": n_prompt, "prompt_tok_s": round(statistics.median(prompt), 1),
            "decode_tokens": n_out, "decode_tok_s": round(statistics.median(decode), 1),
            "sample": text[:120]}


def run_child(name: str, threads: int, reps: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", name, "--threads", str(threads),
                          "--reps", str(reps)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{name}: the child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(quick: bool, threads: int) -> dict:
    reps = 1 if quick else 3
    rows = {}
    for name in (BASELINE, MEASURED):
        rows[name] = r = run_child(name, threads, reps)
        print(f"{name:20s} load {r['load_s']:5.2f} s  RSS {r['rss_mib']:5d} MiB  prompt "
              f"{r['prompt_tok_s']:6.1f} tok/s ({r['prompt_tokens']} tokens)  decode {r['decode_tok_s']:5.1f} tok/s",
              file=sys.stderr)
    value, baseline = rows[MEASURED]["decode_tok_s"], rows[BASELINE]["decode_tok_s"]
    return {"bench": "planner_model", "metric": "decode_tok_per_s_1.5b", "value": value,
            "baseline": baseline, "ratio": round(value / baseline, 3), "unit": "tok/s",
            "target": f"value >= {TARGET_DECODE_TOK_S:g}", "ok": bool(value >= TARGET_DECODE_TOK_S),
            "quick": quick, "threads": threads, "reps": reps, "models": rows,
            "machine": {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine()}}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repetition (< 60 s)")
    ap.add_argument("--threads", type=int, default=2, help="engine threads (default 2)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, default=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.child, args.threads, args.reps))))
    else:
        print(json.dumps(main(args.quick, args.threads)))
