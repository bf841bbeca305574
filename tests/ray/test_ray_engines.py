"""Engines on many machines (opt-in: -m ray): one engine actor per Ray node of conftest's
cluster on this machine (a head with no CPUs, two nodes with one), each generation sent to
the least loaded, and one whose node leaves mid-generation run again on the other."""

from __future__ import annotations

import asyncio
import functools

import pytest

from llmos.llm.base import GenerationRequest, SamplingParams
from llmos.llm.fake import FakeEngine

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

STEP_S = 0.1                          # the fake engine's seconds per step (one word a step)


CLUSTER_NODES = 2                     # conftest's cluster: two nodes with one CPU each


def _req(words: int, tag: str) -> GenerationRequest:
    return GenerationRequest(prompt=" ".join(f"{tag}{i}" for i in range(words)),
                             params=SamplingParams(max_tokens=words + 8))


async def test_one_engine_per_node_generations_by_load_and_a_lost_node_reruns_elsewhere(cluster):
    from llmos.executor.ray_engines import RayEngine

    c, nodes = cluster
    engine = RayEngine(functools.partial(FakeEngine, None, step_delay_s=STEP_S, max_active=2))
    await engine.start()
    try:
        ids = {n.node_id for n in nodes}
        assert {r.node for r in engine.replicas} == ids          # one actor per node with CPUs, none on the head
        assert engine.capabilities.max_active == 4

        reqs = [_req(15, f"w{i}-") for i in range(4)]
        outs = await asyncio.gather(*(engine.generate(r) for r in reqs))
        assert [o.text for o in outs] == [r.prompt for r in reqs]   # the fake engine echoes the prompt
        assert sorted(engine.routes.values()) == [2, 2]              # two on each node: by load

        first, second = nodes
        slow = engine.submit(_req(40, "lost-"))                      # ~4 s: goes to the idle first node
        other = engine.submit(_req(40, "kept-"))
        await asyncio.sleep(1.0)
        on = {r.node: r.inflight for r in engine.replicas}
        assert on == {first.node_id: 1, second.node_id: 1}
        c.remove_node(first)                                         # its node leaves mid-generation
        got = await asyncio.wait_for(slow.result(), 90)
        assert got.text == slow.request.prompt and got.finish_reason in ("stop", "length")
        assert (await asyncio.wait_for(other.result(), 90)).text == other.request.prompt
        assert engine.restarted == 1 and engine.loads() == {second.node_id: 0}

        again = await engine.generate(_req(3, "after-"))             # the survivor serves on
        assert again.text == "after-0 after-1 after-2"
    finally:
        await engine.close()
