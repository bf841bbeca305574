"""The seeds' models solved live: the queued work re-placed with HiGHS in batches.

Map:
- ``LiveSolver(allocator, budget_s=, interval_s=, change=)``: owned by the kernel's
  Placer (or a simulation), called from the loop.
- ``LiveSolver.update(queue, mode, now=)``: ``queue`` is the work waiting to be placed
  (key -> Task, in queue order). Solves again when the queue changed enough since the
  last batch (``change``: the fraction of its tasks that are new) or ``interval_s``
  passed (work ended meanwhile, so the backlog changed); else keeps the last answer.
  Returns True when it solved.
- ``LiveSolver.choice(key) -> (resource, why) | None``: the batch's resource for a task
  and one line saying which solver decided and why; ``Allocator.place(solved=...)``
  takes it when that resource has room, else list scheduling decides.
- ``LiveSolver.last``: the latest batch (``Batch``: method, objective value, bound,
  gap, binding limits, prices, ms), or why it fell back to list scheduling.
- ``stats()``: batches solved / fallen back, solver ms in all.

NOTE (one batch). Tasks: the head of the queue, in queue order, with deadlines made
relative to now: at most ``max_tasks``, halved after a batch that ran past its budget
(never below ``MIN_SIZE``) and grown back by half after one that used under half. Resources: the allocator's, each with the capacity
left now (held placements subtracted). Work already placed on a resource is a
pinned pseudo-task per busy lane, running until that lane is free, so the makespan
objective counts what each resource must finish first. The objective
is the mode's (throughput: makespan, latency: total delay, cost, energy). HiGHS gets
``budget_s``; when it has no assignment by then, or the whole batch (model, MILP, LP
duals) took longer than the budget allows, the answer is dropped and list
scheduling places the queue, with that reason. The LP duals of the capacity rows
(congestion prices) go to ``Allocator.set_prices``, so work placed between batches,
and work whose batch resource has no room, is priced by the same congestion.
scipy is imported in a background thread on first need; until it is loaded the
queue is placed by list scheduling ("solver loading").
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from llmos.alloc.model import MODE_OBJECTIVE, Objective, Problem, Task
from llmos.errors import LLMOSError

if TYPE_CHECKING:
    from llmos.alloc.place import Allocator

__all__ = ["LiveSolver", "Batch", "LIVE_BUDGET_S", "LIVE_INTERVAL_S", "LIVE_CHANGE", "LIVE_MAX_TASKS",
           "LIVE_MIN_TASKS"]

LIVE_BUDGET_S = 0.05      # s of solver time one batch may take (HiGHS limit; past it: list scheduling)
LIVE_INTERVAL_S = 0.25    # s between batches while new work keeps arriving in small amounts
LIVE_CHANGE = 0.25        # fraction of the queue that must be new to solve again at once
LIVE_MAX_TASKS = 200      # queued tasks per batch (queue order); the rest wait for the next
LIVE_MIN_TASKS = 2        # a queue smaller than this is left to list scheduling (nothing to weigh)
MIN_SIZE = 8              # a batch that overran shrinks, but never below this many tasks
OVERRUN = 1.5             # a batch whose whole time passes budget × this is dropped
HIGHS_SHARE = 0.7         # of the budget, HiGHS's own time limit (the rest: model, duals)
LIVE_GAP = 0.01           # relative MIP gap a live batch stops at
TIE_WEIGHT = 0.01         # makespan batches: + this/T × total delay, so ties go to fast resources
_SOLVE_MODULE = "llmos.alloc.solve"


@dataclass(frozen=True)
class Batch:
    """One live solve, or why there was none."""

    id: int                                   # 1, 2, ... per LiveSolver
    mode: str                                 # the placement mode solved for
    objective: str                            # makespan | delay | cost | energy
    tasks: int                                # queued tasks in the batch
    used: bool                                # True: its assignment steers placement
    method: str                               # "milp", "milp (time limit)", ... or "list scheduling"
    why: str                                  # one line: what decided and why
    ms: float                                 # wall ms of the whole batch
    value: float | None = None                # objective value (s, cost or J)
    gap: float | None = None                  # relative gap to HiGHS's / the LP's bound
    binding: tuple[str, ...] = ()             # limits at their bound, described
    prices: dict[tuple[str, str], float] = field(default_factory=dict)   # (resource, dim) -> λ


class LiveSolver:
    """Batch re-solves of the queue for one Allocator. Loop-only (not thread-safe)."""

    def __init__(self, allocator: Allocator, *, budget_s: float = LIVE_BUDGET_S,
                 interval_s: float = LIVE_INTERVAL_S, change: float = LIVE_CHANGE,
                 max_tasks: int = LIVE_MAX_TASKS, min_tasks: int = LIVE_MIN_TASKS,
                 timer: Callable[[], float] | None = None) -> None:
        self.alloc = allocator                    # owner: the caller; read here, prices written
        self.budget_s = budget_s
        self.interval_s = interval_s
        self.change = change
        self.max_tasks = max_tasks
        self.size = max_tasks                     # tasks the next batch takes; halved past the budget
        self.min_tasks = min_tasks
        self._timer = timer or time.perf_counter  # wall time of a solve (tests may pass a fake)
        self.last: Batch | None = None            # the latest batch; owner: update
        self._choice: dict[Hashable, tuple[str, str]] = {}   # key -> (resource, why); owner: update
        self._solved_keys: set[Hashable] = set()  # the queue the last batch saw
        self._solved_at: float | None = None      # clock.monotonic() of the last batch
        self._ids = 0
        self._loading: threading.Thread | None = None
        self.solved = 0                           # batches whose answer was used
        self.fallbacks = 0                        # batches dropped (budget, no solution, error)
        self.solver_s = 0.0                       # s spent in batches, in all

    # ── the loop's call ────────────────────────────────────────────────────
    def update(self, queue: Mapping[Hashable, Task], mode: str, *, now: float | None = None) -> bool:
        """Solve the queue again when it changed enough; True when a batch ran."""
        now = self.alloc.clock.monotonic() if now is None else now
        keys = list(queue)[: self.size]
        for k in list(self._choice):
            if k not in queue:
                del self._choice[k]               # placed or gone: its answer is spent
        if len(keys) < self.min_tasks:
            return False
        new = sum(1 for k in keys if k not in self._solved_keys)
        due = self._solved_at is None or now - self._solved_at >= self.interval_s
        if not due and (new == 0 or new < self.change * len(keys)):
            return False
        if not self._ready():
            self._record(Batch(self._next(), mode, MODE_OBJECTIVE[mode], len(keys), False, "list scheduling",
                               "list scheduling: the HiGHS solver is still loading", 0.0))
            return False
        self._solve({k: queue[k] for k in keys}, mode, now)
        self._solved_keys = set(keys)
        self._solved_at = now
        return True

    def choice(self, key: Hashable) -> tuple[str, str] | None:
        return self._choice.get(key)

    def stats(self) -> dict:
        last = self.last
        return {"batches": self.solved, "fallbacks": self.fallbacks, "solver_ms": round(self.solver_s * 1e3, 3),
                "budget_ms": self.budget_s * 1e3,
                "last": None if last is None else {"id": last.id, "method": last.method, "why": last.why,
                                                   "tasks": last.tasks, "ms": round(last.ms, 3)}}

    # ── one batch ──────────────────────────────────────────────────────────
    def _solve(self, queue: dict[Hashable, Task], mode: str, now: float) -> None:
        figure = MODE_OBJECTIVE[mode]
        bid = self._next()
        try:
            from llmos.alloc.solve import solve
        except ImportError as e:               # scipy missing or broken: list scheduling, said
            self._fallback(Batch(bid, mode, figure, len(queue), False, "list scheduling",
                                 f"list scheduling: the HiGHS solver cannot load ({e})", 0.0))
            return
        t0 = self._timer()
        names: dict[str, Hashable] = {}
        tasks: list[Task] = []
        for i, (key, t) in enumerate(queue.items()):
            name = f"q{i}"
            names[name] = key
            dl = None if t.deadline_s is None else t.deadline_s - now
            tasks.append(replace(t, name=name, deadline_s=dl if dl is not None and dl > 0 else None))
        if figure == "makespan":                  # each busy lane: a pinned task until it is free
            for r, lanes in self.alloc.lane_backlog(now).items():
                tasks += [Task(f"backlog:{r}:{i}", kind="backlog", work=0.0, allowed=(r,),
                               figures={"delay": {r: s}}) for i, s in enumerate(lanes) if s > 0]
        try:
            problem = Problem.build(tasks, self.alloc.free(), learned=self.alloc._learned)
            priced = any(t.demand for t in tasks) and any(r.capacity for r in problem.resources)
            sol = solve(problem, _objective(figure, len(tasks)), time_limit_s=self.budget_s * HIGHS_SHARE,
                        mip_rel_gap=LIVE_GAP, duals=priced, explain=False, whole_tasks=True)
        except LLMOSError as e:               # infeasible now (capacity), or a figure is missing
            ms = (self._timer() - t0) * 1e3
            self._fallback(Batch(bid, mode, figure, len(queue), False, "list scheduling",
                                 f"list scheduling: the HiGHS batch has no answer ({e.message})", ms))
            return
        ms = (self._timer() - t0) * 1e3
        if sol.method == "greedy fallback" or ms > self.budget_s * 1e3 * OVERRUN:
            took = "found no assignment" if sol.method == "greedy fallback" else f"took {ms:.0f} ms"
            self._fallback(Batch(bid, mode, figure, len(queue), False, "list scheduling",
                                 f"list scheduling: the HiGHS batch {took}, past its "
                                 f"{self.budget_s * 1e3:.0f} ms budget", ms))
            return
        binding = tuple(b.describe() for b in sol.binding if b.constraint != "makespan" or figure == "makespan")
        status = "optimal" if sol.optimal else (
            f"best in budget, gap {sol.gap:.1%}" if sol.gap is not None else "best in budget")
        why = (f"HiGHS live batch {bid}: {figure} over {len(queue)} queued task(s), {status}, "
               f"{ms:.0f} ms")
        prices = {k: v for k, v in sol.duals.items() if v > 1e-9}
        if prices:
            top = max(prices.items(), key=lambda kv: kv[1])
            why += f"; congestion price {top[1]:.3g} per {top[0][1]} on {top[0][0]}"
        elif sol.binding and figure == "makespan":
            busiest = next((b for b in sol.binding if b.constraint == "makespan"), None)
            if busiest is not None:
                why += f"; busiest {busiest.resource} ends in {busiest.limit:.3g} s"
        self._choice = {names[t]: (r, why) for t, r in sol.assignment.items() if t in names and r is not None}
        self.alloc.set_prices(sol.duals, figure)
        self.solved += 1
        if ms < self.budget_s * 1e3 / 2 and len(queue) >= self.size:   # room: grow back
            self.size = min(self.max_tasks, self.size + self.size // 2 + 1)
        self._record(Batch(bid, mode, figure, len(queue), True, sol.method, why, ms,
                           value=sol.value, gap=sol.gap, binding=binding, prices=prices))

    def _fallback(self, b: Batch) -> None:
        self._choice = {}
        self.fallbacks += 1
        if b.ms > self.budget_s * 1e3:           # too big for the budget: the next batch takes half
            self.size = max(MIN_SIZE, min(self.size, b.tasks) // 2)
        self._record(b)

    def _record(self, b: Batch) -> None:
        self.last = b
        self.solver_s += b.ms / 1e3

    def _next(self) -> int:
        self._ids += 1
        return self._ids

    def _ready(self) -> bool:
        """True once scipy (the solver module) is imported; starts the import in a thread."""
        if self._loading is not None:
            return not self._loading.is_alive()
        if _SOLVE_MODULE in sys.modules:
            return True
        self._loading = threading.Thread(target=_import_solver, name="llmos-alloc-import", daemon=True)
        self._loading.start()
        return False

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        """Block until the solver is loaded (benchmarks and tools; never the loop)."""
        if not self._ready() and self._loading is not None:
            self._loading.join(timeout_s)
        return self._ready()


def _objective(figure: str, tasks: int) -> Objective:
    """The mode's figure; a makespan batch breaks ties by total run time (faster is better
    for every task off the critical resource)."""
    if figure == "makespan":
        return Objective.of({"makespan": 1.0, "delay": TIE_WEIGHT / max(1, tasks)})
    return Objective.of(figure)


def _import_solver() -> None:
    importlib.import_module(_SOLVE_MODULE)
