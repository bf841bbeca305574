"""What the OpenAI-compatible endpoint costs: aggregate tok/s through /v1 vs the raw engine.

Same model (the embedded SmolLM2-135M on llama.cpp when it imports; the FakeEngine
with a per-step delay otherwise, and the JSON says which), same 8 chat requests
(greedy, fixed ``max_tokens``), same process:
- ``raw`` (baseline): the 8 requests submitted concurrently to an engine object
  (``engine.submit``), aggregate completion tokens / wall time of the batch;
- ``api``: the 8 requests sent concurrently by 8 official ``openai`` clients (threads)
  to a daemon on a loopback port whose kernel owns its own engine of the same model:
  each request is an ``llm.generate`` kernel process (journaled, scheduled by the
  kernel's token-level policy, accounted), answered over HTTP.

Rounds alternate raw / api; the figure is the median of the rounds. Target: api ≥ 0.9 × raw.

    python bench/openai_compat.py [--quick]
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
import threading
import time

CLIENTS = 8


def prompts(n: int) -> list[str]:
    topics = ["the sea", "a city at night", "mountains", "a library", "the first snow", "a market",
              "an old clock", "a garden"]
    return [f"Write a short story about {topics[i % len(topics)]}." for i in range(n)]


def make_engine(real: bool):
    if real:
        from llmos.llm.llamacpp import LlamaCppEngine

        return LlamaCppEngine()
    from llmos.llm.fake import FakeEngine

    return FakeEngine(" ".join(["word"] * 400), step_delay_s=0.002, max_active=CLIENTS)


async def raw_round(engine, max_tokens: int) -> tuple[int, float]:
    from llmos.llm.base import GenerationRequest, SamplingParams

    reqs = [GenerationRequest(messages=({"role": "user", "content": p},),
                              params=SamplingParams(temperature=0.0, max_tokens=max_tokens))
            for p in prompts(CLIENTS)]
    t = time.perf_counter()
    handles = [engine.submit(r) for r in reqs]
    done = await asyncio.gather(*(h.result() for h in handles))
    return sum(c.usage.completion_tokens for c in done), time.perf_counter() - t


def api_round(url: str, token: str, model: str, max_tokens: int) -> tuple[int, float]:
    import openai

    clients = [openai.OpenAI(base_url=url + "/v1", api_key=token, max_retries=0, timeout=600)
               for _ in range(CLIENTS)]
    counts = [0] * CLIENTS
    errors: list[BaseException] = []
    barrier = threading.Barrier(CLIENTS + 1)

    def one(i: int, p: str) -> None:
        barrier.wait()
        try:
            r = clients[i].chat.completions.create(model=model, temperature=0, max_tokens=max_tokens,
                                                   messages=[{"role": "user", "content": p}])
            counts[i] = r.usage.completion_tokens
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(prompts(CLIENTS))]
    for th in threads:
        th.start()
    barrier.wait()
    t = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    for c in clients:
        c.close()
    if errors:
        raise SystemExit(f"api round failed: {errors[0]!r}")
    return sum(counts), wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--fake", action="store_true", help="use the FakeEngine even if llama.cpp imports")
    a = ap.parse_args()
    rounds, max_tokens = (2, 48) if a.quick else (4, 128)

    real = not a.fake
    note = ""
    if real:
        try:
            import llmos.llm.llamacpp  # noqa: F401
            from llmos.llm.models import embedded_model_path

            embedded_model_path()
        except Exception as e:  # noqa: BLE001 - the bench still runs, and says why
            real, note = False, f"embedded engine unavailable ({type(e).__name__}: {e}); FakeEngine used"
            print(note, file=sys.stderr)

    from llmos.api.server import ServerThread
    from llmos.config import load_config
    from llmos.hal.fake import FakeHAL

    raw_engine = make_engine(real)
    api_engine = make_engine(real)
    model = getattr(api_engine, "model", "fake") or "fake"
    loop = asyncio.new_event_loop()
    loop.run_until_complete(raw_engine.start())
    home = tempfile.mkdtemp(prefix="llmos-oai-")
    cfg = load_config(env={"LLMOS_HOME": home})
    raw_tps: list[float] = []
    api_tps: list[float] = []
    try:
        with ServerThread(cfg, engines={model: api_engine}, hal=FakeHAL(), preload_models=False,
                          start_timeout_s=300) as srv:
            loop.run_until_complete(raw_round(raw_engine, 4))          # warm-up both paths
            api_round(srv.url, srv.token, model, 4)
            for i in range(rounds):
                n, w = loop.run_until_complete(raw_round(raw_engine, max_tokens))
                raw_tps.append(n / w)
                n2, w2 = api_round(srv.url, srv.token, model, max_tokens)
                api_tps.append(n2 / w2)
                print(f"round {i + 1}/{rounds}: raw {n} tok in {w:.2f} s = {n / w:.1f} tok/s; "
                      f"api {n2} tok in {w2:.2f} s = {n2 / w2:.1f} tok/s", file=sys.stderr)
    finally:
        loop.run_until_complete(raw_engine.close())
        loop.close()
    raw, api = statistics.median(raw_tps), statistics.median(api_tps)
    ratio = api / raw if raw else 0.0
    print(json.dumps({"bench": "openai_compat", "metric": f"aggregate_tok_per_s_n{CLIENTS}",
                      "value": round(api, 1), "baseline": round(raw, 1), "ratio": round(ratio, 3),
                      "unit": "tok/s", "target": "ratio >= 0.9", "ok": ratio >= 0.9, "quick": a.quick,
                      "engine": "llama.cpp (embedded SmolLM2-135M)" if real else "fake (2 ms/step)",
                      "note": note, "rounds": rounds, "max_tokens": max_tokens,
                      "raw_rounds": [round(x, 1) for x in raw_tps], "api_rounds": [round(x, 1) for x in api_tps],
                      "cpus": os.cpu_count(), "machine": platform.machine(), "load_avg": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
