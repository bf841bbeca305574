"""The allocator: the seeds' cost / delay / energy models and where work runs.

A solver library in the mechanism layer: it knows tasks and resources, never
processes or the kernel (the kernel's bridge is ``kernel/placement.py``).

Module map:
  model.py      Task, Resource, Learned, Objective, Problem, Solution, Binding;
                pair figures; problem_from_dict (JSON/YAML problems, validated)
  place.py      Allocator: incremental placement (list scheduling, congestion prices),
                learning from measurements, batch solves
  live.py       LiveSolver: re-solves the queued work with HiGHS in batches within a
                time budget; its assignment and duals steer ``place``
  solve.py      HiGHS MILP, LP bound and duals, greedy, infeasibility diagnosis (scipy)
  large.py      LP relaxation + fix-and-repair + local search for large problems (scipy)
  explain.py    plain-language explanation of a Solution
  resources.py  this machine's devices (from the HAL) and engines (from the config)
  seed.py       seed 002's worked example (inputs in seed.json), solved and checked

scipy is imported only when a problem is solved: ``llmos.alloc.solve`` (``solve``,
``lp_bound``, ``greedy``, ``evaluate``) is not imported by this package, and
``Allocator.solve`` / a live batch import it on first use, so booting the kernel
never loads it.
Imports inside the package point one way: model ← explain ← large ← solve;
model ← place ← live; model, place ← resources; solve ← seed.
"""

from __future__ import annotations

from llmos.alloc.model import (
    FIGURES,
    MODE_OBJECTIVE,
    OBJECTIVES,
    Binding,
    Learned,
    Objective,
    Problem,
    Resource,
    Solution,
    Task,
    problem_from_dict,
)
from llmos.alloc.place import MODES, Allocator, Placement

__all__ = ["Allocator", "Placement", "Task", "Resource", "Objective", "Problem", "Solution", "Binding",
           "Learned", "problem_from_dict", "MODES", "FIGURES", "OBJECTIVES", "MODE_OBJECTIVE"]
