"""NvidiaGpuManager against the mocked NVML (and, where present, the real one)."""

from __future__ import annotations

import pytest

from llmos.clock import FakeClock
from llmos.hal.fake import FakeGpu, FakeNvml
from llmos.hal.gpu import GPU_IDLE_FRACTION, NvidiaGpuManager


def _manager(*gpus: FakeGpu, clock: FakeClock | None = None) -> tuple[NvidiaGpuManager, FakeNvml]:
    nv = FakeNvml(list(gpus), clock=clock or FakeClock())
    return NvidiaGpuManager(nv, clock=nv.clock), nv


def test_devices_convert_nvml_units():
    g = FakeGpu(name="NVIDIA H100", memory_total_bytes=80 << 30, memory_used_bytes=30 << 30,
                utilization=0.42, power_w=123.456, power_limit_w=700)
    m, _ = _manager(g, FakeGpu())
    assert m.available() and m.count() == 2 and m.resource_name() == "GPU"
    d = m.devices()[0]
    assert (d.kind, d.index, d.name, d.device_id) == ("gpu", 0, "NVIDIA H100", "gpu:0")
    assert d.memory_total_bytes == 80 << 30 and d.memory_available_bytes == 50 << 30
    assert d.utilization == pytest.approx(0.42)
    assert d.power_w == pytest.approx(123.456) and d.power_limit_w == pytest.approx(700)
    assert d.freq_mhz == 1500 and d.freq_max_mhz == 1980 and d.uuid == "GPU-fake-0000"
    assert m.driver_version == "550.00"


def test_no_driver_is_not_an_error():
    m = NvidiaGpuManager(FakeNvml(missing_library=True))
    assert not m.available() and m.count() == 0 and m.devices() == [] and m.energy_counters() == []
    assert "NVML unavailable" in m.reason and "Library Not Found" in m.reason


def test_no_gpus_is_reported():
    m = NvidiaGpuManager(FakeNvml([]))
    assert not m.available() and m.reason == "NVML sees no GPUs"


def test_energy_counter_preferred_and_measured():
    clock = FakeClock()
    g = FakeGpu(power_w=100.0)
    m, _ = _manager(g, clock=clock)
    (c,) = m.energy_counters()
    assert (c.domain, c.device, c.method) == ("nvml:gpu:0", "gpu:0", "counter")
    clock.advance(10)
    assert c.read_joules() == pytest.approx(1000.0)
    g.power_w = 300.0
    clock.advance(1)
    r = c.reading()
    assert r.joules == pytest.approx(1300.0) and r.label == "measured"


def test_power_sampling_when_no_energy_counter():
    clock = FakeClock()
    g = FakeGpu(power_w=60.0, energy_counter=False)
    m, _ = _manager(g, clock=clock)
    (c,) = m.energy_counters()
    assert c.method == "sampled-power" and c.reading().label == "measured"
    clock.advance(5)
    assert c.read_joules() == pytest.approx(300.0)


def test_model_when_no_power_reading_either():
    clock = FakeClock()
    g = FakeGpu(energy_counter=False, power_reading=False, power_limit_w=400.0, utilization=0.5)
    m, _ = _manager(g, clock=clock)
    (c,) = m.energy_counters()
    assert c.method == "model" and c.reading().label == "modelled" and "400 W" in c.detail
    clock.advance(10)
    expected = 400.0 * (GPU_IDLE_FRACTION + (1 - GPU_IDLE_FRACTION) * 0.5) * 10
    assert c.read_joules() == pytest.approx(expected)
    assert m.devices()[0].power_w is None


def test_close_shuts_nvml_down_once():
    m, nv = _manager(FakeGpu())
    m.close()
    m.close()
    assert nv.shutdowns == 1 and not m.available()


def test_visible_ids_from_cuda_visible_devices(monkeypatch):
    m, _ = _manager(FakeGpu())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert m.visible_ids() is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0, 2")
    assert m.visible_ids() == ["0", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert m.visible_ids() == []


def test_real_nvml_never_raises():
    """On this machine: either GPUs are listed, or a reason says why not."""
    m = NvidiaGpuManager()
    try:
        if m.available():
            assert m.count() >= 1 and all(d.kind == "gpu" for d in m.devices())
        else:
            assert m.reason and m.devices() == []
    finally:
        m.close()


@pytest.mark.gpu
def test_real_gpu_energy_counts_up():
    import time

    m = NvidiaGpuManager()
    assert m.available(), m.reason
    counters = m.energy_counters()
    before = [c.read_joules() for c in counters]
    time.sleep(0.5)
    after = [c.read_joules() for c in counters]
    assert all(a >= b for a, b in zip(after, before, strict=True))
    assert any(a > b for a, b in zip(after, before, strict=True))
    m.close()
