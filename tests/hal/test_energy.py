"""RAPL counters over a fake powercap tree, modelled and sampled counters, the monitor."""

from __future__ import annotations

import pytest

from llmos.clock import FakeClock
from llmos.hal.energy import (
    EnergyMonitor,
    ModelledCounter,
    SampledPowerCounter,
    rapl_counters,
    rapl_note,
)


def test_rapl_reads_top_level_packages_only(powercap):
    pc, z = powercap
    root = pc.root
    counters = rapl_counters(root)
    assert [c.domain for c in counters] == ["rapl:package-0", "rapl:package-1"]  # no core, no psys
    assert all(c.device == "cpu" and c.method == "counter" for c in counters)
    pc.set(z["pkg0"], 1_000_000 + 2_500_000)       # +2.5 J
    pc.set(z["pkg1"], 2_000_000 + 1_000_000)       # +1 J
    r = {c.domain: c.read_joules() for c in counters}
    assert r == pytest.approx({"rapl:package-0": 2.5, "rapl:package-1": 1.0})
    assert rapl_note(root) == ""


def test_rapl_handles_wraparound(fake_powercap):
    zone = fake_powercap.zone("intel-rapl:0", "package-0", 900, max_uj=1000)
    (c,) = rapl_counters(fake_powercap.root)
    fake_powercap.set(zone, 100)                               # wrapped: 900 -> 1000 -> 100 = 200 µJ
    assert c.read_joules() == pytest.approx(200e-6)
    fake_powercap.set(zone, 400)
    assert c.read_joules() == pytest.approx(500e-6)


def test_psys_used_only_without_packages(fake_powercap):
    fake_powercap.zone("intel-rapl:0", "psys", 0)
    assert [c.domain for c in rapl_counters(fake_powercap.root)] == ["rapl:psys"]


def test_missing_powercap_gives_a_note(tmp_path):
    assert rapl_counters(tmp_path / "absent") == []
    assert "modelled" in rapl_note(tmp_path / "absent")


def test_unreadable_rapl_gives_a_note(powercap):
    pc, z = powercap
    root = pc.root
    for zone in z.values():            # unreadable even for root: a directory where the file was
        (zone / "energy_uj").unlink()
        (zone / "energy_uj").mkdir()
    assert rapl_counters(root) == []
    note = rapl_note(root)
    assert "not readable" in note and "modelled" in note


def test_modelled_counter_integrates_the_stated_power_and_is_labelled():
    clock = FakeClock()
    watts = [20.0]
    c = ModelledCounter("model:x", "cpu", lambda: watts[0], clock=clock, detail="20 W stated")
    clock.advance(10)
    r = c.reading()
    assert r.joules == pytest.approx(200.0)
    assert (r.label, r.measured, r.method) == ("modelled", False, "model")
    watts[0] = 5.0
    clock.advance(4)
    assert c.read_joules() == pytest.approx(220.0)


def test_sampled_power_counter_uses_trapezoids_and_is_measured():
    clock = FakeClock()
    watts = [100.0]
    c = SampledPowerCounter("p", "gpu:0", lambda: watts[0], clock=clock)
    clock.advance(2)
    watts[0] = 200.0
    assert c.read_joules() == pytest.approx(300.0)       # (100 + 200) / 2 × 2 s
    assert c.reading().label == "measured"


def test_monitor_reads_every_counter(powercap):
    root = powercap[0].root
    clock = FakeClock()
    mon = EnergyMonitor([*rapl_counters(root), ModelledCounter("model:gpu:0", "gpu:0", lambda: 1.0,
                                                                clock=clock)])
    assert mon.domains() == ["rapl:package-0", "rapl:package-1", "model:gpu:0"]
    assert not mon.all_measured()
    assert [r.label for r in mon.read()] == ["measured", "measured", "modelled"]
