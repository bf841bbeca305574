"""Persisted prefixes: time to first token of a planner-style request in a *fresh*
engine, with its ~1,500-token fixed prefix evaluated (cold: no prefix file) vs
loaded from disk (warm: the file a previous process wrote).

A fresh engine is what every `llmos run` without a daemon starts, and what a
restarted daemon starts: the in-memory prefix cache (bench/prefix.py) is empty
then. Each round: engine A on an empty prefix directory answers the request
(marking the system prompt and few-shot turns with ``prefix_messages``), which
writes the prefix file as it goes; A closes; engine B, new, on the same directory,
answers the same request. Value: median warm TTFT; baseline: median cold TTFT;
ratio = cold / warm (target >= 10). Also reported: prompt tokens each engine
evaluated (its ``prompt_tokens_evaluated`` counter) and whether the greedy texts
match.

    python bench/prefix_disk.py [--quick] [--no-invariant]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

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
SHOTS = [("Plot sales by month from sales.csv",
          '{"steps": [{"tool": "plot", "args": {"csv": "sales.csv", "x": "month", "y": "sales"}}]}'),
         ("What is 17 * 23?", '{"steps": [{"tool": "calc", "args": {"expression": "17 * 23"}}]}')]
USERS = ["Count the words in notes.txt", "Make a bar chart of costs.csv by team",
         "Find my notes about the budget", "List the files in data/", "Remind me in 10 minutes to stretch"]
CFG = EngineConfig(n_ctx=4096, n_seq_max=4, prefill_chunk=128)
TARGET_RATIO = 10          # cold / warm TTFT


def prefix_messages(eng: LlamaCppEngine, target_tokens: int) -> list[dict]:
    """System prompt (rules + tool descriptions, grown to ~target_tokens) + few-shot turns."""
    head = ("You are the planner of LLM OS. Turn the person's request into a JSON plan: a list of "
            "steps, each naming one tool, its arguments, the steps it depends on and its risk "
            "(read, write, destructive, network). Use only these tools:\n")
    lines, i = [], 0
    while eng.count_tokens(head + "\n".join(lines)) < target_tokens - 80:
        name, args, doc = TOOLS[i % len(TOOLS)]
        lines.append(f"- {name}({args}): {doc} Example {i // len(TOOLS) + 1}: use it only when needed.")
        i += 1
    msgs = [{"role": "system", "content": head + "\n".join(lines)}]
    for q, a in SHOTS:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return msgs


def request(prefix: list[dict], user: str) -> GenerationRequest:
    return GenerationRequest(messages=(*prefix, {"role": "user", "content": user}),
                             params=SamplingParams(max_tokens=4), prefix_messages=len(prefix))


async def one(prefix_dir: Path, prefix: list[dict], user: str, invariant: bool) -> dict:
    """A fresh engine answers one request; its TTFT and prompt-token counters."""
    t0 = time.perf_counter()
    eng = LlamaCppEngine(config=CFG, prefix_dir=prefix_dir, batch_invariant=invariant)
    load_s = time.perf_counter() - t0
    try:
        done = await eng.generate(request(prefix, user))
        st = eng.stats()
    finally:
        await eng.close()               # waits for the prefix file to be written
    return {"ttft_s": done.usage.ttft_s, "load_s": load_s, "prompt_tokens": done.usage.prompt_tokens,
            "evaluated": st.prompt_tokens_evaluated, "loaded": st.prompt_tokens_loaded, "text": done.text}


async def main(quick: bool, invariant: bool = True, target_tokens: int = 1500) -> dict:
    probe = LlamaCppEngine(config=CFG, batch_invariant=invariant)
    prefix = prefix_messages(probe, target_tokens)
    n_prefix = len(probe._model.tokenize(probe._model.apply_template(prefix, add_assistant=False)))
    await probe.generate(GenerationRequest(prompt="warm up", params=SamplingParams(max_tokens=2)))
    await probe.close()
    rounds = 1 if quick else 3
    print(f"fixed prefix: {n_prefix} tokens ({len(prefix)} messages); {rounds} round(s)", file=sys.stderr)
    cold, warm, same, file_bytes = [], [], [], 0
    for r in range(rounds):
        d = Path(tempfile.mkdtemp(prefix="llmos-bench-prefix-"))
        try:
            user = USERS[r % len(USERS)]
            c = await one(d, prefix, user, invariant)
            file_bytes = sum(f.stat().st_size for f in d.iterdir())
            w = await one(d, prefix, user, invariant)
        finally:
            shutil.rmtree(d, ignore_errors=True)
        cold.append(c)
        warm.append(w)
        same.append(c["text"] == w["text"])
        for name, x in (("cold", c), ("warm", w)):
            print(f"  {name}: ttft {x['ttft_s'] * 1000:7.0f} ms  evaluated {x['evaluated']:5d} / "
                  f"{x['prompt_tokens']} prompt tokens (loaded {x['loaded']}), engine load "
                  f"{x['load_s'] * 1000:.0f} ms", file=sys.stderr)
    baseline = statistics.median(x["ttft_s"] for x in cold)
    value = statistics.median(x["ttft_s"] for x in warm)
    ratio = baseline / value
    target = f"ratio >= {TARGET_RATIO}"
    print(f"median TTFT in a fresh engine: {baseline:.2f} s cold, {value:.2f} s warm: {ratio:.1f}x",
          file=sys.stderr)
    return {"bench": "prefix_disk", "metric": "ttft_s_fresh_engine_prefix_file", "value": round(value, 4),
            "baseline": round(baseline, 4), "ratio": round(ratio, 2), "unit": "s",
            "target": target, "ok": bool(ratio >= TARGET_RATIO), "quick": quick, "batch_invariant": invariant,
            "prefix_tokens": n_prefix, "prompt_tokens": cold[0]["prompt_tokens"],
            "evaluated_cold": cold[0]["evaluated"], "evaluated_warm": warm[0]["evaluated"],
            "loaded_warm": warm[0]["loaded"], "same_text": all(same), "prefix_file_bytes": file_bytes,
            "engine_load_s": round(statistics.median(x["load_s"] for x in cold + warm), 3),
            "machine": {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine()}}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one round (< 60 s)")
    ap.add_argument("--no-invariant", action="store_true",
                    help="batch_invariant=False: faster long prompts, batch-dependent rounding")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main(args.quick, not args.no_invariant))))
