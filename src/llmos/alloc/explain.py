"""Plain-language explanation of an allocation ``Solution``.

Map:
- ``explanation(problem, model, solution)``: what was optimized, how it was
  solved (proven optimal, best before the time limit, or greedy fallback),
  the value and bound, where each task went and why a task did not get its
  individually best resource (the binding constraint there), which limits
  bind with their LP shadow prices, and the problem's interpretation notes.
- ``fmt(value, unit)``: a figure with its unit.

Large problems (more than ``PER_TASK_LINES`` tasks) are summarized per resource.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from llmos.alloc.model import UNITS, Problem

if TYPE_CHECKING:  # pragma: no cover
    from llmos.alloc.solve import Model, Solution

__all__ = ["explanation", "fmt", "PER_TASK_LINES"]

PER_TASK_LINES = 20          # tasks listed one per line; above this, a per-resource summary
_STATUS = {
    "milp": "optimal (HiGHS MILP)",
    "milp (time limit)": "best assignment HiGHS found before its time limit (not proven optimal)",
    "greedy fallback": "greedy fallback: HiGHS found no solution in time (not proven optimal)",
    "greedy": "greedy (not proven optimal)",
}


def fmt(value: float, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.6g}" + (f" {unit}" if unit else "")


def _pair_line(problem: Problem, sol: Solution, i: int, j: int) -> str:
    figs = sol.objective.figures
    shown = [k for k in figs if k != "makespan"] or ["delay"]
    return ", ".join(f"{k} {fmt(problem.figure(k)[i, j], UNITS[k])}" for k in shown)


def _why_not_best(problem: Problem, m: Model, sol: Solution, i: int, j: int) -> str:
    """Why task i is on j rather than on its individually best resource."""
    if m.has_z:
        return ""
    ps = np.flatnonzero(m.ti == i)
    if len(ps) < 2:
        return "  (its only allowed resource)" if len(ps) == 1 else ""
    best = ps[np.argmin(m.pair_coef[ps])]
    jb = int(m.ri[best])
    chosen = ps[m.ri[ps] == j]
    if jb == j or (len(chosen) and m.pair_coef[chosen[0]] <= m.pair_coef[best] + 1e-12):
        return ""
    name = problem.resources[jb].name
    full = [b.constraint for b in sol.binding if b.resource == name]
    better = _pair_line(problem, sol, i, jb)
    if full:
        return f"  (better alone on {name}: {better}; but {name}'s {', '.join(full)} is full)"
    return f"  (better alone on {name}: {better}; moved to lower the total)"


def explanation(problem: Problem, m: Model, sol: Solution) -> str:
    T, R = problem.shape
    obj = sol.objective
    unit = UNITS.get(obj.single or "", "")
    status = _STATUS.get(sol.method, sol.method)
    if sol.method.startswith("lp"):
        status = (f"{sol.method} (HiGHS LP relaxation for the bound, then a feasible assignment "
                  f"{'proven optimal' if sol.optimal else 'judged by its gap to that bound'})")
    lines = [f"Objective: {obj.describe()}.",
             f"Method: {status}; {T} tasks × {R} resources, "
             f"{sol.solve_s * 1000:.1f} ms."]
    v = f"Value: {fmt(sol.value, unit)}"
    if sol.bound is not None and math.isfinite(sol.bound) and sol.gap is not None:
        v += f" (proven bound {fmt(sol.bound, unit)}, gap {sol.gap:.2%})"
    lines.append(v)
    lines.append("Totals: " + ", ".join(f"{k} {fmt(val, UNITS[k])}" for k, val in sol.totals.items()))
    r_index = {r.name: j for j, r in enumerate(problem.resources)}
    if T <= PER_TASK_LINES:
        lines.append("Assignment:")
        for i, t in enumerate(problem.tasks):
            rname = sol.assignment[t.name]
            if rname is None:
                lines.append(f"  {t.name} → (left out: optional)")
                continue
            j = r_index[rname]
            lines.append(f"  {t.name} → {rname}   {_pair_line(problem, sol, i, j)}"
                         f"{_why_not_best(problem, m, sol, i, j)}")
    else:
        counts: dict[str, int] = {}
        for rname in sol.assignment.values():
            key = rname or "(left out)"
            counts[key] = counts.get(key, 0) + 1
        lines.append("Tasks per resource: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
    if sol.binding:
        lines.append("Binding constraints (at their limit):")
        lines.extend(f"  {b.describe()}" for b in sol.binding[:10])
        if len(sol.binding) > 10:
            lines.append(f"  … and {len(sol.binding) - 10} more")
    else:
        lines.append("Binding constraints: none; every task got its individually best resource"
                     if not m.has_z else "Binding constraints: none besides the makespan itself")
    if sol.slack and len(sol.slack) <= 10:
        lines.append("Room left: " + "; ".join(b.describe() for b in sol.slack))
    for n in sol.notes:
        lines.append(f"Note: {n}")
    return "\n".join(lines)
