"""Allocation as a live kernel feature: engines for generations, devices for jobs, modes,
explanations in the journal, measurements fed back, capacity that makes work wait."""

from __future__ import annotations

import asyncio

import pytest

from llmos.alloc import Allocator
from llmos.alloc.resources import device_resources
from llmos.errors import AllocError
from llmos.hal.fake import FakeGpu, FakeHAL
from llmos.kernel import Kernel, ProcState
from llmos.kernel.placement import Placer
from llmos.kernel.process import Process
from llmos.llm.fake import FakeEngine

from .conftest import make_agent

S = ProcState


async def boot(config, clock, engines, **kw):
    kw.setdefault("hal", FakeHAL(clock))
    return await Kernel.boot(config, engines=engines, clock=clock, **kw)


def history(k: Kernel, pid: int) -> list[str]:
    k.journal.flush()
    return [h["reason"] for h in k.view(k.procs.get(pid), history=True)["history"]]


# ── the Placer on its own ───────────────────────────────────────────────────
def test_placer_maps_processes_to_tasks_and_engines(config, clock):
    hal = FakeHAL(clock)
    given = {"a": FakeEngine(model="m-a"), "b": FakeEngine(model="m-b")}
    placer = Placer(Allocator(device_resources(hal.snapshot()), clock=clock), config=config, given=given,
                    snapshot=hal.snapshot())
    unnamed = Process(1, "llm", "root", {"prompt": "x", "max_tokens": 30})
    named = Process(2, "llm", "root", {"prompt": "x", "model": "m-b"})
    tool = Process(3, "tool", "root", {"tool": "test.echo"})
    t = placer.task_for(unnamed)
    assert t.kind == "llm" and t.work == 30 and t.needs == {"llm", "default"}
    assert placer.task_for(named).needs == {"llm", "model:m-b"}
    assert placer.task_for(tool).kind == "tool:test.echo" and placer.task_for(tool).needs == {"tool"}
    assert placer.place(named).resource == "engine:b" and placer.engine_of(2) == "b"
    assert placer.place(unnamed).resource in ("engine:a", "engine:b")       # only the given ones
    assert placer.place(tool).resource == "cpu" and placer.devices_of(3) == ("cpu",)
    assert placer.place(named) is placer.placement(2)                       # held until it ends
    placer.drop(2)
    assert placer.placement(2) is None and placer.engine_of(2) is None


def test_placer_learns_speed_from_work_done_not_max_tokens(config, clock):
    placer = Placer(Allocator(device_resources(None), clock=clock), config=config,
                    given={"a": FakeEngine()})
    p = Process(1, "llm", "root", {"prompt": "x", "max_tokens": 100})
    placer.place(p)
    placer.started(1)
    placer.finish(1, seconds=2.0, joules=6.0, ok=True, done=20)             # 20 tokens in 2 s, 6 J
    lr = placer.alloc.learned("engine:a", "llm")
    assert lr.samples == 1 and lr.speed == pytest.approx(10.0) and lr.joules_per_unit == pytest.approx(0.3)
    placer.place(Process(2, "llm", "root", {"prompt": "x"}))
    placer.finish(2, seconds=1.0, ok=True, done=0)                          # nothing generated: not learned
    assert placer.alloc.learned("engine:a", "llm").samples == 1


# ── through the kernel ──────────────────────────────────────────────────────
async def test_generation_is_placed_and_explained(config, clock):
    k = await boot(config, clock, {"fake": FakeEngine("the answer")})
    try:
        pid = await k.submit("llm", {"prompt": "q", "max_tokens": 8})
        assert (await k.result(pid))["text"] == "the answer"
        p = k.procs.get(pid)
        assert p.placed_on == "engine:fake"
        dispatch = next(r for r in history(k, pid) if r.startswith("dispatched"))
        assert "placed on engine:fake (throughput: engine:fake" in dispatch
        row = k.journal.query("SELECT placed_on FROM processes WHERE pid = ?", (pid,))
        assert row == [("engine:fake",)]
        lr = k.placer.alloc.learned("engine:fake", "llm")
        assert lr is not None and lr.samples == 1                              # measured time fed back
        assert k.placer.alloc.load()["engine:fake"]["outstanding"] == 0       # released
    finally:
        await k.shutdown()


async def test_load_spreads_generations_over_engines(config, clock):
    a = FakeEngine("a " * 50, max_active=1, step_delay_s=0.002)
    b = FakeEngine("b " * 50, max_active=1, step_delay_s=0.002)
    k = await boot(config, clock, {"a": a, "b": b})
    try:
        p1 = await k.submit("llm", {"prompt": "one", "max_tokens": 60})
        p2 = await k.submit("llm", {"prompt": "two", "max_tokens": 60})
        await k.run_until_idle(10)
        assert {k.procs.get(p1).placed_on, k.procs.get(p2).placed_on} == {"engine:a", "engine:b"}
        assert len(a.requests) == 1 and len(b.requests) == 1
    finally:
        await k.shutdown()


async def test_named_model_goes_to_the_engine_that_serves_it(config, clock):
    k = await boot(config, clock, {"a": FakeEngine("from a", model="ma"), "b": FakeEngine("from b", model="mb")})
    try:
        for _ in range(3):
            res = await k.syscall("root", "llm.generate", {"prompt": "q", "model": "b"})
            assert res.ok and res.value["text"] == "from b"
    finally:
        await k.shutdown()


async def test_alloc_mode_per_agent(config, clock):
    fast = FakeEngine("ok", max_active=4)
    frugal = FakeEngine("ok", max_active=4)
    k = await boot(config.replace(alloc_mode="latency"), clock, {"fast": fast, "frugal": frugal})
    try:
        alloc = k.placer.alloc
        # measurements: "fast" makes 100 tok/s at 5 J/token, "frugal" 10 tok/s at 0.5 J/token
        alloc.observe("engine:fast", "llm", work=100, seconds=1.0, joules=500)
        alloc.observe("engine:frugal", "llm", work=100, seconds=10.0, joules=50)
        await make_agent(k, "green", syscalls=["llm.*", "proc.*"], alloc_mode="energy")
        quick = await k.syscall("root", "llm.generate", {"prompt": "q", "max_tokens": 4})
        eco = await k.syscall("green", "llm.generate", {"prompt": "q", "max_tokens": 4})
        assert quick.ok and eco.ok
        assert k.procs.get(quick.value["pid"]).placed_on == "engine:fast"     # config: latency
        assert k.procs.get(eco.value["pid"]).placed_on == "engine:frugal"     # the agent's: energy
        assert "placed on engine:frugal (energy:" in " ".join(history(k, eco.value["pid"]))
        bad = await k.syscall("root", "agent.create", {"name": "x", "capabilities": {"alloc_mode": "fastest"}})
        assert not bad.ok and "alloc_mode" in bad.error.field
    finally:
        await k.shutdown()


async def test_job_on_gpu_waits_for_gpu_memory_and_learns_its_device(config, clock):
    gate = asyncio.Event()
    seen: list[str] = []

    async def train(device: str) -> str:
        seen.append(device)
        await gate.wait()
        return device

    hal = FakeHAL(clock, gpus=[FakeGpu(memory_total_bytes=16 << 30)])
    k = await boot(config, clock, {"fake": FakeEngine()}, hal=hal)
    try:
        k.register_job("train", train)
        spec = {"type": "train", "device": "gpu", "demand": {"gpu_memory_bytes": 10 << 30}}
        j1 = await k.submit("job", spec)
        j2 = await k.submit("job", spec)
        for _ in range(200):
            if k.procs.get(j1).state == S.RUNNING and k.procs.get(j2).reason.startswith("waiting for room"):
                break
            await asyncio.sleep(0.01)
        assert k.procs.get(j1).state == S.RUNNING and k.procs.get(j1).placed_on == "gpu:0"
        assert k.procs.get(j2).state == S.QUEUED and "waiting for room" in k.procs.get(j2).reason
        gate.set()
        await k.run_until_idle(10)
        assert k.procs.get(j2).state == S.SUCCEEDED and seen == ["gpu:0", "gpu:0"]
        assert k.procs.get(j2).result == "gpu:0"
        res = await k.syscall("root", "proc.spawn", {"kind": "job", "spec": {
            "type": "train", "device": "gpu", "demand": {"gpu_memory_bytes": 20 << 30}}})
        assert not res.ok and res.error.code == "alloc" and "gpu:0" in res.error.message
        res = await k.syscall("root", "proc.spawn", {"kind": "job", "spec": {"type": "train", "device": "tpu"}})
        assert not res.ok and res.error.field == "spec.device"
    finally:
        gate.set()
        await k.shutdown()


async def test_job_needing_a_gpu_is_refused_without_one(config, clock):
    k = await boot(config, clock, {"fake": FakeEngine()}, hal=FakeHAL(clock, gpus=[]))
    try:
        k.register_job("train", lambda: None)
        with pytest.raises(AllocError, match="no resource provides"):
            await k.submit("job", {"type": "train", "device": "gpu"})
        assert not any(p.kind == "job" for p in k.procs)                      # nothing was admitted
    finally:
        await k.shutdown()


async def test_kill_releases_the_placement(config, clock):
    k = await boot(config, clock, {"fake": FakeEngine("w " * 500, step_delay_s=0.005)})
    try:
        pid = await k.submit("llm", {"prompt": "q", "max_tokens": 500})
        while k.procs.get(pid).state != S.RUNNING:
            await asyncio.sleep(0.005)
        assert k.placer.alloc.load()["engine:fake"]["outstanding"] == 1
        await k.syscall("root", "proc.kill", {"pid": pid})
        assert k.placer.alloc.load()["engine:fake"]["outstanding"] == 0
        assert k.placer.alloc.learned("engine:fake", "llm") is None           # a kill teaches nothing
    finally:
        await k.shutdown()


async def test_only_a_job_that_names_a_device_is_told_it(config, clock):
    k = await boot(config, clock, {"fake": FakeEngine()})
    try:
        k.register_job("where", lambda device="unset": device)
        plain = await k.submit("job", {"type": "where"})
        named = await k.submit("job", {"type": "where", "device": "cpu"})
        await k.run_until_idle(5)
        assert k.procs.get(plain).result == "unset" and k.procs.get(named).result == "cpu"
        assert k.procs.get(plain).placed_on == "cpu"
    finally:
        await k.shutdown()


async def test_queued_work_is_placed_by_a_live_highs_batch_and_explained(config, clock):
    import llmos.alloc.solve  # noqa: F401  (loaded, so the first batch runs at once)
    from llmos.cli.kernel import explain_lines
    from llmos.kernel.storage import Reader

    a = FakeEngine("a " * 5, max_active=2)
    b = FakeEngine("b " * 5, max_active=2)
    k = await boot(config, clock, {"a": a, "b": b}, run_loop=False)
    k.placer.live.budget_s = 10.0            # wall time on a shared machine: never the point here
    try:
        pids = [await k.submit("llm", {"prompt": f"q{i}", "max_tokens": 8}) for i in range(6)]
        await k.run_until_idle(10)
        assert k.placer.live.solved >= 1 and k.placer.live.last.used, k.placer.live.last
        reasons = [next(r for r in history(k, pid) if r.startswith("dispatched")) for pid in pids]
        assert all("HiGHS live batch 1: makespan over 6 queued task(s)" in r for r in reasons[:4]), reasons
        assert {k.procs.get(p).placed_on for p in pids} == {"engine:a", "engine:b"}
        k.journal.flush()
        lines = explain_lines(Reader(config.db_path), pids[0])
        assert any("HiGHS live batch" in line for line in lines)
    finally:
        await k.shutdown()


async def test_a_lone_process_says_list_scheduling_placed_it(config, clock):
    k = await boot(config, clock, {"fake": FakeEngine("x")})
    try:
        pid = await k.submit("llm", {"prompt": "q", "max_tokens": 4})
        await k.result(pid)
        dispatch = next(r for r in history(k, pid) if r.startswith("dispatched"))
        assert "list scheduling (no HiGHS batch yet: the queue was below two tasks)" in dispatch
    finally:
        await k.shutdown()
