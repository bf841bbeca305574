"""CpuManager over a fake psutil (and a smoke test on the real one)."""

from __future__ import annotations

import pytest

from llmos.clock import FakeClock
from llmos.hal.cpu import CPU_BUSY_W_PER_CORE, CPU_IDLE_W_PER_CORE, CpuManager, cpu_model_name
from llmos.hal.fake import FakePsutil


def test_devices_report_cores_clock_utilization_and_memory():
    clock = FakeClock()
    ps = FakePsutil(clock, logical=8, physical=4, freq_mhz=2400, freq_max_mhz=3600,
                    memory_total_bytes=32 << 30, memory_available_bytes=20 << 30)
    m = CpuManager(ps, clock=clock, name="Test CPU", powercap_root="/nonexistent")
    ps.set_utilization(0.25)
    clock.advance(2)
    (d,) = m.devices()
    assert (d.kind, d.device_id, d.name, d.cores, d.physical_cores) == ("cpu", "cpu", "Test CPU", 8, 4)
    assert (d.freq_mhz, d.freq_max_mhz) == (2400, 3600)
    assert d.utilization == pytest.approx(0.25)
    assert (d.memory_total_bytes, d.memory_available_bytes) == (32 << 30, 20 << 30)
    ps.set_utilization(1.0)
    clock.advance(1)
    assert m.devices()[0].utilization == pytest.approx(1.0)     # only the interval since the last read


def test_modelled_energy_uses_the_stated_figures():
    clock = FakeClock()
    ps = FakePsutil(clock, physical=4)
    m = CpuManager(ps, clock=clock, powercap_root="/nonexistent")
    (c,) = m.energy_counters()
    assert c.method == "model" and c.reading().label == "modelled"
    ps.set_utilization(0.5)
    clock.advance(10)
    watts = 4 * (CPU_IDLE_W_PER_CORE + 0.5 * (CPU_BUSY_W_PER_CORE - CPU_IDLE_W_PER_CORE))
    assert c.read_joules() == pytest.approx(watts * 10)
    assert m.devices()[0].utilization == pytest.approx(0.5)     # the model's tracker is separate


def test_rapl_replaces_the_model_when_readable(powercap):
    pc, z = powercap
    clock = FakeClock()
    m = CpuManager(FakePsutil(clock), clock=clock, powercap_root=pc.root)
    counters = m.energy_counters()
    assert [c.domain for c in counters] == ["rapl:package-0", "rapl:package-1"]
    assert all(c.reading().label == "measured" for c in counters)


def test_cpu_model_name_reads_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: Fancy CPU 9000\n")
    assert cpu_model_name(f) == "Fancy CPU 9000"
    assert cpu_model_name(tmp_path / "missing")        # falls back to the platform, never empty


def test_real_psutil_smoke():
    m = CpuManager()
    (d,) = m.devices()
    assert d.cores >= 1 and d.memory_total_bytes > 0
    assert d.utilization is not None and 0.0 <= d.utilization <= 1.0
