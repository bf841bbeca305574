"""``Kernel``: owns the subsystems and is the one object other layers hold.

Map:
- boot / shutdown: ``Kernel.boot`` (ordered list in ``boot.py``), ``shutdown`` (graceful:
  tools get a grace period, generations are checkpointed back to the queue).
- syscalls: ``syscall`` (never raises), ``syscall_stream`` (chunks, then the final
  result), ``events`` (process / timer events).
- process operations used by the ``sys_proc`` decoders: ``spawn``, ``kill``, ``nice``,
  ``wait``, ``result``, ``confirm``, ``exit`` — each through ``ProcessTable.transition``.
- the loop's hooks: ``_claim`` (pids -> Work, marked RUNNING durably before any tool
  runs) and ``update`` (fold an Outcome: scheduler, usage, energy, final states).
- in-process API for programs (``programs.ProgramAPI``): ``submit``, ``add_task``,
  ``run_until_idle``, ``register_job`` (``sync.SyncKernel`` wraps them).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from llmos.clock import Clock
from llmos.config import Config
from llmos.errors import (
    Busy,
    Cancelled,
    InvalidArgument,
    JournalError,
    KernelError,
    LLMOSError,
    NotFound,
)
from llmos.executor.base import Outcome, Result, Work
from llmos.kernel.access import ROOT, ProcRef, UsageRef
from llmos.kernel.accounting import Accounting
from llmos.kernel.agents import AgentRegistry
from llmos.kernel.engines import EngineSet
from llmos.kernel.events import EventBus
from llmos.kernel.memory import Memory
from llmos.kernel.process import Process, ProcessTable, ProcState
from llmos.kernel.programs import ProgramAPI, TaskHandle
from llmos.kernel.result import SyscallResult, error_from_dict, jsonable
from llmos.kernel.specs import JobType, check_spec
from llmos.kernel.syscall import Call, dispatch
from llmos.kernel.timers import Timer, Timers

if TYPE_CHECKING:
    from llmos.executor.base import Executor
    from llmos.kernel.loop import KernelLoop
    from llmos.kernel.sched import Scheduler
    from llmos.kernel.storage import Journal, StateLock
    from llmos.llm.base import Engine

__all__ = ["Kernel", "TaskHandle", "SHUTDOWN_GRACE_S"]

log = logging.getLogger(__name__)
S = ProcState

SHUTDOWN_GRACE_S = 5.0     # running tools may finish this long after shutdown starts


class Kernel(ProgramAPI):
    """Build with ``await Kernel.boot(config, ...)``; the constructor only wires tables."""

    def __init__(self, config: Config, *, clock: Clock, journal: Journal, lock: StateLock | None,
                 tools: Any = None, hal: Any = None, engines: dict[str, Engine] | None = None) -> None:
        self.config = config
        self.clock = clock
        self.journal = journal
        self.lock = lock
        self.tools = tools                        # ToolRegistry or None
        self.hal = hal                            # HAL or None (energy attribution)
        self.procs = ProcessTable(journal, clock.time)
        self.agents = AgentRegistry(journal, clock.time)
        self.memory = Memory(journal, clock.time)
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
        self._idle = asyncio.Event()
        self._closed_event = asyncio.Event()
        self._timer_task: asyncio.Task | None = None
        self.recovery: Any = None                 # RecoveryReport of the last boot
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
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(KernelError("the kernel shut down before the process finished",
                                              hint="it resumes when the kernel boots again"))
                fut.exception()
        try:
            await self.journal.durable()
        finally:
            self.journal.close()
            await self.engine_set.close_built()
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
                      sink: Callable[[Any], None] | None = None) -> SyscallResult:
        """Make syscall ``name`` as ``agent_id``. Never raises: see ``SyscallResult``."""
        return await dispatch(self, agent_id, name, args, sink=sink)

    async def syscall_stream(self, agent_id: str, name: str, args: dict | None = None
                             ) -> AsyncIterator[dict[str, Any]]:
        """Yield ``{"type": "chunk", "text", "index"}`` while it runs, then
        ``{"type": "result", "ok", "value" | "error"}``."""
        q: asyncio.Queue = asyncio.Queue()

        def sink(chunk: Any) -> None:
            q.put_nowait({"type": "chunk", "text": chunk.text, "index": chunk.index})

        task = asyncio.ensure_future(self.syscall(agent_id, name, args, sink=sink))
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
                task.cancel()

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

    # ── process operations (used by the sys_proc decoders) ─────────────────
    def view(self, p: Process, *, history: bool = False) -> dict[str, Any]:
        d = p.to_dict()
        d["needs_confirmation"] = p.state == S.WAITING and p.reason.startswith("needs_confirmation")
        if history:
            rows = self.journal.query("SELECT ts, from_state, to_state, reason FROM transitions "
                                      "WHERE pid = ? ORDER BY id", (p.pid,))
            d["history"] = [{"ts": ts, "from": None if f is None else S(f).name.lower(),
                             "to": S(t).name.lower(), "reason": r} for ts, f, t, r in rows]
            if self.sched is not None and hasattr(self.sched, "explain"):
                d["scheduler"] = self.sched.explain(p.pid)
        return d

    async def spawn(self, call: Call, kind: str, spec: dict, *, priority: int = 0,
                    parent: int | None = None, idem_key: str | None = None, confirmed: bool = False,
                    sink: Callable[[Any], None] | None = None,
                    job_call: Callable[[], Any] | None = None) -> tuple[Process, bool]:
        """Admit a process; returns (process, deduplicated). Acknowledged = committed."""
        agent = call.agent
        if idem_key is not None:
            old = self.procs.by_key(agent.id, idem_key)
            if old is not None:
                if old.kind != kind:
                    raise InvalidArgument(f"idempotency_key: already used by {old.kind} process {old.pid}",
                                          field="idempotency_key", expected="a fresh key")
                call.resources.append(f"pid {old.pid} (same idempotency key)")
                await self.journal.durable()
                return old, True
        if parent is not None:
            par = self.procs.get(parent)
            call.check(ProcRef(par.pid, par.owner))
        norm = check_spec(self, call, kind, spec, priority=priority, confirmed=confirmed,
                          in_process=job_call is not None)
        call.check(UsageRef(live_procs=self.procs.live_count(agent.id),
                            tokens_last_min=self.usage.tokens_last_min(agent.id) if kind == "llm" else 0,
                            cpu_s=self.usage.cpu_s(agent.id) if kind in ("tool", "job") else 0.0,
                            new_procs=1))
        if kind != "run" and self.procs.counts[S.QUEUED] >= self.queue_max:
            raise Busy(f"run queue full ({self.queue_max} processes waiting)", retry_after=1.0)
        p = self.procs.create(kind=kind, owner=agent.id, spec=norm, priority=priority, parent=parent,
                              idem_key=idem_key, reason=f"spawned by {agent.id}")
        if kind == "run":
            self.procs.transition(p, S.WAITING, "run: waiting for its steps")
        else:
            self.procs.transition(p, S.QUEUED, "admitted")
        if sink is not None:
            self._sinks[p.pid] = sink
        if job_call is not None:
            self._calls[p.pid] = job_call
        try:
            await self.journal.durable()
        except JournalError as e:
            self._end(p, S.FAILED, "journal write failed; not acknowledged", error=e.to_dict())
            raise
        if p.state == S.QUEUED:
            self._enqueue(p)
        return p, False

    def _enqueue(self, p: Process, arrival_s: float | None = None) -> None:
        from llmos.kernel.sched import Task

        kind = p.kind
        if kind == "tool":
            kind = f"tool:{p.spec.get('tool')}"
        elif kind == "job":
            kind = f"job:{p.spec.get('type')}"
        arrival = self.clock.time() if arrival_s is None else arrival_s
        self.sched.add(Task(p.pid, p.owner, p.priority, arrival, kind))
        if self.executor is not None:
            self.executor.wake()

    def _end(self, p: Process, state: ProcState, reason: str, **changes: Any) -> None:
        """Finish a live process (and kill its live children); wake its waiters."""
        for cpid in list(p.children):
            c = self.procs.find(cpid)
            if c is not None and not c.state.finished:
                self._end(c, S.KILLED, f"parent {p.pid} ended ({state.name.lower()})")
        if self.executor is not None:
            self.executor.cancel(p.pid)
        if self.sched is not None and p.pid in self.sched:
            self.sched.remove(p.pid)
        self.procs.transition(p, state, reason, **changes)
        self._sinks.pop(p.pid, None)
        self._calls.pop(p.pid, None)
        fut = self._waiters.pop(p.pid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def process(self, call: Call, pid: int, *, live: bool = False) -> Process:
        """Process ``pid`` if the caller may touch it (own, or the 'others' capability);
        with ``live``, also refuse a finished one."""
        p = self.procs.get(pid)
        call.check(ProcRef(p.pid, p.owner))
        if live and p.state.finished:
            raise InvalidArgument(f"process {pid} already finished ({p.state.name.lower()})",
                                  field="pid", expected="a live process")
        return p

    async def kill(self, call: Call, pid: int, reason: str) -> Process:
        p = self.process(call, pid, live=True)
        self._end(p, S.KILLED, reason)
        await self.journal.durable()
        return p

    async def nice(self, call: Call, pid: int, priority: int) -> Process:
        p = self.process(call, pid, live=True)
        old = p.priority
        if pid in self.sched:
            self.sched.renice(pid, priority)
        self.procs.transition(p, p.state, f"reniced {old} -> {priority} by {call.agent.id}",
                              priority=priority)
        await self.journal.durable()
        return p

    async def confirm(self, call: Call, pid: int) -> Process:
        p = self.process(call, pid)
        if not (p.state == S.WAITING and p.reason.startswith("needs_confirmation")):
            raise InvalidArgument(f"process {pid} is not waiting for confirmation "
                                  f"({p.state.name.lower()})", field="pid",
                                  expected="a process marked needs_confirmation")
        self.procs.transition(p, S.QUEUED, f"confirmed by {call.agent.id}: run again")
        await self.journal.durable()
        self._enqueue(p)
        return p

    async def exit(self, call: Call, pid: int, *, ok: bool, result: Any, message: str | None) -> Process:
        p = self.process(call, pid, live=True)
        if p.kind != "run":
            raise InvalidArgument(f"process {pid} is a {p.kind}; only a run is finished by proc.exit",
                                  field="pid", expected="a run process")
        live = [c for c in p.children if (cp := self.procs.find(c)) and not cp.state.finished]
        if ok and live:
            raise InvalidArgument(f"run {pid} still has live steps: {', '.join(map(str, live))}",
                                  field="ok", expected="wait for the steps, or exit with ok=false")
        if ok:
            self._end(p, S.SUCCEEDED, message or "run finished", result=jsonable(result))
        else:
            err = KernelError(message or "run failed").to_dict()
            self._end(p, S.FAILED, message or "run failed", error=err, result=jsonable(result))
        await self.journal.durable()
        return p

    async def wait(self, pid: int, timeout_s: float | None = None) -> tuple[Process, bool]:
        """Wait (on the kernel clock) until ``pid`` finishes; returns (process, finished)."""
        p = self.procs.get(pid)
        if p.state.finished:
            return p, True
        fut = self._waiter(pid)
        if timeout_s is None:
            await asyncio.shield(fut)
        else:
            sleeper = asyncio.ensure_future(self.clock.sleep(timeout_s))
            try:
                await asyncio.wait([fut, sleeper], return_when=asyncio.FIRST_COMPLETED)   # never cancels fut
            finally:
                sleeper.cancel()
        return p, p.state.finished

    def _waiter(self, pid: int) -> asyncio.Future:
        """The future that resolves (with the Result, if any) when live ``pid`` ends."""
        fut = self._waiters.get(pid)
        if fut is None:
            fut = self._waiters[pid] = asyncio.get_running_loop().create_future()
        return fut

    async def result(self, pid: int, *, timeout_s: float | None = None, raw: bool = False) -> Any:
        """The value of a finished process, or raise its error (waits first)."""
        fut = self._waiters.get(pid)
        if fut is None and not self.procs.get(pid).state.finished:
            fut = self._waiter(pid)
        p, done = await self.wait(pid, timeout_s)
        if not done:
            raise Busy(f"process {pid} is still {p.state.name.lower()}", retry_after=1.0)
        res: Result | None = None
        if fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None:
            res = fut.result()
        if p.state == S.SUCCEEDED:
            return res.value if (raw and res is not None) else p.result
        if p.state == S.KILLED:
            raise Cancelled(f"process {pid} was killed: {p.reason}")
        if raw and res is not None and res.exc is not None:
            raise res.exc
        if res is not None and res.error is not None:
            raise res.error
        raise error_from_dict(p.error or {"message": p.reason})

    # ── the loop's hooks ───────────────────────────────────────────────────
    async def _claim(self, pids: Sequence[int]) -> dict[int, Work]:
        """Mark ``pids`` RUNNING and return their Work; tool/job starts are committed
        before this returns (so a crash never hides a side effect that began)."""
        reasons = getattr(self.loop.plan, "reasons", {}) if self.loop is not None else {}
        works: dict[int, Work] = {}
        for pid in pids:
            p = self.procs.find(pid)
            if p is None or p.state not in (S.QUEUED, S.PREEMPTED):
                if self.sched is not None and pid in self.sched and (p is None or p.state.finished):
                    self.sched.remove(pid)
                continue
            why = reasons.get(pid, self.sched.name if self.sched is not None else "")
            self.procs.transition(p, S.RUNNING, f"dispatched: {why}" if p.state == S.QUEUED else f"resumed: {why}")
            try:
                works[pid] = self._work(p)
            except LLMOSError as e:
                self._end(p, S.FAILED, e.message, error=e.to_dict())
        if any(w.kind != "llm" for w in works.values()):
            try:
                await self.journal.durable()
            except JournalError as e:
                for pid in works:
                    self._end(self.procs.get(pid), S.FAILED, "journal unavailable: not started",
                              error=e.to_dict())
                return {}
        return works

    def _work(self, p: Process) -> Work:
        agent = self.agents.find(p.owner) or ROOT
        caps = agent.caps
        call = None
        if p.kind == "job":
            call = self._calls.get(p.pid) or self._job_callable(p)
        return Work(pid=p.pid, kind=p.kind, owner=p.owner, priority=p.priority, spec=p.spec,
                    attempt=p.attempts, idempotency_key=p.idem_key or f"{p.owner}:{p.pid}",
                    workdir=p.spec.get("workdir"), read_roots=caps.read_roots,
                    write_roots=caps.write_roots, network=caps.network,
                    memory_bytes=caps.quotas.memory_bytes, sink=self._sinks.get(p.pid),
                    set_timer=self._timer_hook(p.owner), call=call)

    def _job_callable(self, p: Process) -> Callable[[], Any]:
        jt = self.job_types.get(p.spec.get("type", ""))
        if p.spec.get("type") == "call":
            raise KernelError("this in-process task's callable was lost in a restart",
                              hint="submit the task again")
        if jt is None:
            raise NotFound(f"job type {p.spec.get('type')!r} is not registered in this kernel")
        return functools.partial(jt.fn, **p.spec.get("args", {}))

    def _timer_hook(self, owner: str) -> Callable[[float, str], dict]:
        """``ToolContext.set_timer``: called from a tool thread; runs on the kernel loop."""
        loop = asyncio.get_running_loop()

        def set_timer(in_s: float, message: str) -> dict:
            async def go() -> dict:
                res = await self.syscall(owner, "timer.set", {"in_s": float(in_s), "message": message})
                return res.unwrap()
            return asyncio.run_coroutine_threadsafe(go(), loop).result(30)
        return set_timer

    def update(self, plan: Any, outcome: Outcome) -> None:
        """The loop's third call: fold ``outcome`` into the scheduler and the table."""
        self._fold(plan, outcome)

    def _fold(self, plan: Any, outcome: Outcome, *, shutting_down: bool = False) -> None:
        if self.sched is not None:
            self.sched.update(plan, outcome)
        self.usage.attribute_energy(self.hal, [p for pid in outcome.usage if (p := self.procs.find(pid))])
        for pid in outcome.preempted:
            p = self.procs.find(pid)
            if p is not None and p.state == S.RUNNING:
                self.procs.transition(p, S.PREEMPTED, getattr(plan, "reasons", {}).get(pid, "preempted"))
        for pid, res in outcome.results.items():
            p = self.procs.find(pid)
            if p is None or p.state.finished:
                continue   # killed while running: its late result is dropped
            tokens = res.tokens_in + res.tokens_out
            self.usage.charge(p.owner, tokens, res.cpu_s)
            usage = {"tokens_in": p.tokens_in + res.tokens_in, "tokens_out": p.tokens_out + res.tokens_out,
                     "cpu_s": p.cpu_s + res.cpu_s, "wall_s": p.wall_s + res.wall_s}
            if shutting_down and isinstance(res.error, Cancelled):
                self.procs.transition(p, S.QUEUED, "checkpointed at shutdown: re-queued", **usage)
                continue
            fut = self._waiters.get(pid)
            if fut is not None and not fut.done():
                fut.set_result(res)    # before _end, which would resolve it with None
            if res.ok:
                self._end(p, S.SUCCEEDED, "finished", result=jsonable(res.value), **usage)
            else:
                err = res.error or KernelError("failed")
                self._end(p, S.FAILED, err.message, error=err.to_dict(), **usage)

    # ── engines and usage (thin: the work is in engines.py / accounting.py) ──
    @property
    def engines(self) -> dict[str, Engine]:
        """Engines loaded now, name -> engine (read-only: the kernel owns them)."""
        return self.engine_set.loaded

    async def engine_for(self, model: str | None) -> Engine:
        return await self.engine_set.get(model)

    def check_model(self, name: str) -> None:
        self.engine_set.check(name)

    def usage_of(self, agent: str) -> dict[str, Any]:
        return {"live_procs": self.procs.live_count(agent), **self.usage.of(agent)}

class _EmptyPlan:
    def __init__(self) -> None:
        self.run: list[int] = []
        self.preempt: list[int] = []
        self.reasons: dict[int, str] = {}
        self.at_s = 0.0
