"""``ProcessManager``: the process operations the ``sys_proc`` decoders call, and the
per-process state they keep beside the table (a part of the ``Kernel`` facade).

It owns: ``sinks`` (pid -> token stream sink), ``calls`` (pid -> in-process job
callable), ``waiters`` (pid -> future resolved when it ends), ``live_tokens`` (pid ->
generated tokens the quota guard charged while it ran) and ``idle`` (set while nothing
needs the loop). Everything else it reads from ``Subsystems``.

Map:
- ``spawn``: admit a process (spec checked, capability and quotas asked, placement
  feasible, journaled before it is acknowledged, queued). A priority below 0 needs
  ``may.urgent`` (at spawn and at ``nice``); quotas count the agent and the agents it
  made, and every creator above it (root aside) holds its quotas for its whole tree.
- ``kill`` / ``nice`` / ``confirm`` / ``exit``: changes by an agent that may touch the
  process (``process(call, pid)``); each goes through ``ProcessTable.transition``.
- ``wait`` / ``result``: on the kernel clock; ``result`` gives the value or raises.
- ``view``: a process as a dict (live joules included; history and the scheduler's
  account on request).
- ``end``: finish a live process (children first), release what it holds (executor,
  scheduler, placement through the ``release`` callback, live priority), wake its waiters.
- ``busy`` / ``on_transition_idle``: whether anything still needs the loop.

``proc.nice`` on a running generation also reaches the engine: the kernel's
``LivePriorities`` (``engines.py``) carry the new priority into the step policy's
views, so the token-level policy renices the sequence at the next engine step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from llmos.errors import (
    Busy,
    Cancelled,
    InvalidArgument,
    JournalError,
    KernelError,
    PermissionDenied,
    QuotaExceeded,
    error_from_dict,
)
from llmos.executor.base import Result
from llmos.kernel.access import ProcRef, Quotas, UsageRef, may
from llmos.kernel.process import Process, ProcState, energy_label
from llmos.kernel.result import jsonable
from llmos.kernel.specs import check_spec
from llmos.kernel.syscall import Call

if TYPE_CHECKING:
    from llmos.kernel.stepping import Measured
    from llmos.kernel.subsystems import Subsystems

__all__ = ["ProcessManager"]

S = ProcState
URGENT = "may.urgent"    # capability: a priority below 0 (like a negative nice in Unix)


class ProcessManager:
    """The process operations behind ``proc.*``; owns the per-process side state."""

    def __init__(self, sub: Subsystems, release: Callable[[int, Measured | None], None]) -> None:
        self.sub = sub
        self._release = release                                # (pid, measured) -> the placement ends
        self.sinks: dict[int, Callable[[Any], None]] = {}      # pid -> token stream sink
        self.calls: dict[int, Callable[[], Any]] = {}          # pid -> in-process job callable
        self.waiters: dict[int, asyncio.Future] = {}           # pid -> resolves with Result|None
        self.live_tokens: dict[int, int] = {}                  # pid -> generated tokens the quota guard
        #                                                        charged while it ran (folded at its end)
        self.idle = asyncio.Event()                            # set while nothing needs the loop

    # ── the loop's view of the table ───────────────────────────────────────
    def busy(self) -> int:
        """Processes that still need the loop (waiting ones don't)."""
        c = self.sub.procs.counts
        return c[S.NEW] + c[S.QUEUED] + c[S.RUNNING] + c[S.PREEMPTED]

    def on_transition_idle(self) -> None:
        if self.busy():
            self.idle.clear()
        else:
            self.idle.set()

    def charge_live(self, pid: int, n: int) -> None:
        """The quota guard charged ``n`` generated tokens of live ``pid``."""
        self.live_tokens[pid] = self.live_tokens.get(pid, 0) + n

    def take_live_tokens(self, pid: int) -> int:
        """Generated tokens the quota guard charged for ``pid`` (forgotten now)."""
        return self.live_tokens.pop(pid, 0)

    def view(self, p: Process, *, history: bool = False) -> dict[str, Any]:
        d = p.to_dict()
        d["needs_confirmation"] = p.state == S.WAITING and p.reason.startswith("needs_confirmation")
        if self.sub.meter is not None and self.sub.meter.metering(p.pid):
            pe = self.sub.meter.process(p.pid)          # the running attempt, so far
            d["joules"] = (p.joules or 0.0) + pe.joules
            d["joules_modelled"] = (p.joules_modelled or 0.0) + pe.modelled_j
            d["joules_label"] = energy_label(d["joules"], d["joules_modelled"])
        if history:
            rows = self.sub.journal.query("SELECT ts, from_state, to_state, reason FROM transitions "
                                      "WHERE pid = ? ORDER BY id", (p.pid,))
            d["history"] = [{"ts": ts, "from": None if f is None else S(f).name.lower(),
                             "to": S(t).name.lower(), "reason": r} for ts, f, t, r in rows]
            if self.sub.sched is not None and hasattr(self.sub.sched, "explain"):
                d["scheduler"] = self.sub.sched.explain(p.pid)
            pl = self.sub.placer.placement(p.pid) if self.sub.placer is not None else None
            if pl is not None:
                d["placement"] = {"resource": pl.resource, "mode": pl.mode, "reason": pl.reason}
        return d

    async def spawn(self, call: Call, kind: str, spec: dict, *, priority: int = 0,
                    parent: int | None = None, idem_key: str | None = None, confirmed: bool = False,
                    sink: Callable[[Any], None] | None = None,
                    job_call: Callable[[], Any] | None = None) -> tuple[Process, bool]:
        """Admit a process; returns (process, deduplicated). Acknowledged = committed."""
        agent = call.agent
        if idem_key is not None:
            old = self.sub.procs.by_key(agent.id, idem_key)
            if old is not None:
                if old.kind != kind:
                    raise InvalidArgument(f"idempotency_key: already used by {old.kind} process {old.pid}",
                                          field="idempotency_key", expected="a fresh key")
                call.resources.append(f"pid {old.pid} (same idempotency key)")
                await self.sub.journal.durable()
                return old, True
        if parent is not None:
            par = self.sub.procs.get(parent)
            call.check(ProcRef(par.pid, par.owner))
        if priority < 0:
            call.require(URGENT, why=f"priority {priority} is more urgent than the default 0")
        norm = check_spec(self.sub, call, kind, spec, priority=priority, confirmed=confirmed,
                          in_process=job_call is not None)
        call.check(self._usage(agent.id, kind))
        self._shared_quotas(call, agent.id, kind)
        if self.sub.placer is not None:
            self.sub.placer.check(kind, norm)        # AllocError: it could never run here
        if kind != "run" and self.sub.procs.counts[S.QUEUED] >= self.sub.queue_max:
            raise Busy(f"run queue full ({self.sub.queue_max} processes waiting)", retry_after=1.0)
        p = self.sub.procs.create(kind=kind, owner=agent.id, spec=norm, priority=priority, parent=parent,
                              idem_key=idem_key, reason=f"spawned by {agent.id}")
        if kind == "run":
            self.sub.procs.transition(p, S.WAITING, "run: waiting for its steps")
        else:
            self.sub.procs.transition(p, S.QUEUED, "admitted")
        if sink is not None:
            self.sinks[p.pid] = sink
        if job_call is not None:
            self.calls[p.pid] = job_call
        try:
            await self.sub.journal.durable()
        except JournalError as e:
            self.end(p, S.FAILED, "journal write failed; not acknowledged", error=e.to_dict())
            raise
        if p.state == S.QUEUED:
            self.enqueue(p)
        return p, False

    def _usage(self, agent_id: str, kind: str) -> UsageRef:
        """What ``agent_id`` and the agents it made use now (their quotas are shared)."""
        ids = self.sub.agents.descendants(agent_id) if self.sub.agents.has_children(agent_id) else [agent_id]
        return UsageRef(live_procs=sum(self.sub.procs.live_count(a) for a in ids),
                        tokens_last_min=sum(self.sub.usage.tokens_last_min(a) for a in ids) if kind == "llm" else 0,
                        cpu_s=sum(self.sub.usage.cpu_s(a) for a in ids) if kind in ("tool", "job") else 0.0,
                        new_procs=1)

    def _shared_quotas(self, call: Call, agent_id: str, kind: str) -> None:
        """Each creator above the agent (root aside) holds its quotas for its whole tree:
        children share the parent's quota, they do not multiply it."""
        for aid in self.sub.agents.ancestors(agent_id):
            above = self.sub.agents.find(aid)
            if above is None or above.caps.quotas == Quotas():
                continue
            d = may(replace(above, caps=replace(above.caps, syscalls=frozenset({"*"}))), call.name,
                    self._usage(aid, kind))
            if not d.allowed:
                call.reason = d.reason
                raise QuotaExceeded(f"{d.reason} (agent {agent_id!r} shares the quota of {aid!r}, "
                                    "which made it)", hint="wait, or ask for a larger quota")

    def enqueue(self, p: Process, arrival_s: float | None = None) -> None:
        from llmos.kernel.sched import Task

        kind = p.kind
        if kind == "tool":
            kind = f"tool:{p.spec.get('tool')}"
        elif kind == "job":
            kind = f"job:{p.spec.get('type')}"
        arrival = self.sub.clock.time() if arrival_s is None else arrival_s
        self.sub.sched.add(Task(p.pid, p.owner, p.priority, arrival, kind))
        if self.sub.executor is not None:
            self.sub.executor.wake()

    def end(self, p: Process, state: ProcState, reason: str, *,
             measured: Measured | None = None, **changes: Any) -> None:
        """Finish a live process (and kill its live children); wake its waiters.

        ``measured``: how a run that ended by itself went, fed back to the allocator with
        the joules metered (without it the placement is dropped, nothing learned).
        """
        for cpid in list(p.children):
            c = self.sub.procs.find(cpid)
            if c is not None and not c.state.finished:
                self.end(c, S.KILLED, f"parent {p.pid} ended ({state.name.lower()})")
        if self.sub.executor is not None:
            if "tokens_out" not in changes:      # ended from outside (kill): charge what it generated
                n = self.sub.executor.generated(p.pid)
                if n:
                    self.sub.usage.charge(p.owner, max(0, n - self.live_tokens.get(p.pid, 0)), 0.0)
                    changes["tokens_out"] = p.tokens_out + n
            self.sub.executor.cancel(p.pid)
        if self.sub.sched is not None and p.pid in self.sub.sched:
            self.sub.sched.remove(p.pid)
        self.sub.procs.transition(p, state, reason, **changes)   # stops its energy meter
        self._release(p.pid, measured)
        self.sinks.pop(p.pid, None)
        self.calls.pop(p.pid, None)
        self.live_tokens.pop(p.pid, None)
        self.sub.engine_set.live.forget(p.pid)
        fut = self.waiters.pop(p.pid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def process(self, call: Call, pid: int, *, live: bool = False) -> Process:
        """Process ``pid`` if the caller may touch it (own, or the 'others' capability);
        with ``live``, also refuse a finished one."""
        p = self.sub.procs.get(pid)
        call.check(ProcRef(p.pid, p.owner))
        if live and p.state.finished:
            raise InvalidArgument(f"process {pid} already finished ({p.state.name.lower()})",
                                  field="pid", expected="a live process")
        return p

    async def kill(self, call: Call, pid: int, reason: str) -> Process:
        p = self.process(call, pid, live=True)
        self.end(p, S.KILLED, reason)
        await self.sub.journal.durable()
        return p

    async def nice(self, call: Call, pid: int, priority: int) -> Process:
        """Renice ``pid``: in the run queue, and inside the engine when it is a live generation."""
        p = self.process(call, pid, live=True)
        if priority < 0:
            call.require(URGENT, why=f"priority {priority} is more urgent than the default 0")
        old = p.priority
        if pid in self.sub.sched:
            self.sub.sched.renice(pid, priority)
        if p.kind == "llm":
            self.sub.engine_set.live.set(pid, priority)
        self.sub.procs.transition(p, p.state, f"reniced {old} -> {priority} by {call.agent.id}",
                              priority=priority)
        await self.sub.journal.durable()
        return p

    async def confirm(self, call: Call, pid: int) -> Process:
        """Run again a process that waits for a person: only the person may say yes."""
        p = self.process(call, pid)
        if not call.person:
            raise PermissionDenied(f"process {pid} waits for the person's yes; agent "
                                   f"{call.agent.id!r} cannot give it",
                                   reason="proc.confirm is the person's act",
                                   hint=f"the person runs `llmos confirm {pid}` or uses the dashboard")
        if not (p.state == S.WAITING and p.reason.startswith("needs_confirmation")):
            raise InvalidArgument(f"process {pid} is not waiting for confirmation "
                                  f"({p.state.name.lower()})", field="pid",
                                  expected="a process marked needs_confirmation")
        self.sub.procs.transition(p, S.QUEUED, f"confirmed by {call.agent.id}: run again")
        await self.sub.journal.durable()
        self.enqueue(p)
        return p

    async def exit(self, call: Call, pid: int, *, ok: bool, result: Any,
                   message: str | None) -> Process:
        p = self.process(call, pid, live=True)
        if p.kind != "run":
            raise InvalidArgument(f"process {pid} is a {p.kind}; only a run is finished by proc.exit",
                                  field="pid", expected="a run process")
        live = [c for c in p.children if (cp := self.sub.procs.find(c)) and not cp.state.finished]
        if ok and live:
            raise InvalidArgument(f"run {pid} still has live steps: {', '.join(map(str, live))}",
                                  field="ok", expected="wait for the steps, or exit with ok=false")
        if ok:
            self.end(p, S.SUCCEEDED, message or "run finished", result=jsonable(result))
        else:
            err = KernelError(message or "run failed").to_dict()
            self.end(p, S.FAILED, message or "run failed", error=err, result=jsonable(result))
        await self.sub.journal.durable()
        return p

    async def wait(self, pid: int, timeout_s: float | None = None) -> tuple[Process, bool]:
        """Wait (on the kernel clock) until ``pid`` finishes; returns (process, finished)."""
        p = self.sub.procs.get(pid)
        if p.state.finished:
            return p, True
        fut = self.waiter(pid)
        if timeout_s is None:
            await asyncio.shield(fut)
        else:
            sleeper = asyncio.ensure_future(self.sub.clock.sleep(timeout_s))
            try:
                await asyncio.wait([fut, sleeper], return_when=asyncio.FIRST_COMPLETED)   # never cancels fut
            finally:
                sleeper.cancel()
        return p, p.state.finished

    def waiter(self, pid: int) -> asyncio.Future:
        """The future that resolves (with the Result, if any) when live ``pid`` ends."""
        fut = self.waiters.get(pid)
        if fut is None:
            fut = self.waiters[pid] = asyncio.get_running_loop().create_future()
        return fut

    async def result(self, pid: int, *, timeout_s: float | None = None, raw: bool = False) -> Any:
        """The value of a finished process, or raise its error (waits first)."""
        fut = self.waiters.get(pid)
        if fut is None and not self.sub.procs.get(pid).state.finished:
            fut = self.waiter(pid)
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
