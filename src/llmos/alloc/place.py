"""The allocator: where work runs. Batch solves on HiGHS, incremental placement per step.

Map:
- ``Allocator.solve(problem | tasks, ...)``: the seeds' models solved exactly
  (``alloc.solve.solve``, scipy imported on first use); caches the capacity shadow
  prices it finds.
- ``Allocator.place(task, mode=...) -> Placement | None``: one task, now, without a
  re-solve: predicted start/finish per resource from its lanes' queues, figures
  learned from measurements, deadline check with a safety margin, then the
  mode's rule. ``None`` means "no room now" (retry after a release);
  ``AllocError`` means the task can never fit (it names the resource).
- ``Allocator.check(task)``: raise ``AllocError`` (naming the resource) when the
  task could never be placed, whatever else runs; admission asks this.
- ``Allocator.started(placement)``: the kernel began running it (its lane is busy).
- ``Allocator.release(placement, seconds=..., joules=...)``: frees capacity and
  the lane, and learns the resource's speed, joules per unit of work and how
  far measured run times stray from predictions.
- ``Allocator.observe(...)``: feed a measurement directly (EWMA).

NOTE (placement rules). Each resource r runs its placements first-in first-out
on ``lanes`` servers. To predict, the allocator replays r's outstanding
placements: started ones end at start + predicted run time, queued ones follow
in order on the earliest free lane (a placement not yet reported started counts
as queued, which errs late). For task t, on every resource that may run it and
has capacity left now:
  start = earliest lane end after the replay, finish = start + d_tr,
  on time ⇔ finish + m_r·(finish − now) ≤ deadline,
where m_r = max(deadline_margin, exp(z·σ_r) − 1) and σ_r is the measured spread
of log(run time / prediction) on r for t's kind (z = MARGIN_Z, about the 99.5th
percentile), so the margin grows with how wrong predictions have been.
On-time candidates always rank before late ones (late ones rank by finish). Then:
  latency     earliest finish
  throughput  smallest resulting makespan max(busiest lane end, finish), then
              the shortest run (least resource-time used), then finish
  cost        least c_tr + Σ_k λ_rk·a_tk, then finish
  energy      least e_tr + Σ_k λ_rk·a_tk (marginal joules), then finish
λ_rk are the LP shadow prices of resource capacities from the last batch solve
with the same objective (congestion prices; zero until a solve supplies them).
Unstated figures (NaN) rank last. This is list scheduling: O(outstanding) per call.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from llmos.alloc.model import (
    FIGURES,
    MODE_OBJECTIVE,
    OBJECTIVES,
    Learned,
    Objective,
    PairFigures,
    Problem,
    Resource,
    Solution,
    Task,
    _check_resource,
    _check_task,
    _may_run,
    alloc_error,
    pair_figures,
    unplaceable,
)
from llmos.clock import Clock, SystemClock
from llmos.errors import AllocError, InvalidArgument

__all__ = ["Allocator", "Placement", "MODES", "FIGURES", "OBJECTIVES", "MODE_OBJECTIVE", "DEADLINE_MARGIN",
           "LEARN_RATE", "MARGIN_Z"]

MODES = tuple(MODE_OBJECTIVE)          # throughput, latency, cost, energy
DEADLINE_MARGIN = 0.2                  # least safety margin, as a fraction of the time until the finish
LEARN_RATE = 0.2                       # EWMA step once a figure has 1/LEARN_RATE samples (1/n before)
MARGIN_Z = 2.58                        # margin quantile on the measured prediction spread (≈ 99.5 %)


@dataclass(frozen=True)
class Placement:
    id: int                            # unique per Allocator
    task: Task
    resource: str
    mode: str
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
    used: dict[str, float] = field(default_factory=dict)      # capacity units held; owner: place/release
    outstanding: dict[int, Placement] = field(default_factory=dict)  # by id, in placement (FIFO) order
    started: dict[int, float] = field(default_factory=dict)   # id -> monotonic s it began; owner: started()
    peak: dict[str, float] = field(default_factory=dict)      # most capacity ever read per dim (never-fits
    #                                                           check); owner: add_resource/set_capacity

    def __post_init__(self) -> None:
        self.peak = dict(self.resource.capacity)

    def lane_ends(self, now: float) -> list[float]:
        """Predicted end of each lane's work, replaying the FIFO queue (a heap, earliest first)."""
        ends = [max(now, self.started[i] + p.delay_s) for i, p in self.outstanding.items() if i in self.started]
        ends.sort()
        extra = ends[self.resource.lanes:]                    # more reported running than lanes: queue them
        ends = ends[: self.resource.lanes] + [now] * max(0, self.resource.lanes - len(ends))
        heapq.heapify(ends)
        for e in extra:
            heapq.heappush(ends, heapq.heappop(ends) + (e - now))
        for i, p in self.outstanding.items():
            if i not in self.started:
                heapq.heappush(ends, heapq.heappop(ends) + p.delay_s)
        return ends


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
        self._res[r.name] = _ResourceState(r)

    def remove_resource(self, name: str) -> None:
        st = self._res.get(name)
        if st is None:
            raise InvalidArgument(f"unknown resource {name!r}", field="resource", expected="a known resource")
        if st.outstanding:
            raise AllocError(f"resource {name} still runs {len(st.outstanding)} placement(s)",
                             hint="release them first")
        del self._res[name]
        self._prices = {k: v for k, v in self._prices.items() if k[0] != name}

    def set_capacity(self, name: str, capacity: Mapping[str, float]) -> None:
        """Capacity as measured now (the HAL, while running); what is held stays held, so a
        resource that shrank below it takes no new work until enough is released. Work is
        refused for good only past the most this resource ever had (it may come back)."""
        st = self._res.get(name)
        if st is None:
            raise InvalidArgument(f"unknown resource {name!r}", field="resource", expected="a known resource")
        st.resource = replace(st.resource, capacity=dict(capacity))
        for k, v in capacity.items():
            st.peak[k] = max(v, st.peak.get(k, v))

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
        from llmos.alloc.solve import solve  # scipy: imported on the first batch solve

        sol = solve(problem, obj, time_limit_s=time_limit_s or self.time_limit_s)
        self.set_prices(sol.duals, obj.single)
        return sol

    def set_prices(self, duals: Mapping[tuple[str, str], float], figure: str | None) -> None:
        """Congestion prices λ (per unit of each (resource, dimension)) from a solve whose
        objective was ``figure``; ``place`` adds Σ_k λ_rk·a_tk in that figure's mode."""
        self._prices = {k: max(0.0, v) for k, v in duals.items() if v > 1e-9 and k[0] in self._res}
        self._prices_for = figure

    @property
    def prices(self) -> dict[tuple[str, str], float]:
        return dict(self._prices)

    def backlog(self, now: float | None = None) -> dict[str, float]:
        """Lane-seconds of outstanding work per resource (what a new batch queues behind)."""
        now = self.clock.monotonic() if now is None else now
        return {name: sum(max(0.0, e - now) for e in st.lane_ends(now)) for name, st in self._res.items()}

    def lane_backlog(self, now: float | None = None) -> dict[str, list[float]]:
        """Seconds until each lane of each resource is free (the FIFO queue replayed)."""
        now = self.clock.monotonic() if now is None else now
        return {name: sorted(max(0.0, e - now) for e in st.lane_ends(now)) for name, st in self._res.items()}

    def free(self) -> list[Resource]:
        """The resources with what capacity is left now (held placements subtracted)."""
        return [replace(st.resource, capacity={k: max(0.0, v - st.used.get(k, 0.0))
                                               for k, v in st.resource.capacity.items()})
                for st in self._res.values()]

    # ── incremental ────────────────────────────────────────────────────────
    def place(self, task: Task, *, mode: str | None = None, now: float | None = None,
              solved: tuple[str, str] | None = None, note: str | None = None) -> Placement | None:
        """``solved``: (resource, why) a batch solve chose for this task; taken when that
        resource may run it and has room now, else the mode's rule decides (and says so).
        ``note``: appended to the reason when the mode's rule decided (why no batch did)."""
        mode = _check_mode(mode or self.mode)
        _check_task(task, 0, set(self._res))
        now = self.clock.monotonic() if now is None else now
        ends = {name: st.lane_ends(now) for name, st in self._res.items()}
        span = max((max(e) for e in ends.values()), default=now)
        figure = MODE_OBJECTIVE[mode]
        cands = []
        for st in self._res.values():
            r = st.resource
            if not _may_run(task, r) or not self._fits(task, st):
                continue
            f = pair_figures(task, r, self._learned.get((r.name, task.kind)))
            start = ends[r.name][0]                      # heap: the earliest lane end
            finish = start + f.delay
            on_time = None if task.deadline_s is None else \
                finish + self.margin(r.name, task.kind) * (finish - now) <= task.deadline_s
            cands.append((r, f, start, finish, on_time))
        if not cands:
            self._never_fits(task)
            return None

        def key(c: tuple) -> tuple:
            r, f, _start, finish, on_time = c
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
        reason = self._reason(mode, cands, now)
        if solved is not None:
            pick = next((c for c in cands if c[0].name == solved[0]), None)
            if pick is not None:
                listed = cands[0][0].name
                cands.remove(pick)
                cands.insert(0, pick)
                reason = f"{mode}: {solved[0]} ({solved[1]}" + (
                    "; list scheduling agrees)" if listed == solved[0] else f"; list scheduling would pick {listed})")
            else:
                reason += f"; list scheduling: the batch solve chose {solved[0]}, which has no room now"
        elif note:
            reason += f"; {note}"
        r, f, start, finish, on_time = cands[0]
        p = Placement(next(self._ids), task, r.name, mode, now, start, f.delay, finish, f.cost,
                      f.energy, f.probability, on_time, reason)
        st = self._res[r.name]
        for k, v in task.demand.items():
            st.used[k] = st.used.get(k, 0.0) + v
        st.outstanding[p.id] = p
        return p

    def check(self, task: Task) -> None:
        """Raise AllocError when ``task`` can never be placed (no resource provides what it
        needs, or it demands more than any such resource has); else return."""
        _check_task(task, 0, set(self._res))
        self._never_fits(task)

    def started(self, placement: Placement, *, now: float | None = None) -> None:
        """The kernel began running ``placement``: its lane is busy from ``now``."""
        st = self._outstanding(placement)
        st.started[placement.id] = self.clock.monotonic() if now is None else now

    def release(self, placement: Placement, *, seconds: float | None = None, joules: float | None = None,
                ok: bool = True, now: float | None = None) -> None:
        """The placement ended (or was cancelled: ``seconds=None``). Frees capacity; learns figures."""
        st = self._outstanding(placement)
        del st.outstanding[placement.id]
        st.started.pop(placement.id, None)
        for k, v in placement.task.demand.items():
            st.used[k] = max(0.0, st.used.get(k, 0.0) - v)
        explicit = placement.resource in placement.task.figures.get("delay", {})
        if seconds is not None and seconds > 0 and placement.task.work > 0 and not explicit:
            self.observe(placement.resource, placement.task.kind, work=placement.task.work,
                         seconds=seconds, joules=joules, ok=ok, predicted_s=placement.delay_s)

    def observe(self, resource: str, kind: str, *, work: float, seconds: float,
                joules: float | None = None, ok: bool = True, predicted_s: float | None = None) -> Learned:
        """Fold one measurement into the (resource, kind) figures (EWMA, plain mean at first)."""
        if resource not in self._res:
            raise InvalidArgument(f"unknown resource {resource!r}", field="resource", expected="a known resource")
        if not (work > 0 and seconds > 0):
            raise InvalidArgument("observe: work and seconds must be > 0", field="seconds", expected="> 0")
        r = self._res[resource].resource
        lr = self._learned.setdefault((resource, kind), Learned())
        a = max(self.learn_rate, 1.0 / (lr.samples + 1))

        def ewma(old: float | None, new: float) -> float:
            return new if old is None else (1 - a) * old + a * new

        lr.speed = ewma(lr.speed, work / seconds)
        if joules is not None:
            lr.joules_per_unit = ewma(lr.joules_per_unit, joules / work)
        prior = lr.p_success if lr.p_success is not None else (r.p_success if r.p_success is not None else 1.0)
        lr.p_success = (1 - a) * prior + a * (1.0 if ok else 0.0)
        if predicted_s is not None and predicted_s > 0:
            lr.log_err_var = ewma(lr.log_err_var, math.log(seconds / predicted_s) ** 2)
        lr.samples += 1
        return lr

    def margin(self, resource: str, kind: str) -> float:
        """Safety margin for deadlines on ``resource`` (fraction of the time until the finish)."""
        lr = self._learned.get((resource, kind))
        if lr is None or lr.log_err_var is None:
            return self.deadline_margin
        return max(self.deadline_margin, math.exp(MARGIN_Z * math.sqrt(lr.log_err_var)) - 1.0)

    def load(self) -> dict[str, dict]:
        now = self.clock.monotonic()
        return {name: {"outstanding": len(st.outstanding), "running": len(st.started),
                       "backlog_s": sum(max(0.0, e - now) for e in st.lane_ends(now)),
                       "used": dict(st.used), "capacity": dict(st.resource.capacity)}
                for name, st in self._res.items()}

    # ── helpers ────────────────────────────────────────────────────────────
    def _outstanding(self, placement: Placement) -> _ResourceState:
        st = self._res.get(placement.resource)
        if st is None or placement.id not in st.outstanding:
            raise InvalidArgument(f"placement {placement.id} of {placement.task.name} is not outstanding",
                                  field="placement", expected="a placement from place() not yet released")
        return st

    @staticmethod
    def _fits(task: Task, st: _ResourceState) -> bool:
        cap = st.resource.capacity
        return all(st.used.get(k, 0.0) + v <= cap[k] + 1e-9 for k, v in task.demand.items() if k in cap)

    def _never_fits(self, task: Task) -> None:
        runnable = [st for st in self._res.values() if _may_run(task, st.resource)]
        if not runnable:
            raise unplaceable(task)
        for k, v in task.demand.items():
            caps = [(st.peak.get(k, math.inf), st.resource.name) for st in runnable]
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
        r, f, start, finish, on_time = cands[0]
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
