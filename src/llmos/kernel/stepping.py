"""``LoopHooks``: the loop's hooks into the kernel (a part of the ``Kernel`` facade):
place, claim, fold. It keeps no process state of its own: it moves processes through
the table, ends them through the ``ProcessManager`` and hands placements back through
the ``Meter``'s joules.

Map:
- ``place(plan)``: after ``schedule`` — the allocator places each process the plan
  starts (engine for a generation, device for a tool or job); one that has no room
  yet stays ready (dropped from ``plan.run``), one that can never run fails.
- ``claim(pids)``: the executor's claim — mark RUNNING durably (tool/job starts are
  committed before they run), with the scheduler's and the allocator's reasons,
  and build each ``Work`` (engine chosen, device, quota guard).
- ``update(plan, outcome)`` / ``fold``: the loop's third call — scheduler, usage,
  preemptions, final states, and measurements back to the allocator.
- ``token_guard``: the tokens_per_min quota, checked before each generated token.
- ``release``: a process's placement ends (measured or dropped).

Energy is metered in the one transition function's path (``metering.Meter``):
entering RUNNING starts the meter on the placement's devices, leaving it stops the
meter and the joules ride along in that journaled transition.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from llmos.errors import Cancelled, JournalError, KernelError, LLMOSError, NotFound
from llmos.executor.base import Outcome, TokenGuard, Work
from llmos.kernel.access import ROOT, Agent
from llmos.kernel.process import Process, ProcState
from llmos.kernel.result import jsonable

if TYPE_CHECKING:
    from llmos.kernel.metering import Meter
    from llmos.kernel.procops import ProcessManager
    from llmos.kernel.result import SyscallResult
    from llmos.kernel.subsystems import Subsystems

Syscall = Callable[[str, str, dict], Awaitable["SyscallResult"]]   # (agent, name, args) -> result

__all__ = ["LoopHooks", "Measured"]

S = ProcState
PLACED = ("llm", "tool", "job")      # process kinds the allocator places


class Measured(NamedTuple):
    """How a placed run went, for the allocator to learn from."""

    seconds: float                   # the work's own run time (an engine's load excluded)
    ok: bool
    done: float | None               # work actually done when it differs from the predicted (llm tokens)
    share: float = 1.0               # fraction of the metered joules spent on the work (not on setup)


class LoopHooks:
    """What ``KernelLoop.step`` and the executor call back."""

    def __init__(self, sub: Subsystems, processes: ProcessManager, meter: Meter, syscall: Syscall) -> None:
        self.sub = sub
        self.processes = processes           # ends processes, holds sinks / calls / live tokens
        self.meter = meter                   # the joules metered since each placement
        self._syscall = syscall              # the kernel's syscall door (tools' set_timer)

    def place(self, plan: Any) -> None:
        """Place the processes ``plan`` starts; keep in ``plan.run`` only those placed."""
        if self.sub.placer is None:
            return
        self.sub.placer.batch(self.sub.procs.live(), lambda p: (self.sub.agents.find(p.owner) or ROOT).caps.alloc_mode)
        keep: list[int] = []
        for pid in plan.run:
            p = self.sub.procs.find(pid)
            if p is None or p.state not in (S.QUEUED, S.PREEMPTED) or p.kind not in PLACED:
                keep.append(pid)               # _claim sorts these out
                continue
            agent = self.sub.agents.find(p.owner) or ROOT
            try:
                pl = self.sub.placer.place(p, agent.caps.alloc_mode)
            except LLMOSError as e:            # AllocError: it can never run here
                self.processes.end(p, S.FAILED, f"cannot be placed: {e.message}", error=e.to_dict())
                continue
            if pl is None:
                why = "waiting for room: no resource that can run it has capacity free now"
                if p.reason != why:
                    self.sub.procs.transition(p, p.state, why)
                continue
            keep.append(pid)
        plan.run[:] = keep

    async def claim(self, pids: Sequence[int]) -> dict[int, Work]:
        """Mark ``pids`` RUNNING and return their Work; tool/job starts are committed
        before this returns (so a crash never hides a side effect that began)."""
        reasons = getattr(self.sub.loop.plan, "reasons", {}) if self.sub.loop is not None else {}
        works: dict[int, Work] = {}
        for pid in pids:
            p = self.sub.procs.find(pid)
            if p is None or p.state not in (S.QUEUED, S.PREEMPTED):
                if self.sub.sched is not None and pid in self.sub.sched and (p is None or p.state.finished):
                    self.sub.sched.remove(pid)
                continue
            first = p.state == S.QUEUED         # else resumed after a preemption
            why = reasons.get(pid, self.sub.sched.name if self.sub.sched is not None else "")
            why = f"dispatched: {why}" if first else f"resumed: {why}"
            pl = self.sub.placer.placement(pid) if self.sub.placer is not None else None
            extra: dict[str, Any] = {}
            if pl is not None and first:
                why += f"; placed on {pl.resource} ({pl.reason})"
                extra["placed_on"] = pl.resource
            self.sub.procs.transition(p, S.RUNNING, why, **extra)
            if pl is not None and first:
                self.sub.placer.started(pid)
            try:
                works[pid] = self.work(p)
            except LLMOSError as e:
                self.processes.end(p, S.FAILED, e.message, error=e.to_dict())
        if any(w.kind != "llm" for w in works.values()):
            try:
                await self.sub.journal.durable()
            except JournalError as e:
                for pid in works:
                    self.processes.end(self.sub.procs.get(pid), S.FAILED, "journal unavailable: not started",
                              error=e.to_dict())
                return {}
        return works

    def work(self, p: Process) -> Work:
        agent = self.sub.agents.find(p.owner) or ROOT
        caps = agent.caps
        call = None
        if p.kind == "job":
            call = self.processes.calls.get(p.pid) or self.job_callable(p)
        placed = self.sub.placer is not None and self.sub.placer.placement(p.pid) is not None
        engine = self.sub.placer.engine_of(p.pid) if placed and p.kind == "llm" else None
        asked = p.kind == "job" and p.spec.get("device") is not None   # only a job that asked is told
        device = self.sub.placer.device_of(p.pid) if placed and asked else None
        return Work(pid=p.pid, kind=p.kind, owner=p.owner, priority=p.priority, spec=p.spec,
                    attempt=p.attempts, idempotency_key=p.idem_key or f"{p.owner}:{p.pid}",
                    workdir=p.spec.get("workdir"), read_roots=caps.read_roots,
                    write_roots=caps.write_roots, network=caps.network,
                    memory_bytes=caps.quotas.memory_bytes, sink=self.processes.sinks.get(p.pid),
                    set_timer=self.timer_hook(p.owner), call=call, engine=engine, device=device,
                    on_tokens=self.token_guard(p, agent) if p.kind == "llm" else None,
                    began=self.began_hook(p) if p.kind in ("tool", "job") else None,
                    grant=self.sub.placer.grant(p.pid) if placed else None,
                    node=self.sub.placer.node_of(p.pid) if placed else None)

    def began_hook(self, p: Process) -> Callable[[], None]:
        """For the executor's worker: this attempt's work starts now. Journaled (and
        committed) first, so recovery can tell a step that began from one that was only
        dispatched and still waited for a worker when the kernel died."""
        attempt, journal = p.attempts, self.sub.journal

        def began() -> None:
            p.began = attempt              # later full-row writes carry it too
            journal.mark_began(p.pid, attempt)
        return began

    def token_guard(self, p: Process, agent: Agent) -> TokenGuard | None:
        """The tokens_per_min quota on a running generation (None: the agent has no quota).

        Each generated token is counted into the agent's minute window as it arrives;
        the first one that would take the window past the quota stops the generation.
        Prompt tokens are counted when the generation ends (the engine reports them then).
        """
        quota = agent.caps.quotas.tokens_per_min
        if quota is None:
            return None
        owner, pid = p.owner, p.pid

        def guard(n: int) -> str | None:
            used = self.sub.usage.tokens_last_min(owner)
            if used + n > quota:
                return (f"agent {owner!r} used {used} tokens in the last minute; "
                        f"quota tokens_per_min={quota}")
            self.sub.usage.charge_live(owner, n)
            self.processes.charge_live(pid, n)
            return None
        return guard

    def job_callable(self, p: Process) -> Callable[[], Any]:
        jt = self.sub.job_types.get(p.spec.get("type", ""))
        if p.spec.get("type") == "call":
            raise KernelError("this in-process task's callable was lost in a restart",
                              hint="submit the task again")
        if jt is None:
            raise NotFound(f"job type {p.spec.get('type')!r} is not registered in this kernel")
        return functools.partial(jt.fn, **p.spec.get("args", {}))

    def timer_hook(self, owner: str) -> Callable[[float, str], dict]:
        """``ToolContext.set_timer``: called from a tool thread; runs on the kernel loop."""
        loop = asyncio.get_running_loop()

        def set_timer(in_s: float, message: str) -> dict:
            async def go() -> dict:
                res = await self._syscall(owner, "timer.set", {"in_s": float(in_s), "message": message})
                return res.unwrap()
            return asyncio.run_coroutine_threadsafe(go(), loop).result(30)
        return set_timer

    def update(self, plan: Any, outcome: Outcome) -> None:
        """The loop's third call: fold ``outcome`` into the scheduler and the table."""
        self.fold(plan, outcome)

    def fold(self, plan: Any, outcome: Outcome, *, shutting_down: bool = False) -> None:
        if self.sub.sched is not None:
            self.sub.sched.update(plan, outcome)
        for pid in outcome.preempted:
            p = self.sub.procs.find(pid)
            if p is not None and p.state == S.RUNNING:
                self.sub.procs.transition(p, S.PREEMPTED, getattr(plan, "reasons", {}).get(pid, "preempted"))
        for pid, res in outcome.results.items():
            p = self.sub.procs.find(pid)
            if p is None or p.state.finished:
                continue   # killed while running: its late result is dropped
            live = self.processes.take_live_tokens(pid)        # generated tokens the quota guard counted
            self.sub.usage.charge(p.owner, max(0, res.tokens_in + res.tokens_out - live), res.cpu_s)
            usage = {"tokens_in": p.tokens_in + res.tokens_in, "tokens_out": p.tokens_out + res.tokens_out,
                     "cpu_s": p.cpu_s + res.cpu_s, "wall_s": p.wall_s + res.wall_s}
            if shutting_down and isinstance(res.error, Cancelled):
                self.sub.procs.transition(p, S.QUEUED, "checkpointed at shutdown: re-queued", **usage)
                self.release(pid, None)
                continue
            fut = self.processes.waiters.get(pid)
            if fut is not None and not fut.done():
                fut.set_result(res)    # before _end, which would resolve it with None
            done = float(res.tokens_out) if p.kind == "llm" else None
            work_s = max(0.0, res.wall_s - res.setup_s)
            measured = Measured(work_s, res.ok, done, work_s / res.wall_s if res.wall_s > 0 else 1.0)
            if res.ok:
                done_why = f"finished; {res.note}" if res.note else "finished"
                self.processes.end(p, S.SUCCEEDED, done_why, result=jsonable(res.value), measured=measured, **usage)
            else:
                err = res.error or KernelError("failed")
                extra = {"result": jsonable(res.value)} if res.value is not None else {}
                self.processes.end(p, S.FAILED, err.message, error=err.to_dict(), measured=measured, **usage, **extra)

    def release(self, pid: int, measured: Measured | None) -> None:
        """``pid``'s placement ends: learn from ``measured``, or drop it (None)."""
        joules = self.meter.take_placed(pid)
        if self.sub.placer is None:
            return
        if measured is None:
            self.sub.placer.drop(pid)
            return
        self.sub.placer.finish(pid, seconds=measured.seconds, ok=measured.ok, done=measured.done,
                           joules=None if joules is None else joules * measured.share)
