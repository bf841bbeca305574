"""``Kernel``: owns the subsystems and is the one object other layers hold.

Map (the class is assembled from one mixin per concept):
- here: boot / shutdown (``Kernel.boot``: the ordered list in ``boot.py``;
  ``shutdown``: tools get a grace period, generations are checkpointed back to the
  queue), syscalls (``syscall`` never raises, ``syscall_stream`` gives the process it
  started, its chunks, then the final result), ``events`` (process / timer events), the transition listeners.
- ``procops.ProcessOps``: ``spawn``, ``kill``, ``nice``, ``wait``, ``result``, ``confirm``,
  ``exit``, ``view`` — what the ``sys_proc`` decoders call.
- ``stepping.LoopHooks``: ``_place`` (the allocator places the plan), ``_claim`` (pids ->
  Work, RUNNING durably before any tool runs), ``update`` (fold an Outcome).
- ``metering.Metering``: the energy meter on the transition path, ``energy_by_agent``,
  ``stats``, ``usage_of``, engines.
- ``programs.ProgramAPI``: ``submit``, ``add_task``, ``run_until_idle``, ``register_job``
  (``sync.SyncKernel`` wraps them).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from llmos.clock import Clock
from llmos.config import Config
from llmos.errors import KernelError, LLMOSError
from llmos.kernel.accounting import Accounting
from llmos.kernel.agents import AgentRegistry
from llmos.kernel.engines import EngineSet
from llmos.kernel.events import EventBus
from llmos.kernel.memory import Memory
from llmos.kernel.metering import Metering
from llmos.kernel.process import Process, ProcessTable, ProcState
from llmos.kernel.procops import ProcessOps
from llmos.kernel.programs import ProgramAPI, TaskHandle
from llmos.kernel.result import SyscallResult
from llmos.kernel.specs import JobType
from llmos.kernel.stepping import LoopHooks
from llmos.kernel.syscall import dispatch
from llmos.kernel.timers import Timer, Timers

if TYPE_CHECKING:
    from llmos.executor.base import Executor
    from llmos.kernel.energy import EnergyMeter
    from llmos.kernel.loop import KernelLoop
    from llmos.kernel.placement import Placer
    from llmos.kernel.sched import Scheduler
    from llmos.kernel.storage import Journal, StateLock
    from llmos.kernel.versions import VersionStore
    from llmos.llm.base import Engine

__all__ = ["Kernel", "TaskHandle", "SHUTDOWN_GRACE_S"]

log = logging.getLogger(__name__)
S = ProcState

SHUTDOWN_GRACE_S = 5.0     # running tools may finish this long after shutdown starts


class Kernel(ProcessOps, LoopHooks, Metering, ProgramAPI):
    """Build with ``await Kernel.boot(config, ...)``; the constructor only wires tables."""

    def __init__(self, config: Config, *, clock: Clock, journal: Journal, lock: StateLock | None,
                 tools: Any = None, hal: Any = None, engines: dict[str, Engine] | None = None) -> None:
        self.config = config
        self.clock = clock
        self.journal = journal
        self.lock = lock
        self.tools = tools                        # ToolRegistry or None
        self.hal = hal                            # HAL or None (no devices seen, no energy)
        self.own_hal = False                      # True when boot detected it (closed at shutdown)
        self.meter: EnergyMeter | None = None     # set by boot when there is a HAL
        self.placer: Placer | None = None         # the allocator's placements; set by boot
        self.procs = ProcessTable(journal, clock.time)
        self.agents = AgentRegistry(journal, clock.time)
        self.memory = Memory(journal, clock.time)
        self.versions: VersionStore | None = None  # file versions for undo; set by boot
        self.timers = Timers(journal, clock, self._timer_fired)
        self.sched: Scheduler = None  # type: ignore[assignment]   # set by boot
        self.executor: Executor = None  # type: ignore[assignment]  # set by boot
        self.loop: KernelLoop = None  # type: ignore[assignment]    # set by boot
        self.job_types: dict[str, JobType] = {}   # job type -> runner; register_job()
        self.queue_max = 4096                     # processes QUEUED at most (params.KERNEL_QUEUE_MAX)
        self.closed = False
        self.engine_set = EngineSet(config, engines, lambda: self.sched.step_policy())
        self.usage = Accounting(clock.time)
        self.bus = EventBus()
        self._sinks: dict[int, Callable[[Any], None]] = {}     # pid -> token stream sink
        self._calls: dict[int, Callable[[], Any]] = {}         # pid -> in-process job callable
        self._waiters: dict[int, asyncio.Future] = {}          # pid -> resolves with Result|None
        self._live_tokens: dict[int, int] = {}                 # pid -> generated tokens the quota guard
        #                                                        charged while it ran (folded at its end)
        self._placed_j: dict[int, float] = {}                  # pid -> J metered since it was placed
        self._idle = asyncio.Event()
        self._closed_event = asyncio.Event()
        self._timer_task: asyncio.Task | None = None
        self.recovery: Any = None                 # RecoveryReport of the last boot
        self.procs.before_transition(self._meter_hook)
        self.procs.on_transition(self._on_transition)

    # ── boot / shutdown ────────────────────────────────────────────────────
    @classmethod
    async def boot(cls, config: Config | None = None, *, engines: dict[str, Engine] | None = None,
                   tools: Any = None, clock: Clock | None = None, hal: Any = None,
                   scheduler: str | None = None, run_loop: bool = True) -> Kernel:
        """Open the state directory, replay the journal, start the loop (see boot.py)."""
        from llmos.kernel.boot import boot

        return await boot(cls, config, engines=engines, tools=tools, clock=clock, hal=hal,
                          scheduler=scheduler, run_loop=run_loop)

    async def shutdown(self, *, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop taking syscalls, let running tools finish (``grace_s``), checkpoint the
        rest back to the queue, commit the journal and release the state directory."""
        if self.closed:
            return
        self.closed = True
        if self.loop is not None:
            await self.loop.stop()
        if self._timer_task is not None:
            self.timers.close()
            self._timer_task.cancel()
            await asyncio.gather(self._timer_task, return_exceptions=True)
        if self.executor is not None:
            await self._drain(grace_s)
            await self.executor.close()
        for pid in [p.pid for p in self.procs.live() if p.state in (S.RUNNING, S.PREEMPTED)]:
            p = self.procs.get(pid)
            if p.kind == "llm" or p.state == S.PREEMPTED:
                self.procs.transition(p, S.QUEUED, "checkpointed at shutdown: re-queued")
                self._release(pid, None)
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(KernelError("the kernel shut down before the process finished",
                                              hint="it resumes when the kernel boots again"))
                fut.exception()
        try:
            await self.journal.durable()
        finally:
            self.journal.close()
            self.memory.close()                   # long-term memory's own database
            if self.versions is not None:
                self.versions.close()             # file versions' own database
            await self.engine_set.close_built()
            if self.own_hal and self.hal is not None:
                self.hal.close()
            if self.lock is not None:
                self.lock.release()
            self.bus.publish({"type": "shutdown", "ts": self.clock.time()})
            self.bus.close()
            self._closed_event.set()

    async def _drain(self, grace_s: float) -> None:
        """Cancel generations; give tools/jobs ``grace_s`` to finish and fold their results."""
        for pid in list(self.executor.running()):
            p = self.procs.find(pid)
            if p is not None and p.kind == "llm":
                self.executor.cancel(pid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        empty = _EmptyPlan()
        while self.executor.running():
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                outcome = await asyncio.wait_for(self.executor.run(empty), left)
            except TimeoutError:
                break
            self._fold(empty, outcome, shutting_down=True)

    def start_timers(self) -> None:
        if self._timer_task is None:
            self._timer_task = asyncio.get_running_loop().create_task(self.timers.run(),
                                                                      name="llmos-timers")

    def install_signal_handlers(self) -> None:
        """SIGTERM / SIGINT start a graceful shutdown (the daemon calls this)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.shutdown()))

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    # ── syscalls and events ────────────────────────────────────────────────
    async def syscall(self, agent_id: str, name: str, args: dict | None = None, *,
                      sink: Callable[[Any], None] | None = None,
                      started: Callable[[int], None] | None = None,
                      person: bool = True) -> SyscallResult:
        """Make syscall ``name`` as ``agent_id``. Never raises: see ``SyscallResult``.
        ``sink`` gets streamed chunks; ``started`` the pid of the process the call spawns;
        ``person``: made on behalf of the person (False for an agent's own API call)."""
        return await dispatch(self, agent_id, name, args, sink=sink, started=started, person=person)

    async def syscall_stream(self, agent_id: str, name: str, args: dict | None = None
                             ) -> AsyncIterator[dict[str, Any]]:
        """Yield ``{"type": "started", "pid"}`` first once the call's process exists (a
        call refused before that has none), ``{"type": "chunk", "text", "index"}`` while it
        runs, then ``{"type": "result", "ok", "value" | "error"}``.

        A consumer that stops early leaves the process running; it may kill the started
        pid (the API does, as the caller, when its client disconnects)."""
        q: asyncio.Queue = asyncio.Queue()

        def sink(chunk: Any) -> None:
            q.put_nowait({"type": "chunk", "text": chunk.text, "index": chunk.index})

        def started(pid: int) -> None:
            q.put_nowait({"type": "started", "pid": pid})

        task = asyncio.ensure_future(self.syscall(agent_id, name, args, sink=sink, started=started))
        try:
            while True:
                getter = asyncio.ensure_future(q.get())
                await asyncio.wait([getter, task], return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                    continue
                getter.cancel()
                while not q.empty():
                    yield q.get_nowait()
                yield {"type": "result", **task.result().to_dict()}
                return
        finally:
            if not task.done():   # the consumer went away; the process itself keeps running
                task.cancel()     # (the consumer kills it by the started pid if it wants)

    def events(self) -> AsyncIterator[dict[str, Any]]:
        """Process transitions, timer firings and shutdown, as dicts with a ``type``."""
        return self.bus.subscribe()

    def _busy(self) -> int:
        """Processes that still need the loop (waiting ones don't)."""
        c = self.procs.counts
        return c[S.NEW] + c[S.QUEUED] + c[S.RUNNING] + c[S.PREEMPTED]

    def _on_transition_idle(self) -> None:
        if self._busy():
            self._idle.clear()
        else:
            self._idle.set()

    def _on_transition(self, p: Process, frm: ProcState, reason: str) -> None:
        self._on_transition_idle()
        if self.bus.watched:
            self.bus.publish({"type": "process", "pid": p.pid, "kind": p.kind, "owner": p.owner,
                              "parent": p.parent, "state": p.state.name.lower(),
                              "prev": frm.name.lower(), "reason": reason, "ts": p.updated_s})

    def _timer_fired(self, t: Timer) -> None:
        prefix = "reminder (late)" if t.late else "reminder"
        try:
            self.memory.append(t.owner, "system", f"{prefix}: {t.message}")
        except LLMOSError as e:
            log.warning("timer %d: could not add to context: %s", t.id, e)
        self.bus.publish({"type": "timer", **t.to_dict()})


class _EmptyPlan:
    def __init__(self) -> None:
        self.run: list[int] = []
        self.preempt: list[int] = []
        self.reasons: dict[int, str] = {}
        self.at_s = 0.0
