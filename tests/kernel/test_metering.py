"""Energy per process and per agent on the fake HAL (measured vs modelled, journaled),
the HAL detected at boot, and the kernel's live figures (``stats``)."""

from __future__ import annotations

import asyncio

import pytest

import llmos.hal
from llmos.hal.fake import FakeGpu, FakeHAL
from llmos.kernel import Kernel, ProcState
from llmos.llm.base import EngineStats
from llmos.llm.fake import FakeEngine

from .conftest import make_agent

S = ProcState
CPU_IDLE_W = 4 * 1.0          # FakeHAL's CPU: 4 physical cores × 1 W idle (stated model), at 0 % busy


async def until(pred, limit: float = 5.0) -> None:
    for _ in range(int(limit / 0.005)):
        if pred():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


@pytest.fixture
async def rig(config, clock):
    gpu = FakeGpu(power_w=100.0, memory_total_bytes=16 << 30)
    k = await Kernel.boot(config, engines={"fake": FakeEngine("ok")}, clock=clock,
                          hal=FakeHAL(clock, gpus=[gpu]))
    gate = asyncio.Event()

    async def hold(device: str = "cpu") -> str:
        await gate.wait()
        return device

    k.register_job("hold", hold)
    yield k, gate
    gate.set()
    await k.shutdown()


async def test_joules_per_process_and_agent_measured_and_modelled(rig, clock):
    k, gate = rig
    await make_agent(k, "trainer", syscalls=["proc.*", "agent.list"])
    on_cpu = await k.submit("job", {"type": "hold"})
    spawned = await k.syscall("trainer", "proc.spawn", {"kind": "job", "spec": {"type": "hold", "device": "gpu"}})
    on_gpu = spawned.unwrap()["pid"]
    await until(lambda: k.procs.get(on_cpu).state == S.RUNNING and k.procs.get(on_gpu).state == S.RUNNING)
    clock.advance(10.0)
    live = (await k.syscall("root", "proc.get", {"pid": on_gpu})).unwrap()
    assert live["joules"] == pytest.approx(1000.0) and live["joules_label"] == "measured"   # NVML counter
    gate.set()
    await k.run_until_idle(5)
    cpu_p, gpu_p = k.procs.get(on_cpu), k.procs.get(on_gpu)
    assert cpu_p.placed_on == "cpu" and gpu_p.placed_on == "gpu:0"
    assert cpu_p.joules == pytest.approx(CPU_IDLE_W * 10) and cpu_p.joules_label == "modelled"
    assert gpu_p.joules == pytest.approx(1000.0) and gpu_p.joules_label == "measured"
    k.journal.flush()
    rows = dict((pid, (j, jm)) for pid, j, jm in k.journal.query(
        "SELECT pid, joules, joules_modelled FROM processes WHERE pid IN (?, ?)", (on_cpu, on_gpu)))
    assert rows[on_cpu] == pytest.approx((40.0, 40.0)) and rows[on_gpu] == pytest.approx((1000.0, 0.0))
    by_agent = k.energy_by_agent()
    assert by_agent["root"]["joules"] == pytest.approx(40.0) and by_agent["root"]["label"] == "modelled"
    assert by_agent["trainer"]["measured_j"] == pytest.approx(1000.0) and by_agent["trainer"]["label"] == "measured"
    listed = (await k.syscall("trainer", "agent.list", {})).unwrap()["agents"]
    assert listed[0]["id"] == "trainer" and listed[0]["joules"] == pytest.approx(1000.0)
    assert listed[0]["joules_label"] == "measured"
    learned = k.placer.alloc.learned("gpu:0", "job:hold")
    assert learned is not None and learned.joules_per_unit == pytest.approx(1000.0)   # fed back


async def test_running_energy_counts_in_the_agent_total_and_survives_a_restart(config, clock):
    engine = FakeEngine("w " * 400, step_delay_s=0.002)
    k = await Kernel.boot(config, engines={"fake": engine}, clock=clock, hal=FakeHAL(clock))
    pid = await k.submit("llm", {"prompt": "long", "max_tokens": 400})
    await until(lambda: k.procs.get(pid).state == S.RUNNING)
    clock.advance(5.0)
    assert k.energy_by_agent()["root"]["joules"] == pytest.approx(CPU_IDLE_W * 5)   # while it runs
    await k.result(pid)
    assert k.procs.get(pid).joules == pytest.approx(CPU_IDLE_W * 5)
    await k.shutdown()
    k2 = await Kernel.boot(config, engines={"fake": FakeEngine()}, clock=clock, hal=FakeHAL(clock))
    try:
        assert k2.energy_by_agent()["root"]["joules"] == pytest.approx(CPU_IDLE_W * 5)  # from the journal
    finally:
        await k2.shutdown()


async def test_remote_engines_are_not_metered(config, clock):
    remote = FakeEngine("far away")
    remote.devices = ()                  # an engine whose work runs on another machine
    k = await Kernel.boot(config, engines={"remote": remote}, clock=clock, hal=FakeHAL(clock))
    try:
        pid = await k.submit("llm", {"prompt": "q"})
        await k.result(pid)
        clock.advance(1.0)
        assert k.procs.get(pid).joules is None and k.procs.get(pid).joules_label is None
        assert "root" not in k.energy_by_agent()
    finally:
        await k.shutdown()


async def test_boot_detects_the_hal_unless_told_not_to(config, clock, monkeypatch):
    made = []

    def detect(clock=None):
        hal = FakeHAL(clock)
        closed = hal.close
        hal.close = lambda: (made.append("closed"), closed())
        made.append(hal)
        return hal

    monkeypatch.setattr(llmos.hal, "detect", detect)
    k = await Kernel.boot(config, engines={"fake": FakeEngine()}, clock=clock)
    assert k.hal is made[0] and k.meter is not None
    await k.shutdown()
    assert made[-1] == "closed"
    k = await Kernel.boot(config, engines={"fake": FakeEngine()}, clock=clock, hal=False)
    try:
        assert k.hal is None and k.meter is None and len(made) == 2
        pid = await k.submit("llm", {"prompt": "q"})
        await k.result(pid)
        assert k.procs.get(pid).joules is None and k.procs.get(pid).placed_on == "engine:fake"
    finally:
        await k.shutdown()


class _MeasuredEngine(FakeEngine):
    def stats(self) -> EngineStats:
        return EngineStats(active=2, waiting=1, tokens_generated=640, tokens_per_s=12.5)


async def test_stats_are_live(config, clock):
    k = await Kernel.boot(config, engines={"a": _MeasuredEngine(), "b": FakeEngine()}, clock=clock,
                          hal=FakeHAL(clock))
    try:
        k.register_job("hold", asyncio.Event().wait)
        pid = await k.submit("job", {"type": "hold"})
        await until(lambda: k.procs.get(pid).state == S.RUNNING)
        clock.advance(2.0)
        st = k.stats()
        assert st["tokens_per_s"] == pytest.approx(12.5)
        assert {e["name"]: e["tokens_per_s"] for e in st["engines"]} == {"a": 12.5, "b": 0.0}
        assert st["processes"]["running"] == 1 and st["queue_depth"] == 0
        assert st["agents"]["root"]["joules"] == pytest.approx(CPU_IDLE_W * 2)
        assert st["agents"]["root"]["joules_label"] == "modelled"
        assert st["live"][0]["pid"] == pid and st["live"][0]["joules"] == pytest.approx(8.0)
        assert st["alloc"]["mode"] == "throughput" and st["alloc"]["load"]["cpu"]["running"] == 1
    finally:
        await k.shutdown(grace_s=0.1)
