"""Token-level scheduling: the kernel's policy, asked by the engine every step.

Map:
- ``TokenPolicy``: a ``llm.base.StepPolicy`` driven by a private ``Scheduler``
  (any policy). Each engine step it folds the last step in (tokens per
  sequence, finished sequences, renices), then asks the scheduler whom to run
  and whom to preempt, and turns that into a ``StepDecision``: run / pause /
  swap_out. Install it with ``engine.set_policy(sched.step_policy())``.
- ``measure_batch_cap(engine)``: the active-batch size past which aggregate
  throughput stops growing, measured on the engine itself (never hard-coded).
- ``batch_throughput(engine, sizes)``: the tok/s curve it is computed from.

NOTE (one step). Sequences are the scheduler's tasks (kind "llm"); the batch is
its running set and the cap (``batch_cap`` ∧ ``budget.max_active``) its slots.
1. New sequences are added (in arrival order), vanished ones finish, tokens
   prefilled + generated since the last step are charged, priority changes renice.
2. ``schedule(now, cap − running)`` gives admissions and preemptions by the
   policy's order and rules; its hysteresis (``min_run_tokens``) keeps a
   sequence from being preempted right after it was (re)admitted.
3. KV and slots, in the embedded engine's terms: a sequence holds a slot (at
   most ``budget.max_active`` of them) and its footprint (prompt + max_tokens
   cells, reserved when admitted or restored) while PREFILLING, DECODING or
   PAUSED, and neither while WAITING or SWAPPED; so pausing frees nothing,
   and a batch cap below ``max_active`` leaves slots for paused sequences.
   Cell room is the larger of ``budget.kv_free_tokens`` and total minus the
   footprints held (each a safe under-estimate: the engine may share prefixes
   and evict cached ones). An admission short of cells or a slot swaps
   sequences out (snapshot, both freed), least deserving first: the victim
   paired with it, others this plan preempts, paused ones that rank behind it,
   then running ones it may preempt by the policy's rule (a free batch place
   does not help when KV is the bottleneck). If that cannot make room it
   waits (its victim keeps running). Should more be held than exists,
   resident sequences outside the batch are swapped out, then the batch's
   least deserving members (never its last one).
4. Preempted sequences keep their KV (``pause``) unless step 3 swapped them.
   A swapped sequence stays visible to the policy; listing it in ``run``
   restores it (engine contract).
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Sequence

from llmos.clock import Clock, SystemClock
from llmos.errors import InvalidArgument
from llmos.kernel.sched.base import Outcome, Plan, Scheduler, Task
from llmos.llm.base import (
    Engine,
    FifoPolicy,
    GenerationRequest,
    SamplingParams,
    SeqState,
    SeqView,
    StepBudget,
    StepDecision,
)

__all__ = ["TokenPolicy", "measure_batch_cap", "batch_throughput", "cap_from_curve"]

KEEP_DONE = 1024          # finished request ids whose explain log stays reachable
SHIELD_STEPS = 4          # most steps others sit out for one sequence's first token (liveness)
_RESIDENT = (SeqState.PREFILLING, SeqState.DECODING, SeqState.PAUSED)   # hold KV cells


def _footprint(v: SeqView) -> int:
    """Cells a sequence may hold before it ends: what an engine reserves when it admits it."""
    return v.prompt_tokens + v.max_tokens


class TokenPolicy:
    """A StepPolicy backed by a Scheduler it owns (give it a fresh one)."""

    def __init__(self, scheduler: Scheduler, *, batch_cap: int | None = None) -> None:
        if batch_cap is not None and (isinstance(batch_cap, bool) or not isinstance(batch_cap, int)
                                      or batch_cap < 1):
            raise InvalidArgument(f"batch_cap: expected a positive integer or None, got {batch_cap!r}",
                                  field="batch_cap", expected="integer >= 1")
        self.sched = scheduler              # private: only decide() mutates it
        self.batch_cap = batch_cap          # sequences; None: the engine's max_active
        self._pid: dict[str, int] = {}      # live request id -> scheduler pid
        self._rid: dict[int, str] = {}      # pid -> request id
        self._seen: dict[str, int] = {}     # request id -> tokens in KV at the last step
        self._done: collections.OrderedDict[str, int] = collections.OrderedDict()  # finished rid -> pid
        self._next = 1                      # next pid to hand out
        self._last_s: float | None = None   # clock seconds of the last decide()
        self._listed: set[int] = set()      # pids listed in the last decision's run
        self._shielded: dict[int, int] = {}  # pid -> steps others sat out for its first token
        self.preemptions = 0                # pauses + swaps issued, in total
        self.swaps = 0                      # swaps issued, in total
        self._lock = threading.Lock()       # decide() runs on the engine's thread, explain() anywhere

    # ── StepPolicy ─────────────────────────────────────────────────────────
    def decide(self, seqs: Sequence[SeqView], budget: StepBudget) -> StepDecision:
        with self._lock:
            return self._decide(seqs, budget)

    def _decide(self, seqs: Sequence[SeqView], budget: StepBudget) -> StepDecision:
        sched = self.sched
        now = sched.clock.time()
        views = {v.request_id: v for v in seqs if not v.state.finished}
        self._fold(views, now)
        cap = budget.max_active if self.batch_cap is None else min(self.batch_cap, budget.max_active)
        running = sched.running()
        free = cap - len(running)
        plan = sched.schedule(now, free)
        n, over = max(0, free), max(0, -free)
        v_of = {p: views[r] for r, p in self._pid.items()}

        def resident(p: int) -> bool:       # holds (or has reserved) KV cells
            return v_of[p].state in _RESIDENT

        total = budget.kv_total_tokens
        held = [v for v in views.values() if v.state in _RESIDENT]
        room = max(budget.kv_free_tokens, total - sum(_footprint(v) for v in held))   # cells
        slots = budget.max_active - len(held)          # resident sequences the engine may still hold
        preempt = list(plan.preempt[:over])
        staying = [p for p in running if p not in preempt]   # a paired victim stays unless its
        #                                                      replacement gets in (below)
        waiting_in = [p for p in staying if not resident(p)]  # listed, not admitted by the engine yet
        room -= sum(_footprint(v_of[p]) for p in waiting_in)
        slots -= len(waiting_in)
        swap: list[int] = []
        ready_order = [t.pid for t in sched._order((sched.get(p) for p in sched.ready()), now)]
        admitted: list[int] = []
        notes: list[str] = []
        for i, pid in enumerate(plan.run):
            paired = plan.preempt[over + i - n] if i >= n else None
            cells, slot = (0, 0) if resident(pid) else (_footprint(v_of[pid]), 1)
            c_avail, s_avail = room, slots
            victims: list[int] = []
            if cells > c_avail or slot > s_avail:
                behind = ready_order[ready_order.index(pid) + 1:] if pid in ready_order else []
                cand = sched.get(pid)
                pool = ([paired] if paired is not None else []) + \
                    [p for p in preempt if p not in swap] + \
                    [p for p in reversed(behind) if p not in plan.run] + \
                    [t.pid for t in sched._victim_order([sched.get(p) for p in staying if p != paired], now)
                     if sched._can_preempt(t, now) and sched._preempts(t, cand, now)]
                for p in pool:
                    if cells <= c_avail and slot <= s_avail:
                        break
                    if p in victims or p in swap or not resident(p):
                        continue
                    victims.append(p)
                    c_avail += _footprint(v_of[p])
                    s_avail += 1
            if cells > c_avail or slot > s_avail:
                what = f"KV ({cells} cells, {max(c_avail, 0)} free)" if cells > c_avail else "a slot"
                notes.append(f"{self._rid[pid]} waits for {what}")
                continue
            room, slots = c_avail - cells, s_avail - slot
            swap.extend(victims)
            for p in victims:               # running members it beats give up their cells too
                if p in staying and p != paired:
                    staying.remove(p)
                    preempt.append(p)
                    why = sched._preempts(sched.get(p), sched.get(pid), now)
                    plan.reasons[p] = f"preempted by pid {pid} for KV: {why}"
            admitted.append(pid)
            if paired is not None and paired in staying:   # (else an earlier one took it for KV)
                preempt.append(paired)
                staying.remove(paired)
        # Over-committed (the engine admitted more than this policy would, e.g. under a
        # policy installed before): swap out resident sequences outside the batch, least
        # deserving first, then the batch's least deserving members (never its last one).
        members = staying + admitted
        if room < 0 or slots < 0:
            idle = [p for p in reversed(ready_order) if p not in admitted and p not in swap
                    and resident(p)]
            idle += [p for p in preempt if p not in swap and p not in idle and resident(p)]
            for p in idle:
                if room >= 0 and slots >= 0:
                    break
                room += _footprint(v_of[p])
                slots += 1
                swap.append(p)
        if room < 0 or slots < 0:
            for t in sched._victim_order([sched.get(p) for p in staying], now):
                if (room >= 0 and slots >= 0) or len(members) <= 1:
                    break
                room += _footprint(v_of[t.pid])
                slots += 1
                members.remove(t.pid)
                preempt.append(t.pid)
                if resident(t.pid):
                    swap.append(t.pid)
                plan.reasons[t.pid] = "preempted: KV over-committed"
        applied = Plan(run=admitted, preempt=preempt, reasons=plan.reasons, at_s=now)
        for p in swap:
            if p in preempt:
                applied.reasons[p] = applied.reasons.get(p, "preempted") + "; swapped out for KV"
        sched.update(applied, Outcome())
        pause = [p for p in preempt if p not in swap]
        self.preemptions += len(pause) + len(swap)
        self.swaps += len(swap)
        for pid in admitted:
            notes.append(f"{self._rid[pid]}: {plan.reasons.get(pid, '')}")
        for pid in preempt:
            notes.append(f"{self._rid[pid]}: {applied.reasons.get(pid, '')}")
        members = [t.pid for t in sched._order((sched.get(p) for p in members), now)]  # most urgent first
        advance = self._advancing(members, v_of, now)
        self._listed = set(advance)
        if len(advance) < len(members):
            notes.append(f"{len(members) - len(advance)} held this step")
        return StepDecision(run=[self._rid[p] for p in advance],
                            pause=[self._rid[p] for p in pause],
                            swap_out=[self._rid[p] for p in dict.fromkeys(swap)],
                            reason=f"{sched.name}: batch {len(members)}/{cap}"
                                   + ("; " + "; ".join(notes) if notes else ""))

    def _advancing(self, members: list[int], v_of: dict[int, SeqView], now: float) -> list[int]:
        """Which batch members advance this step (the rest keep their place, idle).

        Step time is every member's wait, and a step in flight cannot be cut short, so:
        (1) at most ``prefills_per_step`` members prefill at once (most urgent first),
        which keeps steps short; (2) while a member that outranks others (by the
        policy's ``_outranks``) has not yet produced its first token, the members it
        outranks sit that step out, so its first-token step costs what it would on
        an idle engine (measured: 7 decodes beside a 20-token prefill add ~55 % on
        2 cores). They lose a step per urgent arrival (a long prompt's chunks take
        several), never more than ``SHIELD_STEPS``, so an urgent sequence that the
        engine cannot admit yet does not stall the others.
        """
        sched = self.sched
        limit = sched.opts["prefills_per_step"]

        def prefilling(p: int) -> bool:
            v = v_of[p]
            return v.state in (SeqState.WAITING, SeqState.SWAPPED) or v.prefilled_tokens < v.prompt_tokens

        urgent = [p for p in members if v_of[p].generated_tokens == 0
                  and self._shielded.get(p, 0) < SHIELD_STEPS
                  and any(sched._outranks(sched.get(p), sched.get(q), now) for q in members if q != p)]
        for p in urgent:
            self._shielded[p] = self._shielded.get(p, 0) + 1
        out: list[int] = []
        n_prefill = 0
        for p in members:
            if any(sched._outranks(sched.get(u), sched.get(p), now) for u in urgent):
                continue
            if prefilling(p):
                if n_prefill >= limit and p not in urgent:
                    continue
                n_prefill += 1
            out.append(p)
        return out

    def _fold(self, views: dict[str, SeqView], now: float) -> None:
        """Bring the scheduler up to date with what the engine did since the last step."""
        sched = self.sched
        dt = 0.0 if self._last_s is None else max(0.0, now - self._last_s)
        self._last_s = now
        running = set(sched.running())
        finished = {p for r, p in self._pid.items() if r not in views}
        usage: dict[int, tuple[int, float]] = {}
        stopped: list[int] = []
        for rid, v in views.items():
            pid = self._pid.get(rid)
            if pid is None:
                continue
            progress = v.prefilled_tokens + v.generated_tokens
            delta = progress - self._seen[rid]
            self._seen[rid] = progress
            if delta > 0 or pid in running:
                usage[pid] = (max(0, delta), dt if pid in running else 0.0)
            if v.priority != sched.get(pid).priority:
                sched.renice(pid, v.priority)
            if pid in self._listed and v.state in (SeqState.WAITING, SeqState.PAUSED, SeqState.SWAPPED):
                stopped.append(pid)    # the engine did not admit / restore it, or stopped it
        sched.update(Plan(preempt=stopped, reasons={p: "not running in the engine" for p in stopped},
                          at_s=now), Outcome(finished, usage))
        for p in finished:
            rid = self._rid.pop(p)
            del self._pid[rid]
            del self._seen[rid]
            self._done[rid] = p
            self._shielded.pop(p, None)
            while len(self._done) > KEEP_DONE:
                self._done.popitem(last=False)
        for v in sorted((v for r, v in views.items() if r not in self._pid),
                        key=lambda v: (v.arrival_s, v.request_id)):
            pid = self._next
            self._next += 1
            est = None if sched.estimates is not None else float(v.prompt_tokens + v.max_tokens)
            sched.add(Task(pid, v.owner, v.priority, now, "llm", est_tokens=est))
            self._pid[v.request_id] = pid
            self._rid[pid] = v.request_id
            self._seen[v.request_id] = v.prefilled_tokens + v.generated_tokens

    # ── queries ────────────────────────────────────────────────────────────
    def explain(self, request_id: str) -> list[str]:
        with self._lock:
            pid = self._pid.get(request_id, self._done.get(request_id))
            return [] if pid is None else self.sched.explain(pid)


# ── measuring the batch cap ────────────────────────────────────────────────
async def batch_throughput(engine: Engine, sizes: Sequence[int] = (1, 2, 4, 8, 16), *,
                           max_tokens: int = 32, prompt: str = "Count from one to fifty in words:",
                           clock: Clock | None = None) -> dict[int, float]:
    """Aggregate generated tok/s with ``n`` concurrent requests, for each n in ``sizes``.

    Runs under a FIFO step policy (restored afterwards) so the measurement
    is of the engine, not of a policy.
    """
    clock = clock or SystemClock()
    previous = getattr(engine, "policy", None)
    engine.set_policy(FifoPolicy())
    out: dict[int, float] = {}
    try:
        for n in sizes:
            reqs = [GenerationRequest(prompt=prompt, owner=f"measure-{i}",
                                      params=SamplingParams(max_tokens=max_tokens, temperature=0.0))
                    for i in range(n)]
            t0 = clock.monotonic()
            done = await asyncio.gather(*(engine.generate(r) for r in reqs))
            dt = clock.monotonic() - t0
            tokens = sum(c.usage.completion_tokens for c in done)
            out[n] = tokens / dt if dt > 0 else float("inf")
    finally:
        if previous is not None:
            engine.set_policy(previous)
    return out


async def measure_batch_cap(engine: Engine, sizes: Sequence[int] = (1, 2, 4, 8, 16), *,
                            gain: float = 1.10, max_tokens: int = 32,
                            clock: Clock | None = None) -> int:
    """Smallest batch size whose throughput is within ``gain``× of the best size's.

    Past it, a larger batch buys less than ``gain`` (10 %) more tokens per second but
    makes every step, and so every sequence's latency, slower. Comparing with the best
    rather than with the next size keeps one noisy point from ending the search early.
    ``sizes`` beyond ``engine.capabilities.max_active`` are skipped.
    """
    limit = max(1, engine.capabilities.max_active)
    sizes = sorted({s for s in sizes if 1 <= s <= limit}) or [1]
    curve = await batch_throughput(engine, sizes, max_tokens=max_tokens, clock=clock)
    return cap_from_curve(curve, gain)


def cap_from_curve(curve: dict[int, float], gain: float = 1.10) -> int:
    """The cap ``measure_batch_cap`` picks from a measured {batch size: tok/s} curve."""
    best = max(curve.values())
    return min(n for n, v in curve.items() if v * gain >= best)
