"""Fixtures for the HAL tests: a fake powercap (RAPL) tree in a temp directory."""

from __future__ import annotations

from pathlib import Path

import pytest


class FakePowercap:
    """Writes a /sys/class/powercap look-alike: zones with name, energy_uj, max_energy_range_uj."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def zone(self, zone: str, name: str, energy_uj: int, max_uj: int | None = 262143328850) -> Path:
        z = self.root / zone
        z.mkdir(parents=True)
        (z / "name").write_text(name + "\n")
        (z / "energy_uj").write_text(f"{energy_uj}\n")
        if max_uj is not None:
            (z / "max_energy_range_uj").write_text(f"{max_uj}\n")
        return z

    @staticmethod
    def set(zone: Path, energy_uj: int) -> None:
        (zone / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def fake_powercap(tmp_path):
    return FakePowercap(tmp_path / "powercap")


@pytest.fixture
def powercap(fake_powercap):
    """A powercap tree with two packages, a core sub-zone and a psys zone."""
    pc = fake_powercap
    zones = {
        "pkg0": pc.zone("intel-rapl:0", "package-0", 1_000_000),
        "core0": pc.zone("intel-rapl:0:0", "core", 500_000),
        "pkg1": pc.zone("intel-rapl:1", "package-1", 2_000_000),
        "psys": pc.zone("intel-rapl:2", "psys", 9_000_000),
    }
    return pc, zones
