"""Property tests (hypothesis): aging bounds every wait, fair share follows weights,
and no sequence of add / remove / renice / schedule / update loses or duplicates a task.

Simulations run in ticks of ``DT`` seconds on plain numbers (no clock waits).
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from llmos import params
from llmos.clock import FakeClock
from llmos.kernel.sched import POLICIES, Outcome, Plan, Task, make_scheduler

T0 = 0.0
DT = 0.25           # seconds per tick
A = 1.0             # aging step, seconds
SPAN = params.PRIORITY_MAX - params.PRIORITY_MIN

jobs = st.lists(st.tuples(st.integers(0, 40),                       # arrival tick
                          st.integers(params.PRIORITY_MIN, params.PRIORITY_MAX),
                          st.integers(1, 6)),                       # run ticks
                min_size=1, max_size=30)


def simulate_no_preempt(jobs, slots, aging=A):
    """Run jobs (arrival tick, priority, ticks) to completion; returns per pid (ready_t, start_t)
    and the dispatch log [(t, pid)]."""
    s = make_scheduler("priority", FakeClock(), preempt=False, aging_step_s=aging)
    left: dict[int, int] = {}
    ready_t: dict[int, float] = {}
    start_t: dict[int, float] = {}
    log: list[tuple[float, int]] = []
    pending = sorted(enumerate(jobs), key=lambda j: j[1][0])
    tick = 0
    while pending or len(s):
        t = T0 + tick * DT
        finished = {p for p in s.running() if left[p] == 0}
        s.update(Plan(at_s=t), Outcome(finished=finished))
        while pending and pending[0][1][0] <= tick:
            pid, (_, prio, ticks) = pending.pop(0)
            s.add(Task(pid, "a", prio, t, "llm"))
            left[pid], ready_t[pid] = ticks, t
        plan = s.schedule(t, slots - len(s.running()))
        s.update(plan, Outcome())
        for p in plan.run:
            start_t[p] = t
            log.append((t, p))
        for p in s.running():
            left[p] -= 1
        tick += 1
        assert tick < 100_000
    return ready_t, start_t, log


@settings(max_examples=60, deadline=None)
@given(jobs, st.integers(1, 3))
def test_aging_order_lemma(jobs, slots):
    """X runs before every task that becomes ready after t0 + (p - PRIORITY_MIN)·A."""
    ready_t, start_t, log = simulate_no_preempt(jobs, slots)
    for x, (_, p, _) in enumerate(jobs):
        window_end = ready_t[x] + (p - params.PRIORITY_MIN) * A
        for t, y in log:
            if y != x and ready_t[x] <= t <= start_t[x] and (t, y) < (start_t[x], x):
                assert ready_t[y] < window_end + 1e-9, (x, y)


@settings(max_examples=60, deadline=None)
@given(jobs, st.integers(1, 3))
def test_aging_bounds_every_wait(jobs, slots):
    """Without preemption: wait ≤ ⌈(Q + K + 1) / S⌉ · R (see policies.py)."""
    ready_t, start_t, _ = simulate_no_preempt(jobs, slots)
    r = max(t for _, _, t in jobs) * DT
    for x, (_, p, _) in enumerate(jobs):
        t0 = ready_t[x]
        window_end = t0 + (p - params.PRIORITY_MIN) * A
        ahead = sum(1 for y in ready_t if y != x and start_t[y] >= t0 and ready_t[y] <= window_end)
        bound = math.ceil((ahead + 1) / slots) * r
        assert start_t[x] - t0 <= bound + 1e-9


def test_aging_ends_starvation_that_strict_priority_causes():
    """A nice-19 task under a stream of nice -20 tasks that saturate one slot."""
    stream = [(0, 19, 1)] + [(k, -20, 1) for k in range(0, 400)]
    ready_t, start_t, _ = simulate_no_preempt(stream, 1, aging=A)
    k = (19 - params.PRIORITY_MIN) * A / DT + 1      # stream tasks that can go first
    assert start_t[0] - ready_t[0] <= math.ceil(k + 1) * DT
    assert start_t[0] < 40.0 + DT
    strict = simulate_no_preempt(stream, 1, aging=1e9)[1]
    assert strict[0] == max(strict.values())         # strict priority: dead last


never_ending = st.lists(st.integers(params.PRIORITY_MIN, params.PRIORITY_MAX), min_size=2, max_size=6)


@settings(max_examples=40, deadline=None)
@given(never_ending, st.integers(1, 2), st.integers(1, 3))
def test_preemptive_aging_serves_the_head_of_line_even_if_nothing_ends(prios, slots, margin):
    """With preemption, the head of the line runs within (p − MIN + margin)·A + min_run_s."""
    min_run = 0.5
    s = make_scheduler("priority", FakeClock(), aging_step_s=A, margin=margin,
                       min_run_s=min_run, min_run_tokens=10**9)
    for pid, prio in enumerate(prios):
        s.add(Task(pid, "a", prio, T0, "llm"))
    ready_since = {pid: T0 for pid in range(len(prios))}
    head_since: dict[int, float] = {}
    runs = {pid: 0 for pid in range(len(prios))}
    horizon = 2 * len(prios) * (SPAN + margin + 2) * A
    t = T0
    while t < horizon:
        plan = s.schedule(t, slots - len(s.running()))
        s.update(plan, Outcome())
        for p in plan.preempt:
            ready_since[p] = t
        for p in plan.run:
            runs[p] += 1
            head_since.pop(p, None)
        order = s._order((s.get(p) for p in s.ready()), t)
        if order:
            head = order[0].pid
            head_since.setdefault(head, t)
            limit = max(head_since[head], ready_since[head] + (prios[head] - params.PRIORITY_MIN
                                                               + margin) * A) + min_run + DT
            assert t <= limit + 1e-9, (head, t, limit)
        t += DT
    assert all(n > 0 for n in runs.values())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 4), min_size=2, max_size=4), st.integers(1, 3),
       st.lists(st.integers(1, 60), min_size=8, max_size=8), st.integers(0, 2**16))
def test_fair_share_within_ten_percent_of_weights(weights, slots, sizes, seed):
    """Backlogged agents, tasks of mixed sizes, 1 token per running task per tick."""
    s = make_scheduler("fair", FakeClock())
    owners = [f"agent{i}" for i in range(len(weights))]
    got = dict.fromkeys(owners, 0)
    left: dict[int, int] = {}
    nxt = 0
    k = seed

    def top_up(t: float) -> None:
        nonlocal nxt, k
        for o, w in zip(owners, weights, strict=True):
            while sum(1 for p in s.ready() if s.get(p).owner == o) < slots:
                s.add(Task(nxt, o, 0, t, "llm", weight=float(w)))
                left[nxt] = sizes[k % len(sizes)]
                nxt, k = nxt + 1, k + 7
    ticks = 4000
    for tick in range(ticks):
        t = T0 + tick * DT
        top_up(t)
        plan = s.schedule(t, slots - len(s.running()))
        s.update(plan, Outcome())
        usage, done = {}, set()
        for p in s.running():
            usage[p] = (1, DT)
            got[s.get(p).owner] += 1
            left[p] -= 1
            if left[p] == 0:
                done.add(p)
        s.update(Plan(at_s=t), Outcome(finished=done, usage=usage))
    total, wsum = sum(got.values()), sum(weights)
    for o, w in zip(owners, weights, strict=True):
        want = w / wsum
        assert abs(got[o] / total - want) <= 0.10 * want, (got, weights, slots, sizes, seed)


class NoTaskLost(RuleBasedStateMachine):
    """Any interleaving keeps every pid in exactly one of ready / running."""

    def __init__(self) -> None:
        super().__init__()
        self.model: set[int] = set()
        self.next = 0
        self.t = T0

    @initialize(policy=st.sampled_from(sorted(POLICIES)))
    def make(self, policy):
        self.s = make_scheduler(policy, FakeClock(), min_run_tokens=1, min_run_s=0.0)

    @rule(owner=st.sampled_from("abc"), prio=st.integers(-20, 19), weight=st.sampled_from([0.5, 1, 3]),
          kind=st.sampled_from(["llm", "tool:x"]))
    def add(self, owner, prio, weight, kind):
        self.s.add(Task(self.next, owner, prio, self.t, kind, weight))
        self.model.add(self.next)
        self.next += 1

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def remove(self, data):
        pid = data.draw(st.sampled_from(sorted(self.model)))
        self.s.remove(pid)
        self.model.discard(pid)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), prio=st.integers(-20, 19))
    def renice(self, data, prio):
        self.s.renice(data.draw(st.sampled_from(sorted(self.model))), prio)

    @rule(free=st.integers(-3, 4), dt=st.floats(0, 3), data=st.data())
    def step(self, free, dt, data):
        self.t += dt
        ready, running = set(self.s.ready()), set(self.s.running())
        plan = self.s.schedule(self.t, free)
        assert len(plan.run) == len(set(plan.run)) and set(plan.run) <= ready
        assert len(plan.preempt) == len(set(plan.preempt)) and set(plan.preempt) <= running
        assert len(plan.run) <= max(free, 0) + len(plan.preempt)
        # pairing (Plan's comment): what runs beyond the free slots replaces what is preempted
        # beyond the capacity cut
        assert (len(plan.run) - min(max(free, 0), len(ready))
                == len(plan.preempt) - min(max(-free, 0), len(running)))
        assert set(plan.reasons) >= set(plan.run) | set(plan.preempt)
        self.s.update(plan, Outcome())
        run_now = sorted(self.s.running())
        done = set(data.draw(st.lists(st.sampled_from(run_now), unique=True))) if run_now else set()
        usage = {p: (data.draw(st.integers(0, 20)), 0.1) for p in run_now}
        self.s.update(Plan(at_s=self.t), Outcome(finished=done, usage=usage))
        self.model -= done

    @invariant()
    def partition(self):
        if not hasattr(self, "s"):
            return
        ready, running = self.s.ready(), self.s.running()
        assert len(ready) == len(set(ready)) and len(running) == len(set(running))
        assert not set(ready) & set(running)
        assert set(ready) | set(running) == self.model
        assert len(self.s) == len(self.model)


NoTaskLost.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_no_task_lost_or_duplicated = NoTaskLost.TestCase
