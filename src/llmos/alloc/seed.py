"""Seed 002's worked example, solved under each objective and capacity assumption.

Map:
- ``SEED_COST`` / ``SEED_DELAY`` / ``SEED_ASSIGNMENT``: the seed's inputs and its
  stated assignment, read from ``seed.json`` beside this module (data, not answers).
- ``Assumption`` / ``ASSUMPTIONS``: capacity readings to try: none, a task
  count on R1 or R2, or a time budget on R1 (the delays read as run times).
- ``seed_problem(assumption)``: the ``Problem`` for one reading.
- ``seed_report()``: solves every objective × assumption with HiGHS, checks
  each optimum against an enumeration of all 2³ assignments (which also counts
  ties), and finds where the seed's own assignment is the optimum.

Interpretation, stated in the report: the seed gives three delays for three
tasks and two resources, so they are per-task delays d_t, the same on either
resource. Then Σ d·x is 15 s for every complete assignment and the delay
objective cannot choose; delay matters as load, which the makespan
(throughput) objective measures. The seed gives no probabilities or power
figures, so the probability and energy objectives are not posed here.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from llmos.alloc.model import Objective, Problem, Resource, Task
from llmos.alloc.solve import Solution, evaluate, solve

__all__ = ["SEED_COST", "SEED_DELAY", "SEED_ASSIGNMENT", "SEED_OBJECTIVES", "Assumption", "ASSUMPTIONS",
           "seed_problem", "SeedCase", "SeedReport", "seed_report"]

_DATA = json.loads((Path(__file__).with_name("seed.json")).read_text(encoding="utf-8"))
SEED_COST: dict[str, dict[str, float]] = _DATA["cost"]
SEED_DELAY: dict[str, float] = _DATA["delay_s"]     # s, per task (see the module note)
SEED_ASSIGNMENT: dict[str, str] = _DATA["assignment"]
SEED_OBJECTIVES: tuple[str, ...] = tuple(_DATA["objectives"])
RESOURCES: tuple[str, ...] = tuple(_DATA["resources"])


@dataclass(frozen=True)
class Assumption:
    label: str
    r1_tasks: int | None = None      # most tasks R1 may run
    r2_tasks: int | None = None      # most tasks R2 may run
    r1_time_s: float | None = None   # most seconds of work R1 may run (delays as run times)


def _budgets() -> list[float]:
    """The distinct sums of task delays below the total: where a time budget changes what fits."""
    ds = list(SEED_DELAY.values())
    sums = {sum(c) for k in range(1, len(ds)) for c in itertools.combinations(ds, k)}
    return sorted(sums)


ASSUMPTIONS: tuple[Assumption, ...] = (
    Assumption("no capacity limits"),
    Assumption("R1 runs at most 1 task", r1_tasks=1),
    Assumption("R1 runs at most 2 tasks", r1_tasks=2),
    Assumption("R2 runs at most 1 task", r2_tasks=1),
    Assumption("each resource runs at most 2 tasks", r1_tasks=2, r2_tasks=2),
    *(Assumption(f"R1 runs at most {b:g} s of work", r1_time_s=b) for b in _budgets()),
)


def seed_problem(a: Assumption = ASSUMPTIONS[0]) -> Problem:
    tasks = [Task(t, demand={"tasks": 1, "busy_s": SEED_DELAY[t]},
                  figures={"cost": SEED_COST[t], "delay": {r: SEED_DELAY[t] for r in RESOURCES}})
             for t in SEED_COST]
    cap1: dict[str, float] = {}
    cap2: dict[str, float] = {}
    if a.r1_tasks is not None:
        cap1["tasks"] = a.r1_tasks
    if a.r2_tasks is not None:
        cap2["tasks"] = a.r2_tasks
    if a.r1_time_s is not None:
        cap1["busy_s"] = a.r1_time_s
    r1, r2 = RESOURCES
    return Problem.build(tasks, [Resource(r1, capacity=cap1), Resource(r2, capacity=cap2)],
                         notes=list(_DATA["notes"]))


@dataclass(frozen=True)
class SeedCase:
    objective: str
    assumption: Assumption
    solution: Solution
    optimum_count: int             # assignments reaching the optimum (enumeration)
    enumerated_value: float        # the enumeration's optimum (equals the solver's)
    seed_feasible: bool
    seed_value: float | None       # the seed assignment's value here (None: infeasible)

    @property
    def seed_is_optimal(self) -> bool:
        return self.seed_feasible and self.seed_value is not None and \
            abs(self.seed_value - self.solution.value) < 1e-9

    @property
    def seed_status(self) -> str:
        if not self.seed_feasible:
            return "infeasible here"
        if not self.seed_is_optimal:
            return f"not optimal ({self.seed_value:g} vs {self.solution.value:g})"
        return "the unique optimum" if self.optimum_count == 1 else \
            f"optimal, tied with {self.optimum_count - 1} other(s)"


@dataclass(frozen=True)
class SeedReport:
    interpretation: tuple[str, ...]
    cases: tuple[SeedCase, ...]
    seed_totals: dict[str, float]     # the seed assignment's cost, delay, makespan
    summary: tuple[str, ...]          # plain-language findings, derived from the cases


def _feasible(p: Problem, assign: dict[str, str]) -> bool:
    for dim, dem in p.demand.items():
        for j, r in enumerate(p.resources):
            used = sum(dem[i] for i, t in enumerate(p.tasks) if assign[t.name] == r.name)
            if used > p.capacity[dim][j] + 1e-9:
                return False
    return True


def _value(objective: str, totals: dict[str, float]) -> float:
    return totals[objective]


def _fmt_assign(a: dict[str, str | None]) -> str:
    return ", ".join(f"{t}→{r}" for t, r in a.items())


def seed_report(time_limit_s: float = 1.0) -> SeedReport:
    cases = []
    for a in ASSUMPTIONS:
        p = seed_problem(a)
        every = [dict(zip(SEED_COST, combo, strict=True))
                 for combo in itertools.product(RESOURCES, repeat=len(SEED_COST))]
        feasible = [x for x in every if _feasible(p, x)]
        for obj in SEED_OBJECTIVES:
            sol = solve(p, Objective.of(obj), time_limit_s=time_limit_s)
            values = [_value(obj, evaluate(p, x)) for x in feasible]
            best = min(values)
            seed_ok = _feasible(p, SEED_ASSIGNMENT)
            cases.append(SeedCase(obj, a, sol, sum(abs(v - best) < 1e-9 for v in values), best, seed_ok,
                                  _value(obj, evaluate(p, SEED_ASSIGNMENT)) if seed_ok else None))
    seed_totals = evaluate(seed_problem(), SEED_ASSIGNMENT)
    return SeedReport(tuple(seed_problem().notes) + (
        "Σ d·x is then the same for every complete assignment; delay as load is the makespan objective",
        "the seed gives no completion probabilities or power figures: probability and energy are not posed",
    ), tuple(cases), seed_totals, tuple(_summary(cases, seed_totals)))


def _summary(cases: list[SeedCase], seed_totals: dict[str, float]) -> list[str]:
    out = [f"The seed's assignment ({_fmt_assign(SEED_ASSIGNMENT)}) has cost {seed_totals['cost']:g}, "
           f"total delay {seed_totals['delay']:g} s and makespan {seed_totals['makespan']:g} s."]
    free = {c.objective: c for c in cases if c.assumption is ASSUMPTIONS[0]}
    c = free["cost"]
    if c.seed_is_optimal:
        out.append("Without capacity limits it is cost-optimal.")
    else:
        out.append(f"Without capacity limits it is not cost-optimal: the optimum costs {c.solution.value:g} "
                   f"({_fmt_assign(c.solution.assignment)}), {seed_totals['cost'] - c.solution.value:g} less.")
    d = free["delay"]
    if d.optimum_count == 2 ** len(SEED_COST):
        out.append(f"Total delay is {d.solution.value:g} s for all {d.optimum_count} assignments: "
                   "with per-task delays the delay objective cannot choose.")
    for obj in ("cost", "makespan"):
        unique = [x.assumption.label for x in cases if x.objective == obj and x.seed_status == "the unique optimum"]
        tied = [x.assumption.label for x in cases if x.objective == obj and x.seed_is_optimal
                and x.optimum_count > 1]
        not_opt = [x for x in cases if x.objective == obj and x.seed_feasible and not x.seed_is_optimal]
        if unique:
            out.append(f"Under {obj}, the solver chooses exactly the seed's assignment when: "
                       f"{'; '.join(unique)}.")
        if tied:
            out.append(f"Under {obj}, it ties with other optima when: {'; '.join(tied)}.")
        if not unique and not tied:
            out.append(f"Under {obj}, no tested assumption makes it optimal.")
        cap1 = [x for x in not_opt if x.assumption.r1_tasks == 1 and x.assumption.r2_tasks is None]
        if cap1:
            x = cap1[0]
            out.append(f"Under {obj} with R1 limited to one task it is still not optimal: "
                       f"{_fmt_assign(x.solution.assignment)} gives {x.solution.value:g} "
                       f"vs the seed's {x.seed_value:g}.")
    budgets = [x.assumption.r1_time_s for x in cases
               if x.objective == "cost" and x.assumption.r1_time_s is not None
               and x.seed_status == "the unique optimum"]
    if budgets:
        allb = _budgets()
        hi = next((b for b in allb if b > max(budgets)), None)
        rng = f"{min(budgets):g} s ≤ budget < {hi:g} s" if hi is not None else f"budget ≥ {min(budgets):g} s"
        fits = [f"{t} ({d:g} s)" for t, d in SEED_DELAY.items() if d <= max(budgets)]
        out.append(f"Reading: the seed's assignment is what a cost-minimizing allocator picks when R1 can "
                   f"run only {rng} of work, so only {', '.join(fits)} fits on R1.")
    return out
