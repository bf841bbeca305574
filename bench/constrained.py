"""Constrained decoding cost: JSON-schema (llguidance masks) vs free decoding, per token.

Same prompts, same engine, same run, interleaved: N requests at once (N = 1 and 8),
each either free or constrained by a JSON schema whose output is long enough to time
(an object holding an array of bounded strings). The metric is aggregate tokens per
second; the value is constrained/free at N = 8 (target >= 0.9), the N = 1 figure
rides along. Every constrained output is checked to parse and validate.

    python bench/constrained.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time

import jsonschema

from llmos.config import EngineConfig
from llmos.llm.base import GenerationRequest, SamplingParams
from llmos.llm.llamacpp import LlamaCppEngine

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["title", "steps"],
          "properties": {"title": {"type": "string", "maxLength": 32},
                         "steps": {"type": "array", "minItems": 4, "maxItems": 4,
                                   "items": {"type": "string", "minLength": 8, "maxLength": 32}}}}
TOPICS = ["bake bread", "plant a tree", "learn to swim", "write a song", "fix a bike", "paint a room",
          "train a dog", "brew tea"]


def req(i: int, constrained: bool, m: int) -> GenerationRequest:
    topic = TOPICS[i % len(TOPICS)]
    return GenerationRequest(messages=({"role": "user", "content": f"Give four steps to {topic}, as JSON."},),
                             json_schema=SCHEMA if constrained else None,
                             params=SamplingParams(max_tokens=m))


async def run(eng: LlamaCppEngine, n: int, constrained: bool, m: int) -> tuple[float, int]:
    eng.clear_prefix_cache()
    t0 = time.perf_counter()
    done = await asyncio.gather(*(eng.generate(req(i, constrained, m)) for i in range(n)))
    dt = time.perf_counter() - t0
    valid = 0
    if constrained:
        for d in done:
            try:
                jsonschema.validate(json.loads(d.text), SCHEMA)
                valid += 1
            except (ValueError, jsonschema.ValidationError):
                print(f"invalid ({d.finish_reason}): {d.text!r}", file=sys.stderr)
    return sum(d.usage.completion_tokens for d in done) / dt, valid


async def main(quick: bool, invariant: bool = True) -> dict:
    m = 96 if quick else 128
    reps = 2 if quick else 4
    eng = LlamaCppEngine(config=EngineConfig(n_ctx=4096, n_seq_max=8), batch_invariant=invariant)
    await run(eng, 1, True, m)                      # warm up: weights, tokenizer tables
    table: dict[int, dict[str, float]] = {}
    valid_total = runs_total = 0
    for n in (1, 8):
        free, con = [], []
        for _ in range(reps):                       # interleaved; best of reps (noisy host)
            free.append((await run(eng, n, False, m))[0])
            rate, valid = await run(eng, n, True, m)
            con.append(rate)
            valid_total += valid
            runs_total += n
        table[n] = {"free": max(free), "constrained": max(con), "ratio": max(con) / max(free)}
        print(f"N={n}: free {table[n]['free']:.1f} tok/s, constrained {table[n]['constrained']:.1f} tok/s, "
              f"ratio {table[n]['ratio']:.3f}", file=sys.stderr)
    await eng.close()
    ratio = table[8]["ratio"]
    ok = ratio >= 0.9 and table[1]["ratio"] >= 0.9 and valid_total == runs_total
    return {"bench": "constrained", "metric": "constrained_tok_per_s_n8", "value": round(table[8]["constrained"], 1),
            "baseline": round(table[8]["free"], 1), "ratio": round(ratio, 3), "unit": "tok/s",
            "target": "ratio >= 0.9 at N=1 and N=8, all outputs valid", "ok": bool(ok), "quick": quick, "batch_invariant": invariant,
            "ratio_n1": round(table[1]["ratio"], 3), "valid": f"{valid_total}/{runs_total}",
            "per_n": {str(k): {a: round(b, 3) for a, b in v.items()} for k, v in table.items()},
            "max_tokens": m, "reps": reps,
            "machine": {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine()}}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer tokens and repetitions (< 60 s)")
    ap.add_argument("--no-invariant", action="store_true",
                    help="batch_invariant=False: faster long prompts, batch-dependent rounding")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main(args.quick, not args.no_invariant))))
