"""Allocator syscall: ``alloc.solve`` (a thin decoder over ``llmos.alloc``).

Solving a placement problem costs CPU the caller does not see, so it is a syscall like
any other (capability ``alloc.solve``, audited) with a budget: the solver's time limit
is at most ``SOLVE_MAX_S``, and at most ``SOLVERS`` solve at once (``Busy`` beyond).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from pydantic import Field

from llmos.errors import Busy, InvalidArgument
from llmos.kernel.argtypes import Args
from llmos.kernel.syscall import Call, KernelView, Syscall

__all__ = ["ROWS", "SOLVE_MAX_S", "SOLVERS"]

SOLVE_MAX_S = 30.0     # s: the most solver time one call may ask for (a greedy answer after)
SOLVERS = 2            # solves running at once, for all agents together

_running = 0           # solves in flight (event-loop owned)


class SolveArgs(Args):
    problem: dict[str, Any]
    time_limit_s: float = Field(default=1.0, gt=0)


def _finite(v: Any) -> Any:
    """JSON has no NaN or infinity: unstated figures become null."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _binding(b: Any) -> dict:
    return {"resource": b.resource, "constraint": b.constraint, "used": b.used, "limit": b.limit,
            "unit": b.unit, "shadow_price": b.shadow_price, "text": b.describe()}


def _solve(doc: dict[str, Any], default_mode: str, time_limit_s: float) -> dict[str, Any]:
    from llmos.alloc import MODE_OBJECTIVE, problem_from_dict
    from llmos.alloc.solve import solve

    problem, objective = problem_from_dict(doc)
    sol = solve(problem, objective or MODE_OBJECTIVE.get(default_mode, default_mode),
                time_limit_s=time_limit_s)
    return _finite({"assignment": sol.assignment, "objective": dict(sol.objective.weights),
                    "value": sol.value, "totals": sol.totals,
                    "binding": [_binding(b) for b in sol.binding],
                    "slack": [_binding(b) for b in sol.slack], "method": sol.method,
                    "optimal": sol.optimal, "bound": sol.bound, "gap": sol.gap, "solve_s": sol.solve_s,
                    "explanation": sol.explanation, "notes": list(sol.notes)})


async def solve_(k: KernelView, call: Call, a: SolveArgs) -> dict:
    global _running
    if a.time_limit_s > SOLVE_MAX_S:
        raise InvalidArgument(f"alloc.solve: time_limit_s: at most {SOLVE_MAX_S:g} s, got {a.time_limit_s:g}",
                              field="time_limit_s", expected=f"0 < seconds <= {SOLVE_MAX_S:g}")
    if _running >= SOLVERS:
        raise Busy(f"{SOLVERS} placement problems are being solved already", retry_after=a.time_limit_s)
    _running += 1
    try:
        return await asyncio.to_thread(_solve, a.problem, k.config.alloc_mode, a.time_limit_s)
    finally:
        _running -= 1


ROWS = [
    Syscall("alloc.solve", SolveArgs, "alloc.solve", solve_,
            "solve a placement problem on the allocator's models (time-limited)"),
]
