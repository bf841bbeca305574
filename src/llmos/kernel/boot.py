"""Boot: one ordered list, one comment per line (as xv6's main.c).

Everything that can fail does so before the loop starts, and a failure undoes what
was opened (the state directory lock above all), so a failed boot leaves nothing held.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from llmos import params
from llmos.clock import Clock, SystemClock
from llmos.config import Config, ensure_home, load_config
from llmos.executor.local import TOOL_WORKERS, LocalExecutor
from llmos.kernel.loop import KernelLoop
from llmos.kernel.recovery import recover
from llmos.kernel.storage import Journal, StateLock, make_private
from llmos.kernel.versions import VersionStore
from llmos.train.job import register as register_train

if TYPE_CHECKING:
    from llmos.kernel.core import Kernel
    from llmos.llm.base import Engine

__all__ = ["boot", "make_scheduler_for", "open_hal"]

log = logging.getLogger(__name__)


def make_scheduler_for(name: str, clock: Clock, home: Any) -> Any:
    """The process scheduler: tools and jobs are never preempted, generations may be."""
    from llmos.kernel.estimates import Estimates
    from llmos.kernel.sched import make_scheduler

    estimates = Estimates(home / "estimates.db") if name == "sjf" else None
    return make_scheduler(name, clock, estimates, preemptible_kinds=("llm",))


def open_hal(hal: Any, clock: Clock) -> tuple[Any, bool]:
    """(the HAL, whether the kernel opened it): ``None`` detects this machine's,
    ``False`` runs without one (no devices beyond the CPU count, no energy figures)."""
    if hal is False:
        return None, False
    if hal is not None:
        return hal, False
    from llmos.hal import detect

    return detect(clock), True


def make_placer(k: Kernel) -> Any:
    """The allocator over this machine's devices and the kernel's engines, in config.alloc_mode."""
    from llmos.alloc import Allocator
    from llmos.alloc.resources import device_resources
    from llmos.kernel.placement import Placer

    snapshot = k.hal.snapshot() if k.hal is not None else None
    alloc = Allocator(device_resources(snapshot), mode=k.config.alloc_mode, clock=k.clock)
    return Placer(alloc, config=k.config, given=k.engine_set.given, snapshot=snapshot, hal=k.hal, tools=k.tools,
                  loaded=lambda: k.engine_set.loaded)


def make_executor(k: Kernel, tools: Any) -> Any:
    """This process's executor, or the Ray executor when ``config.ray`` names a cluster."""
    if not k.config.ray:
        return LocalExecutor(k._claim, engine_for=k.engine_for, tools=tools, versions=k.versions)
    from llmos.executor.ray_boot import ray_executor

    return ray_executor(k, tools)


async def boot(cls: type[Kernel], config: Config | None, *, engines: dict[str, Engine] | None,
               tools: Any, clock: Clock | None, hal: Any, scheduler: str | None,
               run_loop: bool) -> Kernel:
    config = config or load_config()                        # 1. configuration (file, env)
    clock = clock or SystemClock()                          # 2. time source (FakeClock in tests)
    ensure_home(config.home)                                # 3. state directory exists, writable
    fixed = make_private(config.home)                       #    ... and private (0700, databases 0600)
    if any(name.endswith(".db") for name in fixed):   # a fresh directory is no news
        log.warning("made the state directory private: %s (were readable by others)", ", ".join(fixed))
    lock = StateLock(config.home)
    lock.acquire()                                          # 4. one kernel per state directory
    journal = versions = None
    given_hal, hal, own_hal = hal, None, False
    try:
        hal, own_hal = open_hal(given_hal, clock)           # 5. hardware: detected unless given
        journal = Journal(config.db_path)                   # 6. journal open, schema migrated
        k = cls(config, clock=clock, journal=journal, lock=lock, tools=tools, hal=hal,
                engines=engines)                            # 7. empty tables wired to the journal
        k.own_hal = own_hal
        register_train(k)                                   #    built-in job types: train (torch: in its ranks)
        k.queue_max = params.KERNEL_QUEUE_MAX               # 8. backpressure bound
        k.agents.load()                                     # 9. agents (root is built in)
        k.sched = make_scheduler_for(scheduler or config.scheduler, clock, config.home)  # 10. policy
        if hal is not None:
            from llmos.kernel.energy import EnergyMeter

            k.meter = EnergyMeter(hal, clock=clock)         # 11. joules per process from here on
        k.recovery = recover(k)                             # 12. replay processes; fire late timers
        await journal.durable()                             # 13. recovery decisions on disk first
        await k.engine_set.start_given()                    # 14. given engines started under the
                                                            #     scheduler's step policy (others: lazily)
        k.placer = make_placer(k)                           # 15. allocator: devices + engines
        versions = k.versions = VersionStore(                # 16. file versions (undo), pruned
            config.home, quota_bytes=config.versions.quota_bytes,
            max_age_s=config.versions.max_age_days * 86400, clock=clock.time)
        k.executor = make_executor(k, tools)                # 17. executor: here, or Ray's (config.ray)
        k.loop = KernelLoop(k.sched, k.executor, k.update, clock, place=k._place,
                            slots=config.engine.n_seq_max + TOOL_WORKERS)  # 18. loop
        k._on_transition_idle()                             # 19. idle flag from the recovered table
        if run_loop:
            k.loop.start()                                  # 20. start stepping
            k.start_timers()                                # 21. reminders fire on the kernel clock
        log.info("kernel booted: %d processes, %d re-queued, %d need confirmation",
                 k.recovery.processes, len(k.recovery.requeued), len(k.recovery.needs_confirmation))
        return k
    except BaseException:
        if journal is not None:
            journal.close()
        if versions is not None:
            versions.close()
        if own_hal and hal is not None:
            hal.close()
        lock.release()
        raise
