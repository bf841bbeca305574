"""Allocation as a live kernel feature: engines for generations, devices for jobs, modes,
explanations in the journal, measurements fed back, capacity that makes work wait."""

from __future__ import annotations

import asyncio
import os

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


# ── capacities that are real ────────────────────────────────────────────────
def test_capacities_are_read_again_from_the_hal_while_running(config, clock):
    from llmos.kernel.placement import REFRESH_S

    gpu = FakeGpu(memory_total_bytes=16 << 30)
    hal = FakeHAL(clock, gpus=[gpu])
    placer = Placer(Allocator(device_resources(hal.snapshot()), clock=clock), config=config,
                    snapshot=hal.snapshot(), hal=hal)
    job = Process(1, "job", "root", {"type": "t", "device": "gpu", "demand": {"gpu_memory_bytes": 8 << 30}})
    gpu.memory_used_bytes = 12 << 30                       # someone else took 12 GiB
    assert not placer.refresh()                            # not due yet: the boot reading stands
    clock.advance(REFRESH_S)
    assert placer.refresh()
    cap = {r.name: r.capacity for r in placer.alloc.resources}["gpu:0"]
    assert cap["gpu_memory_bytes"] == 4 << 30
    assert placer.place(job) is None                       # 8 GiB no longer fits: it waits
    gpu.memory_used_bytes = 0
    clock.advance(REFRESH_S)
    placer.refresh()
    assert placer.place(job).resource == "gpu:0"
    assert placer.grant(1).gpus == ("0",)                  # CUDA_VISIBLE_DEVICES=0 for it


def test_a_job_holds_its_cores_alone_and_others_get_the_rest(config, clock):
    cpus = sorted(os.sched_getaffinity(0))
    placer = Placer(Allocator(device_resources(FakeHAL(clock).snapshot()), clock=clock), config=config)
    job = Process(1, "job", "root", {"type": "t", "demand": {"cores": 1, "memory_bytes": 64 << 20}})
    tool = Process(2, "tool", "root", {"tool": "python.run"})
    assert placer.place(job) is not None
    g = placer.grant(1)
    assert g.cores == (cpus[0],) and g.memory_bytes == 64 << 20 and g.gpus == ()
    assert "not enforced" in placer.placement(1).reason and "grant=" in placer.placement(1).reason
    placer.place(tool)
    assert placer.grant(2).cores == (tuple(cpus[1:]) or (cpus[0],))
    placer.drop(1)
    placer.drop(2)
    assert placer.grant(1) is None
    placer.place(Process(3, "tool", "root", {"tool": "python.run"}))
    assert placer.grant(3).cores == tuple(cpus)            # released: every CPU again


async def test_a_program_runs_on_the_cores_a_job_does_not_hold_and_explain_says_how(config, clock, tmp_path):
    import threading

    from llmos.cli.kernel import explain_lines
    from llmos.kernel.storage import Reader
    from llmos.tools import default_registry

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs to keep one for the job")
    ws = tmp_path / "ws"
    ws.mkdir()
    gate = threading.Event()
    granted = []

    def hold(grant=None):
        granted.append(grant)
        gate.wait(20)
        return "held"

    k = await boot(config, clock, {"fake": FakeEngine()}, tools=default_registry())
    try:
        k.register_job("hold", hold)
        job = await k.submit("job", {"type": "hold", "demand": {"cores": 1}})
        for _ in range(500):
            if granted:
                break
            await asyncio.sleep(0.01)
        assert granted and granted[0].cores == (cpus[0],)           # handed to the job as grant=
        code = ("import os, resource\n"
                "print(sorted(os.sched_getaffinity(0)), repr(os.environ.get('CUDA_VISIBLE_DEVICES')))\n")
        res = await k.syscall("root", "proc.spawn", {"kind": "tool", "confirmed": True, "spec": {
            "tool": "python.run", "args": {"code": code}, "workdir": str(ws)}})
        assert res.ok, res.error
        pid = res.value["pid"]
        out = await k.result(pid, timeout_s=60)
        if k.procs.get(pid).state != S.SUCCEEDED and "sandbox" in str(k.procs.get(pid).error):
            pytest.skip(f"no sandbox here: {k.procs.get(pid).error}")
        text = str(out)
        assert f"{cpus[1:]} ''" in text, text                 # off the job's core; no GPUs
        k.journal.flush()
        lines = "\n".join(explain_lines(Reader(config.db_path), pid))
        assert f"granted cores {cpus[1]}" in lines and "enforced on its sandboxed child" in lines
        assert "sched_setaffinity" in lines and ("RLIMIT_AS" in lines or "cgroup v2" in lines)
        job_lines = "\n".join(explain_lines(Reader(config.db_path), job))
        assert f"granted cores {cpus[0]}" in job_lines and "not enforced" in job_lines
    finally:
        gate.set()
        await k.shutdown()
