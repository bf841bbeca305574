"""Preemption on the real model (``model`` marker): a high-priority request preempts a
low one, and the low one's final text equals an uninterrupted run at temperature 0.

Two paths: the engine has a spare slot, so the low sequence is paused (KV kept); or
it holds one sequence only, so the low sequence is swapped out (KV snapshotted) and
restored.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from llmos.clock import SystemClock
from llmos.config import EngineConfig
from llmos.kernel.sched import make_scheduler
from llmos.llm.base import FifoPolicy, GenerationRequest, SamplingParams

try:
    from llmos.llm.llamacpp import LlamaCppEngine
except ImportError as exc:   # the embedded engine is written in parallel
    pytestmark = [pytest.mark.model,
                  pytest.mark.skip(reason=f"llmos.llm.llamacpp does not import yet: {exc}")]
else:
    pytestmark = pytest.mark.model

LOW = ({"role": "user", "content": "Tell a short story about a lighthouse keeper."},)
HIGH = ({"role": "user", "content": "What is the capital of France?"},)


def request(messages, priority: int, owner: str, max_tokens: int) -> GenerationRequest:
    return GenerationRequest(messages=messages, priority=priority, owner=owner,
                             params=SamplingParams(max_tokens=max_tokens, temperature=0.0))


@pytest.mark.parametrize("n_seq_max, batch_cap, swapped", [(2, 1, False), (1, None, True)],
                         ids=["pause", "swap"])
async def test_high_priority_preempts_low_and_low_text_is_unchanged(n_seq_max, batch_cap, swapped):
    engine = LlamaCppEngine(config=EngineConfig(n_ctx=1024, n_seq_max=n_seq_max, prefill_chunk=64),
                            prefix_cache=False, batch_invariant=True)
    try:
        await engine.start()
        engine.set_policy(FifoPolicy())
        plain = await engine.generate(request(LOW, 10, "low", 48))
        assert plain.usage.completion_tokens > 16

        policy = make_scheduler("priority", SystemClock(), batch_cap=batch_cap,
                                min_run_tokens=4).step_policy()
        engine.set_policy(policy)
        low = engine.submit(request(LOW, 10, "low", 48))
        streamed: list[str] = []
        done_at: dict[str, float] = {}

        async def drain(handle, name, sink=None):
            async for chunk in handle:
                if sink is not None:
                    sink.append(chunk.text)
            done_at[name] = time.monotonic()
            return await handle.result()

        low_task = asyncio.create_task(drain(low, "low", streamed))
        for _ in range(2000):                      # until the low one has streamed 8 tokens
            if len(streamed) >= 8:
                break
            await asyncio.sleep(0.005)
        assert len(streamed) >= 8
        high = engine.submit(request(HIGH, -10, "human", 16))
        hi_done, low_done = await asyncio.wait_for(
            asyncio.gather(drain(high, "high"), low_task), 120)
    finally:
        engine.shutdown()
    assert done_at["high"] < done_at["low"]
    assert low_done.text == plain.text
    assert "".join(streamed) == plain.text
    assert low_done.usage.preemptions >= 1
    assert (policy.swaps >= 1) is swapped
    assert any("preempted by" in line for line in policy.explain(low.request_id))
    assert hi_done.text
