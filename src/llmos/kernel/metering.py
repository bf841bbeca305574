"""Energy metering and the kernel's live figures (mixed into ``Kernel``).

Map:
- ``_meter_hook(p, to)``: a ``ProcessTable.before_transition`` hook — entering
  RUNNING starts the ``EnergyMeter`` on the devices the allocator placed the process
  on; leaving RUNNING stops it and returns the joules (measured and modelled kept
  apart) as changes of that same journaled transition.
- ``energy_by_agent()``: joules per agent (journaled history + what is running now),
  each labelled measured / modelled / mixed.
- ``stats()``: one dict for ``llmos top``, ``/metrics`` and programs: processes by
  state, queue depth, tok/s from the engines' live stats, per-engine stats,
  per-agent usage and energy, the allocator's load.
- ``usage_of(agent)``: what ``agent.list`` shows per agent.
- engines: ``engines`` (loaded, name -> engine), ``engine_for(key)``, ``check_model``.

Processes on a remote engine are not metered (their joules are spent elsewhere):
their ``joules`` stays None.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmos.kernel.process import Process, ProcState, energy_label

if TYPE_CHECKING:
    from llmos.kernel.core import Kernel
    from llmos.llm.base import Engine

__all__ = ["Metering", "STATS_LIVE_MAX"]

S = ProcState
STATS_LIVE_MAX = 200      # live processes listed by stats() (running ones first)


class Metering:
    """Mixed into ``Kernel``."""

    def _meter_hook(self: Kernel, p: Process, to: ProcState) -> dict[str, Any] | None:
        meter = self.meter
        if meter is None or p.state == to:
            return None
        if to == S.RUNNING:
            devices = self.placer.devices_of(p.pid) if self.placer is not None else ()
            if devices and not meter.metering(p.pid):
                meter.start(p.pid, p.owner, devices=devices)
            return None
        if p.state != S.RUNNING or not meter.metering(p.pid):
            return None
        pe = meter.stop(p.pid)
        self.usage.add_energy(p.owner, pe.joules, pe.modelled_j)
        self._placed_j[p.pid] = self._placed_j.get(p.pid, 0.0) + pe.joules
        return {"joules": (p.joules or 0.0) + pe.joules,
                "joules_modelled": (p.joules_modelled or 0.0) + pe.modelled_j}

    def energy_by_agent(self: Kernel) -> dict[str, dict[str, Any]]:
        """Joules per agent since its first process, finished and running:
        ``{agent: {"joules", "measured_j", "modelled_j", "label"}}`` (agents never
        metered are absent; label is measured, modelled, mixed or none)."""
        totals: dict[str, list[float]] = {}
        for agent in self.usage.agents():
            u = self.usage.usage(agent)
            if u.joules is not None:
                totals[agent] = [u.joules - u.joules_modelled, u.joules_modelled]
        if self.meter is not None:
            for pe in self.meter.running():
                t = totals.setdefault(pe.agent, [0.0, 0.0])
                t[0] += pe.measured_j
                t[1] += pe.modelled_j
        return {a: {"joules": m + d, "measured_j": m, "modelled_j": d, "label": energy_label(m + d, d)}
                for a, (m, d) in sorted(totals.items())}

    def usage_of(self: Kernel, agent: str) -> dict[str, Any]:
        e = self.energy_by_agent().get(agent)
        return {"live_procs": self.procs.live_count(agent), **self.usage.of(agent),
                "joules": None if e is None else round(e["joules"], 3),
                "joules_label": None if e is None else e["label"]}

    def stats(self: Kernel) -> dict[str, Any]:
        """The kernel's live figures (see the module map). Cheap: no journal reads."""
        counts = {s.name.lower(): n for s, n in zip(S, self.procs.counts, strict=True)}
        engines = []
        for name, st in self.engine_set.stats().items():
            eng = self.engine_set.loaded.get(name)
            engines.append({"name": name, "model": getattr(eng, "model", ""),
                            "tokens_per_s": float(st.tokens_per_s), "tokens_generated": st.tokens_generated,
                            "active": st.active, "waiting": st.waiting, "kv_used_tokens": st.kv_used_tokens,
                            "kv_total_tokens": st.kv_total_tokens})
        energy = self.energy_by_agent()
        agents: dict[str, dict[str, Any]] = {}
        for a in sorted({*self.usage.agents(), *(p.owner for p in self.procs.live())}):
            agents[a] = {"live": self.procs.live_count(a), **self.usage.of(a),
                         "joules": energy.get(a, {}).get("joules"), "joules_label": energy.get(a, {}).get("label")}
        out: dict[str, Any] = {
            "ts": self.clock.time(), "processes": counts,
            "queue_depth": counts["new"] + counts["queued"],
            "tokens_per_s": sum(e["tokens_per_s"] for e in engines), "engines": engines,
            "agents": agents,
            "live": [self.view(p) for p in sorted(self.procs.live(), key=lambda p: (p.state != S.RUNNING, p.pid))
                     ][:STATS_LIVE_MAX],
        }
        if self.meter is not None:
            t = self.meter.totals()
            out["energy"] = {"measured_j": t.measured_j, "modelled_j": t.modelled_j,
                             "idle_j": t.idle_measured_j + t.idle_modelled_j, "labels": dict(t.labels)}
        if self.placer is not None:
            out["alloc"] = {"mode": self.placer.alloc.mode, "load": self.placer.alloc.load()}
        return out

    # ── engines (thin: the work is in engines.py) ──────────────────────────
    @property
    def engines(self: Kernel) -> dict[str, Engine]:
        """Engines loaded now, name -> engine (read-only: the kernel owns them)."""
        return self.engine_set.loaded

    async def engine_for(self: Kernel, key: str | None) -> Engine:
        """The engine for ``key``: an engine name, a model name, or None (the default)."""
        return await self.engine_set.get(key)

    def check_model(self: Kernel, name: str) -> None:
        self.engine_set.check(name)
