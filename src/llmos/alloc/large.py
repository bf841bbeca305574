"""Large allocation problems: LP relaxation, fix-and-repair MILP, then local search.

Map:
- ``solve_large(model, time_limit_s, rel_gap)``: for problems with many pairs
  (``LARGE_PAIRS``) and a linear objective (no makespan). Returns the pair
  vector, the LP bound, the LP row duals and a method string.
- ``_greedy_repair`` / ``_repair``: place the tasks the LP split between
  resources: cheapest resource with room, else an exact sub-MILP (HiGHS).
- ``_improve``: shift and ejection moves that keep every limit row (dense,
  vectorized over tasks and resources).

NOTE (why this works). An assignment LP over T tasks with k resource rows has a
basic optimum in which at most k tasks are split (T assignment rows + k limit
rows bound the basis). So: solve the LP (HiGHS dual simplex) for the bound and
the duals; keep every task the LP put wholly on one resource; place the few split
tasks in the capacity left over (cheapest with room, or an exact sub-MILP);
then improve with moves that stay feasible: shift (t: a→b) and ejection
(t: a→b while u: b→c makes room). An optional task may also move to "left
out", a pseudo-resource with no cost and no limits. The answer carries its
proven gap to the LP bound.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

if TYPE_CHECKING:  # pragma: no cover
    from llmos.alloc.solve import Model

__all__ = ["solve_large", "LARGE_PAIRS"]

LARGE_PAIRS = 5000          # pairs above which solve() takes this path (when the objective is linear)
EJECT_PER_PASS = 200        # ejection tries per pass, most-to-gain first; all when a capped pass finds none
MAX_LS_DIMS = 16            # local search keeps a dense (dims × T × R) array; above this it is skipped
_TOL = 1e-7


def _lp(m: Model) -> tuple[np.ndarray, float, np.ndarray] | None:
    eq = m.lo == m.hi
    res = linprog(m.c, A_ub=m.A[~eq], b_ub=m.hi[~eq], A_eq=m.A[eq], b_eq=m.hi[eq], bounds=(0, 1),
                  method="highs-ds")
    if res.status != 0:
        return None
    y = np.zeros(len(m.lo))
    y[eq] = res.eqlin.marginals
    y[~eq] = res.ineqlin.marginals
    return res.x, float(res.fun), y


def _repair(m: Model, x: np.ndarray, split: np.ndarray, time_limit_s: float, rel_gap: float,
            lp_value: float) -> np.ndarray | None:
    """Keep whole tasks; place the split ones exactly in the room left (sub-MILP)."""
    T = m.problem.shape[0]
    free = np.zeros(T, dtype=bool)
    free[split] = True
    keep = np.flatnonzero(free[m.ti])
    fixed = (~free[m.ti]) & (x > 0.5)
    used = m.A @ fixed.astype(float)
    sub = m.A[:, keep].tocsr()
    rows = np.flatnonzero(np.diff(sub.indptr) > 0)
    sub_lp = float(np.dot(m.c[keep], x[keep]))
    gap = min(0.5, rel_gap * max(abs(lp_value), 1e-9) / max(abs(sub_lp), 1e-9))   # same absolute gap
    res = milp(m.c[keep], integrality=np.ones(len(keep)), bounds=Bounds(0, 1),
               constraints=LinearConstraint(sub[rows], (m.lo - used)[rows], (m.hi - used)[rows]),
               options={"time_limit": max(0.05, time_limit_s), "mip_rel_gap": gap})
    if res.x is None:
        return None
    out = fixed.astype(float)
    out[keep] = np.round(res.x)
    return out


class _Dense:
    """Dense view for local search: costs C (T, R+1), per-pair limit use a (K, T, R+1), room S (K, R+1).

    Column R is "left out": cost 0 and no limits for optional tasks, forbidden (inf) for the rest.
    """

    def __init__(self, m: Model) -> None:
        T, R = m.problem.shape
        self.none = R
        self.C = np.full((T, R + 1), np.inf)
        self.C[m.ti, m.ri] = m.pair_coef
        self.C[[t.optional for t in m.problem.tasks], R] = 0.0
        dims: dict[str, int] = {}
        rows = [i for i, (k, *_) in enumerate(m.labels) if k in ("capacity", "time", "power")]
        for i in rows:
            dims.setdefault(m.labels[i][2], len(dims))
        self.a = np.zeros((len(dims), T, R + 1))
        self.cap = np.full((len(dims), R + 1), np.inf)
        A = m.A.tocsr()
        for i in rows:
            _, j, text, _ = m.labels[i]
            k = dims[text]
            cols = A.indices[A.indptr[i]:A.indptr[i + 1]]
            self.a[k, m.ti[cols], j] = A.data[A.indptr[i]:A.indptr[i + 1]]
            self.cap[k, j] = m.hi[i]

    def room(self, assign: np.ndarray) -> np.ndarray:
        T = len(assign)
        S = self.cap.copy()
        for k in range(len(S)):
            np.subtract.at(S[k], assign, self.a[k, np.arange(T), assign])
        return S


def _dense_ok(m: Model) -> bool:
    return len({text for k, _, text, _ in m.labels if k in ("capacity", "time", "power")}) <= MAX_LS_DIMS


def _greedy_repair(d: _Dense, assign: np.ndarray, split: np.ndarray) -> np.ndarray | None:
    """Put each split task on its cheapest resource with room (after the whole ones)."""
    assign = assign.copy()
    keep = np.setdiff1d(np.arange(len(assign)), split)
    S = d.cap.copy()
    for k in range(len(S)):
        np.subtract.at(S[k], assign[keep], d.a[k, keep, assign[keep]])
    for t in split:
        ok = np.all(d.a[:, t, :] <= S + 1e-9, axis=0) & np.isfinite(d.C[t])
        if not ok.any():
            return None
        r = int(np.flatnonzero(ok)[np.argmin(d.C[t, ok])])
        assign[t] = r
        S[:, r] -= d.a[:, t, r]
    return assign


def _improve(d: _Dense, assign: np.ndarray, deadline: float, good_enough: float = -np.inf) -> np.ndarray:
    """Shift (t: a→b) and ejection (t: a→b, u: b→c) moves that keep every limit; best gain first.
    Stops at the deadline, when no move improves, or once the total is ≤ ``good_enough``."""
    C, a = d.C, d.a
    T, R = C.shape
    idx = np.arange(T)
    S = d.room(assign)
    cur = C[idx, assign]
    best_row = C.min(axis=1)
    cap: int | None = EJECT_PER_PASS          # ejection tries this pass; None: all (the last pass)
    while time.perf_counter() < deadline and cur.sum() > good_enough:
        changed = False
        fits = np.all(a <= S[:, None, :] + 1e-9, axis=0)                      # (T, R)
        gain = np.where(fits, cur[:, None] - C, -np.inf)
        gain[idx, assign] = -np.inf
        gmax = gain.max(axis=1)
        for t in np.argsort(-gmax):
            if gmax[t] <= _TOL:
                break
            b = int(np.argmax(gain[t]))
            if np.all(a[:, t, b] <= S[:, b] + 1e-9):
                S[:, assign[t]] += a[:, t, assign[t]]
                S[:, b] -= a[:, t, b]
                assign[t], cur[t], changed = b, C[t, b], True
        # ejection can only help t where some cheaper b could take t once its biggest user leaves
        maxa = np.zeros_like(S)
        for k in range(len(S)):
            np.maximum.at(maxa[k], assign, a[k, idx, assign])
        room = np.all(a <= (S + maxa)[:, None, :] + 1e-9, axis=0) & (cur[:, None] - _TOL > C)   # (T, R+1)
        wish = np.flatnonzero(room.any(axis=1) & (cur > best_row + _TOL))
        for t in wish[np.argsort(-(cur[wish] - best_row[wish]))][:cap]:
            if time.perf_counter() > deadline:
                break
            at = assign[t]
            us = np.flatnonzero((C[t] < cur[t] - _TOL)[assign])              # tasks on cheaper resources
            if len(us) == 0:
                continue
            bu = assign[us]
            ok = np.all(a[:, t, bu] <= S[:, bu] + a[:, us, bu] + 1e-9, axis=0)   # t fits once u leaves
            if not ok.any():
                continue
            us, bu = us[ok], bu[ok]
            Sc = S.copy()
            Sc[:, at] += a[:, t, at]
            okc = np.all(a[:, us, :] <= Sc[:, None, :] + 1e-9, axis=0)          # u fits on c
            okc[np.arange(len(us)), bu] = False
            g = np.where(okc, (cur[t] - C[t, bu] + C[us, bu])[:, None] - C[us, :], -np.inf)
            k = np.unravel_index(np.argmax(g), g.shape)
            if g[k] <= _TOL:
                continue
            u, b, c = us[k[0]], bu[k[0]], int(k[1])
            S[:, at] += a[:, t, at]
            S[:, b] += a[:, u, b] - a[:, t, b]
            S[:, c] -= a[:, u, c]
            assign[t], cur[t] = b, C[t, b]
            assign[u], cur[u] = c, C[u, c]
            changed = True
        if not changed:
            if cap is None:
                break
            cap = None                          # a capped pass found nothing: try every task once
        else:
            cap = EJECT_PER_PASS
    return assign


def _pairs(m: Model, assign: np.ndarray) -> np.ndarray:
    T, R = m.problem.shape
    pos = np.full((T, R + 1), -1)          # column R: "left out", no pair
    pos[m.ti, m.ri] = np.arange(len(m.ti))
    p = pos[np.arange(T), np.where(assign < 0, R, assign)]
    x = np.zeros(len(m.c))
    x[p[p >= 0]] = 1.0
    return x


def solve_large(m: Model, time_limit_s: float, rel_gap: float
                ) -> tuple[np.ndarray, float, np.ndarray, str] | None:
    """(x, LP bound, row duals, method); x is NaN when no repair worked; None when the LP is infeasible."""
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    lp = _lp(m)
    if lp is None:
        return None
    x, bound, duals = lp
    split_pairs = (x > 1e-6) & (x < 1 - 1e-6)
    if not split_pairs.any():
        return np.round(x), bound, duals, "lp (integral optimum)"
    split = np.unique(m.ti[split_pairs])
    d = _Dense(m) if _dense_ok(m) else None
    whole = m.assignment(np.where(x > 1 - 1e-6, 1.0, 0.0))
    if d is not None:
        whole[whole < 0] = d.none          # not placed yet: "left out" until repaired
    assign = _greedy_repair(d, whole, split) if d is not None else None
    method = "lp + greedy repair"
    if assign is None:
        xi = _repair(m, x, split, 0.6 * (deadline - time.perf_counter()), rel_gap, bound)
        if xi is None:
            return np.full_like(x, math.nan), bound, duals, "repair failed"
        assign, method = m.assignment(xi), "lp + milp repair"
        if d is not None:
            assign[assign < 0] = d.none
    if d is not None:
        value = float(d.C[np.arange(len(assign)), assign].sum())
        if abs(value - bound) > rel_gap * max(abs(value), 1e-9):
            assign = _improve(d, assign, deadline, good_enough=bound + rel_gap * abs(bound))
            method += " + local search"
    return _pairs(m, assign), bound, duals, method
