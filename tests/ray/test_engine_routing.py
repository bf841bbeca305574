"""Engines on many machines: generations for one model spread over the OpenAI-compatible
endpoints that serve it (one per GPU node), by load and measured delay (default tier)."""

from __future__ import annotations

from collections import Counter

from llmos.alloc import Allocator
from llmos.alloc.resources import device_resources
from llmos.config import RemoteModel
from llmos.kernel.placement import Placer
from llmos.kernel.process import Process
from llmos.llm.fake import FakeEngine


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


# ── an engine on nodes: the allocator picks the node ───────────────────────
class NodesEngine(FakeEngine):
    """The node surface of ``RayEngine`` (``nodes()``, ``at(node)``) over one FakeEngine per
    node (a fake behind the same interface; the ray tier runs the real one)."""

    def __init__(self, nodes: tuple[str, ...] = ("node-a", "node-b")) -> None:
        super().__init__("whole")
        self.on = {n: FakeEngine(f"{n} " * 20, max_active=1, step_delay_s=0.002) for n in nodes}
        self.live = dict.fromkeys(nodes, 1)          # node -> lanes; a test removes a node here

    def nodes(self) -> dict[str, int]:
        return dict(self.live)

    def at(self, node: str) -> FakeEngine:
        return self.on[node]

    async def start(self) -> None:
        await super().start()
        for e in self.on.values():
            await e.start()

    async def close(self) -> None:
        for e in self.on.values():
            await e.close()
        await super().close()


async def test_the_allocator_places_each_generation_on_a_node_and_explain_names_it(config, clock):
    from llmos.hal.fake import FakeHAL
    from llmos.kernel import Kernel

    engine = NodesEngine()
    k = await Kernel.boot(config, engines={"fake": engine}, clock=clock, hal=FakeHAL(clock))
    try:
        p1 = await k.submit("llm", {"prompt": "one", "max_tokens": 30})
        p2 = await k.submit("llm", {"prompt": "two", "max_tokens": 30})
        await k.run_until_idle(10)
        on = {pid: k.procs.get(pid).placed_on for pid in (p1, p2)}
        assert set(on.values()) == {"engine:fake@node-a", "engine:fake@node-b"}     # one lane each: one each
        for pid, res in on.items():
            node = res.split("@")[1]
            assert (await k.result(pid))["text"] == f"{node} " * 20               # run by that node's engine
            k.journal.flush()
            dispatch = next(h["reason"] for h in k.view(k.procs.get(pid), history=True)["history"]
                            if h["reason"].startswith("dispatched"))
            assert f"placed on engine:fake@{node} (" in dispatch
        assert [len(e.requests) for e in engine.on.values()] == [1, 1] and engine.requests == []
        assert "engine:fake" not in {r.name for r in k.placer.alloc.resources}       # the nodes replace it
    finally:
        await k.shutdown()


def test_a_node_that_leaves_loses_its_resource_once_free(config, clock):
    engine = NodesEngine()
    placer = Placer(Allocator(device_resources(None), clock=clock), config=config, given={"fake": engine},
                    live=False, loaded=lambda: {"fake": engine})

    def engines() -> set[str]:
        return {r.name for r in placer.alloc.resources if r.name.startswith("engine:fake")}
    placer.sync_nodes()
    assert engines() == {"engine:fake@node-a", "engine:fake@node-b"}
    placer.place(Process(1, "llm", "root", {"prompt": "x", "max_tokens": 10}))
    gone = placer.engine_of(1)
    assert gone in ("fake@node-a", "fake@node-b")
    del engine.live[gone.split("@")[1]]
    placer.sync_nodes()
    assert f"engine:{gone}" in engines()                             # still runs pid 1
    placer.finish(1, seconds=1.0, done=10)
    placer.sync_nodes()
    assert engines() == {f"engine:fake@{next(iter(engine.live))}"}
    engine.live.clear()
    placer.sync_nodes()
    assert engines() == {"engine:fake"}                              # no live node: the engine's own resource
