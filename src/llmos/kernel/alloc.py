"""The allocator: where work runs. Batch solves on HiGHS, incremental placement per step.

Map:
- ``Allocator.solve(problem | tasks, ...)``: the seeds' models solved exactly
  (``alloc_solve.solve``); caches the capacity shadow prices it finds.
- ``Allocator.place(task, mode=...) -> Placement | None``: one task, now, without a
  re-solve: predicted start/finish per resource from its lanes' queues, figures
  learned from measurements, deadline check with a safety margin, then the
  mode's rule. ``None`` means "no room now" (retry after a release);
  ``AllocError`` means the task can never fit (it names the resource).
- ``Allocator.release(placement, seconds=..., joules=...)``: frees capacity and
  the lane, and learns the resource's speed and joules per unit of work.
- ``Allocator.observe(...)``: feed a measurement directly (EWMA).
- Re-exported: ``Task``, ``Resource``, ``Objective``, ``Problem``,
  ``problem_from_dict``, ``Solution``, ``Binding``, ``solve``, ``lp_bound``, ``MODES``.

NOTE (placement rules). Each resource r has ``lanes`` FIFO servers; the
allocator keeps the predicted time each lane's queued work ends. For task t, on
every resource that may run it and has capacity left now:
  start = max(now, earliest lane end), finish = start + d_tr,
  on time ⇔ finish + margin·d_tr ≤ deadline.
On-time candidates always rank before late ones (late ones rank by finish). Then:
  latency     earliest finish
  throughput  smallest resulting makespan max(busiest lane end, finish), then
              the shortest run (least resource-time used), then finish
  cost        least c_tr + Σ_k λ_rk·a_tk, then finish
  energy      least e_tr + Σ_k λ_rk·a_tk (marginal joules), then finish
λ_rk are the LP shadow prices of resource capacities from the last batch solve
with the same objective (congestion prices; zero until a solve supplies them).
Unstated figures (NaN) rank last. This is list scheduling: O(R·lanes) per call.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from llmos.clock import Clock, SystemClock
from llmos.errors import AllocError, InvalidArgument
from llmos.kernel.alloc_model import (
    FIGURES,
    MODE_OBJECTIVE,
    OBJECTIVES,
    Learned,
    Objective,
    PairFigures,
    Problem,
    Resource,
    Task,
    _check_resource,
    _check_task,
    _may_run,
    pair_figures,
    problem_from_dict,
)
from llmos.kernel.alloc_solve import Binding, Solution, alloc_error, evaluate, greedy, lp_bound, solve

__all__ = ["Allocator", "Placement", "Task", "Resource", "Objective", "Problem", "Solution", "Binding",
           "Learned", "problem_from_dict", "solve", "lp_bound", "evaluate", "greedy", "MODES", "FIGURES",
           "OBJECTIVES", "MODE_OBJECTIVE", "DEADLINE_MARGIN", "LEARN_RATE"]

MODES = tuple(MODE_OBJECTIVE)          # throughput, latency, cost, energy
DEADLINE_MARGIN = 0.2                  # a run must end this fraction of its run time before the deadline
LEARN_RATE = 0.3                       # EWMA weight of a new measurement


@dataclass(frozen=True)
class Placement:
    id: int                            # unique per Allocator
    task: Task
    resource: str
    mode: str
    lane: int                          # which of the resource's lanes
    placed_s: float                    # clock.monotonic() at placement
    start_s: float                     # predicted start (monotonic s)
    delay_s: float                     # predicted run time, s
    finish_s: float                    # predicted end (monotonic s)
    cost: float                        # NaN when not stated
    energy_j: float                    # predicted marginal joules; NaN when not stated
    probability: float                 # NaN when not stated
    meets_deadline: bool | None        # None: no deadline
    reason: str                        # one line: why this resource


@dataclass
class _ResourceState:
    resource: Resource
    lane_end: list[float]                                     # monotonic s; owner: place/release
    used: dict[str, float] = field(default_factory=dict)      # capacity units held; owner: place/release
    outstanding: dict[int, Placement] = field(default_factory=dict)  # by placement id


class Allocator:
    """Places work on resources. Not thread-safe: call it from the kernel loop."""

    def __init__(self, resources: Iterable[Resource] = (), *, mode: str = "throughput",
                 clock: Clock | None = None, time_limit_s: float = 1.0,
                 deadline_margin: float = DEADLINE_MARGIN, learn_rate: float = LEARN_RATE) -> None:
        self.mode = _check_mode(mode)                  # default mode (config.alloc_mode)
        self.clock = clock or SystemClock()
        self.time_limit_s = time_limit_s               # s, HiGHS limit for solve()
        self.deadline_margin = deadline_margin
        self.learn_rate = learn_rate
        self._res: dict[str, _ResourceState] = {}      # owner: add/remove_resource
        self._learned: dict[tuple[str, str], Learned] = {}   # (resource, kind) -> figures; owner: observe
        self._prices: dict[tuple[str, str], float] = {}      # (resource, dim) -> λ ≥ 0; owner: solve
        self._prices_for: str | None = None            # objective figure the prices belong to
        self._ids = itertools.count(1)
        for r in resources:
            self.add_resource(r)

    # ── resources ──────────────────────────────────────────────────────────
    @property
    def resources(self) -> list[Resource]:
        return [s.resource for s in self._res.values()]

    def add_resource(self, r: Resource) -> None:
        _check_resource(r, len(self._res))
        if r.name in self._res:
            raise InvalidArgument(f"resource {r.name!r} already exists", field="resource.name",
                                  expected="a new name")
        now = self.clock.monotonic()
        self._res[r.name] = _ResourceState(r, [now] * r.lanes)

    def remove_resource(self, name: str) -> None:
        st = self._res.get(name)
        if st is None:
            raise InvalidArgument(f"unknown resource {name!r}", field="resource", expected="a known resource")
        if st.outstanding:
            raise AllocError(f"resource {name} still runs {len(st.outstanding)} placement(s)",
                             hint="release them first")
        del self._res[name]
        self._prices = {k: v for k, v in self._prices.items() if k[0] != name}

    def learned(self, resource: str, kind: str) -> Learned | None:
        return self._learned.get((resource, kind))

    # ── batch ──────────────────────────────────────────────────────────────
    def problem(self, tasks: Sequence[Task], *, horizon_s: float | None = None) -> Problem:
        """A Problem over this allocator's resources with its learned figures."""
        return Problem.build(tasks, self.resources, horizon_s=horizon_s, learned=self._learned)

    def solve(self, problem: Problem | Sequence[Task], *, objective: Objective | str | Mapping | None = None,
              mode: str | None = None, time_limit_s: float | None = None) -> Solution:
        if not isinstance(problem, Problem):
            problem = self.problem(problem)
        obj = Objective.of(objective) if objective is not None else Objective.for_mode(
            _check_mode(mode or self.mode))
        sol = solve(problem, obj, time_limit_s=time_limit_s or self.time_limit_s)
        self._prices = {k: max(0.0, v) for k, v in sol.duals.items() if v > 1e-9}
        self._prices_for = obj.single
        return sol

    # ── incremental ────────────────────────────────────────────────────────
    def place(self, task: Task, *, mode: str | None = None, now: float | None = None) -> Placement | None:
        mode = _check_mode(mode or self.mode)
        _check_task(task, 0, set(self._res))
        now = self.clock.monotonic() if now is None else now
        span = max((max(s.lane_end) for s in self._res.values()), default=now)
        span = max(span, now)
        figure = MODE_OBJECTIVE[mode]
        cands = []
        for st in self._res.values():
            r = st.resource
            if not _may_run(task, r) or not self._fits(task, st):
                continue
            f = pair_figures(task, r, self._learned.get((r.name, task.kind)))
            lane = min(range(r.lanes), key=lambda k: st.lane_end[k])
            start = max(now, st.lane_end[lane])
            finish = start + f.delay
            on_time = None if task.deadline_s is None else \
                finish + self.deadline_margin * f.delay <= task.deadline_s
            cands.append((r, f, lane, start, finish, on_time))
        if not cands:
            self._never_fits(task)
            return None

        def key(c: tuple) -> tuple:
            r, f, _lane, _start, finish, on_time = c
            if on_time is False:
                return (1, finish)
            if mode == "latency":
                return (0, finish, f.delay)
            if mode == "throughput":
                return (0, max(span, finish), f.delay, finish)
            val = f.cost if figure == "cost" else f.energy
            if math.isnan(val):
                return (0, math.inf, finish)
            return (0, val + self._price(r, task, figure), finish)

        cands.sort(key=key)
        r, f, lane, start, finish, on_time = cands[0]
        p = Placement(next(self._ids), task, r.name, mode, lane, now, start, f.delay, finish, f.cost,
                      f.energy, f.probability, on_time, self._reason(mode, cands, now))
        st = self._res[r.name]
        st.lane_end[lane] = finish
        for k, v in task.demand.items():
            st.used[k] = st.used.get(k, 0.0) + v
        st.outstanding[p.id] = p
        return p

    def release(self, placement: Placement, *, seconds: float | None = None, joules: float | None = None,
                ok: bool = True, now: float | None = None) -> None:
        """The placement ended (or was cancelled: ``seconds=None``). Frees capacity; learns figures."""
        st = self._res.get(placement.resource)
        if st is None or placement.id not in st.outstanding:
            raise InvalidArgument(f"placement {placement.id} of {placement.task.name} is not outstanding",
                                  field="placement", expected="a placement from place() not yet released")
        now = self.clock.monotonic() if now is None else now
        del st.outstanding[placement.id]
        for k, v in placement.task.demand.items():
            st.used[k] = max(0.0, st.used.get(k, 0.0) - v)
        lane = placement.lane
        queued_after = st.lane_end[lane] > placement.finish_s + 1e-9
        if not queued_after:
            st.lane_end[lane] = now
        elif seconds is None and now < placement.start_s:     # cancelled before it started
            st.lane_end[lane] = max(now, st.lane_end[lane] - placement.delay_s)
        else:                                                 # later work shifts by the prediction error
            st.lane_end[lane] = max(now, st.lane_end[lane] + (now - placement.finish_s))
        explicit = placement.resource in placement.task.figures.get("delay", {})
        if seconds is not None and seconds > 0 and placement.task.work > 0 and not explicit:
            self.observe(placement.resource, placement.task.kind, work=placement.task.work,
                         seconds=seconds, joules=joules, ok=ok)

    def observe(self, resource: str, kind: str, *, work: float, seconds: float,
                joules: float | None = None, ok: bool = True) -> Learned:
        """Fold one measurement into the (resource, kind) figures (EWMA)."""
        if resource not in self._res:
            raise InvalidArgument(f"unknown resource {resource!r}", field="resource", expected="a known resource")
        if not (work > 0 and seconds > 0):
            raise InvalidArgument("observe: work and seconds must be > 0", field="seconds", expected="> 0")
        a = self.learn_rate
        r = self._res[resource].resource
        lr = self._learned.setdefault((resource, kind), Learned())
        speed = work / seconds
        lr.speed = (1 - a) * (lr.speed or r.speed) + a * speed
        if joules is not None:
            jpu = joules / work
            lr.joules_per_unit = jpu if lr.joules_per_unit is None else (1 - a) * lr.joules_per_unit + a * jpu
        prior = lr.p_success if lr.p_success is not None else (r.p_success if r.p_success is not None else 1.0)
        lr.p_success = (1 - a) * prior + a * (1.0 if ok else 0.0)
        lr.samples += 1
        return lr

    def load(self) -> dict[str, dict]:
        now = self.clock.monotonic()
        return {name: {"outstanding": len(st.outstanding),
                       "backlog_s": sum(max(0.0, e - now) for e in st.lane_end),
                       "used": dict(st.used), "capacity": dict(st.resource.capacity)}
                for name, st in self._res.items()}

    # ── helpers ────────────────────────────────────────────────────────────
    @staticmethod
    def _fits(task: Task, st: _ResourceState) -> bool:
        cap = st.resource.capacity
        return all(st.used.get(k, 0.0) + v <= cap[k] + 1e-9 for k, v in task.demand.items() if k in cap)

    def _never_fits(self, task: Task) -> None:
        runnable = [st for st in self._res.values() if _may_run(task, st.resource)]
        if not runnable:
            want = ", ".join(sorted(task.needs)) or "an allowed resource"
            raise alloc_error(f"task {task.name} cannot be placed: no resource provides {want}",
                              hint="add a resource that provides it, or change the task's needs")
        for k, v in task.demand.items():
            caps = [(st.resource.capacity.get(k, math.inf), st.resource.name) for st in runnable]
            best, name = max(caps)
            if v > best + 1e-9:
                raise alloc_error(f"task {task.name} needs {v:g} {k} but the most any resource has is "
                                  f"{best:g} on {name}", resource=name, constraint=f"capacity {k}")

    def _price(self, r: Resource, task: Task, figure: str) -> float:
        if self._prices_for != figure or not self._prices:
            return 0.0
        return sum(self._prices.get((r.name, k), 0.0) * v for k, v in task.demand.items())

    @staticmethod
    def _reason(mode: str, cands: list, now: float) -> str:
        r, f, _l, start, finish, on_time = cands[0]
        what = {"latency": "earliest finish", "throughput": "smallest makespan",
                "cost": "least cost", "energy": "least energy"}[mode]
        s = f"{mode}: {r.name} ({what}; {_figs(f)}, ends in {finish - now:.3g} s"
        s += ")" if on_time is None else (", on time)" if on_time else ", LATE: no resource meets the deadline)")
        if len(cands) > 1:
            r2, f2, *_rest, finish2, _ = cands[1]
            s += f"; next best {r2.name} ({_figs(f2)}, ends in {finish2 - now:.3g} s)"
        return s


def _figs(f: PairFigures) -> str:
    parts = [f"{f.delay:.3g} s"]
    if not math.isnan(f.energy):
        parts.append(f"{f.energy:.3g} J")
    if not math.isnan(f.cost):
        parts.append(f"cost {f.cost:.3g}")
    return ", ".join(parts)


def _check_mode(mode: str) -> str:
    if mode not in MODE_OBJECTIVE:
        raise InvalidArgument(f"alloc mode: unknown {mode!r}", field="alloc_mode",
                              expected=f"one of {', '.join(MODE_OBJECTIVE)}")
    return mode
