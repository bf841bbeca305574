"""Energy counters: RAPL, NVML, sampled power and the stated-figure model.

Map:
- ``EnergyCounter``: one energy domain; ``read_joules()`` is cumulative joules
  since the counter was opened (monotonic; wrap-around handled).
- ``RaplCounter`` / ``rapl_counters(root)`` / ``rapl_note(root)``: Linux
  powercap (``/sys/class/powercap/intel-rapl:N/energy_uj``), top-level package
  zones only (sub-zones such as ``core`` are inside the package figure; ``psys``
  is used only when no package zone exists, so nothing is counted twice).
  Most kernels make ``energy_uj`` root-only; unreadable zones give a note.
- ``NvmlEnergyCounter``: NVML's total-energy counter (mJ since driver load; Volta+).
- ``SampledPowerCounter``: integrates a measured power reading (NVML power
  usage) over time (trapezoids between reads); labelled measured, method
  ``sampled-power``; accuracy depends on how often it is read.
- ``ModelledCounter``: integrates ``power_w()``, a stated model (utilization ×
  stated watts); always labelled ``modelled`` with its figure in ``detail``.
- ``EnergyMonitor``: the set of counters of one machine; ``read()`` gives an
  ``EnergyReading`` per domain.
"""

from __future__ import annotations

import abc
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from llmos.clock import Clock, SystemClock
from llmos.hal.base import EnergyReading

__all__ = ["EnergyCounter", "RaplCounter", "rapl_counters", "rapl_note", "NvmlEnergyCounter",
           "SampledPowerCounter", "ModelledCounter", "EnergyMonitor"]

_TOP_ZONE = re.compile(r"^[a-z]+-rapl:\d+$")


class EnergyCounter(abc.ABC):
    """One energy domain. Subclasses implement ``_read()``; reads are thread-safe."""

    method = "counter"                # "counter" | "sampled-power" | "model"

    def __init__(self, domain: str, device: str, *, detail: str = "") -> None:
        self.domain = domain          # e.g. "rapl:package-0"
        self.device = device          # "cpu", "gpu:0"
        self.detail = detail          # human note: source path or stated power figure
        self._lock = threading.Lock()

    @abc.abstractmethod
    def _read(self) -> float:
        """Cumulative joules since open (called under the lock)."""

    def read_joules(self) -> float:
        with self._lock:
            return self._read()

    def reading(self) -> EnergyReading:
        return EnergyReading(self.domain, self.device, self.read_joules(), self.method, self.detail)


class _WrappingCounter(EnergyCounter):
    """A hardware counter that may wrap: accumulates deltas from the first read."""

    def __init__(self, domain: str, device: str, *, max_raw: float | None, scale_j: float,
                 detail: str = "") -> None:
        super().__init__(domain, device, detail=detail)
        self._max_raw = max_raw       # raw units at which the counter wraps (None: never)
        self._scale = scale_j         # joules per raw unit
        self._last = self._raw()      # raw units, last value seen; owner: _read
        self._acc = 0.0               # joules accumulated since open; owner: _read

    @abc.abstractmethod
    def _raw(self) -> float: ...

    def _read(self) -> float:
        now = self._raw()
        delta = now - self._last
        if delta < 0:                 # wrapped (or driver reset): count up to the wrap point
            delta = (self._max_raw - self._last + now) if self._max_raw else now
        self._last = now
        self._acc += delta * self._scale
        return self._acc


class RaplCounter(_WrappingCounter):
    """One powercap zone's ``energy_uj`` (microjoules)."""

    def __init__(self, zone: Path, name: str) -> None:
        self._path = zone / "energy_uj"
        try:
            max_raw = float((zone / "max_energy_range_uj").read_text().strip())
        except (OSError, ValueError):
            max_raw = None
        super().__init__(f"rapl:{name}", "cpu", max_raw=max_raw, scale_j=1e-6,
                         detail=str(self._path))

    def _raw(self) -> float:
        return float(self._path.read_text().strip())


def _rapl_zones(root: Path) -> list[tuple[Path, str]]:
    if not root.is_dir():
        return []
    zones = []
    for z in sorted(root.iterdir()):
        if _TOP_ZONE.match(z.name) and (z / "energy_uj").exists():
            try:
                name = (z / "name").read_text().strip()
            except OSError:
                name = z.name
            zones.append((z, name))
    pkgs = [(z, n) for z, n in zones if n.startswith("package")]
    return pkgs or [(z, n) for z, n in zones if n == "psys"]


def rapl_counters(root: str | Path = "/sys/class/powercap") -> list[RaplCounter]:
    """Readable top-level RAPL zones (empty when absent or root-only)."""
    out = []
    for zone, name in _rapl_zones(Path(root)):
        try:
            out.append(RaplCounter(zone, name))
        except (OSError, ValueError):
            continue
    return out


def rapl_note(root: str | Path = "/sys/class/powercap") -> str:
    """Why RAPL gives no measured CPU energy here ("" when it does)."""
    zones = _rapl_zones(Path(root))
    if not zones:
        return f"RAPL: no powercap package zones under {root}; CPU energy is modelled"
    if not rapl_counters(root):
        return (f"RAPL: {zones[0][0] / 'energy_uj'} is not readable by this user; CPU energy is "
                "modelled (grant read access to measure it)")
    return ""


class NvmlEnergyCounter(_WrappingCounter):
    """``nvmlDeviceGetTotalEnergyConsumption``: millijoules since the driver loaded."""

    def __init__(self, nvml: Any, handle: Any, index: int) -> None:
        self._nvml = nvml
        self._handle = handle
        super().__init__(f"nvml:gpu:{index}", f"gpu:{index}", max_raw=None, scale_j=1e-3,
                         detail="NVML total energy counter")

    def _raw(self) -> float:
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))


class SampledPowerCounter(EnergyCounter):
    """Integrates a measured instantaneous power reading (W) between reads."""

    method = "sampled-power"

    def __init__(self, domain: str, device: str, power_w: Callable[[], float], *,
                 clock: Clock | None = None, detail: str = "") -> None:
        super().__init__(domain, device, detail=detail)
        self._power = power_w
        self._clock = clock or SystemClock()
        self._t = self._clock.monotonic()      # s, time of the last sample; owner: _read
        self._p = float(power_w())             # W, last sample; owner: _read
        self._acc = 0.0                        # J since open; owner: _read

    def _read(self) -> float:
        t, p = self._clock.monotonic(), float(self._power())
        self._acc += 0.5 * (p + self._p) * max(0.0, t - self._t)
        self._t, self._p = t, p
        return self._acc


class ModelledCounter(EnergyCounter):
    """Integrates a stated power model; ``power_w()`` is called once per read and must
    return the average power over the interval since the previous read."""

    method = "model"

    def __init__(self, domain: str, device: str, power_w: Callable[[], float], *,
                 clock: Clock | None = None, detail: str = "") -> None:
        super().__init__(domain, device, detail=detail)
        self._power = power_w
        self._clock = clock or SystemClock()
        self._t = self._clock.monotonic()      # s, time of the last read; owner: _read
        self._acc = 0.0                        # J since open; owner: _read

    def _read(self) -> float:
        t = self._clock.monotonic()
        p = float(self._power())
        self._acc += p * max(0.0, t - self._t)
        self._t = t
        return self._acc


class EnergyMonitor:
    """The energy counters of one machine."""

    def __init__(self, counters: Iterable[EnergyCounter] = ()) -> None:
        self.counters: list[EnergyCounter] = list(counters)   # owner: HAL builder; fixed after boot

    def read(self) -> list[EnergyReading]:
        return [c.reading() for c in self.counters]

    def domains(self) -> list[str]:
        return [c.domain for c in self.counters]

    def all_measured(self) -> bool:
        return bool(self.counters) and all(c.method != "model" for c in self.counters)
