"""CPU and system memory through psutil.

Map:
- ``CpuManager``: the CPU as one aggregated device (all logical cores), with
  frequency, utilization since the previous reading, and system memory.
- ``UtilizationTracker``: utilization between two reads from ``cpu_times``
  deltas; each consumer (snapshots, the energy model) owns its own tracker so
  one reader never steals another's interval.
- ``cpu_model_name``: the model string from /proc/cpuinfo (or platform).

``psutil`` is injected (``ps=``) so tests drive the same code with a fake.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from llmos.hal.base import DeviceInfo, DeviceManager
from llmos.hal.energy import EnergyCounter, ModelledCounter, rapl_counters

__all__ = ["CpuManager", "UtilizationTracker", "cpu_model_name", "CPU_IDLE_W_PER_CORE",
           "CPU_BUSY_W_PER_CORE"]

# Stated power figures for the CPU energy model (used only when RAPL is unreadable).
# Assumed, not measured: a typical desktop/server core is ~1 W idle and ~10 W fully
# busy (package TDP divided by physical cores). Shown wherever modelled joules are.
CPU_IDLE_W_PER_CORE = 1.0      # W per physical core at 0 % utilization
CPU_BUSY_W_PER_CORE = 10.0     # W per physical core at 100 % utilization


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


class UtilizationTracker:
    """CPU utilization (0..1) over the interval since this tracker's previous read."""

    def __init__(self, ps: Any) -> None:
        self._ps = ps
        self._last = ps.cpu_times()          # psutil scputimes; owner: this tracker

    def __call__(self) -> float:
        now = self._ps.cpu_times()
        busy = _busy(now) - _busy(self._last)
        total = _total(now) - _total(self._last)
        self._last = now
        if total <= 0:
            return 0.0
        return min(1.0, max(0.0, busy / total))


def _total(t: Any) -> float:
    return float(sum(t))


def _busy(t: Any) -> float:
    idle = float(getattr(t, "idle", 0.0)) + float(getattr(t, "iowait", 0.0))
    return _total(t) - idle


class CpuManager(DeviceManager):
    """All logical CPUs as one device, plus system memory."""

    def __init__(self, ps: Any | None = None, *, powercap_root: str | Path = "/sys/class/powercap",
                 clock: Any | None = None, name: str | None = None,
                 idle_w_per_core: float = CPU_IDLE_W_PER_CORE,
                 busy_w_per_core: float = CPU_BUSY_W_PER_CORE) -> None:
        if ps is None:
            import psutil as ps  # noqa: PLC0415 — the real library, only when none is injected
        self._ps = ps
        self._clock = clock
        self._powercap_root = Path(powercap_root)
        self._name = name or cpu_model_name()
        self._util = UtilizationTracker(ps)    # for snapshots; the energy model has its own
        self.idle_w_per_core = idle_w_per_core  # W, stated figure (see module constants)
        self.busy_w_per_core = busy_w_per_core  # W, stated figure

    @staticmethod
    def resource_name() -> str:
        return "CPU"

    def available(self) -> bool:
        return True

    def physical_cores(self) -> int:
        return int(self._ps.cpu_count(logical=False) or self._ps.cpu_count(logical=True) or 1)

    def devices(self) -> list[DeviceInfo]:
        ps = self._ps
        freq = None
        try:
            freq = ps.cpu_freq()
        except (OSError, NotImplementedError, AttributeError):
            freq = None
        mem = ps.virtual_memory()
        return [DeviceInfo(
            kind="cpu", index=0, name=self._name,
            cores=int(ps.cpu_count(logical=True) or 1),
            physical_cores=self.physical_cores(),
            freq_mhz=float(freq.current) if freq and freq.current else None,
            freq_max_mhz=float(freq.max) if freq and freq.max else None,
            utilization=self._util(),
            memory_total_bytes=int(mem.total),
            memory_available_bytes=int(mem.available),
        )]

    def model_power_w(self, utilization: float) -> float:
        """The stated CPU power model: idle + utilization × (busy − idle), per physical core."""
        cores = self.physical_cores()
        return cores * (self.idle_w_per_core + utilization * (self.busy_w_per_core - self.idle_w_per_core))

    def energy_counters(self) -> list[EnergyCounter]:
        counters: list[EnergyCounter] = list(rapl_counters(self._powercap_root))
        if counters:
            return counters
        tracker = UtilizationTracker(self._ps)
        cores = self.physical_cores()
        detail = (f"{cores} cores × ({self.idle_w_per_core:g} W idle + util × "
                  f"{self.busy_w_per_core - self.idle_w_per_core:g} W), stated")
        return [ModelledCounter("model:cpu", "cpu", lambda: self.model_power_w(tracker()),
                                clock=self._clock, detail=detail)]
