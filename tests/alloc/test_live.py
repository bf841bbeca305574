"""The live solver: HiGHS batches steer placement, within a time budget, priced by their duals."""

from __future__ import annotations

import pytest

from llmos.alloc import Allocator, Problem, Resource, Task
from llmos.alloc import solve as _solver  # noqa: F401  (loaded here, so batches run at once)
from llmos.alloc.live import HIGHS_SHARE, LiveSolver
from llmos.alloc.solve import solve
from llmos.clock import FakeClock


def machines(clock: FakeClock, mode: str = "throughput") -> Allocator:
    return Allocator([Resource("fast", speed=4.0, cost_per_unit=3.0, power_w=40.0),
                      Resource("mid", speed=2.0, cost_per_unit=1.5, power_w=15.0),
                      Resource("slow", speed=1.0, cost_per_unit=0.5, power_w=5.0)], mode=mode, clock=clock)


WORK = [7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 9, 8, 1]


def queue() -> dict[int, Task]:
    return {i: Task(f"t{i}", work=float(w)) for i, w in enumerate(WORK)}


def place_all(alloc: Allocator, live: LiveSolver | None, q: dict[int, Task]) -> dict[int, object]:
    out = {}
    for key, t in q.items():
        out[key] = alloc.place(t, solved=live.choice(key) if live else None)
    return out


def makespan(placements) -> float:
    return max(p.finish_s for p in placements.values())


def test_live_batch_is_used_explained_and_beats_list_scheduling():
    clock = FakeClock()
    listed = place_all(machines(clock), None, queue())
    alloc = machines(clock)
    live = LiveSolver(alloc, budget_s=5.0)
    assert live.update(queue(), "throughput") is True
    assert live.last.used and live.last.method.startswith("milp") and live.solved == 1
    placed = place_all(alloc, live, queue())
    for p in placed.values():
        assert "HiGHS live batch 1: makespan over 15 queued task(s)" in p.reason
    assert makespan(placed) < makespan(listed)             # the batch packs the queue better
    assert makespan(placed) <= live.last.value + 1e-6        # ... as the solution said (+ a tie term)


def test_unchanged_queue_is_not_solved_again_until_enough_is_new():
    clock = FakeClock()
    alloc = machines(clock)
    live = LiveSolver(alloc, budget_s=5.0, interval_s=10.0, change=0.5)
    q = queue()
    assert live.update(q, "throughput")
    assert not live.update(q, "throughput")                  # nothing new
    q[100] = Task("late", work=1.0)
    assert not live.update(q, "throughput")                  # 1 of 16 new, interval not passed
    clock.advance(10.0)
    assert live.update(q, "throughput")                      # the interval passed
    assert not live.update({0: q[0]}, "throughput")          # a queue of one: list scheduling
    assert live.choice(5) is None                            # placed or gone: its answer is spent


def test_backlog_counts_work_already_placed():
    clock = FakeClock()
    alloc = machines(clock)
    for i in range(4):                                       # 32 s of work queued on fast
        alloc.place(Task(f"old{i}", work=32.0), solved=("fast", "pinned"))
    live = LiveSolver(alloc, budget_s=5.0)
    live.update({1: Task("a", work=4.0), 2: Task("b", work=4.0)}, "throughput")
    assert live.choice(1)[0] != "fast" and live.choice(2)[0] != "fast"


def test_past_its_budget_the_batch_falls_back_to_list_scheduling():
    clock = FakeClock()
    alloc = machines(clock)
    ticks = iter([0.0, 1.0])                                 # the batch "takes" 1 s of a 50 ms budget
    live = LiveSolver(alloc, budget_s=0.05, timer=lambda: next(ticks))
    assert live.update(queue(), "throughput")
    assert not live.last.used and live.fallbacks == 1 and live.solved == 0
    assert "past its 50 ms budget" in live.last.why and live.choice(0) is None
    assert live.size == 8                                    # the next batch takes the queue's head only
    p = alloc.place(queue()[0], solved=live.choice(0), note=live.last.why)
    assert "list scheduling: the HiGHS batch took 1000 ms" in p.reason


def test_highs_gets_the_budget_as_its_time_limit(monkeypatch):
    from llmos.alloc import solve as solve_mod

    seen = {}
    real = solve_mod.solve

    def spy(problem, objective, **kw):
        seen.update(kw)
        return real(problem, objective, **kw)

    monkeypatch.setattr(solve_mod, "solve", spy)
    live = LiveSolver(machines(FakeClock()), budget_s=0.07)
    live.update(queue(), "throughput")
    assert seen["time_limit_s"] == pytest.approx(0.07 * HIGHS_SHARE)   # the rest: model and duals
    assert seen["whole_tasks"] is True


def test_whole_tasks_keep_one_task_on_one_lane():
    wide = Resource("wide", lanes=4, speed=1.0)               # 10 s here; "2.5 s" as a fluid
    narrow = Resource("narrow", lanes=1, speed=2.5)           # 4 s here
    p = Problem.build([Task("t", work=10.0)], [wide, narrow])
    assert solve(p, "makespan").assignment == {"t": "wide"}
    assert solve(p, "makespan", whole_tasks=True).assignment == {"t": "narrow"}


def test_infeasible_batch_falls_back_and_says_why():
    clock = FakeClock()
    alloc = Allocator([Resource("box", capacity={"memory_bytes": 2.0})], mode="cost", clock=clock)
    live = LiveSolver(alloc, budget_s=5.0)
    q = {i: Task(f"t{i}", demand={"memory_bytes": 1.0}, figures={"cost": {"box": 1.0}}) for i in range(3)}
    live.update(q, "cost")
    assert not live.last.used and "has no answer" in live.last.why and "box" in live.last.why


def test_congestion_prices_are_nonzero_and_reach_place():
    clock = FakeClock()
    cheap = Resource("cheap", capacity={"memory_bytes": 2.0}, cost_per_unit=1.0, lanes=4)
    dear = Resource("dear", capacity={"memory_bytes": 8.0}, cost_per_unit=3.0, lanes=4)
    alloc = Allocator([cheap, dear], mode="cost", clock=clock)
    live = LiveSolver(alloc, budget_s=5.0)
    q = {i: Task(f"t{i}", work=1.0, demand={"memory_bytes": 1.0}) for i in range(4)}
    assert alloc.prices == {}                                # zero until a batch supplies them
    live.update(q, "cost")
    price = alloc.prices[("cheap", "memory_bytes")]
    assert price == pytest.approx(2.0)                       # one more unit on cheap saves 3 - 1
    assert "congestion price 2 per memory_bytes on cheap" in live.last.why
    # work outside the batch is priced too: memory on cheap now costs 2 per unit, so a task
    # holding 2 units is dearer there (1 + 2·2) than on dear (3); unpriced it would take cheap
    late = Task("late", work=1.0, demand={"memory_bytes": 2.0})
    assert alloc.place(late).resource == "dear"
    assert Allocator([cheap, dear], mode="cost", clock=clock).place(late).resource == "cheap"
    picks = [alloc.place(t, solved=live.choice(k)).resource for k, t in q.items()]
    assert sorted(picks) == ["cheap", "cheap", "dear", "dear"]


def test_solver_loading_falls_back_to_list_scheduling(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "llmos.alloc.solve")
    live = LiveSolver(machines(FakeClock()), budget_s=5.0)
    assert not live.update(queue(), "throughput")
    assert live.last.why == "list scheduling: the HiGHS solver is still loading"
    assert live.wait_ready(30.0)
    assert live.update(queue(), "throughput") and live.last.used
