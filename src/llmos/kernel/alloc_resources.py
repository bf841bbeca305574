"""The machine's resources for the allocator: devices from the HAL, engines from the config.

Map:
- ``machine_resources(snapshot, config)``: one ``Resource`` per device (the CPU,
  each GPU) and per engine (the embedded model, each remote OpenAI-compatible
  endpoint), with capacities from what the HAL sees and the config says.
- ``allocator_for(config, hal, clock)``: an ``Allocator`` over them in ``config.alloc_mode``.

Figures not known at boot start from the stated priors below and are replaced
by measurements as work finishes (``Allocator.release`` / ``observe``): speeds
(work units or tokens per second) and joules per unit of work. Remote engines
have no energy figure here: their joules are not measurable from this machine.

Labels a task may ``need``: ``cpu``, ``gpu``, ``gpu:N``, ``tool``, ``job``, ``llm``,
``model:<name>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmos.hal.cpu import CPU_BUSY_W_PER_CORE, CPU_IDLE_W_PER_CORE
from llmos.hal.gpu import GPU_DEFAULT_LIMIT_W, GPU_IDLE_FRACTION
from llmos.kernel.alloc import Allocator
from llmos.kernel.alloc_model import Resource

if TYPE_CHECKING:  # pragma: no cover
    from llmos.clock import Clock
    from llmos.config import Config
    from llmos.hal.base import HAL, HardwareSnapshot

__all__ = ["machine_resources", "allocator_for", "ENGINE_TOKENS_PER_S_PRIOR", "REMOTE_SLOTS"]

ENGINE_TOKENS_PER_S_PRIOR = 20.0   # tokens/s per sequence before any measurement (stated prior)
REMOTE_TOKENS_PER_S_PRIOR = 40.0   # tokens/s per request to a remote server (stated prior)
REMOTE_SLOTS = 8                   # concurrent requests per remote endpoint unless measured otherwise


def machine_resources(snapshot: HardwareSnapshot, config: Config | None = None) -> list[Resource]:
    out: list[Resource] = []
    for d in snapshot.devices:
        if d.kind == "cpu":
            cores = d.cores or 1
            cap = {"cores": float(cores)}
            if d.memory_available_bytes is not None:
                cap["memory_bytes"] = float(d.memory_available_bytes)
            phys = d.physical_cores or cores
            out.append(Resource("cpu", kind="cpu", capacity=cap, lanes=cores, speed=1.0,
                                power_w=CPU_BUSY_W_PER_CORE * phys / cores,
                                idle_w=CPU_IDLE_W_PER_CORE * phys / cores,
                                provides=frozenset({"cpu", "tool", "job"})))
        elif d.kind == "gpu":
            cap = {}
            if d.memory_available_bytes is not None:
                cap["gpu_memory_bytes"] = float(d.memory_available_bytes)
            limit = d.power_limit_w or GPU_DEFAULT_LIMIT_W
            out.append(Resource(d.device_id, kind="gpu", capacity=cap, lanes=1, speed=1.0, power_w=limit,
                                idle_w=limit * GPU_IDLE_FRACTION, max_power_w=limit,
                                provides=frozenset({"gpu", d.device_id, "job"})))
    if config is not None:
        models = {config.model, *(name for name, _ in config.models)}
        slots = config.engine.n_seq_max
        out.append(Resource("engine:embedded", kind="engine", capacity={"slots": float(slots)}, lanes=slots,
                            speed=ENGINE_TOKENS_PER_S_PRIOR,
                            provides=frozenset({"llm", *(f"model:{m}" for m in models)})))
        for r in config.remotes:
            out.append(Resource(f"remote:{r.name}", kind="remote", capacity={"slots": float(REMOTE_SLOTS)},
                                lanes=REMOTE_SLOTS, speed=REMOTE_TOKENS_PER_S_PRIOR,
                                provides=frozenset({"llm", f"model:{r.name}", f"model:{r.model}"})))
    return out


def allocator_for(config: Config, hal: HAL, clock: Clock | None = None) -> Allocator:
    """The kernel's allocator: this machine's resources, in the configured mode."""
    return Allocator(machine_resources(hal.snapshot(), config), mode=config.alloc_mode, clock=clock)
