"""The allocator: exact answers vs brute force, infeasibility, explanations, placement, parsing."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmos.alloc import Allocator, Objective, Problem, Resource, Task, problem_from_dict
from llmos.alloc import model as alloc_model
from llmos.alloc import solve as alloc_solve
from llmos.alloc.seed import ASSUMPTIONS, SEED_ASSIGNMENT, seed_problem, seed_report
from llmos.alloc.solve import Model, evaluate, greedy, lp_bound, solve
from llmos.clock import FakeClock
from llmos.errors import AllocError, InvalidArgument

# ── brute force, written independently of the solver ─────────────────────────

OBJS = ["cost", "delay", "probability", "energy", "makespan", {"cost": 1.0, "delay": 0.5}]


@st.composite
def small_problems(draw):
    T = draw(st.integers(1, 5))
    R = draw(st.integers(1, 3))
    ints = st.integers(0, 9)
    spec = {
        "cost": [[draw(ints) for _ in range(R)] for _ in range(T)],
        "delay": [[draw(st.integers(1, 9)) for _ in range(R)] for _ in range(T)],
        "prob": [[draw(st.integers(1, 10)) / 10 for _ in range(R)] for _ in range(T)],
        "energy": [[draw(ints) for _ in range(R)] for _ in range(T)],
        "demand": [draw(st.integers(0, 2)) for _ in range(T)],
        "cap": [draw(st.one_of(st.none(), st.integers(0, 4))) for _ in range(R)],
        "deadline": [draw(st.one_of(st.none(), st.integers(1, 20))) for _ in range(T)],
        "optional": [draw(st.booleans()) for _ in range(T)],
        "objective": draw(st.sampled_from(range(len(OBJS)))),
    }
    return spec


def build(spec) -> Problem:
    T, R = len(spec["cost"]), len(spec["cost"][0])
    rn = [f"R{j}" for j in range(R)]
    tasks = [Task(f"T{i}", demand={"slots": spec["demand"][i]}, deadline_s=spec["deadline"][i],
                  optional=spec["optional"][i],
                  figures={"cost": dict(zip(rn, spec["cost"][i], strict=True)),
                           "delay": dict(zip(rn, spec["delay"][i], strict=True)),
                           "probability": dict(zip(rn, spec["prob"][i], strict=True)),
                           "energy": dict(zip(rn, spec["energy"][i], strict=True))})
             for i in range(T)]
    res = [Resource(rn[j], capacity={} if spec["cap"][j] is None else {"slots": spec["cap"][j]})
           for j in range(R)]
    return Problem.build(tasks, res)


def brute(spec, objective) -> float | None:
    """Best value over every assignment; deadlines checked by simulating EDF on each resource."""
    T, R = len(spec["cost"]), len(spec["cost"][0])
    choices = [list(range(R)) + ([None] if spec["optional"][i] else []) for i in range(T)]
    best = None
    for a in itertools.product(*choices):
        ok = True
        for j in range(R):
            mine = [i for i in range(T) if a[i] == j]
            if spec["cap"][j] is not None and sum(spec["demand"][i] for i in mine) > spec["cap"][j]:
                ok = False
                break
            t = 0
            for i in sorted(mine, key=lambda i: spec["deadline"][i] or math.inf):
                t += spec["delay"][i][j]
                if spec["deadline"][i] is not None and t > spec["deadline"][i]:
                    ok = False
            if not ok:
                break
        if not ok:
            continue
        on = [(i, a[i]) for i in range(T) if a[i] is not None]
        tot = {k: sum(spec[src][i][j] for i, j in on)
               for k, src in (("cost", "cost"), ("delay", "delay"), ("energy", "energy"), ("probability", "prob"))}
        tot["makespan"] = max([sum(spec["delay"][i][j] for i, jj in on if jj == j) for j in range(R)])
        if isinstance(objective, dict):
            v = sum(w * tot[k] for k, w in objective.items())
        elif objective == "probability":
            v = -tot["probability"]
        else:
            v = tot[objective]
        best = v if best is None else min(best, v)
    return best


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems())
def test_solver_matches_brute_force(spec):
    objective = OBJS[spec["objective"]]
    expected = brute(spec, objective)
    p = build(spec)
    if expected is None:
        with pytest.raises(AllocError) as ei:
            solve(p, objective)
        assert ei.value.message
        return
    sol = solve(p, objective)
    got = -sol.value if objective == "probability" else sol.value
    assert got == pytest.approx(expected, abs=1e-6 + 1e-3 * abs(expected))
    assert sol.method == "milp" and sol.optimal
    # the reported assignment really has the reported value and is feasible
    totals = evaluate(p, sol.assignment)
    if isinstance(objective, str) and objective != "probability":
        assert totals[objective] == pytest.approx(sol.value)
    for j, r in enumerate(p.resources):
        cap = p.capacity["slots"][j]
        used = sum(p.demand["slots"][i] for i, t in enumerate(p.tasks) if sol.assignment[t.name] == r.name)
        assert used <= cap + 1e-9


@settings(max_examples=40, deadline=None)
@given(small_problems())
def test_greedy_is_feasible_and_never_beats_the_optimum(spec):
    objective = OBJS[spec["objective"]]
    expected = brute(spec, objective)
    p = build(spec)
    a = greedy(Model(p, Objective.of(objective)))
    if a is None:
        return                       # greedy may fail where an assignment exists; solve() then uses HiGHS
    assert expected is not None
    tot = evaluate(p, a)
    if isinstance(objective, dict):
        v = sum(w * tot[k] for k, w in objective.items())
    else:
        v = -tot["probability"] if objective == "probability" else tot[objective]
    assert v >= expected - 1e-9


# ── seed 002 ─────────────────────────────────────────────────────────────────

def test_seed_example_cost_optimum_and_the_seed_assignment():
    p = seed_problem()
    sol = solve(p, "cost")
    assert sol.value == 6 and sol.assignment == {"T1": "R1", "T2": "R1", "T3": "R1"}
    assert evaluate(p, SEED_ASSIGNMENT)["cost"] == 9
    rep = seed_report()
    assert any("not cost-optimal" in s and "6" in s for s in rep.summary)
    unique = {c.assumption.label for c in rep.cases if c.objective == "cost"
              and c.seed_status == "the unique optimum"}
    assert unique == {"R1 runs at most 3 s of work"}
    r1_one = next(c for c in rep.cases if c.objective == "cost" and c.assumption.r1_tasks == 1
                  and c.assumption.r2_tasks is None)
    assert r1_one.solution.value == 8 and not r1_one.seed_is_optimal
    for c in rep.cases:                       # solver optimum == enumeration optimum, everywhere
        assert c.solution.value == pytest.approx(c.enumerated_value)
    delay_free = next(c for c in rep.cases if c.objective == "delay" and c.assumption is ASSUMPTIONS[0])
    assert delay_free.optimum_count == 8 and delay_free.solution.value == 15


# ── infeasibility names the binding resource ─────────────────────────────────

def _slots(n_tasks: int, caps: dict[str, float], demand: float = 1) -> Problem:
    tasks = [Task(f"T{i}", demand={"slots": demand}, figures={"cost": {r: 1 for r in caps}})
             for i in range(n_tasks)]
    return Problem.build(tasks, [Resource(r, capacity={"slots": c}) for r, c in caps.items()])


def test_demand_beyond_total_capacity():
    with pytest.raises(AllocError) as ei:
        solve(_slots(3, {"R1": 1, "R2": 1}), "cost")
    e = ei.value
    assert "slots" in e.message and "R1" in e.message and "R2" in e.message
    assert e.resource in ("R1", "R2") and e.hint


def test_task_bigger_than_any_resource_names_the_largest():
    with pytest.raises(AllocError) as ei:
        solve(_slots(1, {"R1": 2, "R2": 3}, demand=4), "cost")
    assert ei.value.resource == "R2" and "needs 4 slots" in ei.value.message


def test_packing_infeasible_found_by_the_elastic_program():
    # aggregate fits (6 ≤ 3 + 3) but each resource holds one task of size 2
    with pytest.raises(AllocError) as ei:
        solve(_slots(3, {"R1": 3, "R2": 3}, demand=2), "cost")
    assert ei.value.resource in ("R1", "R2") and "short by" in ei.value.message


def test_deadlines_infeasible_names_the_resource():
    tasks = [Task(n, deadline_s=5, figures={"delay": {"R1": 3}}) for n in ("A", "B")]
    with pytest.raises(AllocError) as ei:
        solve(Problem.build(tasks, [Resource("R1")]), "delay")
    assert ei.value.resource == "R1" and "deadline ≤ 5 s" in ei.value.message


def test_unreachable_deadline_and_missing_label():
    with pytest.raises(AllocError, match="fastest run time is 4 s on R1"):
        solve(Problem.build([Task("A", work=4, deadline_s=2)], [Resource("R1")]), "delay")
    with pytest.raises(AllocError, match="no resource provides gpu"):
        solve(Problem.build([Task("A", needs=frozenset({"gpu"}))], [Resource("R1")]), "delay")


# ── explanation, bounds, binding ─────────────────────────────────────────────

def test_explanation_names_binding_capacity_and_shadow_price():
    p = seed_problem(next(a for a in ASSUMPTIONS if a.r1_tasks == 1 and a.r2_tasks is None))
    sol = solve(p, "cost")
    assert sol.value == 8
    (b,) = sol.binding
    assert (b.resource, b.constraint, b.used, b.limit) == ("R1", "capacity tasks", 1, 1)
    assert b.shadow_price == pytest.approx(-2.0)       # one more R1 slot saves 2 (T2 or T1 moves over)
    text = sol.explanation
    assert "optimal (HiGHS MILP)" in text and "R1 capacity tasks: 1 of 1" in text
    assert "R1's capacity tasks is full" in text and "delays 3, 5, 7 s" in text
    assert sol.duals[("R1", "tasks")] == pytest.approx(2.0)


def test_lp_bound_is_a_bound():
    rng = np.random.default_rng(1)
    T, R = 30, 4
    p = Problem.from_matrices([f"t{i}" for i in range(T)], [f"r{j}" for j in range(R)],
                              cost=rng.integers(1, 20, (T, R)), demand={"mem": rng.integers(1, 5, T)},
                              capacity={"mem": np.full(R, 25)})
    bound, duals = lp_bound(p, "cost")
    sol = solve(p, "cost")
    assert bound <= sol.value + 1e-9 and duals is not None
    assert sol.gap is not None and sol.gap <= 1e-3


def test_energy_objective_with_power_cap_is_the_seeds_c_le_alpha_p():
    # α = work per joule; a cap P_max on R1 limits the work it takes over the horizon: Σ w ≤ α·P_max·H
    res = [Resource("R1", efficiency=2.0, max_power_w=1.0), Resource("R2", efficiency=1.0)]
    tasks = [Task(f"T{i}", work=4) for i in range(4)]
    p = Problem.build(tasks, res, horizon_s=5)
    sol = solve(p, "energy")
    # R1 may take 2·1·5 = 10 work units: two tasks (8 units, 4 J); the rest on R2 (8 J)
    assert list(sol.assignment.values()).count("R1") == 2
    assert sol.value == pytest.approx(2 * 2 + 2 * 4)
    assert not any(b.resource == "R1" and b.constraint == "power cap" for b in sol.binding)
    assert any(b.resource == "R1" and b.constraint == "power cap" for b in sol.slack)


def test_probability_objective_chooses_optional_tasks_under_capacity():
    tasks = [Task(n, demand={"slots": 1}, optional=True, figures={"probability": {"R": p}})
             for n, p in (("a", 0.2), ("b", 0.9), ("c", 0.7))]
    sol = solve(Problem.build(tasks, [Resource("R", capacity={"slots": 2})]), "probability")
    assert sol.assignment == {"a": None, "b": "R", "c": "R"} and sol.value == pytest.approx(1.6)
    assert "left out" in sol.explanation


# ── time limit and greedy fallback ───────────────────────────────────────────

def test_greedy_fallback_is_used_and_said(monkeypatch):
    real = alloc_solve.milp

    class NoSolution:
        status, x, message = 1, None, "Time limit reached. (HiGHS Status 13)"

    calls = []

    def fake_milp(*a, **kw):
        calls.append(kw.get("options"))
        return NoSolution() if len(calls) == 1 else real(*a, **kw)

    monkeypatch.setattr(alloc_solve, "milp", fake_milp)
    sol = solve(seed_problem(), "cost", time_limit_s=0.5)
    assert 0.4 < calls[0]["time_limit"] <= 0.5
    assert sol.method == "greedy fallback" and not sol.optimal
    assert sol.value == 6                                # greedy finds the easy optimum here
    assert "greedy fallback" in sol.explanation and "not proven optimal" in sol.explanation


def test_time_limit_keeps_highs_best(monkeypatch):
    real = alloc_solve.milp

    def limited(*a, **kw):
        r = real(*a, **kw)
        r.status = 1
        return r

    monkeypatch.setattr(alloc_solve, "milp", limited)
    sol = solve(seed_problem(), "cost")
    assert sol.method == "milp (time limit)" and not sol.optimal and sol.value == 6
    assert any("time limit" in n for n in sol.notes)


# ── parsing ──────────────────────────────────────────────────────────────────

DOC = {"objective": "cost",
       "resources": [{"name": "R1", "capacity": {"tasks": 1}}, {"name": "R2"}],
       "tasks": [{"name": "T1", "demand": {"tasks": 1}, "cost": {"R1": 1, "R2": 2}},
                 {"name": "T2", "demand": {"tasks": 1}, "cost": {"R1": 2, "R2": 3}}]}


def test_problem_from_dict_round_trip():
    p, obj = problem_from_dict(DOC)
    assert obj == Objective.of("cost") and p.shape == (2, 2)
    sol = solve(p, obj)
    assert sol.value == 4


@pytest.mark.parametrize("patch, field", [
    (lambda d: d["tasks"][0]["cost"].update(R9=1), "tasks[0].cost.R9"),
    (lambda d: d["tasks"][1].update(work=-1), "tasks[1].work"),
    (lambda d: d["resources"][0].update(lanes=0), "resources[0].lanes"),
    (lambda d: d["tasks"][0].update(colour="red"), "tasks[0].colour"),
    (lambda d: d.update(objective={"speed": 1}), "objective.speed"),
    (lambda d: d["tasks"][0].update(name="T2"), "tasks[1].name"),
    (lambda d: d.update(tasks=[]), "tasks"),
])
def test_problem_from_dict_errors_name_the_field(patch, field):
    import copy
    doc = copy.deepcopy(DOC)
    patch(doc)
    with pytest.raises(InvalidArgument) as ei:
        problem_from_dict(doc)
    assert ei.value.field == field and ei.value.expected


@pytest.mark.parametrize("patch, field", [
    (lambda d: d["resources"][1].pop("name"), "resources[1].name"),
    (lambda d: d["resources"][0].update(provides="gpu"), "resources[0].provides"),
    (lambda d: d["tasks"][0].update(needs=5), "tasks[0].needs"),
    (lambda d: d["tasks"][0].update(allowed="R1"), "tasks[0].allowed"),
])
def test_problem_from_dict_shapes_name_the_field(patch, field):
    import copy
    doc = copy.deepcopy(DOC)
    patch(doc)
    with pytest.raises(InvalidArgument) as ei:
        problem_from_dict(doc)
    assert ei.value.field == field


_ANY = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(), st.text(max_size=4),
              st.sampled_from(["cost", "energy", "makespan", "R1", "T1"])),
    lambda c: st.one_of(st.lists(c, max_size=3),
                        st.dictionaries(st.sampled_from(["cost", "R1", "T1", "mem"]), c, max_size=3)),
    max_leaves=6)


def _entry(keys: set[str], names: list[str]):
    fields = st.dictionaries(st.sampled_from(sorted(keys)), _ANY, max_size=5)
    return fields | st.builds(lambda d, n: {**d, "name": n}, fields, st.sampled_from(names))


@settings(max_examples=200, deadline=None)
@given(doc=st.fixed_dictionaries(
    {"tasks": st.lists(_entry(alloc_model._TASK_KEYS, ["T1", "T2"]), max_size=3),
     "resources": st.lists(_entry(alloc_model._RES_KEYS, ["R1", "R2"]), max_size=3)},
    optional={"objective": _ANY, "horizon_s": _ANY}))
def test_any_problem_document_solves_or_names_the_problem(doc):
    """Bad input is an InvalidArgument / AllocError, never a foreign exception."""
    try:
        p, obj = problem_from_dict(doc)
        solve(p, obj or "cost", time_limit_s=0.2)
    except (InvalidArgument, AllocError) as e:
        assert e.message


def test_missing_figure_for_the_objective_is_named():
    p, _ = problem_from_dict(DOC)
    with pytest.raises(InvalidArgument, match="no energy figure for task T1 on R1"):
        solve(p, "energy")


# ── incremental placement ────────────────────────────────────────────────────

def _machine(clock):
    return Allocator([
        Resource("fast", speed=4.0, power_w=100.0, idle_w=20.0, cost_per_unit=3.0),
        Resource("slow", speed=1.0, power_w=10.0, idle_w=2.0, cost_per_unit=1.0, lanes=2),
    ], clock=clock)


def test_modes_choose_by_their_rule():
    clock = FakeClock()
    a = _machine(clock)
    t = Task("job", work=4.0, deadline_s=10.0)
    lat = a.place(t, mode="latency")
    assert lat.resource == "fast" and lat.delay_s == pytest.approx(1.0) and lat.meets_deadline
    a.release(lat)
    en = a.place(t, mode="energy")       # fast: 80 W × 1 s = 80 J; slow: 8 W × 4 s = 32 J
    assert en.resource == "slow" and en.energy_j == pytest.approx(32.0) and "least energy" in en.reason
    a.release(en)
    assert a.place(t, mode="cost").resource == "slow"
    tight = Task("urgent", work=4.0, deadline_s=4.5)   # slow needs 4 s (+20 % margin) > 4.5 s
    assert a.place(tight, mode="energy").resource == "fast"


def test_lanes_queue_and_late_flag():
    clock = FakeClock()
    a = Allocator([Resource("one", speed=1.0)], clock=clock)
    p1 = a.place(Task("a", work=3))
    a.started(p1)
    p2 = a.place(Task("b", work=2, deadline_s=4))
    assert p2.start_s == pytest.approx(p1.finish_s) and p2.finish_s == pytest.approx(5)
    assert p2.meets_deadline is False and "LATE" in p2.reason
    clock.advance(2)
    a.release(p1, seconds=2.0)            # ended 1 s early: b (queued) now starts at once
    p3 = a.place(Task("c", work=1))
    assert p3.start_s == pytest.approx(2.0 + p2.delay_s)


def test_fifo_replay_over_several_lanes():
    clock = FakeClock()
    a = Allocator([Resource("two", speed=1.0, lanes=2)], clock=clock)
    ps = [a.place(Task(f"t{i}", work=w)) for i, w in enumerate((4, 1, 2))]
    assert [p.start_s for p in ps] == pytest.approx([0, 0, 1])      # t2 takes the lane t1 frees
    for p in ps[:2]:
        a.started(p)
    clock.advance(3)                                                # t1 done at 1, t2 ran 1..3
    a.release(ps[1], seconds=1.0)
    a.started(ps[2], now=1.0)
    nxt = a.place(Task("t3", work=1))
    assert nxt.start_s == pytest.approx(3.0)                        # t2 predicted to end at 3
    assert a.load()["two"]["running"] == 2


def test_margin_grows_with_measured_prediction_error():
    clock = FakeClock()
    a = Allocator([Resource("r", speed=1.0)], clock=clock)
    assert a.margin("r", "job") == pytest.approx(0.2)
    for seconds in (1.0, 1.6, 0.7, 1.5):                  # predictions of 1 s, off by up to 60 %
        p = a.place(Task("x", work=1.0))
        a.release(p, seconds=seconds)
    assert a.margin("r", "job") > 0.5
    with pytest.raises(InvalidArgument):
        a.started(p)                                       # released already


def test_capacity_none_when_full_then_free_after_release():
    a = Allocator([Resource("gpu", capacity={"mem": 10})], clock=FakeClock())
    big = Task("big", demand={"mem": 8})
    p = a.place(big)
    assert p is not None and a.place(Task("b2", demand={"mem": 8})) is None
    a.release(p)
    assert a.place(Task("b2", demand={"mem": 8})) is not None
    with pytest.raises(AllocError) as ei:
        a.place(Task("huge", demand={"mem": 11}))
    assert ei.value.resource == "gpu"


def test_learning_from_releases_changes_predictions():
    clock = FakeClock()
    a = Allocator([Resource("r", speed=1.0)], clock=clock, learn_rate=0.5)
    p = a.place(Task("x", kind="tool", work=10))
    assert p.delay_s == pytest.approx(10)
    clock.advance(5)
    a.release(p, seconds=5.0, joules=50.0)        # measured speed 2/s; the first sample is taken as is
    lr = a.learned("r", "tool")
    assert lr.speed == pytest.approx(2.0) and lr.joules_per_unit == pytest.approx(5.0)
    q = a.place(Task("y", kind="tool", work=3))
    assert q.delay_s == pytest.approx(1.5) and q.energy_j == pytest.approx(15.0)
    a.release(q, seconds=3.0)                     # 1/s now: EWMA step 1/2 → 1.5/s
    assert a.learned("r", "tool").speed == pytest.approx(1.5)
    assert a.learned("r", "other") is None


def test_solve_caches_capacity_prices_used_by_place():
    clock = FakeClock()
    res = [Resource("cheap", capacity={"slots": 1}, cost_per_unit=1.0),
           Resource("dear", cost_per_unit=1.5)]
    a = Allocator(res, clock=clock, mode="cost")
    sol = a.solve([Task("a", demand={"slots": 1}, work=2), Task("b", demand={"slots": 1}, work=2)])
    assert sol.duals[("cheap", "slots")] == pytest.approx(1.0)   # cheap saves 1 per slot
    # a small task: cheap costs 1 + price 1 = 2 > dear 1.5
    assert a.place(Task("c", demand={"slots": 1}, work=1)).resource == "dear"


def test_needs_and_mode_validation():
    a = Allocator([Resource("cpu", provides=frozenset({"model:small"}))], clock=FakeClock())
    assert a.place(Task("q", needs=frozenset({"model:small"}))).resource == "cpu"
    with pytest.raises(AllocError, match="no resource provides model:big"):
        a.place(Task("q2", needs=frozenset({"model:big"})))
    with pytest.raises(InvalidArgument) as ei:
        a.place(Task("q3"), mode="fastest")
    assert ei.value.field == "alloc_mode"
    with pytest.raises(InvalidArgument):
        Allocator(mode="speed")


# ── the large-problem path ───────────────────────────────────────────────────

def _gap_instance(T: int, R: int, seed: int, *, deadlines: bool = False, optional: bool = False) -> Problem:
    rng = np.random.default_rng(seed)
    cost = np.outer(rng.uniform(1, 10, T), rng.uniform(0.3, 3, R)) * rng.uniform(0.8, 1.25, (T, R))
    dem = rng.integers(1, 9, T).astype(float)
    p = Problem.from_matrices([f"t{i}" for i in range(T)], [f"r{j}" for j in range(R)], cost=cost,
                              delay=rng.uniform(1, 3, (T, R)), demand={"mem": dem},
                              capacity={"mem": np.full(R, dem.sum() / R / 0.85)})
    if deadlines or optional:
        tasks = tuple(Task(t.name, deadline_s=30.0 if deadlines and i % 3 == 0 else None,
                           optional=optional and i % 5 == 0) for i, t in enumerate(p.tasks))
        p.tasks = tasks
        p.allowed &= ~(p.delay > 30.0)
    return p


@pytest.mark.parametrize("kw", [{}, {"deadlines": True}, {"optional": True}])
def test_large_path_is_feasible_and_near_the_lp_bound(kw):
    p = _gap_instance(140, 40, 3, **kw)                      # 5,600 pairs: above LARGE_PAIRS
    sol = solve(p, "cost", time_limit_s=5.0)
    assert sol.method.startswith("lp"), sol.method
    bound, _ = lp_bound(p, "cost")
    assert sol.bound == pytest.approx(bound)
    assert bound <= sol.value + 1e-9 and (sol.value - bound) / bound < 0.05   # few tasks per resource
    a = np.array([p.resource_index(r) if r else -1 for r in sol.assignment.values()])
    used = np.bincount(a[a >= 0], weights=p.demand["mem"][a >= 0], minlength=p.shape[1])
    assert (used <= p.capacity["mem"] + 1e-6).all()
    for i, t in enumerate(p.tasks):
        assert a[i] >= 0 or t.optional
    assert sol.value == pytest.approx(float(sum(p.cost[i, a[i]] for i in range(len(a)) if a[i] >= 0)))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["place", "start", "release", "advance"]), st.integers(0, 9),
                          st.sampled_from(["throughput", "latency", "cost", "energy"])), max_size=40))
def test_place_never_oversubscribes_capacity(ops):
    clock = FakeClock()
    a = Allocator([Resource("g1", capacity={"mem": 10}, speed=2.0, power_w=50, cost_per_unit=2, lanes=2),
                   Resource("g2", capacity={"mem": 6}, speed=1.0, power_w=10, cost_per_unit=1)], clock=clock)
    live = []
    for op, n, mode in ops:
        if op == "place":
            p = a.place(Task(f"t{n}", work=1 + n, demand={"mem": 1 + n % 5}, deadline_s=clock.monotonic() + 20),
                        mode=mode)
            if p is not None:
                live.append(p)
                assert p.start_s >= clock.monotonic() and p.finish_s == pytest.approx(p.start_s + p.delay_s)
        elif op == "start" and live:
            a.started(live[n % len(live)])
        elif op == "release" and live:
            a.release(live.pop(n % len(live)), seconds=0.5 + n / 10)
        else:
            clock.advance(n / 3)
        for name, ld in a.load().items():
            assert ld["used"].get("mem", 0) <= ld["capacity"]["mem"] + 1e-9
            assert ld["outstanding"] == sum(p.resource == name for p in live)
