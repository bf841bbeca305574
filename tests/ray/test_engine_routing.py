"""Engines on many machines: generations for one model spread over the OpenAI-compatible
endpoints that serve it (one per GPU node), by load and measured delay (default tier)."""

from __future__ import annotations

from collections import Counter

from llmos.alloc import Allocator
from llmos.alloc.resources import device_resources
from llmos.config import RemoteModel
from llmos.kernel.placement import Placer
from llmos.kernel.process import Process


def _placer(config, clock):
    cfg = config.replace(remotes=(RemoteModel("node-a", "http://10.0.0.1:8000/v1", "qwen"),
                                  RemoteModel("node-b", "http://10.0.0.2:8000/v1", "qwen")))
    return Placer(Allocator(device_resources(None), clock=clock), config=cfg, live=False)


def _gen(pid: int) -> Process:
    return Process(pid, "llm", "root", {"prompt": "x", "model": "qwen", "max_tokens": 100})


def test_generations_spread_over_the_endpoints_by_load(config, clock):
    placer = _placer(config, clock)
    where = Counter(placer.engine_of(p) for p in range(1, 17) if placer.place(_gen(p)) is not None)
    assert where == {"node-a": 8, "node-b": 8}          # each endpoint's lanes fill in turn


def test_a_slow_endpoint_gets_less_once_measured(config, clock):
    placer = _placer(config, clock)
    for pid in range(1, 9):                              # learn: node-a takes 10x longer per token
        placer.place(_gen(pid))
        engine = placer.engine_of(pid)
        placer.started(pid)
        placer.finish(pid, seconds=25.0 if engine == "node-a" else 2.5, done=100)
    where = Counter()
    for pid in range(100, 112):
        placer.place(_gen(pid))
        where[placer.engine_of(pid)] += 1
    assert where == {"node-b": 12}, where                # queued behind its own lanes, b still ends first
