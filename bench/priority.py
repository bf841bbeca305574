"""Priority scheduling on the embedded engine: time to first token of an urgent request
while 16 low-priority agents saturate the engine, vs the same request on an idle engine.

Measures, in one process on the default model (SmolLM2-135M Q4_1):
- ``cap``: the active-batch size where throughput stops growing, measured on this
  engine with ``measure_batch_cap`` (the policies below run with it);
- ``unloaded``: TTFT of the urgent request (priority -10) alone (the baseline);
- ``priority``: the same while 16 agents (priority 10) each keep one request in
  flight, under the kernel's ``priority`` step policy: the urgent request preempts
  a low one (paused, or swapped out when no slot is spare);
- ``fifo``: the same load under a ``fifo`` step policy with the same cap (what
  ordering alone gives), and ``engine_fifo``: the engine's own FIFO policy (the
  whole ``n_seq_max`` batch, no kernel policy).
Each TTFT is the engine's (submit → first generated token); figures are medians.
Also reported: the low agents' aggregate tok/s under each policy (the cost of the policy).

Last stdout line: JSON; target: priority TTFT under load / unloaded TTFT <= 1.5.

    python bench/priority.py [--quick]
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

from llmos.clock import SystemClock
from llmos.config import EngineConfig
from llmos.kernel.sched import batch_throughput, cap_from_curve, make_scheduler
from llmos.llm.base import FifoPolicy, GenerationRequest, SamplingParams
from llmos.llm.llamacpp import LlamaCppEngine

AGENTS = 16
_asked = [0]                     # urgent questions asked so far (each one new)


def low_request(i: int, k: int, max_tokens: int) -> GenerationRequest:
    msg = {"role": "user", "content": f"Agent {i}, task {k}: write a few sentences about the sea."}
    return GenerationRequest(messages=(msg,), priority=10, owner=f"agent{i}",
                             params=SamplingParams(max_tokens=max_tokens, temperature=0.0))


def urgent_request(k: int) -> GenerationRequest:
    # a new question each time, so no trial reuses another's cached prefix (the chat
    # template's shared preamble is cached alike with and without load)
    msg = {"role": "user", "content": f"Quick question {k}: what is {k} plus {k + 1}?"}
    return GenerationRequest(messages=(msg,), priority=-10, owner="human",
                             params=SamplingParams(max_tokens=8, temperature=0.0))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


async def urgent_ttfts(engine: LlamaCppEngine, trials: int, gap_s: float) -> list[float]:
    out = []
    for _ in range(trials):
        _asked[0] += 1
        done = await engine.generate(urgent_request(_asked[0]))
        out.append(done.usage.ttft_s)
        await asyncio.sleep(gap_s)
    return out


async def under_load(engine: LlamaCppEngine, policy, trials: int, warm_s: float,
                     low_tokens: int) -> tuple[list[float], float]:
    """Urgent TTFTs while AGENTS agents each keep one low request in flight; also their tok/s."""
    engine.reset()
    engine.set_policy(policy)
    stop = asyncio.Event()

    async def agent(i: int) -> None:
        k = 0
        while not stop.is_set():
            h = engine.submit(low_request(i, k, low_tokens))
            try:
                await h.result()
            except Exception:     # cancelled at the end
                return
            k += 1

    tasks = [asyncio.create_task(agent(i)) for i in range(AGENTS)]
    await asyncio.sleep(warm_s)
    t0, p0 = time.perf_counter(), engine.stats().tokens_generated
    ttfts = await urgent_ttfts(engine, trials, gap_s=0.2)
    rate = (engine.stats().tokens_generated - p0) / (time.perf_counter() - t0)
    stop.set()
    engine.reset()                # cancels what the agents have in flight
    await asyncio.gather(*tasks, return_exceptions=True)
    return ttfts, rate


async def main(quick: bool) -> dict:
    trials = 5 if quick else 15
    fifo_trials = 1 if quick else 3      # each waits for the whole queue ahead of it
    warm_s = 1.5 if quick else 3.0
    low_tokens = 24 if quick else 64
    engine = LlamaCppEngine(config=EngineConfig())          # defaults: n_ctx, n_seq_max from params
    clock = SystemClock()
    try:
        await engine.start()
        curve = await batch_throughput(engine, (1, 2, 4, 8, 16), max_tokens=16 if quick else 32)
        cap = cap_from_curve(curve)          # what measure_batch_cap(engine) picks
        print(f"batch curve tok/s: { {n: round(v, 1) for n, v in curve.items()} }; cap = {cap}",
              file=sys.stderr)

        engine.reset()
        engine.set_policy(make_scheduler("priority", clock, batch_cap=cap).step_policy())
        await urgent_ttfts(engine, 1, 0.0)                    # warm-up
        unloaded = await urgent_ttfts(engine, trials, gap_s=0.05)

        prio_policy = make_scheduler("priority", clock, batch_cap=cap).step_policy()
        prio, prio_rate = await under_load(engine, prio_policy, trials, warm_s, low_tokens)
        fifo, fifo_rate = await under_load(engine, make_scheduler("fifo", clock, batch_cap=cap).step_policy(),
                                           fifo_trials, warm_s, low_tokens)
        eng_fifo, eng_rate = await under_load(engine, FifoPolicy(), fifo_trials, warm_s, low_tokens)
    finally:
        engine.shutdown()
    med = statistics.median
    base, value = med(unloaded), med(prio)
    ratio = value / base
    rows = {"unloaded": unloaded, "priority": prio, "fifo": fifo, "engine_fifo": eng_fifo}
    for name, xs in rows.items():
        print(f"{name:12s} ttft median {med(xs) * 1000:8.1f} ms  max {max(xs) * 1000:8.1f} ms",
              file=sys.stderr)
    return {
        "bench": "priority", "metric": "urgent_ttft_loaded_over_unloaded",
        "value": round(value * 1000, 2), "baseline": round(base * 1000, 2),
        "ratio": round(ratio, 3), "unit": "ms", "target": "ratio <= 1.5", "ok": ratio <= 1.5,
        "quick": quick,
        "fifo_ttft_ms": round(med(fifo) * 1000, 2), "fifo_ratio": round(med(fifo) / base, 2),
        "engine_fifo_ttft_ms": round(med(eng_fifo) * 1000, 2),
        "engine_fifo_ratio": round(med(eng_fifo) / base, 2),
        "batch_cap": cap, "batch_curve_tok_s": {str(n): round(v, 1) for n, v in curve.items()},
        "low_tok_s": {"priority": round(prio_rate, 1), "fifo": round(fifo_rate, 1),
                      "engine_fifo": round(eng_rate, 1)},
        "preemptions": prio_policy.preemptions, "swaps": prio_policy.swaps,
        "agents": AGENTS, "trials": trials,
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model()},
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer trials, shorter loads (< 60 s)")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main(args.quick))))
