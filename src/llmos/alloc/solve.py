"""Solving an allocation ``Problem``: HiGHS MILP, LP bound and duals, greedy, diagnosis.

Map:
- ``Model``: the problem as one sparse linear program over the allowed pairs
  (plus ``z`` for makespan), with a label for every row so answers can name
  the constraint (``R1 capacity slots``, ``R1 deadline ≤ 8 s``, ``R1 power cap``).
- ``solve(problem, objective, time_limit_s=...)``: the MILP through
  ``scipy.optimize.milp`` (HiGHS); on the time limit it keeps HiGHS's best
  solution, or falls back to ``greedy`` and says so; then ``explain``.
- ``lp_bound(problem, objective)``: the LP relaxation's value and duals.
- ``greedy(model)``: regret-ordered greedy (LPT order for makespan).
- ``diagnose(model)``: turns infeasibility into an ``AllocError`` naming the
  binding resource (direct checks first, then an elastic MILP whose slacks
  show which limits must grow).
- ``evaluate(problem, assignment)``: totals of any assignment (for comparisons).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from llmos.alloc.explain import explanation
from llmos.alloc.large import LARGE_PAIRS, solve_large
from llmos.alloc.model import (
    Binding,
    Objective,
    Problem,
    Solution,
    _may_run,
    alloc_error,
    unplaceable,
)
from llmos.errors import AllocError, InvalidArgument

__all__ = ["Binding", "Solution", "Model", "solve", "lp_bound", "greedy", "evaluate", "diagnose",
           "alloc_error"]

_TOL = 1e-6
LARGE_GAP = 5e-3          # the large path stops within this relative gap of the LP bound


class Model:
    """The linear program of a Problem under an Objective (variables: allowed pairs, then z)."""

    def __init__(self, problem: Problem, objective: Objective, *, whole_tasks: bool = False) -> None:
        P = problem
        self.problem, self.objective = P, objective
        T, R = P.shape
        self.ti, self.ri = np.nonzero(P.allowed)          # pair p = (task ti[p], resource ri[p])
        n = len(self.ti)
        self.n_pairs = n
        self.has_z = "makespan" in objective.figures
        coef = np.zeros(n)
        for k, w in objective.weights:
            if k == "makespan":
                continue
            vals = P.figure(k)[self.ti, self.ri]
            bad = np.flatnonzero(np.isnan(vals))
            if len(bad):
                t, r = P.tasks[self.ti[bad[0]]].name, P.resources[self.ri[bad[0]]].name
                raise InvalidArgument(f"objective {k}: no {k} figure for task {t} on {r}",
                                      field=f"tasks.{t}.{k}.{r}",
                                      expected=f"a {k} figure for every allowed pair (or a rate on {r})")
            coef += w * (-vals if k == "probability" else vals)
        self.pair_coef = coef
        w_mk = dict(objective.weights).get("makespan", 0.0)
        self.c = np.append(coef, w_mk) if self.has_z else coef
        rows, cols, vals = [], [], []
        lo: list[float] = []
        hi: list[float] = []
        self.labels: list[tuple[str, int, str, str]] = []   # (kind, resource idx, text, unit) per row
        mandatory = np.array([not t.optional for t in P.tasks])

        def add_rows(kind: str, r_of_row: np.ndarray, text: Sequence[str], unit: str,
                     row_local: np.ndarray, col: np.ndarray, val: np.ndarray,
                     lower: np.ndarray, upper: np.ndarray) -> None:
            base = len(lo)
            rows.append(row_local + base)
            cols.append(col)
            vals.append(val)
            lo.extend(lower.tolist())
            hi.extend(upper.tolist())
            self.labels.extend((kind, int(r), s, unit) for r, s in zip(r_of_row, text, strict=True))

        # assignment: Σ_r x_tr = 1 (optional: ≤ 1)
        add_rows("assign", np.full(T, -1), [t.name for t in P.tasks], "", self.ti, np.arange(n),
                 np.ones(n), np.where(mandatory, 1.0, 0.0), np.ones(T))
        self.n_assign = T
        # capacities per (dim, resource), only where they can bind
        d_all = P.delay[self.ti, self.ri]
        for dim in sorted(P.demand):
            a = P.demand[dim][self.ti]
            cap = P.capacity[dim]
            sel = (a > 0) & np.isfinite(cap[self.ri])
            if not sel.any():
                continue
            load = np.bincount(self.ri[sel], weights=a[sel], minlength=R)
            rs = np.flatnonzero((load > cap + _TOL) & np.isfinite(cap))
            if len(rs) == 0:
                continue
            local = np.full(R, -1)
            local[rs] = np.arange(len(rs))
            sel &= local[self.ri] >= 0
            add_rows("capacity", rs, [f"capacity {dim}"] * len(rs), dim, local[self.ri[sel]],
                     np.flatnonzero(sel), a[sel], np.full(len(rs), -np.inf), cap[rs])
        # deadlines (EDF condition per resource) and the horizon time budget
        dl = np.array([t.deadline_s if t.deadline_s is not None else math.inf for t in P.tasks])
        lanes = np.array([r.lanes for r in P.resources], dtype=float)
        for j in range(R):
            on_j = np.flatnonzero(self.ri == j)
            if len(on_j) == 0:
                continue
            limits = sorted(set(dl[self.ti[on_j]][np.isfinite(dl[self.ti[on_j]])].tolist()))
            if P.horizon_s is not None:
                limits.append(P.horizon_s)
            for D in limits:
                sel = on_j[dl[self.ti[on_j]] <= D]
                if d_all[sel].sum() <= lanes[j] * D + _TOL:
                    continue                      # cannot bind: all of it fits
                horizon = P.horizon_s is not None and P.horizon_s == D
                add_rows("time", np.array([j]), ["time budget" if horizon else f"deadline ≤ {D:g} s"], "s",
                         np.zeros(len(sel), dtype=int), sel, d_all[sel], np.array([-np.inf]),
                         np.array([lanes[j] * D]))
        # power caps (seed 000: C ≤ αP) over the horizon
        if P.horizon_s is not None:
            e_all = P.energy[self.ti, self.ri]
            for j, r in enumerate(P.resources):
                if r.max_power_w is None:
                    continue
                sel = np.flatnonzero((self.ri == j) & np.isfinite(e_all))
                budget = (r.max_power_w - r.idle_w * r.lanes) * P.horizon_s
                add_rows("power", np.array([j]), ["power cap"], "J", np.zeros(len(sel), dtype=int), sel,
                         e_all[sel], np.array([-np.inf]), np.array([budget]))
        # makespan: Σ_t d_tr x_tr − lanes_r z ≤ 0
        if self.has_z:
            for j in range(R):
                sel = np.flatnonzero(self.ri == j)
                add_rows("makespan", np.array([j]), ["makespan"], "s", np.zeros(len(sel) + 1, dtype=int),
                         np.append(sel, n), np.append(d_all[sel], -lanes[j]), np.array([-np.inf]),
                         np.array([0.0]))
            if whole_tasks:                       # a task runs on one lane: d_tr·x_tr − z ≤ 0
                for j in range(R):
                    sel = np.flatnonzero(self.ri == j)
                    if lanes[j] <= 1 or len(sel) == 0:
                        continue                  # one lane: its makespan row covers it
                    k = len(sel)
                    add_rows("lane", np.full(k, j), ["one task on one lane"] * k, "s",
                             np.repeat(np.arange(k), 2), np.column_stack([sel, np.full(k, n)]).ravel(),
                             np.column_stack([d_all[sel], -np.ones(k)]).ravel(), np.full(k, -np.inf),
                             np.zeros(k))
        nvar = n + (1 if self.has_z else 0)
        self.A = sparse.csr_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                  shape=(len(lo), nvar))
        self.lo, self.hi = np.array(lo), np.array(hi)
        self.integrality = np.append(np.ones(n), 0) if self.has_z else np.ones(n)
        self.ub = np.append(np.ones(n), np.inf) if self.has_z else np.ones(n)

    def assignment(self, x: np.ndarray) -> np.ndarray:
        """(T,) resource index per task, -1 when unassigned."""
        out = np.full(self.problem.shape[0], -1)
        on = x[: self.n_pairs] > 0.5
        out[self.ti[on]] = self.ri[on]
        return out

    def pairs_of(self, assign: np.ndarray) -> np.ndarray:
        """The x vector (pairs, then z) of an assignment."""
        x = np.zeros(self.A.shape[1])
        pos = {(int(t), int(r)): p for p, (t, r) in enumerate(zip(self.ti, self.ri, strict=True))}
        for t, r in enumerate(assign):
            if r >= 0:
                x[pos[(t, int(r))]] = 1.0
        if self.has_z:
            x[-1] = _makespan(self.problem, assign)
        return x


def _makespan(P: Problem, assign: np.ndarray) -> float:
    loads = np.zeros(P.shape[1])
    for t, r in enumerate(assign):
        if r >= 0:
            loads[r] += P.delay[t, r]
    lanes = np.array([r.lanes for r in P.resources], dtype=float)
    return float((loads / lanes).max()) if len(loads) else 0.0


def evaluate(problem: Problem, assignment: Mapping[str, str | None] | np.ndarray) -> dict[str, float]:
    """Totals of an assignment: every figure that is stated for all its pairs, plus makespan."""
    P = problem
    if isinstance(assignment, Mapping):
        a = np.array([P.resource_index(assignment[t.name]) if assignment.get(t.name) else -1
                      for t in P.tasks])
    else:
        a = np.asarray(assignment)
    on = a >= 0
    t_idx, r_idx = np.flatnonzero(on), a[on]
    out: dict[str, float] = {}
    for k in ("cost", "delay", "probability", "energy"):
        v = P.figure(k)[t_idx, r_idx]
        if not np.isnan(v).any():
            out[k] = float(v.sum())
    out["makespan"] = _makespan(P, a)
    return out


def _value(objective: Objective, totals: dict[str, float]) -> float:
    if objective.single == "probability":
        return totals["probability"]
    return sum(w * (-totals[k] if k == "probability" else totals[k]) for k, w in objective.weights)


def lp_bound(problem: Problem, objective: Objective | str, model: Model | None = None
             ) -> tuple[float, np.ndarray | None]:
    """Value of the LP relaxation (a bound on any assignment) and the row duals (None if infeasible)."""
    m = model or Model(problem, Objective.of(objective))
    eq = m.lo == m.hi
    A_eq, b_eq = m.A[eq], m.hi[eq]
    ub_rows = ~eq
    A_ub, b_ub = m.A[ub_rows], m.hi[ub_rows]
    res = linprog(m.c, A_ub=A_ub if A_ub.shape[0] else None, b_ub=b_ub if A_ub.shape[0] else None,
                  A_eq=A_eq if A_eq.shape[0] else None, b_eq=b_eq if A_eq.shape[0] else None,
                  bounds=list(zip(np.zeros(len(m.ub)), m.ub, strict=True)) if m.has_z else (0, 1),
                  method="highs")
    if res.status != 0:
        return math.nan, None
    duals = np.zeros(len(m.lo))
    if A_eq.shape[0]:
        duals[eq] = res.eqlin.marginals
    if A_ub.shape[0]:
        duals[ub_rows] = res.ineqlin.marginals
    val = float(res.fun)
    return (-val if m.objective.single == "probability" else val), duals


def greedy(m: Model) -> np.ndarray | None:
    """Regret-ordered greedy (LPT for makespan); None when it cannot place a mandatory task."""
    P = m.problem
    T, R = P.shape
    A = m.A.tocsc()
    check = np.array([k in ("capacity", "time", "power") for k, *_ in m.labels])
    used = np.zeros(len(m.lo))
    w_mk = dict(m.objective.weights).get("makespan", 0.0)
    lanes = np.array([r.lanes for r in P.resources], dtype=float)
    loads = np.zeros(R)
    by_task: list[list[int]] = [[] for _ in range(T)]
    for p, t in enumerate(m.ti):
        by_task[t].append(p)
    coef = m.pair_coef
    if m.has_z:
        order = sorted(range(T), key=lambda t: -min((P.delay[t, m.ri[p]] for p in by_task[t]), default=0))
    else:
        def regret(t: int) -> float:
            s = sorted(coef[p] for p in by_task[t])
            return math.inf if len(s) == 1 else (s[1] - s[0] if s else -math.inf)
        order = sorted(range(T), key=lambda t: -regret(t))
    assign = np.full(T, -1)
    for t in order:
        best, best_s = -1, math.inf
        span = float((loads / lanes).max()) if R else 0.0
        for p in by_task[t]:
            lo_, hi_ = A.indptr[p], A.indptr[p + 1]
            rws, vs = A.indices[lo_:hi_], A.data[lo_:hi_]
            c = check[rws]
            if np.any(used[rws[c]] + vs[c] > m.hi[rws[c]] + _TOL):
                continue
            r = m.ri[p]
            s = coef[p] + (w_mk * max(span, (loads[r] + P.delay[t, r]) / lanes[r]) if m.has_z else 0.0)
            if s < best_s - 1e-12:
                best, best_s = p, s
        if best < 0:
            if P.tasks[t].optional:
                continue
            return None
        if P.tasks[t].optional and coef[best] > 0 and not m.has_z:
            continue
        lo_, hi_ = A.indptr[best], A.indptr[best + 1]
        used[A.indices[lo_:hi_]] += A.data[lo_:hi_]
        assign[t] = m.ri[best]
        loads[m.ri[best]] += P.delay[t, m.ri[best]]
    return assign


def diagnose(m: Model, time_limit_s: float = 1.0) -> AllocError:
    """Why no assignment exists, naming the binding resource."""
    P = m.problem
    T, R = P.shape
    names = [r.name for r in P.resources]
    for i, t in enumerate(P.tasks):
        if t.optional or P.allowed[i].any():
            continue
        providers = [j for j, r in enumerate(P.resources) if _may_run(t, r)]
        if not providers:
            return unplaceable(t)
        j = min(providers, key=lambda j: P.delay[i, j])
        return alloc_error(f"task {t.name} cannot meet its deadline {t.deadline_s:g} s: its fastest run "
                           f"time is {P.delay[i, j]:.4g} s on {names[j]}", resource=names[j],
                           constraint="deadline", hint="relax the deadline or add a faster resource")
    for dim, dem in P.demand.items():
        cap = P.capacity[dim]
        for i, t in enumerate(P.tasks):
            js = np.flatnonzero(P.allowed[i])
            if t.optional or dem[i] <= 0 or len(js) == 0:
                continue
            if dem[i] > cap[js].max() + _TOL:
                j = js[np.argmax(cap[js])]
                return alloc_error(f"task {t.name} needs {dem[i]:.6g} {dim} but the most any allowed resource "
                                   f"has is {cap[j]:.6g} on {names[j]}", resource=names[j],
                                   constraint=f"capacity {dim}")
        need = sum(dem[i] for i, t in enumerate(P.tasks) if not t.optional)
        if np.isfinite(cap).all() and need > cap.sum() + _TOL:
            parts = " + ".join(f"{names[j]} {cap[j]:.6g}" for j in range(R))
            return alloc_error(f"demand for {dim} ({need:.6g}) exceeds capacity ({parts} = {cap.sum():.6g}); "
                               f"binding: {', '.join(names)}", resource=names[int(np.argmax(cap))],
                               constraint=f"capacity {dim}")
    # elastic program: one slack per limit row, minimize the relative shortfall
    lim = np.flatnonzero(np.array([k in ("capacity", "time", "power") for k, *_ in m.labels]))
    k = len(lim)
    scale = np.maximum(np.abs(m.hi[lim]), 1.0)
    S = sparse.csr_array((-np.ones(k), (lim, np.arange(k))), shape=(len(m.lo), k))
    A = sparse.hstack([m.A, S], format="csr")
    c = np.concatenate([np.zeros(m.A.shape[1]), 1.0 / scale])
    res = milp(c, integrality=np.concatenate([m.integrality, np.zeros(k)]),
               bounds=Bounds(np.zeros(A.shape[1]), np.concatenate([m.ub, np.full(k, np.inf)])),
               constraints=LinearConstraint(A, m.lo, m.hi), options={"time_limit": time_limit_s})
    if res.x is not None:
        s = res.x[m.A.shape[1]:]
        short = [(s[q], lim[q]) for q in np.argsort(-s / scale) if s[q] > _TOL]
        if short:
            parts = []
            for amount, row in short[:3]:
                kind, j, text, unit = m.labels[row]
                parts.append(f"{names[j]} {text} short by {amount:.4g}{' ' + unit if unit else ''} "
                             f"(limit {m.hi[row]:.6g})")
            _, j0, text0, _ = m.labels[short[0][1]]
            return alloc_error("infeasible: " + "; ".join(parts), resource=names[j0], constraint=text0)
    return alloc_error("infeasible: no assignment satisfies every constraint")


def _bindings(m: Model, x: np.ndarray, duals: np.ndarray | None) -> tuple[list[Binding], list[Binding]]:
    act = m.A @ x
    binding, slack = [], []
    names = [r.name for r in m.problem.resources]
    for row, (kind, j, text, unit) in enumerate(m.labels):
        if kind in ("assign", "lane"):          # lane rows: one per pair, not a limit to report
            continue
        if kind == "makespan":               # row is Σ d·x − lanes·z ≤ 0: report load/lanes vs z
            lanes = m.problem.resources[j].lanes
            used, limit = (act[row] + lanes * x[-1]) / lanes, x[-1]
        else:
            used, limit = act[row], m.hi[row]
        tight = used >= limit - 1e-6 * max(1.0, abs(limit))
        price = float(duals[row]) if duals is not None and tight else None
        (binding if tight else slack).append(Binding(names[j], text, float(used), float(limit), unit, price))
    return binding, slack


def solve(problem: Problem, objective: Objective | str | Mapping[str, float], *,
          time_limit_s: float = 1.0, mip_rel_gap: float = 1e-4, duals: bool = True,
          explain: bool = True, large: bool = True, whole_tasks: bool = False) -> Solution:
    """Solve to optimality within the time limit; greedy fallback when HiGHS has no solution.

    Problems with more than ``LARGE_PAIRS`` pairs and a linear objective take the
    LP + repair + local-search path (``alloc_large``), stopping at a gap of
    ``max(mip_rel_gap, LARGE_GAP)`` to the LP bound; ``large=False`` forces the plain MILP.
    ``whole_tasks``: with a makespan objective, no task may run longer than the makespan
    on a multi-lane resource (the fluid bound alone lets lanes share one task's time).
    """
    t0 = time.perf_counter()
    obj = Objective.of(objective)
    m = Model(problem, obj, whole_tasks=whole_tasks)
    if time_limit_s <= 0 or not math.isfinite(time_limit_s):
        raise InvalidArgument("time_limit_s: expected a positive number of seconds", field="time_limit_s",
                              expected="number > 0")
    if any(not t.optional and not problem.allowed[i].any() for i, t in enumerate(problem.tasks)):
        raise diagnose(m, time_limit_s)
    notes = list(problem.notes)
    bounds_min: list[float] = []          # valid lower bounds on min m.c·x
    row_duals = None
    x = None
    if large and not m.has_z and m.n_pairs > LARGE_PAIRS:
        gap_target = max(mip_rel_gap, LARGE_GAP)
        out = solve_large(m, time_limit_s, gap_target)
        if out is None:
            raise diagnose(m, time_limit_s)
        xl, lb, row_duals, method = out
        bounds_min.append(lb)
        if not np.isnan(xl).any():
            x = xl
            optimal = abs(float(m.c @ x) - lb) <= mip_rel_gap * max(abs(float(m.c @ x)), 1e-9)
            notes.append(f"large problem: LP relaxation, exact repair of the tasks it split, local search; "
                         f"stops within {gap_target:.2%} of the LP bound")
    if x is None:
        left = max(min(0.05, time_limit_s), time_limit_s - (time.perf_counter() - t0))
        if len(m.c) == 0:                 # nothing may run anywhere and every task is optional
            res = _Trivial()
        else:
            res = milp(m.c, integrality=m.integrality, bounds=Bounds(np.zeros(len(m.ub)), m.ub),
                       constraints=LinearConstraint(m.A, m.lo, m.hi),
                       options={"time_limit": left, "mip_rel_gap": mip_rel_gap})
        if res.status == 2:
            raise diagnose(m, time_limit_s)
        if res.x is not None and res.status in (0, 1):
            x = res.x
            method = "milp" if res.status == 0 else "milp (time limit)"
            optimal = res.status == 0
            db = getattr(res, "mip_dual_bound", None)
            if db is not None and math.isfinite(db):
                bounds_min.append(float(db))
            if res.status == 1:
                notes.append(f"HiGHS reached the {time_limit_s:g} s time limit; this is its best assignment")
        else:
            a = greedy(m)
            if a is None:
                if res.status == 1:
                    raise alloc_error(f"no assignment found within the {time_limit_s:g} s time limit "
                                      "(greedy fallback could not place every task either)",
                                      hint="raise the time limit or add capacity")
                raise diagnose(m, time_limit_s)
            x = m.pairs_of(a)
            method, optimal = "greedy fallback", False
            notes.append(f"HiGHS found no solution ({res.message.strip()}); "
                         "used the greedy fallback (not proven optimal)")
    assign = m.assignment(x)
    if m.has_z:
        x = m.pairs_of(assign)
    totals = evaluate(problem, assign)
    value = _value(obj, totals)
    if duals and row_duals is None and len(m.c):
        lp_val, row_duals = lp_bound(problem, obj, m)
        if not math.isnan(lp_val):
            bounds_min.append(-lp_val if obj.single == "probability" else lp_val)
    bound = gap = None
    if bounds_min:
        bmin = max(bounds_min)
        bound = -bmin if obj.single == "probability" else bmin
        gap = abs(value - bound) / max(abs(value), 1e-9)
    binding, slack = _bindings(m, x, row_duals)
    dual_map = {}
    if row_duals is not None:
        for row, (kind, j, text, _) in enumerate(m.labels):
            if kind == "capacity":
                dual_map[(problem.resources[j].name, text.removeprefix("capacity "))] = -float(row_duals[row])
    sol = Solution(
        assignment={t.name: (problem.resources[assign[i]].name if assign[i] >= 0 else None)
                    for i, t in enumerate(problem.tasks)},
        objective=obj, value=value, totals=totals, binding=tuple(binding), slack=tuple(slack),
        method=method, optimal=optimal, bound=bound, gap=gap, solve_s=time.perf_counter() - t0,
        notes=tuple(notes), duals=dual_map)
    if explain:
        sol = _with_text(sol, explanation(problem, m, sol))
    return sol


class _Trivial:
    """The answer to a program with no variables: leave every (optional) task out."""

    status, x, message, mip_dual_bound = 0, np.zeros(0), "no variables", 0.0


def _with_text(sol: Solution, text: str) -> Solution:
    return replace(sol, explanation=text)
