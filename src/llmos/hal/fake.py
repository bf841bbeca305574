"""A fake machine for tests: a mocked NVML module, a fake psutil, and ``FakeHAL``.

Map:
- ``FakeGpu``: one simulated GPU; tests set ``utilization`` and ``power_w``;
  its energy counter advances by ``power_w × dt`` as the FakeClock moves.
- ``FakeNvml``: the subset of the ``pynvml`` module the HAL calls, with the same
  names, error classes (``NVMLError``, ``NVMLError_NotSupported``, …) and units
  (mW, mJ, bytes, percent). ``FakeNvml(missing_library=True)`` fails
  ``nvmlInit`` the way a machine without a driver does.
- ``FakePsutil``: ``cpu_count``, ``cpu_freq``, ``cpu_times``, ``virtual_memory``;
  ``set_utilization(u)`` makes the next interval of the clock read as ``u`` busy.
- ``FakeHAL(clock, ...)``: a ``HAL`` built from the real managers and counters
  over these fakes, so tests exercise the production code paths.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmos.clock import FakeClock
from llmos.hal.base import HAL
from llmos.hal.cpu import CpuManager
from llmos.hal.energy import EnergyMonitor
from llmos.hal.gpu import NvidiaGpuManager

__all__ = ["FakeGpu", "FakeNvml", "FakePsutil", "FakeHAL"]


# ── NVML ────────────────────────────────────────────────────────────────────

class NVMLError(Exception):
    def __init__(self, value: int = 999) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {1: "Uninitialized", 3: "Not Supported", 9: "Driver Not Loaded",
                12: "NVML Shared Library Not Found"}.get(self.value, "Unknown Error")


class NVMLError_NotSupported(NVMLError):  # noqa: N801 — the pynvml name
    def __init__(self) -> None:
        super().__init__(3)


class NVMLError_DriverNotLoaded(NVMLError):  # noqa: N801
    def __init__(self) -> None:
        super().__init__(9)


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801
    def __init__(self) -> None:
        super().__init__(12)


_Memory = namedtuple("_Memory", "total free used")
_Util = namedtuple("_Util", "gpu memory")


@dataclass
class FakeGpu:
    name: str = "NVIDIA Fake GPU"
    memory_total_bytes: int = 16 << 30         # bytes
    memory_used_bytes: int = 0                 # bytes; tests may change it
    utilization: float = 0.0                   # 0..1; tests change it
    power_w: float = 50.0                      # W, current draw; tests change it
    power_limit_w: float = 300.0               # W
    sm_clock_mhz: int = 1500
    sm_clock_max_mhz: int = 1980
    energy_counter: bool = True                # False: NotSupported (pre-Volta)
    power_reading: bool = True                 # False: NotSupported
    energy_mj: float = 0.0                     # mJ since "driver load"; advanced by FakeNvml


class FakeNvml:
    """A stand-in for the ``pynvml`` module."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVML_CLOCK_SM = 1

    def __init__(self, gpus: list[FakeGpu] | None = None, *, clock: FakeClock | None = None,
                 missing_library: bool = False, driver_version: str = "550.00") -> None:
        self.gpus = list(gpus or [])           # owner: the test
        self.clock = clock or FakeClock()
        self.missing_library = missing_library
        self.driver_version = driver_version
        self.initialized = False
        self.shutdowns = 0
        self._t = self.clock.monotonic()       # s, last time energy was advanced

    def _advance(self) -> None:
        t = self.clock.monotonic()
        for g in self.gpus:
            g.energy_mj += g.power_w * (t - self._t) * 1000.0
        self._t = t

    def _gpu(self, handle: Any) -> FakeGpu:
        if not self.initialized:
            raise NVMLError(1)
        self._advance()
        return self.gpus[handle]

    def nvmlInit(self) -> None:  # noqa: N802 — the pynvml names
        if self.missing_library:
            raise NVMLError_LibraryNotFound()
        self.initialized = True
        self._advance()

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.initialized = False
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        return self.driver_version

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        if not self.initialized:
            raise NVMLError(1)
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:  # noqa: N802
        if not 0 <= i < len(self.gpus):
            raise NVMLError(2)
        return i

    def nvmlDeviceGetName(self, h: int) -> str:  # noqa: N802
        return self._gpu(h).name

    def nvmlDeviceGetUUID(self, h: int) -> str:  # noqa: N802
        self._gpu(h)
        return f"GPU-fake-{h:04d}"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:  # noqa: N802
        g = self._gpu(h)
        return _Memory(g.memory_total_bytes, g.memory_total_bytes - g.memory_used_bytes,
                       g.memory_used_bytes)

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:  # noqa: N802
        g = self._gpu(h)
        return _Util(round(g.utilization * 100), 0)

    def nvmlDeviceGetClockInfo(self, h: int, kind: int) -> int:  # noqa: N802
        return self._gpu(h).sm_clock_mhz

    def nvmlDeviceGetMaxClockInfo(self, h: int, kind: int) -> int:  # noqa: N802
        return self._gpu(h).sm_clock_max_mhz

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:  # noqa: N802
        g = self._gpu(h)
        if not g.power_reading:
            raise NVMLError_NotSupported()
        return round(g.power_w * 1000)

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:  # noqa: N802
        return round(self._gpu(h).power_limit_w * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:  # noqa: N802
        g = self._gpu(h)
        if not g.energy_counter:
            raise NVMLError_NotSupported()
        return int(g.energy_mj)


# ── psutil ──────────────────────────────────────────────────────────────────

_Times = namedtuple("_Times", "user system idle")
_Freq = namedtuple("_Freq", "current min max")
_VMem = namedtuple("_VMem", "total available")


class FakePsutil:
    """A stand-in for ``psutil``: CPU times advance with the FakeClock at the set utilization."""

    def __init__(self, clock: FakeClock, *, logical: int = 8, physical: int = 4,
                 freq_mhz: float = 2400.0, freq_max_mhz: float = 3600.0,
                 memory_total_bytes: int = 32 << 30, memory_available_bytes: int = 24 << 30) -> None:
        self.clock = clock
        self.logical, self.physical = logical, physical
        self.freq = _Freq(freq_mhz, 800.0, freq_max_mhz)
        self.memory = _VMem(memory_total_bytes, memory_available_bytes)
        self._util = 0.0                       # 0..1, current busy fraction; owner: the test
        self._busy = 0.0                       # CPU-seconds busy (all cores)
        self._idle = 0.0                       # CPU-seconds idle (all cores)
        self._t = clock.monotonic()

    def _advance(self) -> None:
        t = self.clock.monotonic()
        dt = (t - self._t) * self.logical
        self._busy += dt * self._util
        self._idle += dt * (1 - self._util)
        self._t = t

    def set_utilization(self, u: float) -> None:
        """From now on (clock time), the CPUs are ``u`` busy."""
        self._advance()
        self._util = max(0.0, min(1.0, float(u)))

    def cpu_count(self, logical: bool = True) -> int:
        return self.logical if logical else self.physical

    def cpu_freq(self) -> Any:
        return self.freq

    def cpu_times(self) -> Any:
        self._advance()
        return _Times(self._busy, 0.0, self._idle)

    def virtual_memory(self) -> Any:
        return self.memory


# ── the HAL ─────────────────────────────────────────────────────────────────

def FakeHAL(clock: FakeClock | None = None, *, gpus: list[FakeGpu] | None = None,  # noqa: N802
            nvml: FakeNvml | None = None, psutil: FakePsutil | None = None,
            powercap_root: str | Path | None = None, **cpu: Any) -> HAL:
    """A HAL over fakes. ``powercap_root`` may point at a fake sysfs tree (tests
    build one in tmp_path); without it CPU energy is modelled."""
    clock = clock or FakeClock()
    ps = psutil or FakePsutil(clock)
    nv = nvml or FakeNvml(gpus if gpus is not None else [FakeGpu()], clock=clock)
    cpu_mgr = CpuManager(ps, powercap_root=powercap_root or "/nonexistent/powercap", clock=clock,
                         name="Fake CPU", **cpu)
    gpu_mgr = NvidiaGpuManager(nv, clock=clock)
    monitor = EnergyMonitor([*cpu_mgr.energy_counters(), *gpu_mgr.energy_counters()])
    return HAL(managers=[cpu_mgr, gpu_mgr], energy=monitor)
