"""Schedulers: which process runs next, and which LLM sequence advances each step.

Map:
- ``base``: ``Task`` / ``Plan`` / ``Outcome`` and the ``Scheduler`` base class
  with the surface each policy overrides (``_key``, ``_order``, ``_why``,
  ``_preempts``, ``_charge``, ...).
- ``policies``: ``fifo``, ``rr``, ``priority`` (aging, no starvation), ``fair``
  (weighted fair share by virtual time), ``sjf`` (learned estimates).
- ``step``: ``TokenPolicy``, the engine's per-step hook built from any policy;
  ``measure_batch_cap`` for the batch size where throughput stops growing.
- ``admission``: ``AdmissionController`` for engines without token-level steps.

Use::

    sched = make_scheduler("priority", clock, estimates=None, **opts)
    sched.add(Task(pid, owner, priority, arrival_s, kind))
    plan = sched.schedule(now, free_slots)     # pure
    ...executor starts plan.run, pauses plan.preempt...
    sched.update(plan, Outcome(finished, usage))
    engine.set_policy(sched.step_policy())     # token level
    admission = sched.admission(max_in_flight=4)  # remote engines
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmos.clock import Clock
from llmos.errors import InvalidArgument
from llmos.kernel.sched.admission import AdmissionController, Slot
from llmos.kernel.sched.base import Outcome, Plan, Scheduler, Task
from llmos.kernel.sched.policies import FIFO, POLICIES, FairShare, Priority, RoundRobin, ShortestJob
from llmos.kernel.sched.step import TokenPolicy, batch_throughput, cap_from_curve, measure_batch_cap

if TYPE_CHECKING:
    from llmos.kernel.estimates import Estimates

__all__ = [
    "make_scheduler", "Scheduler", "Task", "Plan", "Outcome", "POLICIES",
    "FIFO", "RoundRobin", "Priority", "FairShare", "ShortestJob",
    "TokenPolicy", "measure_batch_cap", "batch_throughput", "cap_from_curve", "AdmissionController", "Slot",
]


def make_scheduler(name: str, clock: Clock, estimates: Estimates | None = None,
                   **opts: Any) -> Scheduler:
    """A scheduler of policy ``name`` (fifo | rr | priority | fair | sjf)."""
    cls = POLICIES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InvalidArgument(f"scheduler: unknown policy {name!r}", field="scheduler",
                              expected="one of " + ", ".join(POLICIES))
    return cls(clock, estimates, **opts)
