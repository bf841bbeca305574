"""The scheduling policies: small subclasses of ``Scheduler``.

Map (name → class → guarantee):
- ``fifo``     FIFO        arrival order; never preempts.
- ``rr``       RoundRobin  arrival order, re-queued at the tail; a running task
                           that used its slice (``slice_tokens``, default
                           ``params.RR_SLICE_TOKENS``) yields to a waiting one.
- ``priority`` Priority    nice-like priority with aging; no starvation (bound below).
- ``fair``     FairShare   weighted fair share across agents by virtual time
                           (stride scheduling): over a long run each backlogged
                           agent's service is proportional to its weight.
- ``sjf``      ShortestJob shortest predicted remaining work first, on the caller's
                           estimate or on learned ``Estimates``; may starve long
                           jobs by design (use ``priority`` or ``fair`` for bounds).

Priority aging bound. A ready task X with priority p has effective priority
``p − ⌊w / A⌋`` after waiting w seconds (A = ``aging_step_s``, default
``params.AGING_STEP_S``). Ready tasks run in order of (effective priority,
ready time). A task Y with priority q that became ready at t₁ ≥ t₀ (X's ready
time) goes first only if ``q − ⌊(t−t₁)/A⌋ < p − ⌊(t−t₀)/A⌋``, which needs
``⌊(t₁−t₀)/A⌋ < p − q ≤ p − PRIORITY_MIN``. So:

    X runs before every task that becomes ready after t₀ + (p − PRIORITY_MIN)·A.

Only the Q tasks ready at t₀ and the K that become ready in that window can go
first. Without preemption, with S slots each held at most R seconds, X waits at
most ``⌈(Q + K + 1) / S⌉ · R``. With preemption on, a waiting task also takes
the slot of a running one once it beats it by ``margin`` levels, so it is
dispatched within ``(p − PRIORITY_MIN + margin)·A + min_run_s`` of reaching the
head of the line even when no running task ever ends. Both are tested.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable

from llmos import params
from llmos.errors import InvalidArgument
from llmos.kernel.sched.base import Scheduler, Task, _finite

__all__ = ["FIFO", "RoundRobin", "Priority", "FairShare", "ShortestJob", "POLICIES"]


class FIFO(Scheduler):
    name = "fifo"

    def _key(self, task: Task, now: float) -> tuple:
        return (task.arrival_s, task.pid)

    def _why(self, task: Task, now: float) -> str:
        return f"fifo: arrived at {task.arrival_s:.2f}, waited {self.waited(task.pid, now):.2f} s"


class RoundRobin(Scheduler):
    name = "rr"
    options = {"preempt": True, "slice_tokens": params.RR_SLICE_TOKENS, "slice_s": None}

    def _check_opts(self) -> None:
        super()._check_opts()
        st, ss = self.opts["slice_tokens"], self.opts["slice_s"]
        if not _finite(st) or st <= 0:
            raise InvalidArgument(f"slice_tokens: expected a positive number, got {st!r}",
                                  field="slice_tokens", expected="number > 0")
        if ss is not None and (not _finite(ss) or ss <= 0):
            raise InvalidArgument(f"slice_s: expected a positive number or None, got {ss!r}",
                                  field="slice_s", expected="number > 0")

    def _key(self, task: Task, now: float) -> tuple:
        # a preempted task re-enters at the tail: its ready time is the preemption
        return (self._ready_since.get(task.pid, task.arrival_s), task.pid)

    def _victim_order(self, running: list[Task], now: float) -> list[Task]:
        return sorted(running, key=lambda t: (-self._slice.get(t.pid, [0.0, 0.0])[0],
                                              self._running.get(t.pid, now), t.pid))

    def _why(self, task: Task, now: float) -> str:
        return f"rr: head of the line after {self.waited(task.pid, now):.2f} s"

    def _preempts(self, victim: Task, cand: Task, now: float) -> str | None:
        tok, sec = self._slice.get(victim.pid, [0.0, 0.0])
        if tok >= self.opts["slice_tokens"]:
            return f"slice used ({tok:g}/{self.opts['slice_tokens']:g} tokens)"
        ss = self.opts["slice_s"]
        if ss is not None and now - self._running.get(victim.pid, now) >= ss:
            return f"slice used ({ss:g} s)"
        return None


class Priority(Scheduler):
    name = "priority"
    options = {"preempt": True, "aging_step_s": params.AGING_STEP_S, "margin": 2}

    def _check_opts(self) -> None:
        super()._check_opts()
        a, m = self.opts["aging_step_s"], self.opts["margin"]
        if not _finite(a) or a <= 0:
            raise InvalidArgument(f"aging_step_s: expected a positive number, got {a!r}",
                                  field="aging_step_s", expected="seconds > 0")
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise InvalidArgument(f"margin: expected an integer >= 1, got {m!r}", field="margin",
                                  expected="integer >= 1")

    def effective(self, task: Task, now: float) -> int:
        """Priority minus one level per ``aging_step_s`` waited (unbounded below)."""
        return task.priority - math.floor(self.waited(task.pid, now) / self.opts["aging_step_s"])

    def _key(self, task: Task, now: float) -> tuple:
        return (self.effective(task, now), self._ready_since.get(task.pid, task.arrival_s), task.pid)

    def _why(self, task: Task, now: float) -> str:
        eff = self.effective(task, now)
        aged = task.priority - eff
        if aged:
            return (f"priority {eff} (nice {task.priority}, aged {aged} levels over "
                    f"{self.waited(task.pid, now):.1f} s)")
        return f"priority {eff}"

    def _outranks(self, task: Task, other: Task, now: float) -> bool:
        return self.effective(task, now) <= self.effective(other, now) - self.opts["margin"]

    def _preempts(self, victim: Task, cand: Task, now: float) -> str | None:
        ec, ev = self.effective(cand, now), self.effective(victim, now)
        if ec <= ev - self.opts["margin"]:
            return f"priority {ec} beats {ev} by >= {self.opts['margin']}"
        return None


class FairShare(Scheduler):
    """Virtual time per agent: service (tokens or seconds) divided by its weight.

    The agent with the least virtual time goes next; each slot handed out in
    one plan advances that agent's provisional time by ``quantum / weight``,
    so slots interleave by weight. An agent that comes back after more than
    ``idle_grace_s`` without queued tasks re-enters at the smallest virtual
    time among active agents (no banking idle credit); one back sooner (the
    usual agent loop: result, think, next call) keeps its place. A
    running task is preempted when its agent leads the candidate's by more
    than the candidate's quantum (hysteresis band).
    """

    name = "fair"
    options = {"preempt": True, "quantum": float(params.RR_SLICE_TOKENS), "unit": "tokens",
               "idle_grace_s": 5.0}

    def _check_opts(self) -> None:
        super()._check_opts()
        g = self.opts["idle_grace_s"]
        if not _finite(g) or g < 0:
            raise InvalidArgument(f"idle_grace_s: expected a number >= 0, got {g!r}",
                                  field="idle_grace_s", expected="seconds >= 0")
        q, u = self.opts["quantum"], self.opts["unit"]
        if not _finite(q) or q <= 0:
            raise InvalidArgument(f"quantum: expected a positive number, got {q!r}", field="quantum",
                                  expected="number > 0")
        if u not in ("tokens", "seconds"):
            raise InvalidArgument(f"unit: expected 'tokens' or 'seconds', got {u!r}", field="unit",
                                  expected="tokens | seconds")

    def _init(self) -> None:
        self._vt: dict[str, float] = {}       # owner -> service/weight (unit of opts['unit']); _charge
        self._weight: dict[str, float] = {}   # owner -> weight of its latest task; _on_add
        self._queued: dict[str, int] = {}     # owner -> tasks queued (ready or running); add/remove
        self._floor = 0.0                     # least virtual time among active agents, never decreases
        self._idle_since: dict[str, float] = {}  # owner -> s its last queued task left

    def vtime(self, owner: str) -> float:
        return self._vt.get(owner, 0.0)

    def _on_add(self, task: Task) -> None:
        o = task.owner
        if not self._queued.get(o):
            active = [self._vt[a] for a, n in self._queued.items() if n and a in self._vt]
            if active:
                self._floor = max(self._floor, min(active))
            idle = task.arrival_s - self._idle_since.get(o, -math.inf)
            if idle > self.opts["idle_grace_s"]:
                self._vt[o] = max(self._vt.get(o, 0.0), self._floor)
        self._queued[o] = self._queued.get(o, 0) + 1
        self._weight[o] = task.weight

    def _on_remove(self, task: Task) -> None:
        active = [self._vt[a] for a, n in self._queued.items() if n and a in self._vt]
        if active:
            self._floor = max(self._floor, min(active))
        self._queued[task.owner] -= 1
        if not self._queued[task.owner]:
            self._idle_since[task.owner] = self._now

    def _charge(self, pid: int, tokens: int, seconds: float) -> None:
        task = self._tasks[pid]
        amount = tokens if self.opts["unit"] == "tokens" else seconds
        self._vt[task.owner] = self.vtime(task.owner) + amount / self._weight[task.owner]

    def _key(self, task: Task, now: float) -> tuple:
        return (self.vtime(task.owner), self._ready_since.get(task.pid, task.arrival_s), task.pid)

    def _order(self, tasks: Iterable[Task], now: float) -> list[Task]:
        per: dict[str, list[tuple[float, int, Task]]] = {}
        for t in tasks:
            per.setdefault(t.owner, []).append((self._ready_since.get(t.pid, t.arrival_s), t.pid, t))
        q = self.opts["quantum"]
        held: dict[str, int] = {}
        for p in self._running:
            o = self._tasks[p].owner
            held[o] = held.get(o, 0) + 1
        heap = []
        for o, items in per.items():
            items.sort(key=lambda x: (x[0], x[1]))
            items.reverse()   # pop() from the end gives the oldest
            heap.append((self.vtime(o) + held.get(o, 0) * q / self._weight[o], o))
        heapq.heapify(heap)
        out: list[Task] = []
        while heap:
            vt, o = heapq.heappop(heap)
            out.append(per[o].pop()[2])
            if per[o]:
                heapq.heappush(heap, (vt + q / self._weight[o], o))
        return out

    def _victim_order(self, running: list[Task], now: float) -> list[Task]:
        return sorted(running, key=lambda t: (-self.vtime(t.owner), -self._running.get(t.pid, now),
                                              -t.pid))

    def _why(self, task: Task, now: float) -> str:
        return (f"fair: agent {task.owner} at virtual time {self.vtime(task.owner):.1f} "
                f"(weight {self._weight[task.owner]:g})")

    def _preempts(self, victim: Task, cand: Task, now: float) -> str | None:
        if victim.owner == cand.owner:
            return None
        lead = self.vtime(victim.owner) - self.vtime(cand.owner)
        band = self.opts["quantum"] / self._weight[cand.owner]
        if lead > band:
            return f"agent {victim.owner} leads agent {cand.owner} by {lead:.1f} > {band:.1f}"
        return None


class ShortestJob(Scheduler):
    name = "sjf"
    options = {"unit": "seconds"}

    def _check_opts(self) -> None:
        super()._check_opts()
        if self.opts["unit"] not in ("tokens", "seconds"):
            raise InvalidArgument(f"unit: expected 'tokens' or 'seconds', got {self.opts['unit']!r}",
                                  field="unit", expected="tokens | seconds")

    def predicted(self, task: Task) -> tuple[float, str]:
        """(total work predicted in ``unit``, where the number came from)."""
        tokens = self.opts["unit"] == "tokens"
        given = task.est_tokens if tokens else task.est_s
        if given is not None:
            return float(given), "caller's estimate"
        if self.estimates is not None:
            tok, sec, conf = self.estimates.predict(self.estimate_key(task))
            return (tok if tokens else sec), f"learned, confidence {conf:.2f}"
        return math.inf, "no estimate"

    def remaining(self, task: Task) -> float:
        total, _ = self.predicted(task)
        done = self.used(task.pid)[0 if self.opts["unit"] == "tokens" else 1]
        return max(0.0, total - done)

    def _key(self, task: Task, now: float) -> tuple:
        return (self.remaining(task), self._ready_since.get(task.pid, task.arrival_s), task.pid)

    def _why(self, task: Task, now: float) -> str:
        _, src = self.predicted(task)
        unit = "tokens" if self.opts["unit"] == "tokens" else "s"
        return f"sjf: {self.remaining(task):.3g} {unit} predicted left ({src})"


POLICIES: dict[str, type[Scheduler]] = {
    c.name: c for c in (FIFO, RoundRobin, Priority, FairShare, ShortestJob)
}

