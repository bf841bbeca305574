"""What chatting through the kernel costs: tokens/s of chat turns via the daemon vs the raw engine.

Same model (the embedded SmolLM2-135M on llama.cpp when it imports; the FakeEngine
with a per-step delay otherwise, and the JSON says which), same turns (greedy, fixed
``max_tokens``), one conversation per round, same process:
- ``raw`` (baseline): each turn submitted to an engine object (``engine.submit``) with
  the whole history, streamed; the history kept by the bench;
- ``daemon``: what ``llmos chat`` does when a daemon runs: ``conversation.open``, then
  each turn streamed from ``/v1/chat/completions`` with ``X-LLMOS-Conversation`` by a
  daemon on a loopback port whose kernel owns its own engine of the same model: each
  turn is a ``conversation.say`` syscall (history within the window) running one
  ``llm`` kernel process (journaled, scheduled, accounted, audited), over HTTP and SSE.

A turn's figure is completion tokens / wall time from sending to the last byte; a
round's is its tokens over its time. Rounds alternate raw / daemon; the result is the
median of the rounds. Target: daemon ≥ 0.95 × raw.

    python bench/chat.py [--quick] [--fake]
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
import time

SYSTEM = "You are a helpful assistant."
TURNS = ["Tell me about the sea.", "What lives in it?", "Which of those is the largest?",
         "How long does it live?", "What does it eat?", "Summarize what you told me."]


def make_engine(real: bool):
    if real:
        from llmos.llm.llamacpp import LlamaCppEngine

        return LlamaCppEngine()
    from llmos.llm.fake import FakeEngine

    return FakeEngine(" ".join(["word"] * 400), step_delay_s=0.002)


async def raw_round(engine, turns: list[str], max_tokens: int) -> tuple[int, float]:
    from llmos.llm.base import GenerationRequest, SamplingParams

    history = [{"role": "system", "content": SYSTEM}]
    tokens, wall = 0, 0.0
    for text in turns:
        history.append({"role": "user", "content": text})
        req = GenerationRequest(messages=tuple(history), prefix_messages=1,
                                params=SamplingParams(temperature=0.0, max_tokens=max_tokens))
        t = time.perf_counter()
        handle = engine.submit(req)
        async for _ in handle:
            pass
        done = await handle.result()
        wall += time.perf_counter() - t
        tokens += done.usage.completion_tokens
        history.append({"role": "assistant", "content": done.text})
    return tokens, wall


async def daemon_round(client, turns: list[str], max_tokens: int) -> tuple[int, float]:
    conv = (await client.syscall("conversation.open", {"system": SYSTEM}))["id"]
    tokens, wall = 0, 0.0
    for text in turns:
        t = time.perf_counter()
        usage = None
        async for chunk in client.chat_stream([{"role": "user", "content": text}], conversation=conv,
                                              temperature=0.0, max_tokens=max_tokens,
                                              stream_options={"include_usage": True}):
            usage = chunk.get("usage") or usage
        wall += time.perf_counter() - t
        tokens += int((usage or {}).get("completion_tokens", 0))
    return tokens, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--fake", action="store_true", help="use the FakeEngine even if llama.cpp imports")
    a = ap.parse_args()
    rounds, n_turns, max_tokens = (3, 3, 48) if a.quick else (5, 6, 128)
    turns = TURNS[:n_turns]

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
    from llmos.sdk import AsyncClient

    raw_engine = make_engine(real)
    kernel_engine = make_engine(real)
    model = getattr(kernel_engine, "model", "fake") or "fake"
    loop = asyncio.new_event_loop()
    loop.run_until_complete(raw_engine.start())
    home = tempfile.mkdtemp(prefix="llmos-chat-")
    cfg = load_config(env={"LLMOS_HOME": home})
    raw_tps: list[float] = []
    kern_tps: list[float] = []
    try:
        with ServerThread(cfg, engines={model: kernel_engine}, hal=FakeHAL(), preload_models=False,
                          start_timeout_s=300) as srv:
            client = AsyncClient(srv.url, srv.token, timeout=600)
            loop.run_until_complete(raw_round(raw_engine, turns[:1], 4))         # warm-up both paths
            loop.run_until_complete(daemon_round(client, turns[:1], 4))
            for i in range(rounds):
                n, w = loop.run_until_complete(raw_round(raw_engine, turns, max_tokens))
                raw_tps.append(n / w)
                n2, w2 = loop.run_until_complete(daemon_round(client, turns, max_tokens))
                kern_tps.append(n2 / w2)
                print(f"round {i + 1}/{rounds}: raw {n} tok in {w:.2f} s = {n / w:.1f} tok/s; "
                      f"daemon {n2} tok in {w2:.2f} s = {n2 / w2:.1f} tok/s", file=sys.stderr)
            loop.run_until_complete(client.aclose())
    finally:
        loop.run_until_complete(raw_engine.close())
        loop.close()
    raw, kern = statistics.median(raw_tps), statistics.median(kern_tps)
    ratio = kern / raw if raw else 0.0
    print(json.dumps({"bench": "chat", "metric": "chat_turn_tok_per_s", "value": round(kern, 1),
                      "baseline": round(raw, 1), "ratio": round(ratio, 3), "unit": "tok/s",
                      "target": "ratio >= 0.95", "ok": ratio >= 0.95, "quick": a.quick,
                      "engine": "llama.cpp (embedded SmolLM2-135M)" if real else "fake (2 ms/step)",
                      "note": note, "rounds": rounds, "turns": n_turns, "max_tokens": max_tokens,
                      "raw_rounds": [round(x, 1) for x in raw_tps],
                      "daemon_rounds": [round(x, 1) for x in kern_tps],
                      "cpus": os.cpu_count(), "machine": platform.machine(), "load_avg": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
