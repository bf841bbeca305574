"""``Subsystems``: the kernel's shared subsystems, one plain record the parts read.

The ``Kernel`` facade (``core.py``) is assembled from parts that own their own state
(``procops.ProcessManager``, ``stepping.LoopHooks``, ``metering.Meter``,
``programs.Programs``); what they share is this record of subsystems, each with one
owner that sets it (the constructor, or ``boot.py`` for those made at boot). Parts read
these fields and call their public methods; a part never reaches into another part's
private state, and no part imports the facade.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmos.kernel.accounting import Accounting
from llmos.kernel.agents import AgentRegistry
from llmos.kernel.events import EventBus
from llmos.kernel.process import ProcessTable

if TYPE_CHECKING:
    from llmos.clock import Clock
    from llmos.config import Config
    from llmos.executor.base import Executor
    from llmos.kernel.energy import EnergyMeter
    from llmos.kernel.engines import EngineSet
    from llmos.kernel.loop import KernelLoop
    from llmos.kernel.placement import Placer
    from llmos.kernel.sched import Scheduler
    from llmos.kernel.specs import JobType
    from llmos.kernel.storage import Journal

__all__ = ["Subsystems"]


class Subsystems:
    """What every part of the kernel may read. Fields set at boot start as None."""

    def __init__(self, config: Config, clock: Clock, journal: Journal, engine_set: EngineSet, *,
                 tools: Any = None, hal: Any = None) -> None:
        self.config = config
        self.clock = clock
        self.journal = journal                  # the durable journal (source of truth)
        self.tools = tools                      # ToolRegistry or None
        self.hal = hal                          # HAL or None (no devices seen, no energy)
        self.procs = ProcessTable(journal, clock.time)       # every state change goes through it
        self.agents = AgentRegistry(journal, clock.time)
        self.usage = Accounting(clock.time)     # per-agent tokens, CPU s, joules
        self.bus = EventBus()                   # process / timer / shutdown events
        self.engine_set = engine_set            # given engines + engines built on first use
        self.job_types: dict[str, JobType] = {}  # job type -> runner; register_job()
        self.queue_max = 4096                   # processes QUEUED at most (params.KERNEL_QUEUE_MAX)
        # set by boot.py
        self.meter: EnergyMeter | None = None   # joules per process; None without a HAL
        self.placer: Placer | None = None       # the allocator's placements
        self.sched: Scheduler = None  # type: ignore[assignment]
        self.executor: Executor = None  # type: ignore[assignment]
        self.loop: KernelLoop = None  # type: ignore[assignment]

    def check_model(self, name: str) -> None:
        """Raise ModelNotFound unless ``name`` can be served (``specs.check_spec`` asks)."""
        self.engine_set.check(name)
