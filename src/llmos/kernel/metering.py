"""``Meter``: energy metering and the kernel's live figures (a part of the ``Kernel``
facade). It owns ``placed_j`` (pid -> joules metered since the process was placed,
handed to the allocator when the placement ends: ``take_placed``).

Map:
- ``hook(p, to)``: a ``ProcessTable.before_transition`` hook — entering
  RUNNING starts the ``EnergyMeter`` on the devices the allocator placed the process
  on; leaving RUNNING stops it and returns the joules (measured and modelled kept
  apart) as changes of that same journaled transition.
- ``energy_by_agent()``: joules per agent (journaled history + what is running now),
  each labelled measured / modelled / mixed.
- ``stats()``: one dict for ``llmos top``, ``/metrics`` and programs: processes by
  state, queue depth, tok/s from the engines' live stats, per-engine stats,
  per-agent usage and energy, the allocator's load.
- ``usage_of(agent)``: what ``agent.list`` shows per agent.

Processes on a remote engine are not metered (their joules are spent elsewhere):
their ``joules`` stays None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmos.kernel.process import Process, ProcState, energy_label

if TYPE_CHECKING:
    from llmos.kernel.subsystems import Subsystems

__all__ = ["Meter", "STATS_LIVE_MAX"]

S = ProcState
STATS_LIVE_MAX = 200      # live processes listed by stats() (running ones first)


class Meter:
    """Joules per process on the transition path; the kernel's live figures."""

    def __init__(self, sub: Subsystems, view: Callable[[Process], dict[str, Any]]) -> None:
        self.sub = sub
        self._view = view                          # a process as proc.get shows it (ProcessManager.view)
        self.placed_j: dict[int, float] = {}       # pid -> J metered since it was placed; owner: hook()

    def take_placed(self, pid: int) -> float | None:
        """The joules metered since ``pid`` was placed (None: none), forgotten now."""
        return self.placed_j.pop(pid, None)

    def hook(self, p: Process, to: ProcState) -> dict[str, Any] | None:
        """``ProcessTable.before_transition``: start / stop ``p``'s energy meter."""
        meter = self.sub.meter
        if meter is None or p.state == to:
            return None
        if to == S.RUNNING:
            devices = self.sub.placer.devices_of(p.pid) if self.sub.placer is not None else ()
            if devices and not meter.metering(p.pid):
                meter.start(p.pid, p.owner, devices=devices)
            return None
        if p.state != S.RUNNING or not meter.metering(p.pid):
            return None
        pe = meter.stop(p.pid)
        self.sub.usage.add_energy(p.owner, pe.joules, pe.modelled_j)
        self.placed_j[p.pid] = self.placed_j.get(p.pid, 0.0) + pe.joules
        return {"joules": (p.joules or 0.0) + pe.joules,
                "joules_modelled": (p.joules_modelled or 0.0) + pe.modelled_j}

    def energy_by_agent(self) -> dict[str, dict[str, Any]]:
        """Joules per agent since its first process, finished and running:
        ``{agent: {"joules", "measured_j", "modelled_j", "label"}}`` (agents never
        metered are absent; label is measured, modelled, mixed or none)."""
        totals: dict[str, list[float]] = {}
        for agent in self.sub.usage.agents():
            u = self.sub.usage.usage(agent)
            if u.joules is not None:
                totals[agent] = [u.joules - u.joules_modelled, u.joules_modelled]
        if self.sub.meter is not None:
            for pe in self.sub.meter.running():
                t = totals.setdefault(pe.agent, [0.0, 0.0])
                t[0] += pe.measured_j
                t[1] += pe.modelled_j
        return {a: {"joules": m + d, "measured_j": m, "modelled_j": d, "label": energy_label(m + d, d)}
                for a, (m, d) in sorted(totals.items())}

    def usage_of(self, agent: str) -> dict[str, Any]:
        e = self.energy_by_agent().get(agent)
        return {"live_procs": self.sub.procs.live_count(agent), **self.sub.usage.of(agent),
                "joules": None if e is None else round(e["joules"], 3),
                "joules_label": None if e is None else e["label"]}

    def stats(self) -> dict[str, Any]:
        """The kernel's live figures (see the module map). Cheap: no journal reads."""
        counts = {s.name.lower(): n for s, n in zip(S, self.sub.procs.counts, strict=True)}
        engines = []
        for name, st in self.sub.engine_set.stats().items():
            eng = self.sub.engine_set.loaded.get(name)
            engines.append({"name": name, "model": getattr(eng, "model", ""),
                            "tokens_per_s": float(st.tokens_per_s), "tokens_generated": st.tokens_generated,
                            "active": st.active, "waiting": st.waiting, "kv_used_tokens": st.kv_used_tokens,
                            "kv_total_tokens": st.kv_total_tokens})
        energy = self.energy_by_agent()
        agents: dict[str, dict[str, Any]] = {}
        for a in sorted({*self.sub.usage.agents(), *(p.owner for p in self.sub.procs.live())}):
            agents[a] = {"live": self.sub.procs.live_count(a), **self.sub.usage.of(a),
                         "joules": energy.get(a, {}).get("joules"), "joules_label": energy.get(a, {}).get("label")}
        out: dict[str, Any] = {
            "ts": self.sub.clock.time(), "processes": counts,
            "queue_depth": counts["new"] + counts["queued"],
            "tokens_per_s": sum(e["tokens_per_s"] for e in engines), "engines": engines,
            "agents": agents,
            "live": [self._view(p) for p in sorted(self.sub.procs.live(), key=lambda p: (p.state != S.RUNNING, p.pid))
                     ][:STATS_LIVE_MAX],
        }
        if self.sub.meter is not None:
            t = self.sub.meter.totals()
            out["energy"] = {"measured_j": t.measured_j, "modelled_j": t.modelled_j,
                             "idle_j": t.idle_measured_j + t.idle_modelled_j, "labels": dict(t.labels)}
        if self.sub.placer is not None:
            out["alloc"] = {"mode": self.sub.placer.alloc.mode, "load": self.sub.placer.alloc.load()}
        return out
