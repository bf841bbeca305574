"""Scheduler interface and each policy's order, on hand-built Tasks and Outcomes."""

from __future__ import annotations

import pytest

from llmos.clock import FakeClock
from llmos.errors import InvalidArgument, NotFound
from llmos.kernel.estimates import Estimates
from llmos.kernel.sched import POLICIES, FairShare, Outcome, Plan, Priority, Scheduler, Task, make_scheduler

T0 = 1000.0


def task(pid: int, *, owner: str = "a", priority: int = 0, at: float = T0, kind: str = "llm",
         weight: float = 1.0, est_tokens: float | None = None, est_s: float | None = None) -> Task:
    return Task(pid, owner, priority, at, kind, weight, est_tokens, est_s)


def run(s: Scheduler, now: float, free: int) -> Plan:
    plan = s.schedule(now, free)
    s.update(plan, Outcome())
    return plan


# ── the interface ──────────────────────────────────────────────────────────
def test_make_scheduler_knows_every_policy_and_rejects_others():
    clock = FakeClock()
    assert set(POLICIES) == {"fifo", "rr", "priority", "fair", "sjf"}
    for name in POLICIES:
        assert make_scheduler(name, clock).name == name
    with pytest.raises(InvalidArgument) as e:
        make_scheduler("lottery", clock)
    assert e.value.field == "scheduler" and "fifo" in e.value.expected


def test_unknown_or_bad_option_is_named():
    clock = FakeClock()
    with pytest.raises(InvalidArgument) as e:
        make_scheduler("fifo", clock, slice_tokens=8)      # an rr option
    assert e.value.field == "slice_tokens"
    with pytest.raises(InvalidArgument) as e:
        make_scheduler("priority", clock, aging_step_s=0)
    assert e.value.field == "aging_step_s"
    with pytest.raises(InvalidArgument) as e:
        make_scheduler("fair", clock, unit="joules")
    assert e.value.field == "unit"
    with pytest.raises(InvalidArgument) as e:
        make_scheduler("rr", clock, batch_cap=0)
    assert e.value.field == "batch_cap"


@pytest.mark.parametrize("bad, field", [
    (dict(pid=-1), "pid"), (dict(owner=""), "owner"), (dict(priority=20), "priority"),
    (dict(kind=""), "kind"), (dict(weight=0.0), "weight"), (dict(est_s=-1.0), "est_s"),
    (dict(arrival_s=float("nan")), "arrival_s"),
])
def test_bad_task_is_refused_naming_the_field(bad, field):
    s = make_scheduler("fifo", FakeClock())
    fields = dict(pid=1, owner="a", priority=0, arrival_s=T0, kind="llm")
    fields.update(bad)
    with pytest.raises(InvalidArgument) as e:
        s.add(Task(**fields))
    assert e.value.field == field
    assert len(s) == 0


def test_add_remove_renice_errors_and_len():
    s = make_scheduler("priority", FakeClock())
    s.add(task(1))
    with pytest.raises(InvalidArgument) as e:
        s.add(task(1))
    assert e.value.field == "pid"
    with pytest.raises(NotFound):
        s.remove(2)
    with pytest.raises(NotFound):
        s.renice(2, 0)
    with pytest.raises(InvalidArgument) as e:
        s.renice(1, -21)
    assert e.value.field == "priority"
    s.renice(1, 5)
    assert s.get(1).priority == 5
    assert len(s) == 1 and 1 in s
    assert s.remove(1).pid == 1 and len(s) == 0


def test_schedule_is_pure_and_update_applies_plan_then_outcome():
    s = make_scheduler("fifo", FakeClock())
    for i in range(3):
        s.add(task(i, at=T0 + i))
    p1 = s.schedule(T0 + 5, 2)
    assert s.schedule(T0 + 5, 2) == p1 and s.running() == []
    s.update(p1, Outcome(usage={0: (7, 0.5)}))
    assert sorted(s.running()) == [0, 1] and s.ready() == [2]
    assert s.used(0) == (7, 0.5)
    s.update(Plan(at_s=T0 + 6), Outcome(finished={0}))
    assert 0 not in s and len(s) == 2
    # a finish for a pid already removed (killed meanwhile) is ignored
    s.remove(1)
    s.update(Plan(at_s=T0 + 7), Outcome(finished={1}, usage={1: (1, 0.1)}))
    assert s.ready() == [2] and s.running() == []


def test_bad_usage_is_refused():
    s = make_scheduler("fifo", FakeClock())
    s.add(task(1))
    with pytest.raises(InvalidArgument) as e:
        s.update(Plan(), Outcome(usage={1: (-1, 0.0)}))
    assert e.value.field == "usage[1]"


def test_free_slots_must_be_an_integer():
    with pytest.raises(InvalidArgument):
        make_scheduler("fifo", FakeClock()).schedule(T0, 1.5)  # type: ignore[arg-type]


# ── each policy's order ────────────────────────────────────────────────────
def test_fifo_runs_in_arrival_order_and_never_preempts():
    s = make_scheduler("fifo", FakeClock())
    s.add(task(3, at=T0 + 2, priority=-20))
    s.add(task(1, at=T0 + 0, priority=19))
    s.add(task(2, at=T0 + 1))
    assert s.schedule(T0 + 3, 3).run == [1, 2, 3]
    run(s, T0 + 3, 1)
    s.add(task(9, at=T0 + 4, priority=-20))
    plan = s.schedule(T0 + 100, 0)
    assert plan.run == [] and plan.preempt == []


def test_rr_rotates_after_a_slice_of_tokens():
    s = make_scheduler("rr", FakeClock(), slice_tokens=10)
    for i in range(3):
        s.add(task(i, at=T0 + i))
    assert run(s, T0 + 3, 1).run == [0]
    s.update(Plan(at_s=T0 + 3), Outcome(usage={0: (9, 0.1)}))
    assert s.schedule(T0 + 3.1, 0).preempt == []                # slice not used up
    s.update(Plan(at_s=T0 + 3.1), Outcome(usage={0: (1, 0.1)}))
    plan = run(s, T0 + 3.2, 0)
    assert plan.preempt == [0] and plan.run == [1]
    assert "slice used (10/10 tokens)" in plan.reasons[0]
    # 0 went to the tail: after 2
    s.update(Plan(at_s=T0 + 4), Outcome(usage={1: (10, 0.1)}))
    assert run(s, T0 + 4, 0).run == [2]
    s.update(Plan(at_s=T0 + 5), Outcome(usage={2: (10, 0.1)}))
    assert run(s, T0 + 5, 0).run == [0]


def test_rr_slice_in_seconds_for_tasks_without_tokens():
    s = make_scheduler("rr", FakeClock(), slice_s=2.0)
    s.add(task(0, kind="tool:shell"))
    s.add(task(1, kind="tool:shell", at=T0 + 1))
    run(s, T0 + 1, 1)
    assert s.schedule(T0 + 2.5, 0).preempt == []
    assert s.schedule(T0 + 3.0, 0).preempt == [0]


def test_priority_orders_by_nice_then_arrival():
    s = make_scheduler("priority", FakeClock(), preempt=False)
    s.add(task(1, priority=5, at=T0))
    s.add(task(2, priority=-3, at=T0 + 0.5))
    s.add(task(3, priority=5, at=T0 - 0.5))
    s.add(task(4, priority=-3, at=T0 + 0.1))
    assert s.schedule(T0 + 0.5, 4).run == [4, 2, 3, 1]


def test_priority_aging_lifts_a_waiting_task_one_level_per_step():
    s = make_scheduler("priority", FakeClock(), preempt=False, aging_step_s=1.0)
    assert isinstance(s, Priority)
    s.add(task(1, priority=10, at=T0))
    s.add(task(2, priority=0, at=T0 + 9.5))
    assert s.effective(s.get(1), T0 + 9.9) == 1
    assert s.schedule(T0 + 9.9, 1).run == [2]
    assert s.effective(s.get(1), T0 + 10.0) == 0
    assert s.schedule(T0 + 10.0, 1).run == [1]     # equal effective priority: older first
    assert "aged 10 levels" in s.schedule(T0 + 10.0, 1).reasons[1]


def test_priority_preempts_with_margin_and_hysteresis():
    s = make_scheduler("priority", FakeClock(), margin=2, min_run_tokens=4, min_run_s=10.0)
    s.add(task(1, priority=10))
    run(s, T0, 1)
    s.add(task(2, priority=9, at=T0))
    assert s.schedule(T0, 0).preempt == []          # one level better: within the margin
    s.add(task(3, priority=-5, at=T0))
    assert s.schedule(T0, 0).preempt == []          # 1 has not run min_run_tokens yet
    s.update(Plan(at_s=T0), Outcome(usage={1: (4, 0.0)}))
    plan = run(s, T0, 0)
    assert plan.preempt == [1] and plan.run == [3]
    assert "preempted by pid 3" in plan.reasons[1]
    assert s.ready() == [1, 2] or sorted(s.ready()) == [1, 2]
    assert "preempted by pid 3" in " ".join(s.explain(1))


def test_preemptible_kinds_limits_victims():
    s = make_scheduler("priority", FakeClock(), preemptible_kinds={"llm"}, min_run_tokens=0)
    s.add(task(1, priority=19, kind="tool:shell"))
    run(s, T0, 1)
    s.add(task(2, priority=-20))
    assert s.schedule(T0 + 1, 0).preempt == []


def test_negative_free_slots_preempts_the_least_deserving():
    s = make_scheduler("priority", FakeClock(), preempt=False)
    for pid, prio in ((1, 0), (2, 10), (3, -5)):
        s.add(task(pid, priority=prio))
    run(s, T0, 3)
    plan = s.schedule(T0, -2)
    assert plan.preempt == [2, 1] and plan.run == []
    assert "over capacity" in plan.reasons[2]


def test_fair_share_interleaves_slots_by_weight():
    s = make_scheduler("fair", FakeClock(), quantum=10.0)
    for i in range(6):
        s.add(task(i, owner="heavy", weight=3.0, at=T0 + i))
        s.add(task(10 + i, owner="light", weight=1.0, at=T0 + i))
    plan = s.schedule(T0 + 10, 4)
    owners = [s.get(p).owner for p in plan.run]
    assert owners.count("heavy") == 3 and owners.count("light") == 1


def test_fair_share_prefers_the_agent_that_got_less():
    s = make_scheduler("fair", FakeClock(), quantum=10.0)
    assert isinstance(s, FairShare)
    s.add(task(1, owner="a"))
    s.add(task(2, owner="b"))
    s.add(task(3, owner="a", at=T0 + 1))
    s.add(task(4, owner="b", at=T0 + 2))
    assert run(s, T0, 2).run == [1, 2]
    s.update(Plan(at_s=T0), Outcome(usage={1: (50, 1.0), 2: (20, 1.0)}, finished={1, 2}))
    assert s.schedule(T0 + 3, 1).run == [4]
    assert "agent b at virtual time 20.0" in s.schedule(T0 + 3, 1).reasons[4]


def test_fair_share_new_agent_gets_no_banked_credit():
    s = make_scheduler("fair", FakeClock(), quantum=10.0)
    s.add(task(1, owner="a"))
    run(s, T0, 1)
    s.update(Plan(at_s=T0), Outcome(usage={1: (1000, 1.0)}))
    s.add(task(2, owner="b", at=T0 + 1))          # arrives while a is active at vt 1000
    assert s.vtime("b") == pytest.approx(1000.0)


def test_fair_share_preempts_an_agent_far_ahead():
    s = make_scheduler("fair", FakeClock(), quantum=10.0, min_run_tokens=1)
    s.add(task(1, owner="a"))
    run(s, T0, 1)
    s.add(task(2, owner="b", at=T0))
    s.update(Plan(at_s=T0), Outcome(usage={1: (10, 0.1)}))
    assert s.schedule(T0, 0).preempt == []          # lead 10 is within the band
    s.update(Plan(at_s=T0), Outcome(usage={1: (1, 0.1)}))
    plan = s.schedule(T0, 0)
    assert plan.preempt == [1] and plan.run == [2]


def test_sjf_uses_caller_estimates_and_remaining_work():
    s = make_scheduler("sjf", FakeClock(), unit="tokens")
    s.add(task(1, est_tokens=100, at=T0))
    s.add(task(2, est_tokens=30, at=T0 + 1))
    s.add(task(3, est_tokens=60, at=T0 + 2))
    s.add(task(4, at=T0 - 1))                          # no estimate: last
    assert s.schedule(T0 + 3, 4).run == [2, 3, 1, 4]
    assert "30 tokens predicted left (caller's estimate)" in s.schedule(T0 + 3, 1).reasons[2]


def test_sjf_learns_from_finished_tasks():
    clock = FakeClock()
    est = Estimates()
    s = make_scheduler("sjf", clock, estimates=est)
    # teach it: agent a's "tool:slow" takes 10 s, "tool:fast" 1 s
    pid = 100
    for kind, secs in (("tool:slow", 10.0), ("tool:fast", 1.0)) * 3:
        s.add(task(pid, kind=kind))
        plan = run(s, T0, 1)
        assert plan.run == [pid]
        s.update(Plan(at_s=T0), Outcome(usage={pid: (0, secs)}, finished={pid}))
        pid += 1
    s.add(task(1, kind="tool:slow", at=T0))
    s.add(task(2, kind="tool:fast", at=T0 + 1))
    plan = s.schedule(T0 + 2, 1)
    assert plan.run == [2]
    assert "learned" in plan.reasons[2]
    tok, sec, conf = est.predict(("a", "tool:slow", "*"))
    assert sec > 5 and 0 < conf < 1


def test_explain_keeps_reasons_after_the_task_left():
    s = make_scheduler("priority", FakeClock(start=T0))
    s.add(task(1, priority=3, at=T0))
    s.add(task(2, priority=0, at=T0))
    lines = s.explain(1)
    assert lines[0].startswith("queued (priority 3")
    assert lines[-1].startswith("now: ready, 2 of 2 in line")
    run(s, T0, 2)
    assert s.explain(1)[-1].startswith("now: running")
    s.update(Plan(at_s=T0), Outcome(usage={1: (5, 0.2)}, finished={1}))
    assert s.explain(1)[-1] == "finished after 5 tokens, 0.20 s"
    assert s.explain(12345) == []


def test_clone_is_empty_with_same_options():
    s = make_scheduler("rr", FakeClock(), slice_tokens=3)
    s.add(task(1))
    c = s.clone()
    assert type(c) is type(s) and len(c) == 0 and c.opts["slice_tokens"] == 3
