"""Embedded engine throughput: continuous batching vs one-at-a-time vs a bare llama.cpp loop.

Measures, in one process on the default model (SmolLM2-135M Q4_1):
- ``sequential``: the same 8 requests one after another through the engine (the baseline);
- ``engine[N]``: N concurrent requests through the engine, N = 1, 2, 4, 8, 16
  (aggregate completion tok/s, submit of the first → end of the last);
- ``raw[N]``: a bare batched loop on ``llmos.llm._llama`` (one llama_batch per
  step, numpy argmax), same prompts and token counts;
- ``ttft_under_load``: time to first token of a new request while 8 are decoding.

Engine and raw runs are interleaved and repeated; each figure is the median.
Last stdout line: JSON with ratio (engine N=8 / sequential, target >= 1.7),
vs_raw (engine N=8 / raw N=8, target >= 0.95) and ttft_under_load_s (<= 0.5).

    python bench/engine.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

from llmos.config import EngineConfig
from llmos.llm import _llama
from llmos.llm.base import GenerationRequest, SamplingParams
from llmos.llm.llamacpp import LlamaCppEngine

NS = (1, 2, 4, 8, 16)


def prompts(n: int) -> list[str]:
    return [f"Story number {i}. Once upon a time, in a small village by the sea, there lived a"
            for i in range(n)]


def req(p: str, m: int) -> GenerationRequest:
    return GenerationRequest(prompt=p, params=SamplingParams(max_tokens=m))


async def engine_run(eng: LlamaCppEngine, n: int, m: int) -> tuple[float, list[int]]:
    eng.clear_prefix_cache()
    t0 = time.perf_counter()
    done = await asyncio.gather(*(eng.generate(req(p, m)) for p in prompts(n)))
    dt = time.perf_counter() - t0
    counts = [d.usage.completion_tokens for d in done]
    return sum(counts) / dt, counts


async def sequential_run(eng: LlamaCppEngine, n: int, m: int) -> float:
    toks, t0 = 0, time.perf_counter()
    for p in prompts(n):
        eng.clear_prefix_cache()
        toks += (await eng.generate(req(p, m))).usage.completion_tokens
    return toks / (time.perf_counter() - t0)


def raw_run(eng: LlamaCppEngine, n: int, counts: list[int]) -> float:
    """A bare continuous-decoding loop: all prompts prefilled in one batch, then one
    token per sequence per step, each sequence stopping after as many tokens as the
    engine produced for it."""
    model, ctx = eng._model, eng._ctx
    batch = _llama.Batch(ctx.n_batch)
    ctx.clear()
    toks = [model.tokenize(p) for p in prompts(n)]
    t0 = time.perf_counter()
    batch.clear()
    for s, t in enumerate(toks):
        batch.add(t, 0, s, True)
    ctx.decode(batch)
    nxt = ctx.logits(n).argmax(axis=1)
    pos = np.array([len(t) for t in toks])
    left = np.array(counts) - 1
    produced = n
    while (left > 0).any():
        live = np.flatnonzero(left > 0)
        batch.clear()
        for s in live:
            batch.add((int(nxt[s]),), int(pos[s]), int(s), True)
        ctx.decode(batch)
        nxt[live] = ctx.logits(len(live)).argmax(axis=1)
        pos[live] += 1
        left[live] -= 1
        produced += len(live)
    dt = time.perf_counter() - t0
    ctx.clear()
    return produced / dt


async def ttft_under_load(eng: LlamaCppEngine, reps: int) -> float:
    out = []
    for r in range(reps):
        eng.clear_prefix_cache()
        hs = [eng.submit(req(p, 96)) for p in prompts(8)]
        for h in hs:                       # wait until all 8 are decoding
            async for _ in h:
                break
        done = await eng.generate(req(f"Question {r}: what is the capital of Italy? Answer:", 4))
        out.append(done.usage.ttft_s)
        for h in hs:
            eng.cancel(h.request_id)
        await asyncio.gather(*(h.result() for h in hs))
    return statistics.median(out)


async def main(quick: bool, invariant: bool = True) -> dict:
    m = 32 if quick else 64
    reps = 1 if quick else 3
    eng = LlamaCppEngine(config=EngineConfig(n_ctx=4096, n_seq_max=16, prefill_chunk=128), batch_invariant=invariant)
    await eng.start()
    await engine_run(eng, 2, 8)                 # warm up (page in the weights)
    seq = [await sequential_run(eng, 8, m) for _ in range(reps)]
    table: dict[int, dict[str, float]] = {}
    for n in NS:
        e_runs, r_runs = [], []
        for _ in range(reps):
            rate, counts = await engine_run(eng, n, m)
            e_runs.append(rate)
            eng.clear_prefix_cache()       # the raw loop owns the whole KV cache while it runs
            await eng.sync()
            r_runs.append(await asyncio.to_thread(raw_run, eng, n, counts))
        table[n] = {"engine": statistics.median(e_runs), "raw": statistics.median(r_runs)}
        print(f"N={n:2d}  engine {table[n]['engine']:7.1f} tok/s   raw {table[n]['raw']:7.1f} tok/s",
              file=sys.stderr)
    ttft = await ttft_under_load(eng, 2 if quick else 5)
    await eng.close()
    baseline = statistics.median(seq)
    value = table[8]["engine"]
    ratio = value / baseline
    vs_raw = value / table[8]["raw"]
    print(f"sequential {baseline:.1f} tok/s; N=8 ratio {ratio:.2f}; vs_raw {vs_raw:.3f}; "
          f"ttft under load {ttft * 1000:.0f} ms", file=sys.stderr)
    return {"bench": "engine", "metric": "aggregate_tok_per_s_n8", "value": round(value, 1),
            "baseline": round(baseline, 1), "ratio": round(ratio, 3), "unit": "tok/s",
            "target": "ratio >= 1.7 and vs_raw >= 0.95 and ttft_under_load_s <= 0.5",
            "ok": bool(ratio >= 1.7 and vs_raw >= 0.95 and ttft <= 0.5), "quick": quick, "batch_invariant": invariant,
            "vs_raw": round(vs_raw, 3), "ttft_under_load_s": round(ttft, 3),
            "per_n": {str(n): {k: round(v, 1) for k, v in t.items()} for n, t in table.items()},
            "max_tokens": m, "reps": reps,
            "machine": {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine()}}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer tokens and repetitions (< 60 s)")
    ap.add_argument("--no-invariant", action="store_true",
                    help="batch_invariant=False: faster long prompts, batch-dependent rounding")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main(args.quick, not args.no_invariant))))
