"""Read the system's state for people and scrapers: ``/api/v1/system``, ``/metrics``, the dashboard.

Map:
- ``hardware(kernel)``: CPU, memory, GPUs and energy readings from the kernel's HAL
  (``{}`` parts when the kernel runs without one). Energy is labelled
  ``measured`` or ``modelled``, as the HAL says.
- ``engines(kernel)``: each engine's ``stats()`` (throughput, active sequences, KV use).
- ``system_snapshot(svc, who)``: the ``SystemOut`` body; process counts come from a
  ``proc.list`` made as the caller, so an agent sees only what it may see.
- ``metrics_snapshot(svc)``: the input of ``Metrics.update`` (as root: metrics are the
  admin's view).
- ``ticker(svc, every_s)``: publish a ``system.stats`` event while anyone listens.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from llmos.api.auth import ADMIN_AGENT, Principal

__all__ = ["hardware", "engines", "system_snapshot", "metrics_snapshot", "ticker", "LIVE_STATES"]

log = logging.getLogger("llmos.api")

LIVE_STATES = ("new", "queued", "running", "waiting", "preempted")
TICK_S = 2.0            # seconds between system.stats events on the stream
PROC_SCAN_MAX = 10_000   # processes read per snapshot (proc.list's own limit)


def _hal(kernel: Any) -> Any:
    return getattr(kernel, "hal", None)


def hardware(kernel: Any) -> dict[str, Any]:
    hal = _hal(kernel)
    if hal is None:
        return {"notes": ["no hardware abstraction in this kernel"]}
    try:
        snap = hal.snapshot()
    except Exception as e:  # noqa: BLE001 - a driver hiccup must not break the page
        log.warning("HAL snapshot failed: %s", e)
        return {"notes": [f"hardware read failed: {type(e).__name__}"]}
    cpu: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    gpus: list[dict[str, Any]] = []
    for d in snap.devices:
        if d.kind == "cpu" and not cpu:
            cpu = {"name": d.name, "cores": d.cores, "physical_cores": d.physical_cores,
                   "freq_mhz": d.freq_mhz, "utilization": d.utilization, "power_w": d.power_w}
            memory = {"total_bytes": d.memory_total_bytes, "available_bytes": d.memory_available_bytes}
        elif d.kind == "gpu":
            gpus.append({"index": d.index, "name": d.name, "utilization": d.utilization,
                         "memory_total_bytes": d.memory_total_bytes,
                         "memory_available_bytes": d.memory_available_bytes,
                         "power_w": d.power_w, "power_limit_w": d.power_limit_w})
    energy = [{"domain": r.domain, "device": r.device, "joules": r.joules, "method": r.method,
               "label": r.label, "detail": r.detail} for r in snap.energy]
    out = {"cpu": cpu, "memory": memory, "gpus": gpus, "energy": energy, "notes": list(snap.notes)}
    view = getattr(getattr(getattr(kernel, "executor", None), "connection", None), "view", None)
    if view is not None:                                     # the Ray executor's cluster: its nodes
        try:
            out["cluster"] = view.report()
        except Exception as e:  # noqa: BLE001 - a cluster hiccup must not break the page
            out["notes"].append(f"ray cluster view failed: {type(e).__name__}")
    return out


def _engine_map(kernel: Any) -> dict[str, Any]:
    """name -> engine of the kernel (its public ``engines`` when it has one; the kernel
    keeps them in ``_engines`` today, read-only here)."""
    engs = getattr(kernel, "engines", None)
    if engs is None:
        engs = getattr(kernel, "_engines", None)
    if isinstance(engs, dict):
        return engs
    if isinstance(engs, (list, tuple)):
        return {getattr(e, "name", f"engine{i}"): e for i, e in enumerate(engs)}
    eng = getattr(kernel, "engine", None)
    return {getattr(eng, "name", "engine"): eng} if eng is not None else {}


def engines(kernel: Any) -> list[dict[str, Any]]:
    out = []
    for name, eng in _engine_map(kernel).items():
        try:
            st = eng.stats()
        except Exception:  # noqa: BLE001 - stats are best effort
            continue
        out.append({"name": str(name), "model": getattr(eng, "model", ""),
                    "tokens_per_s": st.tokens_per_s, "tokens_generated": st.tokens_generated,
                    "active": st.active, "waiting": st.waiting, "kv_used_tokens": st.kv_used_tokens,
                    "kv_total_tokens": st.kv_total_tokens, "steps": st.steps})
    return out


async def _procs(svc: Any, agent: str, limit: int) -> list[dict]:
    res = await svc.kernel.syscall(agent, "proc.list", {"limit": limit})
    if not res.ok:
        return []
    v = res.value
    if isinstance(v, dict):
        v = v.get("processes", [])
    return [p for p in v or [] if isinstance(p, dict)]


def _table_counts(kernel: Any) -> dict[str, int] | None:
    """Processes per state straight from the kernel's table (the admin's whole view),
    without listing every process: what the ticker uses every few seconds."""
    counts = getattr(getattr(kernel, "procs", None), "counts", None)
    if not isinstance(counts, list):
        return None
    from llmos.kernel.process import ProcState

    return {s.name.lower(): int(counts[s]) for s in ProcState if int(counts[s])}


async def system_snapshot(svc: Any, who: Principal) -> dict[str, Any]:
    counts = _table_counts(svc.kernel) if who.admin else None
    if counts is None:    # an agent sees the processes proc.list shows it
        procs = await _procs(svc, who.agent, PROC_SCAN_MAX)
        counts = dict(collections.Counter(str(p.get("state")) for p in procs))
    hw = await asyncio.to_thread(hardware, svc.kernel)
    return {**hw, "engines": engines(svc.kernel), "queue_depth": counts.get("queued", 0) + counts.get("new", 0),
            "process_counts": counts, "uptime_s": time.time() - svc.started}


async def metrics_snapshot(svc: Any) -> dict[str, Any]:
    procs = await _procs(svc, ADMIN_AGENT, PROC_SCAN_MAX)
    hw = await asyncio.to_thread(hardware, svc.kernel)
    depth = sum(1 for p in procs if p.get("state") in ("new", "queued"))
    return {"processes": procs, "engines": engines(svc.kernel), "energy": hw.get("energy", []),
            "queue_depth": depth}


async def ticker(svc: Any, every_s: float = TICK_S) -> None:
    """Publish ``system.stats`` every ``every_s`` seconds while someone is subscribed."""
    root = Principal(ADMIN_AGENT, admin=True)
    while True:
        await asyncio.sleep(every_s)
        if svc.hub.subscribers == 0:
            continue
        try:
            snap = await system_snapshot(svc, root)
        except Exception:  # noqa: BLE001 - keep ticking
            log.exception("system snapshot failed")
            continue
        svc.hub.publish({"type": "system.stats", "system": snap})
