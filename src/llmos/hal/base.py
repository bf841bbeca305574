"""The hardware abstraction's interface: device managers, device snapshots, the HAL.

Map:
- ``DeviceInfo``: one device as seen now (CPU package or GPU): cores, clock,
  utilization, memory, power. Fields a device does not report are ``None``.
- ``DeviceManager``: one small interface per device kind, in the style of Ray's
  ``AcceleratorManager`` (one file per vendor: ``cpu.py``, ``gpu.py``). A
  manager says whether its devices exist (``available``/``reason``), lists them,
  and offers the energy counters they expose.
- ``EnergyReading``: a cumulative joule figure for one energy domain, labelled
  ``measured`` (a hardware counter or sampled power) or ``modelled``
  (utilization × a stated power figure). Defined here so managers and
  ``energy.py`` share it; the counters themselves live in ``energy.py``.
- ``HAL``: the managers of this machine plus its energy monitor; ``snapshot()``
  is what ``llmos hw`` prints and what the allocator turns into resources.

The HAL only reads hardware; it never changes clocks, limits or placement.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from llmos.hal.energy import EnergyCounter, EnergyMonitor

__all__ = ["DeviceInfo", "DeviceManager", "EnergyReading", "HardwareSnapshot", "HAL"]


@dataclass(frozen=True)
class DeviceInfo:
    """One device as seen at one moment. Unknown figures are None, never guessed."""

    kind: str                                  # "cpu" | "gpu"
    index: int                                 # 0.. within its kind
    name: str                                  # model name, e.g. "NVIDIA H100 80GB HBM3"
    cores: int | None = None                   # logical cores (CPU); None for GPUs
    physical_cores: int | None = None          # physical cores (CPU)
    freq_mhz: float | None = None              # current clock, MHz (CPU: average; GPU: SM clock)
    freq_max_mhz: float | None = None          # maximum clock, MHz
    utilization: float | None = None           # 0..1, averaged since the previous reading
    memory_total_bytes: int | None = None      # bytes (CPU: system RAM; GPU: device memory)
    memory_available_bytes: int | None = None  # bytes free for new work
    power_w: float | None = None               # instantaneous draw, watts (measured only)
    power_limit_w: float | None = None         # enforced power limit, watts
    uuid: str | None = None                    # stable id (GPU UUID)

    @property
    def device_id(self) -> str:
        """``cpu`` for the (single, aggregated) CPU device; ``gpu:N`` for GPU N."""
        return "cpu" if self.kind == "cpu" else f"{self.kind}:{self.index}"


@dataclass(frozen=True)
class EnergyReading:
    """Cumulative energy of one domain since its counter was opened."""

    domain: str          # e.g. "rapl:package-0", "nvml:gpu:0", "model:cpu"
    device: str          # DeviceInfo.device_id this domain belongs to ("cpu", "gpu:0")
    joules: float        # J, cumulative, monotonic (counter wrap-around handled)
    method: str          # "counter" | "sampled-power" | "model"
    detail: str = ""     # e.g. the stated power figure a model uses

    @property
    def measured(self) -> bool:
        return self.method != "model"

    @property
    def label(self) -> str:
        """``measured`` or ``modelled``: every joule figure shown to a person carries this."""
        return "measured" if self.measured else "modelled"


class DeviceManager(abc.ABC):
    """One device kind (Ray's AcceleratorManager, trimmed to what LLM OS reads).

    Override ``resource_name``, ``available``, ``devices`` and optionally
    ``energy_counters`` and ``visible_ids_env_var``.
    """

    #: why the devices are unavailable (no driver, no library); "" when available
    reason: str = ""

    @staticmethod
    @abc.abstractmethod
    def resource_name() -> str:
        """The resource this manager provides to the allocator: ``CPU`` or ``GPU``."""

    @abc.abstractmethod
    def available(self) -> bool:
        """True when at least one device of this kind can be read."""

    @abc.abstractmethod
    def devices(self) -> list[DeviceInfo]:
        """A fresh snapshot of every device of this kind (empty when unavailable)."""

    def count(self) -> int:
        return len(self.devices()) if self.available() else 0

    def energy_counters(self) -> list[EnergyCounter]:
        """Energy counters these devices expose (hardware or modelled); default none."""
        return []

    @staticmethod
    def visible_ids_env_var() -> str | None:
        """Environment variable restricting which devices a process may use."""
        return None

    def visible_ids(self) -> list[str] | None:
        """Ids listed in ``visible_ids_env_var`` (None: unrestricted)."""
        var = self.visible_ids_env_var()
        if var is None or var not in os.environ:
            return None
        raw = os.environ[var].strip()
        return [] if raw in ("", "NoDevFiles") else [x.strip() for x in raw.split(",") if x.strip()]

    def close(self) -> None:
        """Release driver handles (NVML shutdown); idempotent. Default: nothing held."""
        return None


@dataclass(frozen=True)
class HardwareSnapshot:
    devices: tuple[DeviceInfo, ...]           # CPU first, then GPUs by index
    energy: tuple[EnergyReading, ...]         # one reading per energy domain
    notes: tuple[str, ...] = ()               # why something is missing ("NVML: library not found")

    def of_kind(self, kind: str) -> list[DeviceInfo]:
        return [d for d in self.devices if d.kind == kind]


@dataclass
class HAL:
    """The hardware of one machine: device managers plus an energy monitor."""

    managers: Sequence[DeviceManager]          # owner: detect() / FakeHAL; fixed after boot
    energy: EnergyMonitor                      # owner: this HAL
    notes: list[str] = field(default_factory=list)  # boot-time notes (missing drivers, unreadable RAPL)

    def manager(self, resource_name: str) -> DeviceManager | None:
        for m in self.managers:
            if m.resource_name() == resource_name:
                return m
        return None

    def devices(self, kind: str | None = None) -> list[DeviceInfo]:
        out: list[DeviceInfo] = []
        for m in self.managers:
            if m.available():
                out.extend(d for d in m.devices() if kind is None or d.kind == kind)
        return out

    def read_energy(self) -> list[EnergyReading]:
        return self.energy.read()

    def snapshot(self) -> HardwareSnapshot:
        notes = list(self.notes)
        for m in self.managers:
            if not m.available() and m.reason:
                notes.append(f"{m.resource_name()}: {m.reason}")
        return HardwareSnapshot(devices=tuple(self.devices()), energy=tuple(self.read_energy()),
                                notes=tuple(dict.fromkeys(notes)))

    def close(self) -> None:
        for m in self.managers:
            m.close()
