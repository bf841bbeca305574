"""NVIDIA GPUs through NVML (the ``nvidia-ml-py`` package, imported as ``pynvml``).

Map:
- ``NvidiaGpuManager``: count, name, memory, utilization, clocks, power draw and
  limit of each GPU; its energy counters. No library or no driver is not an
  error: the manager reports ``available() == False`` with a ``reason``.
- Energy per GPU, best source first: NVML's total-energy counter (measured),
  else NVML power usage integrated over time (measured, sampled), else the
  stated model ``limit × (GPU_IDLE_FRACTION + (1 − GPU_IDLE_FRACTION) × util)``
  (modelled).

The NVML module is injected (``nvml=``) so tests run this same code against
``hal.fake.FakeNvml``; every NVML call that a device does not support
(``NVMLError_NotSupported`` and friends) yields ``None`` for that figure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmos.clock import Clock
from llmos.hal.base import DeviceInfo, DeviceManager
from llmos.hal.energy import EnergyCounter, ModelledCounter, NvmlEnergyCounter, SampledPowerCounter

__all__ = ["NvidiaGpuManager", "GPU_IDLE_FRACTION", "GPU_DEFAULT_LIMIT_W"]

# Stated figures for the GPU energy model (only when NVML reports no energy and no power):
GPU_IDLE_FRACTION = 0.2        # idle draw as a fraction of the power limit (assumed)
GPU_DEFAULT_LIMIT_W = 300.0    # W, assumed when NVML reports no power limit either


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


class NvidiaGpuManager(DeviceManager):
    """Every NVIDIA GPU NVML can see."""

    def __init__(self, nvml: Any | None = None, *, clock: Clock | None = None) -> None:
        self._clock = clock
        self._handles: list[Any] = []      # NVML handles by index; owner: __init__/close
        self._nvml: Any = None
        self.driver_version: str | None = None
        self.reason = ""
        if nvml is None:
            try:
                import pynvml as nvml  # noqa: PLC0415 — optional at run time
            except ImportError:
                self.reason = "nvidia-ml-py is not installed"
                return
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as e:
            self.reason = f"NVML unavailable ({_nvml_msg(e)}); no NVIDIA driver on this machine?"
            return
        except OSError as e:  # a broken libnvidia-ml
            self.reason = f"NVML unavailable ({e})"
            return
        self._nvml = nvml
        try:
            self.driver_version = _text(nvml.nvmlSystemGetDriverVersion())
        except nvml.NVMLError:
            self.driver_version = None
        try:
            n = int(nvml.nvmlDeviceGetCount())
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(n)]
        except nvml.NVMLError as e:
            self.reason = f"NVML could not list devices ({_nvml_msg(e)})"
            self._handles = []
        if not self._handles and not self.reason:
            self.reason = "NVML sees no GPUs"

    @staticmethod
    def resource_name() -> str:
        return "GPU"

    @staticmethod
    def visible_ids_env_var() -> str | None:
        return "CUDA_VISIBLE_DEVICES"

    def available(self) -> bool:
        return self._nvml is not None and bool(self._handles)

    def _try(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self._nvml.NVMLError:
            return None

    def power_w(self, index: int) -> float | None:
        mw = self._try(lambda: self._nvml.nvmlDeviceGetPowerUsage(self._handles[index]))
        return None if mw is None else mw / 1000.0

    def power_limit_w(self, index: int) -> float | None:
        mw = self._try(lambda: self._nvml.nvmlDeviceGetEnforcedPowerLimit(self._handles[index]))
        return None if mw is None else mw / 1000.0

    def utilization(self, index: int) -> float | None:
        u = self._try(lambda: self._nvml.nvmlDeviceGetUtilizationRates(self._handles[index]))
        return None if u is None else float(u.gpu) / 100.0

    def devices(self) -> list[DeviceInfo]:
        if not self.available():
            return []
        nv = self._nvml
        out = []
        for i, h in enumerate(self._handles):
            mem = self._try(lambda h=h: nv.nvmlDeviceGetMemoryInfo(h))
            sm = self._try(lambda h=h: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))
            sm_max = self._try(lambda h=h: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM))
            uuid = self._try(lambda h=h: nv.nvmlDeviceGetUUID(h))
            out.append(DeviceInfo(
                kind="gpu", index=i,
                name=_text(self._try(lambda h=h: nv.nvmlDeviceGetName(h)) or "NVIDIA GPU"),
                freq_mhz=float(sm) if sm is not None else None,
                freq_max_mhz=float(sm_max) if sm_max is not None else None,
                utilization=self.utilization(i),
                memory_total_bytes=int(mem.total) if mem is not None else None,
                memory_available_bytes=int(mem.free) if mem is not None else None,
                power_w=self.power_w(i),
                power_limit_w=self.power_limit_w(i),
                uuid=_text(uuid) if uuid is not None else None,
            ))
        return out

    def energy_counters(self) -> list[EnergyCounter]:
        if not self.available():
            return []
        out: list[EnergyCounter] = []
        for i, h in enumerate(self._handles):
            try:
                out.append(NvmlEnergyCounter(self._nvml, h, i))
                continue
            except self._nvml.NVMLError:
                pass
            if self.power_w(i) is not None:
                out.append(SampledPowerCounter(f"nvml-power:gpu:{i}", f"gpu:{i}",
                                               lambda i=i: self.power_w(i) or 0.0, clock=self._clock,
                                               detail="NVML power usage, integrated between reads"))
                continue
            limit = self.power_limit_w(i) or GPU_DEFAULT_LIMIT_W
            detail = (f"{limit:g} W limit × ({GPU_IDLE_FRACTION:g} + {1 - GPU_IDLE_FRACTION:g} × util), "
                      "stated")
            out.append(ModelledCounter(
                f"model:gpu:{i}", f"gpu:{i}",
                lambda i=i, limit=limit: limit * (GPU_IDLE_FRACTION
                                                  + (1 - GPU_IDLE_FRACTION) * (self.utilization(i) or 0.0)),
                clock=self._clock, detail=detail))
        return out

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass
            self._nvml = None
            self._handles = []


def _nvml_msg(e: BaseException) -> str:
    try:
        return str(e)
    except Exception:  # pynvml's __str__ itself calls the library, which may be absent
        return type(e).__name__
