"""``Kernel``: the one object other layers hold — a small facade over parts that own
their state.

Map:
- ``Subsystems`` (``subsystems.py``): the shared subsystems (config, clock, journal,
  process table, agents, usage, bus, engines; scheduler, executor, loop, placer and
  energy meter once booted). The facade exposes each as an attribute of its own.
- parts, each built here and testable alone (none imports this module):
  ``processes`` = ``procops.ProcessManager`` (spawn, kill, nice, wait, result, confirm,
  exit, view, end; owns sinks, waiters, in-process callables, live tokens, the idle flag),
  ``hooks`` = ``stepping.LoopHooks`` (place, claim, fold: what the loop and the executor
  call back), ``metering`` = ``metering.Meter`` (joules on the transition path, placed
  joules, ``stats``, ``energy_by_agent``, ``usage_of``), ``programs`` =
  ``programs.Programs`` (``submit``, ``add_task``, ``run_until_idle``, ``register_job``).
- here: boot / shutdown (``Kernel.boot``: the ordered list in ``boot.py``; ``shutdown``:
  tools get a grace period, generations are checkpointed back to the queue), syscalls
  (``syscall`` never raises, ``syscall_stream`` gives the process it started, its chunks,
  then the final result), ``events``, the transition listener, and one-line delegates
  to the parts (the surface the ``sys_*`` decoders, boot and recovery call).
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
from llmos.kernel.engines import EngineSet
from llmos.kernel.memory import Memory
from llmos.kernel.metering import Meter
from llmos.kernel.process import Process, ProcState
from llmos.kernel.procops import ProcessManager
from llmos.kernel.programs import Programs, TaskHandle
from llmos.kernel.result import SyscallResult
from llmos.kernel.stepping import LoopHooks
from llmos.kernel.subsystems import Subsystems
from llmos.kernel.syscall import dispatch
from llmos.kernel.table import TABLE
from llmos.kernel.timers import Delivery, Timer, Timers

if TYPE_CHECKING:
    from llmos.kernel.storage import Journal, StateLock
    from llmos.kernel.versions import VersionStore
    from llmos.llm.base import Engine

__all__ = ["Kernel", "TaskHandle", "SHUTDOWN_GRACE_S"]

log = logging.getLogger(__name__)
S = ProcState

SHUTDOWN_GRACE_S = 5.0     # running tools may finish this long after shutdown starts


class _Shared:
    """``kernel.<name>``: the ``Subsystems`` field of that name (read and set)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, k: Any, owner: type | None = None) -> Any:
        return self if k is None else getattr(k.sub, self.name)

    def __set__(self, k: Any, value: Any) -> None:
        setattr(k.sub, self.name, value)


class _Via:
    """``kernel.<name>``: attribute ``<name>`` of one of the kernel's parts (a bound
    method, or a value read each time); read-only."""

    def __init__(self, part: str, name: str) -> None:
        self.part, self.name = part, name

    def __get__(self, k: Any, owner: type | None = None) -> Any:
        return self if k is None else getattr(getattr(k, self.part), self.name)


class Kernel:
    """Build with ``await Kernel.boot(config, ...)``; the constructor only wires the parts."""

    config = _Shared()
    clock = _Shared()
    journal = _Shared()
    tools = _Shared()
    hal = _Shared()
    procs = _Shared()
    agents = _Shared()
    usage = _Shared()
    bus = _Shared()
    engine_set = _Shared()
    job_types = _Shared()
    queue_max = _Shared()
    meter = _Shared()          # EnergyMeter, set by boot when there is a HAL
    placer = _Shared()         # the allocator's placements, set by boot
    sched = _Shared()          # set by boot
    executor = _Shared()       # set by boot
    loop = _Shared()           # set by boot
    syscalls = TABLE           # name -> row (table.py): what ``syscall`` dispatches to

    def __init__(self, config: Config, *, clock: Clock, journal: Journal, lock: StateLock | None,
                 tools: Any = None, hal: Any = None, engines: dict[str, Engine] | None = None) -> None:
        engine_set = EngineSet(config, engines, lambda: self.sub.sched.step_policy())
        self.sub = Subsystems(config, clock, journal, engine_set, tools=tools, hal=hal)
        self.lock = lock
        self.own_hal = False                      # True when boot detected the HAL (closed at shutdown)
        self.memory = Memory(journal, clock.time)
        self.versions: VersionStore | None = None  # file versions for undo; set by boot
        self.timers = Timers(journal, clock, self._timer_fired, Delivery.from_config(config))
        self.closed = False
        self.recovery: Any = None                 # RecoveryReport of the last boot
        # the parts (each owns its state; they reach each other only through these references)
        self.processes = ProcessManager(self.sub, release=lambda pid, m: self.hooks.release(pid, m))
        self.metering = Meter(self.sub, self.processes.view)
        self.hooks = LoopHooks(self.sub, self.processes, self.metering, self._syscall)
        self.programs = Programs(self.sub, self.processes, self._syscall, lambda pid: TaskHandle(self, pid))
        self._closed_event = asyncio.Event()
        self._timer_task: asyncio.Task | None = None
        self.procs.before_transition(self.metering.hook)
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
                self.hooks.release(pid, None)
        for fut in self.processes.waiters.values():
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
            self.hooks.fold(empty, outcome, shutting_down=True)

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

    async def _syscall(self, agent_id: str, name: str, args: dict | None = None) -> SyscallResult:
        return await self.syscall(agent_id, name, args)

    def _on_transition(self, p: Process, frm: ProcState, reason: str) -> None:
        self.processes.on_transition_idle()
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


    # ── delegates to the parts (the surface decoders, boot and recovery call) ──
    view = _Via("processes", "view")                 # ProcessManager
    spawn = _Via("processes", "spawn")
    process = _Via("processes", "process")
    kill = _Via("processes", "kill")
    nice = _Via("processes", "nice")
    confirm = _Via("processes", "confirm")
    exit = _Via("processes", "exit")
    wait = _Via("processes", "wait")
    result = _Via("processes", "result")
    _end = _Via("processes", "end")
    _enqueue = _Via("processes", "enqueue")
    _busy = _Via("processes", "busy")
    _on_transition_idle = _Via("processes", "on_transition_idle")
    _place = _Via("hooks", "place")                  # LoopHooks
    _claim = _Via("hooks", "claim")
    update = _Via("hooks", "update")
    _timer_hook = _Via("hooks", "timer_hook")
    stats = _Via("metering", "stats")                # Meter
    energy_by_agent = _Via("metering", "energy_by_agent")
    usage_of = _Via("metering", "usage_of")
    register_job = _Via("programs", "register_job")  # Programs
    submit = _Via("programs", "submit")
    add_task = _Via("programs", "add_task")
    run_until_idle = _Via("programs", "run_until_idle")
    engines = _Via("engine_set", "loaded")           # EngineSet: name -> engine loaded now (the kernel's)
    engine_for = _Via("engine_set", "get")           # async: the engine for a name, a model or None (default)
    check_model = _Via("engine_set", "check")        # raises ModelNotFound naming the known models


class _EmptyPlan:
    def __init__(self) -> None:
        self.run: list[int] = []
        self.preempt: list[int] = []
        self.reasons: dict[int, str] = {}
        self.at_s = 0.0
