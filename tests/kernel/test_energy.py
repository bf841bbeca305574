"""EnergyMeter: joules per process and per agent on the fake HAL, measured vs modelled."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmos.clock import FakeClock
from llmos.errors import InvalidArgument, NotFound
from llmos.hal.base import EnergyReading
from llmos.hal.fake import FakeGpu, FakeHAL, FakePsutil
from llmos.kernel.energy import EnergyMeter


@pytest.fixture
def rig():
    clock = FakeClock()
    ps = FakePsutil(clock, physical=2)
    gpu = FakeGpu(power_w=100.0)
    hal = FakeHAL(clock, gpus=[gpu], psutil=ps)
    return clock, ps, gpu, EnergyMeter(hal, clock=clock)


def test_gpu_energy_split_by_weight_and_measured(rig):
    clock, _, _, meter = rig
    meter.start(1, "alice", devices=["gpu:0"], weight=1)
    meter.start(2, "bob", devices=["gpu:0"], weight=3)
    clock.advance(10)                                  # 1000 J measured on the GPU
    p1, p2 = meter.stop(1), meter.stop(2)
    assert p1.joules == pytest.approx(250) and p2.joules == pytest.approx(750)
    assert (p1.label, p2.label) == ("measured", "measured")
    assert p1.by_device == {"gpu:0": pytest.approx(250)}
    agents = meter.by_agent()
    assert agents["alice"].measured_j == pytest.approx(250) and agents["bob"].processes == 1


def test_membership_changes_split_intervals(rig):
    clock, _, gpu, meter = rig
    meter.start(1, "a", devices=["gpu:0"])
    clock.advance(10)                                  # 1000 J, all to pid 1
    meter.start(2, "a", devices=["gpu:0"])
    gpu.power_w = 200.0
    clock.advance(10)                                  # 2000 J, split evenly
    assert meter.stop(1).joules == pytest.approx(2000)
    meter.set_weight(2, 5)
    clock.advance(1)                                   # 200 J, pid 2 alone
    assert meter.stop(2).joules == pytest.approx(1200)
    assert meter.by_agent()["a"].joules == pytest.approx(3200)


def test_cpu_energy_is_modelled_and_idle_is_booked(rig):
    clock, ps, _, meter = rig
    ps.set_utilization(0.5)
    clock.advance(4)                                   # nobody runs: idle
    meter.start(7, "carol")                            # devices default to ("cpu",)
    clock.advance(10)
    p = meter.stop(7)
    watts = 2 * (1.0 + 0.5 * 9.0)                      # the stated CPU model, 2 physical cores
    assert p.modelled_j == pytest.approx(watts * 10) and p.measured_j == 0 and p.label == "modelled"
    tot = meter.totals()
    assert tot.idle_modelled_j == pytest.approx(watts * 4)
    assert tot.idle_measured_j == pytest.approx(1000 * 1.4)       # the GPU idled 14 s at 100 W
    assert tot.labels == {"model:cpu": "modelled", "nvml:gpu:0": "measured"}


def test_process_on_cpu_and_gpu_is_mixed(rig):
    clock, ps, _, meter = rig
    ps.set_utilization(1.0)
    meter.start(3, "dan", devices=["cpu", "gpu:0"])
    clock.advance(2)
    p = meter.process(3)
    assert p.running and p.label == "mixed"
    assert p.measured_j == pytest.approx(200) and p.modelled_j == pytest.approx(2 * 10.0 * 2)
    assert meter.stop(3).stopped_s == clock.monotonic()
    assert meter.process(3).label == "mixed"           # finished records stay readable


def test_errors_are_clear(rig):
    _, _, _, meter = rig
    meter.start(1, "a")
    with pytest.raises(InvalidArgument, match="already metered"):
        meter.start(1, "a")
    with pytest.raises(NotFound):
        meter.stop(99)
    with pytest.raises(NotFound):
        meter.process(99)
    with pytest.raises(InvalidArgument) as ei:
        meter.set_weight(1, 0)
    assert ei.value.field == "weight"
    with pytest.raises(InvalidArgument):
        meter.start(2, "a", devices=[])
    with pytest.raises(InvalidArgument):
        EnergyMeter(42)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["start", "stop", "advance", "weight"]),
                          st.integers(0, 3), st.floats(0.1, 5.0)), max_size=30))
def test_energy_is_conserved(ops):
    """Every joule the counter saw went to a process or to idle: nothing lost, nothing made up."""
    clock = FakeClock()
    counter = [0.0]
    meter = EnergyMeter(lambda: [EnergyReading("d", "cpu", counter[0], "counter")], clock=clock)
    running: set[int] = set()
    done = 0.0
    for op, pid, x in ops:
        if op == "start" and pid not in running:
            meter.start(pid, f"agent{pid % 2}", weight=x)
            running.add(pid)
        elif op == "stop" and pid in running:
            done += meter.stop(pid).joules
            running.discard(pid)
        elif op == "weight" and pid in running:
            meter.set_weight(pid, x)
        elif op == "advance":
            counter[0] += 37.0 * x
    live = sum(meter.process(p).joules for p in running)
    tot = meter.totals()
    assert done + live + tot.idle_measured_j == pytest.approx(counter[0])
    assert sum(a.joules for a in meter.by_agent().values()) == pytest.approx(done + live)
