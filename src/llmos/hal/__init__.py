"""Hardware abstraction layer: what this machine has, and how much energy it uses.

Map:
- ``base``: ``DeviceInfo``, ``DeviceManager`` (Ray-style interface), ``EnergyReading``, ``HAL``.
- ``cpu``: CPU + memory (psutil); ``gpu``: NVIDIA GPUs (NVML).
- ``energy``: RAPL, NVML and modelled energy counters; ``fake``: FakeHAL for tests.
- ``cluster``: the nodes of a Ray cluster (CPUs, GPUs, memory from Ray's resource
  view) and the admission that refuses a job no node can hold; imported by the Ray
  executor only (Ray itself is imported only to read a connected driver's view).
- ``detect()``: the HAL of the running machine. Missing drivers or unreadable
  counters are notes (``HAL.notes``/``snapshot().notes``), never errors.
"""

from __future__ import annotations

from pathlib import Path

from llmos.clock import Clock
from llmos.hal.base import HAL, DeviceInfo, DeviceManager, EnergyReading, HardwareSnapshot
from llmos.hal.cpu import CpuManager
from llmos.hal.energy import EnergyMonitor, rapl_note
from llmos.hal.gpu import NvidiaGpuManager

__all__ = ["HAL", "DeviceInfo", "DeviceManager", "EnergyReading", "HardwareSnapshot", "detect"]


def detect(clock: Clock | None = None, *, powercap_root: str | Path = "/sys/class/powercap",
           nvml: object | None = None) -> HAL:
    """Build the HAL for this machine: CPU always; GPUs when NVML answers."""
    cpu = CpuManager(powercap_root=powercap_root, clock=clock)
    gpu = NvidiaGpuManager(nvml, clock=clock)
    notes = [n for n in (rapl_note(powercap_root),) if n]
    monitor = EnergyMonitor([*cpu.energy_counters(), *gpu.energy_counters()])
    return HAL(managers=[cpu, gpu], energy=monitor, notes=notes)
