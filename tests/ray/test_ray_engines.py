"""Engines on many machines (opt-in: -m ray): one engine actor per Ray node of conftest's
cluster on this machine (a head with no CPUs, two nodes with one), tokens streamed from the
actor as they are made, each generation sent to the least loaded, and one whose actor dies
or whose node leaves mid-generation run again on the other, its stream going on without a
repeated token."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import time

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


def per_actor(req: GenerationRequest) -> str:
    """An answer whose words from the fourth on name the actor's process (so a rerun on
    another actor differs from what was delivered)."""
    return " ".join(f"d{i}" if i < 3 else f"d{i}.{os.getpid()}" for i in range(30))


async def _kill_after(engine, handle, n: int) -> list:
    """Consume ``handle``'s stream; after ``n`` tokens kill the actor generating it."""
    got = []
    async for c in handle:
        got.append(c)
        if len(got) == n:
            node = engine.node_of(handle.request_id)
            ray.kill(next(r.actor for r in engine.replicas if r.node == node))
    return got


async def test_tokens_stream_from_the_actor_while_it_generates(cluster):
    from llmos.executor.ray_engines import RayEngine

    engine = RayEngine(functools.partial(FakeEngine, None, step_delay_s=STEP_S, max_active=1))
    await engine.start()
    try:
        h = engine.submit(_req(20, "s-"))
        got, when = [], []
        async for c in h:
            got.append(c)
            when.append(time.monotonic())
        out = await h.result()
        end = time.monotonic()
        assert [c.index for c in got] == list(range(20))
        assert "".join(c.text for c in got) == out.text == h.request.prompt
        assert when[-1] - when[0] > 10 * STEP_S                     # spread over the generation (~19 steps)
        assert end - when[0] > 10 * STEP_S                          # the first long before the end
        assert 0 < out.usage.ttft_s < out.usage.total_s / 2

        h = engine.submit(_req(40, "c-"))                            # cancelled mid-stream (~4 s of steps)
        got = []
        async for c in h:
            got.append(c)
            if len(got) == 3:
                node = engine.node_of(h.request_id)
                h.cancel()
        out = await h.result()
        assert out.finish_reason == "cancelled" and len(got) <= 4
        again = await asyncio.wait_for(engine.submit(_req(3, "n-"), node=node).result(), 30)
        assert again.text == "n-0 n-1 n-2" and set(engine.loads().values()) == {0}
        assert again.usage.total_s < 20 * STEP_S        # one lane: not queued behind the cancelled 37 steps
    finally:
        await engine.close()


async def test_an_actor_killed_mid_stream_reruns_elsewhere_and_no_token_repeats(cluster):
    from llmos.executor.ray_engines import RayEngine

    engine = RayEngine(functools.partial(FakeEngine, None, step_delay_s=STEP_S))
    await engine.start()
    try:
        req = _req(30, "k-")
        req = dataclasses.replace(req, params=dataclasses.replace(req.params, temperature=0.7))
        h = engine.submit(req)
        assert h.request.params.seed is not None                     # sampled: a seed, so a rerun repeats it
        got = await asyncio.wait_for(_kill_after(engine, h, 5), 90)
        out = await h.result()
        assert [c.index for c in got] == list(range(30))             # each position once, in order
        assert "".join(c.text for c in got) == out.text == req.prompt
        assert engine.restarted == 1 and engine.diverged == 0 and len(engine.loads()) == 1
    finally:
        await engine.close()


async def test_a_rerun_that_differs_keeps_the_delivered_tokens(cluster):
    from llmos.executor.ray_engines import RayEngine

    engine = RayEngine(functools.partial(FakeEngine, per_actor, step_delay_s=STEP_S))
    await engine.start()
    try:
        h = engine.submit(_req(30, "v-"))
        got = await asyncio.wait_for(_kill_after(engine, h, 5), 90)
        out = await h.result()
        assert [c.index for c in got] == list(range(30))
        text = "".join(c.text for c in got)
        assert out.text == text and engine.restarted == 1 and engine.diverged == 1
        pids = {w.split(".")[1] for w in text.split()[3:]}
        assert len(pids) == 2                                        # d3, d4 from the first actor, the rest from the second
    finally:
        await engine.close()


async def test_through_the_kernel_the_allocator_picks_the_node_and_tokens_stream(cluster, config):
    from llmos.executor.ray_engines import RayEngine
    from llmos.kernel import Kernel

    _, nodes = cluster
    engine = RayEngine(functools.partial(FakeEngine, None, step_delay_s=STEP_S, max_active=1))
    k = await Kernel.boot(config, engines={"fake": engine}, tools=None, hal=False)
    try:
        pids = [await k.submit("llm", {"prompt": f"p{i} q r s", "max_tokens": 8}) for i in range(2)]
        for pid in pids:
            await k.result(pid, timeout_s=60)
        on = {k.procs.get(p).placed_on for p in pids}
        assert on == {f"engine:fake@{n.node_id[:12]}" for n in nodes}     # nothing learned, one lane each: one each
        assert sorted(engine.routes.values()) == [1, 1]                 # each ran where it was placed

        before = dict(engine.routes)
        events, when = [], []
        async for e in k.syscall_stream("root", "llm.generate", {"prompt": _req(20, "t").prompt,
                                                                 "max_tokens": 28, "stream": True}):
            events.append(e)
            when.append(time.monotonic())
        chunks = [i for i, e in enumerate(events) if e["type"] == "chunk"]
        assert len(chunks) == 20 and events[-1]["ok"]
        assert when[-1] - when[chunks[0]] > 10 * STEP_S                 # the kernel's stream got them while it ran
        placed = k.procs.get(events[-1]["value"]["pid"]).placed_on
        ran = next(n for n, count in engine.routes.items() if count > before.get(n, 0))
        assert placed == f"engine:fake@{ran[:12]}"                      # the allocator's node ran it
    finally:
        await k.shutdown()
        await engine.close()


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
