"""Energy accounting: joules per process and per agent, measured or modelled, labelled.

Map:
- ``EnergyMeter(source, clock)``: ``start(pid, agent, devices=, weight=)``,
  ``set_weight(pid, w)``, ``tick()``, ``stop(pid) -> ProcessEnergy``;
  ``process(pid)``, ``metering(pid)``, ``by_agent()``, ``running()``, ``totals()``. ``source`` is a HAL, an
  ``EnergyMonitor``, or any callable returning ``EnergyReading``s.
- ``ProcessEnergy`` / ``AgentEnergy`` / ``EnergyTotals``: the records, each
  keeping measured and modelled joules apart (``label``: measured, modelled,
  mixed, or none).

NOTE (attribution). Hardware counts energy per domain (a CPU package, a GPU),
not per process. Each ``tick()`` reads every domain's cumulative joules; the
increase of a domain since the previous tick is split among the processes
running on that domain's device in proportion to their weights (a process's
share of the device: threads, batched sequences, busy fraction). With no
process on the device, the increase is booked as idle. Every membership or
weight change ticks first, so each interval has a fixed set of shares. A
domain's label carries over to its share: a share of a RAPL or NVML counter
is "measured" (the attribution itself is proportional), a share of a model is
"modelled". Independent of the process table: the kernel calls start/stop.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from llmos.clock import Clock, SystemClock
from llmos.errors import InvalidArgument, NotFound
from llmos.hal.base import EnergyReading

__all__ = ["EnergyMeter", "ProcessEnergy", "AgentEnergy", "EnergyTotals", "FINISHED_KEPT"]

FINISHED_KEPT = 4096          # finished process records kept for lookup (agents keep totals forever)


def _label(measured: float, modelled: float) -> str:
    if measured > 0 and modelled > 0:
        return "mixed"
    if measured > 0:
        return "measured"
    if modelled > 0:
        return "modelled"
    return "none"


@dataclass
class ProcessEnergy:
    pid: int
    agent: str
    devices: tuple[str, ...]          # device ids it runs on ("cpu", "gpu:0")
    weight: float                     # share weight on each of its devices; owner: EnergyMeter
    started_s: float                  # clock.monotonic() at start
    stopped_s: float | None = None    # clock.monotonic() at stop
    measured_j: float = 0.0           # J from hardware counters; owner: EnergyMeter.tick
    modelled_j: float = 0.0           # J from stated power models; owner: EnergyMeter.tick
    by_device: dict[str, float] = field(default_factory=dict)   # J per device

    @property
    def joules(self) -> float:
        return self.measured_j + self.modelled_j

    @property
    def label(self) -> str:
        return _label(self.measured_j, self.modelled_j)

    @property
    def running(self) -> bool:
        return self.stopped_s is None


@dataclass
class AgentEnergy:
    agent: str
    measured_j: float = 0.0           # J, all its processes, running and finished
    modelled_j: float = 0.0
    processes: int = 0                # processes ever started

    @property
    def joules(self) -> float:
        return self.measured_j + self.modelled_j

    @property
    def label(self) -> str:
        return _label(self.measured_j, self.modelled_j)


@dataclass(frozen=True)
class EnergyTotals:
    measured_j: float                  # J attributed to processes from counters
    modelled_j: float                  # J attributed to processes from models
    idle_measured_j: float             # J no process was running to take
    idle_modelled_j: float
    by_domain: dict[str, float]        # J per domain since the meter opened
    labels: dict[str, str]             # domain -> "measured" | "modelled"

    @property
    def joules(self) -> float:
        return self.measured_j + self.modelled_j + self.idle_measured_j + self.idle_modelled_j


class EnergyMeter:
    """Attributes the machine's energy to processes and agents (see the module NOTE)."""

    def __init__(self, source: Any, *, clock: Clock | None = None) -> None:
        self._read = _reader(source)
        self.clock = clock or SystemClock()
        self._lock = threading.RLock()
        first = self._read()
        self._last: dict[str, float] = {r.domain: r.joules for r in first}   # J per domain at last tick
        self._start: dict[str, float] = dict(self._last)                     # J per domain at open
        self._meta: dict[str, EnergyReading] = {r.domain: r for r in first}
        self._running: dict[int, ProcessEnergy] = {}                          # owner: start/stop
        self._finished: OrderedDict[int, ProcessEnergy] = OrderedDict()      # bounded by FINISHED_KEPT
        self._agents: dict[str, AgentEnergy] = {}
        self._idle = [0.0, 0.0]                                               # J (measured, modelled)

    def start(self, pid: int, agent: str, *, devices: Iterable[str] = ("cpu",), weight: float = 1.0) -> None:
        devs = tuple(devices)
        if not devs:
            raise InvalidArgument("devices: expected at least one device id", field="devices",
                                  expected="e.g. ('cpu',) or ('gpu:0',)")
        _check_weight(weight)
        with self._lock:
            if pid in self._running:
                raise InvalidArgument(f"pid {pid} is already metered", field="pid", expected="a new pid")
            self.tick()
            self._running[pid] = ProcessEnergy(pid, agent, devs, float(weight), self.clock.monotonic())
            self._finished.pop(pid, None)
            self._agents.setdefault(agent, AgentEnergy(agent)).processes += 1

    def set_weight(self, pid: int, weight: float) -> None:
        _check_weight(weight)
        with self._lock:
            p = self._get_running(pid)
            self.tick()
            p.weight = float(weight)

    def stop(self, pid: int) -> ProcessEnergy:
        """Stop metering ``pid``; its record (joules and label) is final."""
        with self._lock:
            p = self._get_running(pid)
            self.tick()
            del self._running[pid]
            p.stopped_s = self.clock.monotonic()
            self._finished[pid] = p
            while len(self._finished) > FINISHED_KEPT:
                self._finished.popitem(last=False)
            return p

    def tick(self) -> None:
        """Read the counters and split each domain's increase among the running processes."""
        with self._lock:
            for r in self._read():
                prev = self._last.get(r.domain)
                self._last[r.domain] = r.joules
                self._meta[r.domain] = r
                if prev is None:
                    self._start[r.domain] = r.joules
                    continue
                delta = max(0.0, r.joules - prev)
                if delta == 0.0:
                    continue
                on = [p for p in self._running.values() if r.device in p.devices]
                total_w = sum(p.weight for p in on)
                slot = 0 if r.measured else 1
                if total_w <= 0:
                    self._idle[slot] += delta
                    continue
                for p in on:
                    share = delta * p.weight / total_w
                    if r.measured:
                        p.measured_j += share
                        self._agents[p.agent].measured_j += share
                    else:
                        p.modelled_j += share
                        self._agents[p.agent].modelled_j += share
                    p.by_device[r.device] = p.by_device.get(r.device, 0.0) + share

    def metering(self, pid: int) -> bool:
        """True while ``pid`` is being metered (started, not stopped)."""
        return pid in self._running

    def process(self, pid: int) -> ProcessEnergy:
        with self._lock:
            if pid in self._running:
                self.tick()
                return self._running[pid]
            if pid in self._finished:
                return self._finished[pid]
        raise NotFound(f"no energy record for pid {pid}")

    def by_agent(self) -> dict[str, AgentEnergy]:
        with self._lock:
            self.tick()
            return {k: AgentEnergy(v.agent, v.measured_j, v.modelled_j, v.processes)
                    for k, v in self._agents.items()}

    def running(self) -> list[ProcessEnergy]:
        with self._lock:
            self.tick()
            return list(self._running.values())

    def totals(self) -> EnergyTotals:
        with self._lock:
            self.tick()
            meas = sum(a.measured_j for a in self._agents.values())
            mod = sum(a.modelled_j for a in self._agents.values())
            return EnergyTotals(meas, mod, self._idle[0], self._idle[1],
                                {d: self._last[d] - self._start.get(d, self._last[d]) for d in self._last},
                                {d: m.label for d, m in self._meta.items()})

    def _get_running(self, pid: int) -> ProcessEnergy:
        p = self._running.get(pid)
        if p is None:
            raise NotFound(f"pid {pid} is not being metered")
        return p


def _check_weight(w: float) -> None:
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0 or w == float("inf"):
        raise InvalidArgument(f"weight: expected a positive number, got {w!r}", field="weight",
                              expected="number > 0")


def _reader(source: Any) -> Callable[[], list[EnergyReading]]:
    if hasattr(source, "read_energy"):          # a HAL
        return source.read_energy
    if hasattr(source, "read") and hasattr(source, "counters"):   # an EnergyMonitor
        return source.read
    if callable(source):
        return source
    raise InvalidArgument("energy source: expected a HAL, an EnergyMonitor or a callable", field="source",
                          expected="HAL | EnergyMonitor | () -> list[EnergyReading]")
