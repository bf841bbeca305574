"""Engines on Ray nodes: time to first token and to the last one, through an engine actor
(``RayEngine``: the actor streams tokens back as they are made) against the same engine
in this process.

Setup: a Ray cluster in this process (``ray.cluster_utils.Cluster``: a head with no CPUs,
one worker node with one CPU), a ``RayEngine`` with one actor on that node, and the same
engine here. The engine is ``FakeEngine`` with a fixed time per token (``--step-ms``,
10 ms by default: a small model's decode on a few cores), so the difference measured is
what the actor path adds (Ray's streaming generator, the batches, the hop), not the
model; ``--model`` runs the embedded default model (llama.cpp) on both sides instead.
Rounds alternate local / Ray; each round runs G generations of W tokens one after
another. Per generation: submit -> first token (ttft) and submit -> last token (total),
read from the handle's stream as the kernel reads it. Before streaming, the first token
reached the caller with the last (ttft = total); the JSON says what share of the
generation the caller now waits for its first token.

Target: the first token through the actor within 25 ms of the local one, and the whole
generation within 1.25x of the local time. Every Ray process is stopped by PID at the end.

    python bench/ray_engine.py [--quick] [--model] [--step-ms 10]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# this folder holds ray.py: it must not shadow the ray package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

GENS_QUICK, GENS_FULL = 5, 12              # generations per round
ROUNDS_QUICK, ROUNDS_FULL = 2, 4           # alternations local / Ray
WORDS = 48                                 # tokens per generation (the fake engine echoes the prompt)


async def one(engine, req) -> tuple[float, float, int]:
    """(ttft s, total s, tokens) of one generation, read from its stream."""
    t0 = time.perf_counter()
    handle = engine.submit(req)
    first = None
    n = 0
    async for _ in handle:
        n += 1
        if first is None:
            first = time.perf_counter() - t0
    await handle.result()
    return first or 0.0, time.perf_counter() - t0, n


def request(i: int, model: bool):
    from llmos.llm.base import GenerationRequest, SamplingParams

    if model:
        return GenerationRequest(messages=({"role": "user", "content": f"Count from {i} to {i + 40}."},),
                                 params=SamplingParams(max_tokens=WORDS))
    return GenerationRequest(prompt=" ".join(f"w{i}.{k}" for k in range(WORDS)),
                             params=SamplingParams(max_tokens=WORDS + 8))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", action="store_true", help="the embedded default model, not the fake engine")
    ap.add_argument("--step-ms", type=float, default=10.0, help="the fake engine's ms per token")
    a = ap.parse_args()
    gens, rounds = (GENS_QUICK, ROUNDS_QUICK) if a.quick else (GENS_FULL, ROUNDS_FULL)
    load0 = os.getloadavg()[0]
    t_start = time.perf_counter()

    import ray
    from ray.cluster_utils import Cluster

    from llmos.executor.ray_engines import RayEngine, node_engine
    from llmos.llm.fake import FakeEngine

    if a.model:
        from llmos.config import load_config
        from llmos.llm import make_engine
        from llmos.llm.models import resolve

        config = load_config()
        factory = functools.partial(node_engine, config.model, config)
        local_factory = functools.partial(make_engine, resolve(config.model, config), config)
    else:
        factory = local_factory = functools.partial(FakeEngine, None, step_delay_s=a.step_ms / 1000)

    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "object_store_memory": 80 << 20})
    cluster.add_node(num_cpus=1, object_store_memory=80 << 20)
    ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
    pids = [p.process.pid for n in cluster.list_all_nodes() for ps in n.all_processes.values() for p in ps]
    print(f"ray cluster: head (0 CPUs) + 1 node (1 CPU) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    async def run() -> dict[str, list[tuple[float, float, int]]]:
        out: dict[str, list] = {"local": [], "ray": []}
        local, remote = local_factory(), RayEngine(factory)
        await local.start()
        await remote.start()
        try:
            await one(local, request(0, a.model))         # warm both (first calls load, import, compile)
            await one(remote, request(0, a.model))
            for r in range(rounds):
                for side, engine in (("local", local), ("ray", remote)) if r % 2 == 0 else \
                        (("ray", remote), ("local", local)):
                    for i in range(gens):
                        out[side].append(await one(engine, request(i + 1, a.model)))
        finally:
            await remote.close()
            await local.close()
        return out

    try:
        got = asyncio.run(run())
    finally:
        ray.shutdown()
        cluster.shutdown()
    time.sleep(0.5)
    left = [p for p in pids if os.path.exists(f"/proc/{p}")]
    load1 = os.getloadavg()[0]

    def med(side: str, k: int) -> float:
        return statistics.median(x[k] for x in got[side]) * 1000

    ttft = {s: med(s, 0) for s in got}
    total = {s: med(s, 1) for s in got}
    tokens = statistics.median(x[2] for x in got["ray"])
    extra_first = ttft["ray"] - ttft["local"]
    ratio_total = total["ray"] / total["local"]
    for s in ("local", "ray"):
        print(f"{s:5s}: ttft p50 {ttft[s]:7.1f} ms, total p50 {total[s]:7.1f} ms "
              f"({len(got[s])} generations)", file=sys.stderr)
    print(f"load average {load0:.2f} before, {load1:.2f} after; ray processes left: {len(left)}", file=sys.stderr)
    ok = extra_first <= 25.0 and ratio_total <= 1.25 and not left
    print(json.dumps({
        "bench": "ray_engine", "metric": "ttft_ms_through_actor", "value": round(ttft["ray"], 2),
        "baseline": round(ttft["local"], 2), "ratio": round(ttft["ray"] / ttft["local"], 2), "unit": "ms",
        "target": "ttft via actor - local <= 25 ms and total via actor <= 1.25x local", "ok": ok,
        "quick": a.quick, "engine": "embedded model" if a.model else f"fake, {a.step_ms:g} ms/token",
        "extra_first_token_ms": round(extra_first, 2), "total_ms": {k: round(v, 1) for k, v in total.items()},
        "total_ratio": round(ratio_total, 3), "tokens": tokens,
        "ttft_share_of_total_ray": round(ttft["ray"] / total["ray"], 3),
        "per_token_extra_ms": round((total["ray"] - total["local"]) / max(1, tokens), 3),
        "generations": {k: len(v) for k, v in got.items()}, "processes_left": len(left),
        "load_avg": [round(load0, 2), round(load1, 2)], "wall_s": round(time.perf_counter() - t_start, 1),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "ray": ray.__version__}))


if __name__ == "__main__":
    main()
