"""detect() on this machine and FakeHAL snapshots."""

from __future__ import annotations

import pytest

from llmos.clock import FakeClock
from llmos.hal import HAL, detect
from llmos.hal.fake import FakeGpu, FakeHAL, FakeNvml


def test_detect_this_machine():
    hal = detect()
    try:
        assert isinstance(hal, HAL)
        snap = hal.snapshot()
        assert snap.of_kind("cpu") and snap.devices[0].kind == "cpu"
        assert snap.energy, "at least the CPU has an energy counter (measured or modelled)"
        for r in snap.energy:
            assert r.label in ("measured", "modelled")
        if not hal.manager("GPU").available():
            assert any(n.startswith("GPU:") for n in snap.notes)
    finally:
        hal.close()


def test_detect_with_an_injected_nvml_and_powercap(powercap):
    pc, _ = powercap
    clock = FakeClock()
    hal = detect(clock, powercap_root=pc.root, nvml=FakeNvml([FakeGpu(), FakeGpu()], clock=clock))
    assert [d.device_id for d in hal.devices()] == ["cpu", "gpu:0", "gpu:1"]
    assert hal.energy.all_measured()
    assert hal.notes == []


def test_fake_hal_snapshot_and_energy():
    clock = FakeClock()
    hal = FakeHAL(clock, gpus=[FakeGpu(power_w=80.0)])
    snap = hal.snapshot()
    assert [d.device_id for d in snap.devices] == ["cpu", "gpu:0"]
    assert {r.domain: r.label for r in snap.energy} == {"model:cpu": "modelled", "nvml:gpu:0": "measured"}
    clock.advance(10)
    gpu = {r.domain: r.joules for r in hal.read_energy()}["nvml:gpu:0"]
    assert gpu == pytest.approx(800.0)
    assert hal.manager("CPU") is not None and hal.manager("TPU") is None
    hal.close()


def test_fake_hal_without_driver_notes_it():
    hal = FakeHAL(nvml=FakeNvml(missing_library=True))
    snap = hal.snapshot()
    assert [d.kind for d in snap.devices] == ["cpu"]
    assert any("NVML unavailable" in n for n in snap.notes)
