"""Prefix sharing: time to first token of planner-style requests with a shared
1,000-token system prompt, with vs without reuse of its KV.

Two engines on the same model in one process: one with the shared-prefix LRU, one
without (``prefix_cache=False``). Each gets the same requests one after another:
the same ~1,000-token system prompt (tool descriptions) and a different user
request. With sharing, the first request pays the full prefill and primes the
cache; later ones prefill only their suffix (``usage.cached_tokens`` reports the
reuse). Value: median TTFT without sharing / median TTFT with sharing over the
requests after the first (target >= 3).

    python bench/prefix.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys

from llmos.config import EngineConfig
from llmos.llm.base import GenerationRequest, SamplingParams
from llmos.llm.llamacpp import LlamaCppEngine

TOOLS = [("read_file", "path", "Read a text file from the agent's workspace and return its contents."),
         ("write_file", "path, text", "Write text to a file in the workspace, replacing it."),
         ("run_python", "code", "Run Python code in the sandbox and return stdout, stderr and the exit code."),
         ("plot", "csv, x, y, kind", "Draw a chart from a CSV file and save it as a PNG image."),
         ("search", "query", "Search the agent's long-term memory for notes that match the query."),
         ("ask_user", "question", "Ask the person a question and wait for the answer."),
         ("list_dir", "path", "List the files and folders under a path in the workspace."),
         ("http_get", "url", "Fetch a URL when the agent holds the network capability."),
         ("calc", "expression", "Evaluate an arithmetic expression exactly."),
         ("timer", "seconds, message", "Wake the agent after a delay with a message.")]
USER = ["Plot sales by month from sales.csv", "Count the words in notes.txt", "Summarize report.md in 3 lines",
        "Find my notes about the budget", "Make a bar chart of costs.csv by team",
        "List the files in data/", "What is 17 * 23?", "Remind me in 10 minutes to stretch"]


def system_prompt(eng: LlamaCppEngine, target_tokens: int = 1000) -> str:
    """The planner's system prompt: rules plus tool descriptions, grown to ~target_tokens."""
    head = ("You are the planner of LLM OS. Turn the person's request into a JSON plan: a list of "
            "steps, each naming one tool, its arguments, the steps it depends on and its risk "
            "(read, write, destructive, network). Use only these tools:\n")
    lines, i = [], 0
    while eng.count_tokens(head + "\n".join(lines)) < target_tokens:
        name, args, doc = TOOLS[i % len(TOOLS)]
        lines.append(f"- {name}({args}): {doc} Example {i // len(TOOLS) + 1}: use it only when needed.")
        i += 1
    return head + "\n".join(lines)


def req(system: str, user: str) -> GenerationRequest:
    return GenerationRequest(messages=({"role": "system", "content": system}, {"role": "user", "content": user}),
                             params=SamplingParams(max_tokens=4))


async def ttfts(eng: LlamaCppEngine, system: str, users: list[str]) -> list[tuple[float, int]]:
    out = []
    for u in users:
        d = await eng.generate(req(system, u))
        out.append((d.usage.ttft_s, d.usage.cached_tokens))
        print(f"  ttft {d.usage.ttft_s * 1000:7.0f} ms  cached {d.usage.cached_tokens:4d} / "
              f"{d.usage.prompt_tokens} prompt tokens", file=sys.stderr)
    return out


async def main(quick: bool, invariant: bool = True) -> dict:
    cfg = EngineConfig(n_ctx=4096, n_seq_max=8, prefill_chunk=128)
    shared = LlamaCppEngine(config=cfg, batch_invariant=invariant)
    plain = LlamaCppEngine(config=cfg, prefix_cache=False, batch_invariant=invariant)
    system = system_prompt(shared)
    n_sys = shared.count_tokens(system)
    await plain.generate(GenerationRequest(prompt="warm up", params=SamplingParams(max_tokens=2)))
    n_plain, n_shared = (1, 3) if quick else (3, 6)
    print(f"system prompt: {n_sys} tokens; without sharing:", file=sys.stderr)
    base = await ttfts(plain, system, USER[:n_plain])
    print("with sharing (the first request primes the cache):", file=sys.stderr)
    with_sharing = await ttfts(shared, system, USER[:n_shared])
    await shared.close()
    await plain.close()
    baseline = statistics.median(t for t, _ in base)
    value = statistics.median(t for t, _ in with_sharing[1:])
    cached = min(c for _, c in with_sharing[1:])
    ratio = baseline / value
    print(f"median TTFT {baseline * 1000:.0f} ms without, {value * 1000:.0f} ms with sharing: {ratio:.1f}x",
          file=sys.stderr)
    return {"bench": "prefix", "metric": "ttft_s_shared_prefix", "value": round(value, 4),
            "baseline": round(baseline, 4), "ratio": round(ratio, 2), "unit": "s",
            "target": "ratio >= 3", "ok": bool(ratio >= 3), "quick": quick, "batch_invariant": invariant,
            "system_prompt_tokens": n_sys, "min_cached_tokens": cached,
            "cold_ttft_with_sharing_s": round(with_sharing[0][0], 4),
            "machine": {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine()}}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests (< 60 s)")
    ap.add_argument("--no-invariant", action="store_true",
                    help="batch_invariant=False: faster long prompts, batch-dependent rounding")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main(args.quick, not args.no_invariant))))
