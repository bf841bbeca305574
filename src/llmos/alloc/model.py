"""The allocation model: tasks, resources, objectives, and the pair figures between them.

Map:
- ``Task``: work to place (kind, work units, capacity demand, labels it needs,
  deadline, optional, explicit per-resource figures).
- ``Resource``: a device, engine or remote endpoint (capacity per dimension,
  parallel lanes, speed, cost, power figures, the labels it provides).
- ``Learned``: per (resource, task kind) figures measured by the kernel; they
  override a resource's configured speed / joules / success rate.
- ``pair_figures(task, resource, learned)``: the seed models' c, d, p, e of one pair.
- ``Objective``: a figure to optimize or a weighted mix; ``Objective.for_mode``.
- ``Problem.build(tasks, resources, ...)``: the dense T×R matrices the solver reads.
- ``problem_from_dict(data)``: a JSON/YAML problem, validated field by field.

NOTE (the seeds' models, one formulation). x_tr ∈ {0,1} puts task t on resource r.
  cost        min Σ c_tr·x_tr                     (seed 002, task allocation)
  delay       min Σ d_tr·x_tr                     (seed 002, scheduling)
  probability max Σ p_tr·x_tr                     (seed 002, decision model)
  energy      min Σ e_tr·x_tr  s.t. deadlines and, with a horizon H and a power
              cap, Σ_t e_tr·x_tr / H ≤ P_max_r    (seed 000: min P s.t. C ≤ αP;
              with α_r work units per joule, e_tr = w_t/α_r, so the cap reads
              Σ w·x ≤ α_r·P_max_r·H, i.e. C ≤ αP)
  makespan    min z  s.t. Σ_t d_tr·x_tr ≤ lanes_r·z   (throughput: the busiest resource)
subject to Σ_r x_tr = 1 (≤ 1 for optional tasks), capacities Σ_t a_tk·x_tr ≤ cap_rk,
and deadlines: on each resource, for every deadline D, Σ_{t: D_t ≤ D} d_tr·x_tr ≤
lanes_r·D (earliest-deadline-first is feasible iff these hold; exact for one lane,
a fluid bound for several).
Energy figures are marginal: e_tr = (power_w − idle_w)·d_tr, because idle power is
paid whether or not the task runs; or w_t/α_r when an efficiency α is stated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmos.errors import AllocError, InvalidArgument

__all__ = ["FIGURES", "OBJECTIVES", "MODE_OBJECTIVE", "Task", "Resource", "Learned", "PairFigures",
           "pair_figures", "Objective", "Problem", "problem_from_dict", "Binding", "Solution",
           "alloc_error", "unplaceable"]

FIGURES = ("cost", "delay", "probability", "energy")
OBJECTIVES = (*FIGURES, "makespan")
MODE_OBJECTIVE = {"throughput": "makespan", "latency": "delay", "cost": "cost", "energy": "energy"}
UNITS = {"cost": "", "delay": "s", "probability": "", "energy": "J", "makespan": "s"}


@dataclass(frozen=True)
class Task:
    name: str
    kind: str = "job"                                   # "llm" | "tool" | "job": learned figures key
    work: float = 1.0                                   # work units (tokens, CPU-seconds at speed 1)
    demand: Mapping[str, float] = field(default_factory=dict)   # per capacity dimension, held while placed
    needs: frozenset[str] = frozenset()                 # labels a resource must provide ("model:x", "gpu")
    allowed: tuple[str, ...] | None = None              # resource names it may use (None: any)
    deadline_s: float | None = None                     # s from now (batch) / absolute monotonic (place)
    optional: bool = False                              # may stay unassigned (decision model)
    figures: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # {"cost": {"R1": 1.0}}


@dataclass(frozen=True)
class Resource:
    name: str
    kind: str = "device"                                # cpu | gpu | engine | remote | device
    capacity: Mapping[str, float] = field(default_factory=dict)  # per dimension; absent = unlimited
    provides: frozenset[str] = frozenset()              # labels (models served, "gpu", ...)
    lanes: int = 1                                      # tasks that run at once
    speed: float = 1.0                                  # work units per second (per lane)
    cost_per_unit: float | None = None                  # cost per work unit
    power_w: float | None = None                        # W per busy lane
    idle_w: float = 0.0                                 # W per idle lane (paid anyway)
    efficiency: float | None = None                     # α, work units per joule (seed: C ≤ αP)
    max_power_w: float | None = None                    # P cap, W averaged over the horizon
    p_success: float | None = None                      # completion probability of a task here


@dataclass
class Learned:
    """Per (resource, kind) figures measured by the kernel (EWMA). Owner: Allocator.observe."""

    speed: float | None = None          # work units per second
    joules_per_unit: float | None = None  # marginal J per work unit
    p_success: float | None = None      # fraction of runs that completed
    log_err_var: float | None = None    # EWMA of log(measured s / predicted s)², the prediction spread
    samples: int = 0


@dataclass(frozen=True)
class PairFigures:
    delay: float            # s, run time of the task on the resource
    cost: float             # NaN when not stated
    probability: float      # NaN when not stated
    energy: float           # J (marginal); NaN when not stated


def pair_figures(task: Task, res: Resource, learned: Learned | None = None) -> PairFigures:
    """Explicit task figures win; otherwise derive from the resource's (learned) rates."""
    ex = task.figures

    def explicit(name: str) -> float | None:
        m = ex.get(name)
        return float(m[res.name]) if m is not None and res.name in m else None

    speed = learned.speed if learned and learned.speed else res.speed
    d = explicit("delay")
    if d is None:
        d = task.work / speed
    c = explicit("cost")
    if c is None:
        c = task.work * res.cost_per_unit if res.cost_per_unit is not None else math.nan
    p = explicit("probability")
    if p is None:
        p = (learned.p_success if learned and learned.p_success is not None else res.p_success)
        p = math.nan if p is None else p
    e = explicit("energy")
    if e is None:
        if learned and learned.joules_per_unit is not None:
            e = task.work * learned.joules_per_unit
        elif res.efficiency:
            e = task.work / res.efficiency
        elif res.power_w is not None:
            e = max(0.0, res.power_w - res.idle_w) * d
        else:
            e = math.nan
    return PairFigures(delay=float(d), cost=float(c), probability=float(p), energy=float(e))


def _may_run(task: Task, res: Resource) -> bool:
    if task.allowed is not None and res.name not in task.allowed:
        return False
    return task.needs <= res.provides


@dataclass(frozen=True)
class Objective:
    """Minimize Σ_k weight_k·figure_k; probability enters with a minus sign (maximized)."""

    weights: tuple[tuple[str, float], ...]

    @classmethod
    def of(cls, spec: str | Mapping[str, float] | Objective) -> Objective:
        if isinstance(spec, Objective):
            return spec
        if isinstance(spec, str):
            name = MODE_OBJECTIVE.get(spec, spec)
            if name not in OBJECTIVES:
                raise InvalidArgument(f"objective: unknown {spec!r}", field="objective",
                                      expected=f"one of {', '.join(OBJECTIVES + tuple(MODE_OBJECTIVE))}")
            return cls(((name, 1.0),))
        if isinstance(spec, Mapping) and spec:
            out = []
            for k, w in spec.items():
                if k not in OBJECTIVES:
                    raise InvalidArgument(f"objective.{k}: unknown figure", field=f"objective.{k}",
                                          expected=f"one of {', '.join(OBJECTIVES)}")
                if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 or not math.isfinite(w):
                    raise InvalidArgument(f"objective.{k}: weight must be a number >= 0, got {w!r}",
                                          field=f"objective.{k}", expected="number >= 0")
                if w > 0:
                    out.append((k, float(w)))
            if out:
                return cls(tuple(out))
        raise InvalidArgument(f"objective: expected a figure name or a non-empty weight map, got {spec!r}",
                              field="objective", expected="e.g. 'cost' or {cost: 1, delay: 0.1}")

    @classmethod
    def for_mode(cls, mode: str) -> Objective:
        if mode not in MODE_OBJECTIVE:
            raise InvalidArgument(f"mode: unknown {mode!r}", field="mode",
                                  expected=f"one of {', '.join(MODE_OBJECTIVE)}")
        return cls(((MODE_OBJECTIVE[mode], 1.0),))

    @property
    def figures(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.weights)

    @property
    def single(self) -> str | None:
        return self.weights[0][0] if len(self.weights) == 1 else None

    def describe(self) -> str:
        text = {"cost": "minimize total cost Σ c·x", "delay": "minimize total delay Σ d·x",
                "probability": "maximize expected completions Σ p·x",
                "energy": "minimize energy Σ e·x (joules)",
                "makespan": "minimize the busiest resource's time (throughput)"}
        if self.single:
            return text[self.single]
        sign = {"probability": "−"}
        return "minimize " + " + ".join(f"{w:g}·{sign.get(k, '')}{k}" for k, w in self.weights)


@dataclass
class Problem:
    """Dense matrices over tasks × resources. Built once; read by the solver."""

    tasks: tuple[Task, ...]
    resources: tuple[Resource, ...]
    delay: np.ndarray          # (T, R) s
    cost: np.ndarray           # (T, R), NaN = not stated
    probability: np.ndarray    # (T, R), NaN = not stated
    energy: np.ndarray         # (T, R) J, NaN = not stated
    allowed: np.ndarray        # (T, R) bool: labels/allowed list and deadline admit the pair
    demand: dict[str, np.ndarray]      # dim -> (T,) units of that dim
    capacity: dict[str, np.ndarray]    # dim -> (R,), inf = unlimited
    horizon_s: float | None = None     # s; enables time budgets and power caps
    notes: list[str] = field(default_factory=list)   # interpretation notes shown with the answer

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.tasks), len(self.resources)

    def figure(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def task_index(self, name: str) -> int:
        for i, t in enumerate(self.tasks):
            if t.name == name:
                return i
        raise InvalidArgument(f"unknown task {name!r}", field="task", expected="a task of the problem")

    def resource_index(self, name: str) -> int:
        for i, r in enumerate(self.resources):
            if r.name == name:
                return i
        raise InvalidArgument(f"unknown resource {name!r}", field="resource",
                              expected="a resource of the problem")

    @classmethod
    def build(cls, tasks: Sequence[Task], resources: Sequence[Resource], *, horizon_s: float | None = None,
              learned: Mapping[tuple[str, str], Learned] | None = None,
              notes: Iterable[str] = ()) -> Problem:
        _check_names([t.name for t in tasks], "tasks")
        _check_names([r.name for r in resources], "resources")
        if not resources:
            raise InvalidArgument("resources: expected at least one resource", field="resources",
                                  expected="a non-empty list")
        for i, t in enumerate(tasks):
            _check_task(t, i, {r.name for r in resources})
        for i, r in enumerate(resources):
            _check_resource(r, i)
        if horizon_s is not None and (not math.isfinite(horizon_s) or horizon_s <= 0):
            raise InvalidArgument("horizon_s: expected a positive number of seconds", field="horizon_s",
                                  expected="number > 0")
        learned = learned or {}
        T, R = len(tasks), len(resources)
        mats = {k: np.full((T, R), np.nan) for k in FIGURES}
        allowed = np.zeros((T, R), dtype=bool)
        for i, t in enumerate(tasks):
            for j, r in enumerate(resources):
                f = pair_figures(t, r, learned.get((r.name, t.kind)))
                mats["delay"][i, j], mats["cost"][i, j] = f.delay, f.cost
                mats["probability"][i, j], mats["energy"][i, j] = f.probability, f.energy
                allowed[i, j] = _may_run(t, r) and (t.deadline_s is None or f.delay <= t.deadline_s)
        dims = sorted({k for t in tasks for k in t.demand} | {k for r in resources for k in r.capacity})
        demand = {k: np.array([float(t.demand.get(k, 0.0)) for t in tasks]) for k in dims}
        capacity = {k: np.array([float(r.capacity.get(k, math.inf)) for r in resources]) for k in dims}
        return cls(tuple(tasks), tuple(resources), mats["delay"], mats["cost"], mats["probability"],
                   mats["energy"], allowed, demand, capacity, horizon_s, list(notes))

    @classmethod
    def from_matrices(cls, task_names: Sequence[str], resource_names: Sequence[str], *,
                      cost: Any = None, delay: Any = None, probability: Any = None, energy: Any = None,
                      demand: Mapping[str, Any] | None = None, capacity: Mapping[str, Any] | None = None,
                      allowed: Any = None, lanes: Sequence[int] | None = None,
                      horizon_s: float | None = None) -> Problem:
        """Large problems straight from arrays (T×R figures, (T,) demands, (R,) capacities)."""
        T, R = len(task_names), len(resource_names)
        tasks = tuple(Task(n) for n in task_names)
        res = tuple(Resource(n, lanes=int(lanes[j]) if lanes is not None else 1)
                    for j, n in enumerate(resource_names))
        _check_names(list(task_names), "tasks")
        _check_names(list(resource_names), "resources")

        def mat(x: Any, name: str) -> np.ndarray:
            if x is None:
                return np.full((T, R), np.nan) if name != "delay" else np.zeros((T, R))
            a = np.asarray(x, dtype=float)
            if a.shape != (T, R):
                raise InvalidArgument(f"{name}: expected shape ({T}, {R}), got {a.shape}", field=name,
                                      expected=f"a {T}×{R} matrix")
            return a
        dem = {k: np.asarray(v, dtype=float).reshape(T) for k, v in (demand or {}).items()}
        cap = {k: np.asarray(v, dtype=float).reshape(R) for k, v in (capacity or {}).items()}
        for k in set(dem) | set(cap):
            dem.setdefault(k, np.zeros(T))
            cap.setdefault(k, np.full(R, math.inf))
        ok = np.ones((T, R), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
        return cls(tasks, res, mat(delay, "delay"), mat(cost, "cost"), mat(probability, "probability"),
                   mat(energy, "energy"), ok, dem, cap, horizon_s)


def _check_names(names: list[str], field_: str) -> None:
    seen = set()
    for i, n in enumerate(names):
        if not isinstance(n, str) or not n:
            raise InvalidArgument(f"{field_}[{i}].name: expected a non-empty string",
                                  field=f"{field_}[{i}].name", expected="non-empty string")
        if n in seen:
            raise InvalidArgument(f"{field_}[{i}].name: duplicate {n!r}", field=f"{field_}[{i}].name",
                                  expected="unique names")
        seen.add(n)


def _num(v: Any, where: str, *, lo: float = 0.0, strict: bool = False, hi: float = math.inf) -> float:
    ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) or v == math.inf
    if not ok or v < lo or (strict and v == lo) or v > hi:
        exp = f"number {'>' if strict else '>='} {lo:g}" + (f" and <= {hi:g}" if hi < math.inf else "")
        raise InvalidArgument(f"{where}: expected a {exp}, got {v!r}", field=where, expected=exp)
    return float(v)


def _check_task(t: Task, i: int, resources: set[str]) -> None:
    w = f"tasks[{i}]"
    _num(t.work, f"{w}.work")
    for k, v in t.demand.items():
        _num(v, f"{w}.demand.{k}")
    if t.deadline_s is not None:
        _num(t.deadline_s, f"{w}.deadline_s", strict=True)
    for fig, m in t.figures.items():
        if fig not in FIGURES:
            raise InvalidArgument(f"{w}: unknown figure {fig!r}", field=f"{w}.{fig}",
                                  expected=f"one of {', '.join(FIGURES)}")
        for rname, v in m.items():
            if rname not in resources:
                raise InvalidArgument(f"{w}.{fig}.{rname}: unknown resource", field=f"{w}.{fig}.{rname}",
                                      expected=f"one of {', '.join(sorted(resources))}")
            _num(v, f"{w}.{fig}.{rname}", hi=1.0 if fig == "probability" else math.inf)
    for rname in t.allowed or ():
        if rname not in resources:
            raise InvalidArgument(f"{w}.allowed: unknown resource {rname!r}", field=f"{w}.allowed",
                                  expected=f"names from {', '.join(sorted(resources))}")


def _check_resource(r: Resource, i: int) -> None:
    w = f"resources[{i}]"
    if isinstance(r.lanes, bool) or not isinstance(r.lanes, int) or r.lanes < 1:
        raise InvalidArgument(f"{w}.lanes: expected an integer >= 1, got {r.lanes!r}", field=f"{w}.lanes",
                              expected="integer >= 1")
    _num(r.speed, f"{w}.speed", strict=True)
    for k, v in r.capacity.items():
        _num(v, f"{w}.capacity.{k}")
    for name in ("cost_per_unit", "power_w", "max_power_w"):
        if getattr(r, name) is not None:
            _num(getattr(r, name), f"{w}.{name}")
    _num(r.idle_w, f"{w}.idle_w")
    if r.efficiency is not None:
        _num(r.efficiency, f"{w}.efficiency", strict=True)
    if r.p_success is not None:
        _num(r.p_success, f"{w}.p_success", hi=1.0)


_TASK_KEYS = {"name", "kind", "work", "demand", "needs", "allowed", "deadline_s", "optional", *FIGURES}
_RES_KEYS = {"name", "kind", "capacity", "provides", "lanes", "speed", "cost_per_unit", "power_w",
             "idle_w", "efficiency", "max_power_w", "p_success"}


def _labels(v: Any, where: str) -> tuple[str, ...]:
    """A list of labels / names (a bare string would be split into letters)."""
    if v is None:
        return ()
    if not isinstance(v, (list, tuple)):
        raise InvalidArgument(f"{where}: expected a list of names, got {type(v).__name__}", field=where,
                              expected="a list of names")
    return tuple(map(str, v))


def _mapping(v: Any, where: str) -> dict:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise InvalidArgument(f"{where}: expected a mapping, got {type(v).__name__}", field=where,
                              expected="a mapping")
    return dict(v)


def _entry(v: Any, where: str, keys: set[str]) -> dict:
    """One task or resource: a mapping of known keys."""
    d = _mapping(v, where)
    bad = set(d) - keys
    if bad:
        raise InvalidArgument(f"{where}: unknown key(s) {', '.join(sorted(bad))}",
                              field=f"{where}.{sorted(bad)[0]}", expected=", ".join(sorted(keys)))
    return d


def problem_from_dict(data: Any) -> tuple[Problem, Objective | None]:
    """Parse a problem document (JSON/YAML already loaded). See the CLI help for the schema."""
    data = _mapping(data, "problem")
    unknown = set(data) - {"tasks", "resources", "objective", "horizon_s", "notes"}
    if unknown:
        raise InvalidArgument(f"problem: unknown key(s) {', '.join(sorted(unknown))}",
                              field=sorted(unknown)[0], expected="tasks, resources, objective, horizon_s")
    for key in ("tasks", "resources"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise InvalidArgument(f"{key}: expected a non-empty list", field=key, expected="a non-empty list")
    resources = []
    for i, r in enumerate(data["resources"]):
        r = _entry(r, f"resources[{i}]", _RES_KEYS)
        kw = {k: v for k, v in r.items() if k not in ("name", "capacity", "provides")}
        resources.append(Resource(name=r.get("name"),   # type: ignore[arg-type]  # checked by Problem.build
                                  capacity=_mapping(r.get("capacity"), f"resources[{i}].capacity"),
                                  provides=frozenset(_labels(r.get("provides"), f"resources[{i}].provides")),
                                  **kw))
    tasks = []
    for i, t in enumerate(data["tasks"]):
        t = _entry(t, f"tasks[{i}]", _TASK_KEYS)
        figs = {k: _mapping(t[k], f"tasks[{i}].{k}") for k in FIGURES if k in t}
        allowed = t.get("allowed")
        tasks.append(Task(name=t.get("name"), kind=str(t.get("kind", "job")), work=t.get("work", 1.0),
                          demand=_mapping(t.get("demand"), f"tasks[{i}].demand"),
                          needs=frozenset(_labels(t.get("needs"), f"tasks[{i}].needs")),
                          allowed=_labels(allowed, f"tasks[{i}].allowed") if allowed is not None else None,
                          deadline_s=t.get("deadline_s"), optional=bool(t.get("optional", False)),
                          figures=figs))
    obj = Objective.of(data["objective"]) if data.get("objective") is not None else None
    horizon = data.get("horizon_s")
    if horizon is not None:
        horizon = _num(horizon, "horizon_s", strict=True)
    notes = [str(n) for n in data.get("notes") or ()]
    return Problem.build(tasks, resources, horizon_s=horizon, notes=notes), obj


_BIND_TOL = 1e-6        # shadow prices below this are not mentioned


@dataclass(frozen=True)
class Binding:
    """One resource constraint and how full it is in a solution."""

    resource: str
    constraint: str                 # "capacity slots" | "deadline ≤ 8 s" | "time budget" | "power cap" | "makespan"
    used: float
    limit: float
    unit: str = ""
    shadow_price: float | None = None   # objective change per extra unit of limit (LP relaxation; ≤ 0)

    def describe(self) -> str:
        u = f" {self.unit}" if self.unit else ""
        s = f"{self.resource} {self.constraint}: {self.used:.6g} of {self.limit:.6g}{u} used"
        if self.shadow_price is not None and abs(self.shadow_price) > _BIND_TOL:
            s += (f"; one more unit would lower the objective by {-self.shadow_price:.4g} "
                  "(LP shadow price)")
        return s


@dataclass(frozen=True)
class Solution:
    assignment: dict[str, str | None]        # task -> resource (None: optional task left out)
    objective: Objective
    value: float                             # objective value (probability alone: Σ p, maximized)
    totals: dict[str, float]                 # cost, delay, probability, energy, makespan where stated
    binding: tuple[Binding, ...]             # constraints at their limit
    slack: tuple[Binding, ...]               # constraints with room left
    method: str                              # "milp" | "milp (time limit)" | "greedy fallback" | "greedy"
    optimal: bool                            # proven optimal (within mip_rel_gap)
    bound: float | None                      # best proven bound on the value (same sense as value)
    gap: float | None                        # relative gap between value and bound
    solve_s: float                           # s, wall time of the whole solve
    explanation: str = ""
    notes: tuple[str, ...] = ()
    duals: dict[tuple[str, str], float] = field(default_factory=dict)  # (resource, dim) -> price per unit

    def explain(self) -> str:
        return self.explanation


def alloc_error(message: str, *, resource: str | None = None, constraint: str | None = None,
                hint: str | None = None) -> AllocError:
    err = AllocError(message, hint=hint or "add capacity, relax deadlines, or mark tasks optional")
    err.resource = resource              # the binding resource, named for callers
    err.constraint = constraint
    return err


def unplaceable(task: Task) -> AllocError:
    """No resource may run ``task``: none provides its labels (or it allows none)."""
    want = ", ".join(sorted(task.needs)) or "an allowed resource"
    return alloc_error(f"task {task.name} cannot be placed: no resource provides {want}",
                       hint="add a resource that provides it, or change the task's needs")
