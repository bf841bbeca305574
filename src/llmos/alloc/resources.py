"""The machine's resources for the allocator: devices from the HAL, engines from the config.

Map:
- ``device_resources(snapshot)``: the CPU and each GPU the HAL sees (capacities
  from what it reports; power figures from the HAL's stated models).
- ``engine_resources(config, given, snapshot)``: one ``EngineResource`` per engine
  the kernel can run: each engine handed to it at boot (``engine:<key>``), each
  local model of the registry (``engine:<model>``: the embedded default and the
  config's ``[models]``; each is its own llama.cpp instance), each remote
  OpenAI-compatible endpoint (``remote:<name>``). An ``EngineResource`` also says
  which ``EngineSet`` key serves it and which devices its work draws energy from.
- ``local_engine(name, config, snapshot)``: the resource of a local model named by
  path at run time (added on first use).
- ``machine_resources(snapshot, config, given)``: devices + engines as plain ``Resource``s.
- ``allocator_for(config, hal, clock, given)``: an ``Allocator`` over them in ``config.alloc_mode``.

Energy devices of an engine: its own ``devices`` attribute when it states one;
an OpenAI-compatible endpoint on another host has none (not measurable here); an
engine in this process or behind a loopback URL draws on the CPU (a local server
that uses a GPU is under-counted: the kernel cannot see which devices it uses).

Figures not known at boot start from the stated priors below and are replaced
by measurements as work finishes (``Allocator.release`` / ``observe``): speeds
(work units or tokens per second) and joules per unit of work. Remote engines
have no energy figure here: their joules are not measurable from this machine.
Local engines and devices state cost 0 per unit (no per-token price); remote
endpoints state none (unknown cost ranks last in cost mode).

Labels a task may ``need``: ``cpu``, ``gpu``, ``gpu:N``, ``tool``, ``job``, ``llm``,
``model:<name>``, ``default`` (the engines that serve a request naming no model:
the engines given at boot when there are any, else the configured default model).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from llmos.alloc.model import Resource
from llmos.alloc.place import Allocator
from llmos.hal.cpu import CPU_BUSY_W_PER_CORE, CPU_IDLE_W_PER_CORE
from llmos.hal.gpu import GPU_DEFAULT_LIMIT_W, GPU_IDLE_FRACTION

if TYPE_CHECKING:  # pragma: no cover
    from llmos.clock import Clock
    from llmos.config import Config
    from llmos.hal.base import HAL, HardwareSnapshot

__all__ = ["EngineResource", "device_resources", "engine_resources", "local_engine", "machine_resources",
           "allocator_for", "engine_devices", "is_loopback", "ENGINE_TOKENS_PER_S_PRIOR", "REMOTE_TOKENS_PER_S_PRIOR", "REMOTE_SLOTS",
           "DEFAULT_LABEL"]

ENGINE_TOKENS_PER_S_PRIOR = 20.0   # tokens/s per sequence before any measurement (stated prior)
REMOTE_TOKENS_PER_S_PRIOR = 40.0   # tokens/s per request to a remote server (stated prior)
REMOTE_SLOTS = 8                   # concurrent requests per remote endpoint unless measured otherwise
DEFAULT_LABEL = "default"          # provided by the engines that serve requests naming no model


@dataclass(frozen=True)
class EngineResource:
    resource: Resource            # what the allocator sees
    engine: str                   # the EngineSet key that serves it (Kernel.engine_for)
    devices: tuple[str, ...]      # device ids its work draws energy from; () when not measurable here


def is_loopback(url: str) -> bool:
    """True when ``url`` points at this machine (localhost or a loopback address)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def engine_devices(engine: Any) -> tuple[str, ...]:
    """Devices whose energy an engine's work draws (see the module map)."""
    stated = getattr(engine, "devices", None)
    if stated is not None:
        return tuple(stated)
    url = getattr(engine, "base_url", None)
    if isinstance(url, str) and url and not is_loopback(url):
        return ()
    return ("cpu",)


def _cpu_power(snapshot: HardwareSnapshot | None) -> tuple[float, float, int]:
    """(busy W, idle W, logical cores) of the whole CPU, from the HAL's stated model."""
    cpu = next((d for d in snapshot.devices if d.kind == "cpu"), None) if snapshot else None
    cores = (cpu.cores if cpu else None) or os.cpu_count() or 1
    phys = (cpu.physical_cores if cpu else None) or cores
    return CPU_BUSY_W_PER_CORE * phys, CPU_IDLE_W_PER_CORE * phys, cores


def device_resources(snapshot: HardwareSnapshot | None) -> list[Resource]:
    """The CPU (always; from ``os.cpu_count`` without a HAL) and every GPU the HAL sees."""
    out: list[Resource] = []
    devices = snapshot.devices if snapshot is not None else ()
    if not any(d.kind == "cpu" for d in devices):
        busy, idle, cores = _cpu_power(None)
        out.append(Resource("cpu", kind="cpu", capacity={"cores": float(cores)}, lanes=cores, speed=1.0,
                            cost_per_unit=0.0, power_w=busy / cores, idle_w=idle / cores,
                            provides=frozenset({"cpu", "tool", "job"})))
    for d in devices:
        if d.kind == "cpu":
            cores = d.cores or 1
            cap = {"cores": float(cores)}
            if d.memory_available_bytes is not None:
                cap["memory_bytes"] = float(d.memory_available_bytes)
            phys = d.physical_cores or cores
            out.append(Resource("cpu", kind="cpu", capacity=cap, lanes=cores, speed=1.0, cost_per_unit=0.0,
                                power_w=CPU_BUSY_W_PER_CORE * phys / cores,
                                idle_w=CPU_IDLE_W_PER_CORE * phys / cores,
                                provides=frozenset({"cpu", "tool", "job"})))
        elif d.kind == "gpu":
            cap = {}
            if d.memory_available_bytes is not None:
                cap["gpu_memory_bytes"] = float(d.memory_available_bytes)
            limit = d.power_limit_w or GPU_DEFAULT_LIMIT_W
            out.append(Resource(d.device_id, kind="gpu", capacity=cap, lanes=1, speed=1.0, cost_per_unit=0.0,
                                power_w=limit, idle_w=limit * GPU_IDLE_FRACTION, max_power_w=limit,
                                provides=frozenset({"gpu", d.device_id, "job"})))
    return out


def local_engine(name: str, config: Config, snapshot: HardwareSnapshot | None, *,
                 default: bool = False) -> EngineResource:
    """A llama.cpp instance for local model ``name``: ``n_seq_max`` lanes sharing the CPU
    (and GPU 0 when layers are offloaded); per-lane power is the device's stated busy
    power split over the lanes."""
    lanes = config.engine.n_seq_max
    busy, idle, _ = _cpu_power(snapshot)
    devices: tuple[str, ...] = ("cpu",)
    gpus = [d for d in snapshot.devices if d.kind == "gpu"] if snapshot else []
    if config.engine.n_gpu_layers != 0 and gpus:
        limit = gpus[0].power_limit_w or GPU_DEFAULT_LIMIT_W
        busy += limit
        idle += limit * GPU_IDLE_FRACTION
        devices = ("cpu", gpus[0].device_id)
    provides = {"llm", f"model:{name}"} | ({DEFAULT_LABEL} if default else set())
    r = Resource(f"engine:{name}", kind="engine", capacity={}, lanes=lanes, speed=ENGINE_TOKENS_PER_S_PRIOR,
                 cost_per_unit=0.0, power_w=busy / lanes, idle_w=idle / lanes, provides=frozenset(provides))
    return EngineResource(r, name, devices)


def engine_resources(config: Config, given: Mapping[str, Any] | None = None,
                     snapshot: HardwareSnapshot | None = None) -> list[EngineResource]:
    """Every engine the kernel may run (see the module map). Given engines shadow
    registry models of the same name."""
    given = dict(given or {})
    out: list[EngineResource] = []
    busy, idle, _ = _cpu_power(snapshot)
    for key, eng in given.items():
        lanes = max(1, int(getattr(getattr(eng, "capabilities", None), "max_active", 1) or 1))
        models = {f"model:{key}"} | ({f"model:{eng.model}"} if getattr(eng, "model", "") else set())
        devices = engine_devices(eng)
        power = {"power_w": busy / lanes, "idle_w": idle / lanes} if devices else {}
        r = Resource(f"engine:{key}", kind="engine", capacity={}, lanes=lanes, speed=ENGINE_TOKENS_PER_S_PRIOR,
                     cost_per_unit=0.0, provides=frozenset({"llm", DEFAULT_LABEL, *models}), **power)
        out.append(EngineResource(r, key, devices))
    for name in dict.fromkeys([config.model, *(n for n, _ in config.models)]):
        if name in given or any(r.name == name for r in config.remotes):
            continue
        out.append(local_engine(name, config, snapshot, default=not given and name == config.model))
    for rm in config.remotes:
        if rm.name in given:
            continue
        provides = {"llm", f"model:{rm.name}", f"model:{rm.model}"}
        if not given and rm.name == config.model:
            provides.add(DEFAULT_LABEL)
        r = Resource(f"remote:{rm.name}", kind="remote", capacity={}, lanes=REMOTE_SLOTS,
                     speed=REMOTE_TOKENS_PER_S_PRIOR, provides=frozenset(provides))
        out.append(EngineResource(r, rm.name, ("cpu",) if is_loopback(rm.base_url) else ()))
    return out


def machine_resources(snapshot: HardwareSnapshot | None, config: Config | None = None,
                      given: Mapping[str, Any] | None = None) -> list[Resource]:
    out = device_resources(snapshot)
    if config is not None:
        out += [e.resource for e in engine_resources(config, given, snapshot)]
    return out


def allocator_for(config: Config, hal: HAL | None, clock: Clock | None = None,
                  given: Mapping[str, Any] | None = None) -> Allocator:
    """An allocator over this machine's resources, in the configured mode."""
    snapshot = hal.snapshot() if hal is not None else None
    return Allocator(machine_resources(snapshot, config, given), mode=config.alloc_mode, clock=clock)
