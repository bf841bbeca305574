"""Scheduler interface: tasks in, a Plan out, an Outcome folded back.

Map:
- ``Task``: one schedulable unit (a process) as the scheduler sees it; frozen.
- ``Plan``: what to start and what to preempt now, with a short reason per decision.
- ``Outcome``: what happened since the last plan (finished pids, usage per pid).
- ``Scheduler``: the base class. It owns the ready set and the running set and
  the bookkeeping every policy needs; a policy (``policies.py``) is a small
  subclass overriding the named surface, the way asyncio's queues override
  ``_init``/``_put``/``_get``:

      _key(task, now) -> tuple            order of ready tasks, lowest runs first
      _order(tasks, now) -> list[Task]    the whole ready order (default: sort by _key)
      _why(task, now) -> str              short reason a task was chosen
      _victim_order(running, now)         running tasks, least deserving first
      _preempts(victim, cand, now)        str reason if ``cand`` may take ``victim``'s slot
      _outranks(task, other, now)         ``task`` clearly more urgent (token-level protection)
      _charge(pid, tokens, seconds)       fold a step's usage into policy state
      _on_add(task) / _on_remove(task)    policy state for arriving / leaving tasks

The loop is three calls: ``plan = s.schedule(now, free_slots)``, the executor
runs it (starts ``plan.run``, pauses ``plan.preempt`` keeping their state),
``s.update(plan, outcome)``. ``schedule`` changes nothing; ``update`` applies
the plan and then the outcome, so a plan that was never run can be dropped.

Invariant (tested with hypothesis): every added, not removed, not finished pid
is in exactly one of ``ready()`` or ``running()``; ``len(s)`` counts both.
All times are seconds on one clock: ``now``, ``Task.arrival_s`` and the
scheduler's own ``clock.time()`` (used by ``explain`` and ``step_policy``).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from llmos.clock import Clock
from llmos.errors import InvalidArgument, NotFound
from llmos.types import check_priority

if TYPE_CHECKING:
    from llmos.kernel.estimates import Estimates
    from llmos.kernel.sched.admission import AdmissionController
    from llmos.kernel.sched.step import TokenPolicy

__all__ = ["Task", "Plan", "Outcome", "Scheduler"]

EXPLAIN_KEEP = 32          # reasons kept per pid
EXPLAIN_PIDS = 4096        # pids whose reasons are kept after they leave


@dataclass(frozen=True)
class Task:
    pid: int                       # process id, unique among queued tasks
    owner: str                     # agent id: fair share and estimates key on it
    priority: int                  # nice-like: -20 most urgent .. 19 least
    arrival_s: float               # when it became runnable (same clock as `now`)
    kind: str                      # "llm", "tool:<name>", ...: estimates key on it
    weight: float = 1.0            # fair-share weight of the owner (> 0)
    est_tokens: float | None = None  # caller's estimate of total tokens (None: learn it)
    est_s: float | None = None     # caller's estimate of total seconds (None: learn it)

    def validate(self) -> None:
        if isinstance(self.pid, bool) or not isinstance(self.pid, int) or self.pid < 0:
            raise InvalidArgument(f"pid: expected a non-negative integer, got {self.pid!r}",
                                  field="pid", expected="integer >= 0")
        if not isinstance(self.owner, str) or not self.owner:
            raise InvalidArgument("owner: expected a non-empty agent id", field="owner",
                                  expected="non-empty string")
        try:
            check_priority(self.priority)
        except ValueError as e:
            raise InvalidArgument(str(e), field="priority", expected="integer in [-20, 19]") from None
        if not isinstance(self.kind, str) or not self.kind:
            raise InvalidArgument("kind: expected a non-empty string", field="kind",
                                  expected="non-empty string such as 'llm' or 'tool:shell'")
        if not _finite(self.arrival_s):
            raise InvalidArgument(f"arrival_s: expected a finite number, got {self.arrival_s!r}",
                                  field="arrival_s", expected="finite seconds")
        if not _finite(self.weight) or self.weight <= 0:
            raise InvalidArgument(f"weight: expected a positive number, got {self.weight!r}",
                                  field="weight", expected="number > 0")
        for name in ("est_tokens", "est_s"):
            v = getattr(self, name)
            if v is not None and (not _finite(v) or v < 0):
                raise InvalidArgument(f"{name}: expected a non-negative number or None, got {v!r}",
                                      field=name, expected="number >= 0 or null")


@dataclass
class Plan:
    run: list[int] = field(default_factory=list)         # ready pids to start/resume now, in order
    reasons: dict[int, str] = field(default_factory=dict)  # pid -> why it runs / is preempted
    preempt: list[int] = field(default_factory=list)     # running pids to pause (state kept)
    at_s: float = 0.0                                    # the `now` this plan was made for
    # len(run) <= free_slots + len(preempt): preempted pids free the slots their
    # replacements take. run and preempt are disjoint, without duplicates. Order:
    # with n = max(free_slots, 0) and k = max(-free_slots, 0), preempt[:k] are cut for
    # capacity and run[n + j] is the replacement of preempt[k + j].


@dataclass
class Outcome:
    finished: set[int] = field(default_factory=set)      # pids that ended (any final state)
    usage: dict[int, tuple[int, float]] = field(default_factory=dict)  # pid -> (tokens, seconds) this step


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class Scheduler:
    """Base scheduler. Subclasses set ``name`` and override the surface above.

    Options (``make_scheduler(..., **opts)``; each policy adds its own in ``options``):
    preempt (bool), preemptible_kinds (kinds that may be paused; None: all),
    min_run_tokens / min_run_s (hysteresis: a dispatched task is not preempted
    before it got this many tokens or seconds), batch_cap (token-level cap on
    the active batch; None: the engine's max_active), prefills_per_step
    (token level: members prefilling at once), learn (feed finished tasks'
    usage to ``estimates``).
    """

    name: ClassVar[str] = "base"
    options: ClassVar[dict[str, Any]] = {
        "preempt": False, "preemptible_kinds": None, "min_run_tokens": 4,
        "min_run_s": 0.5, "batch_cap": None, "prefills_per_step": 2, "learn": True,
    }

    def __init__(self, clock: Clock, estimates: Estimates | None = None, **opts: Any) -> None:
        allowed: dict[str, Any] = {}
        for klass in reversed(type(self).__mro__):
            allowed.update(getattr(klass, "options", {}))
        unknown = sorted(set(opts) - set(allowed))
        if unknown:
            raise InvalidArgument(f"scheduler {self.name!r}: unknown option {unknown[0]!r}",
                                  field=unknown[0], expected="one of " + ", ".join(sorted(allowed)))
        self.opts: dict[str, Any] = {**allowed, **opts}   # effective options; fixed after init
        self._check_opts()
        self.clock = clock
        self.estimates = estimates
        self._tasks: dict[int, Task] = {}           # every queued pid (ready or running); add/remove/renice
        self._running: dict[int, float] = {}        # pid -> s dispatched; update() only
        self._ready_since: dict[int, float] = {}    # pid -> s it became ready (arrival or preemption)
        self._used: dict[int, list[float]] = {}     # pid -> [tokens, seconds] charged in total
        self._slice: dict[int, list[float]] = {}    # pid -> [tokens, seconds] since dispatch
        self._now = -math.inf                       # latest time seen (add / schedule / update)
        self._log: collections.OrderedDict[int, collections.deque[str]] = collections.OrderedDict()
        self._init()

    # ── the surface policies override ──────────────────────────────────────
    def _init(self) -> None:
        """Set up policy state (called at the end of __init__)."""

    def _check_opts(self) -> None:
        o = self.opts
        for k in ("min_run_tokens", "min_run_s"):
            if not _finite(o[k]) or o[k] < 0:
                raise InvalidArgument(f"{k}: expected a number >= 0, got {o[k]!r}", field=k,
                                      expected="number >= 0")
        pps = o["prefills_per_step"]
        if isinstance(pps, bool) or not isinstance(pps, int) or pps < 1:
            raise InvalidArgument(f"prefills_per_step: expected a positive integer, got {pps!r}",
                                  field="prefills_per_step", expected="integer >= 1")
        cap = o["batch_cap"]
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise InvalidArgument(f"batch_cap: expected a positive integer or None, got {cap!r}",
                                  field="batch_cap", expected="integer >= 1")

    def _key(self, task: Task, now: float) -> tuple:
        return (self._ready_since.get(task.pid, task.arrival_s), task.pid)

    def _order(self, tasks: Iterable[Task], now: float) -> list[Task]:
        return sorted(tasks, key=lambda t: self._key(t, now))

    def _victim_order(self, running: list[Task], now: float) -> list[Task]:
        return sorted(running, key=lambda t: self._key(t, now), reverse=True)

    def _why(self, task: Task, now: float) -> str:
        return f"{self.name}: waited {self.waited(task.pid, now):.2f} s"

    def _preempts(self, victim: Task, cand: Task, now: float) -> str | None:
        return None

    def _outranks(self, task: Task, other: Task, now: float) -> bool:
        """Whether ``task`` is clearly more urgent than ``other`` (token level: see step.py)."""
        return False

    def _charge(self, pid: int, tokens: int, seconds: float) -> None:
        """Fold usage into policy state; base totals are already updated."""

    def _on_add(self, task: Task) -> None: ...

    def _on_remove(self, task: Task) -> None: ...

    # ── queries ────────────────────────────────────────────────────────────
    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, pid: object) -> bool:
        return pid in self._tasks

    def get(self, pid: int) -> Task:
        try:
            return self._tasks[pid]
        except KeyError:
            raise NotFound(f"pid {pid} is not queued in the scheduler") from None

    def ready(self) -> list[int]:
        return [p for p in self._tasks if p not in self._running]

    def running(self) -> list[int]:
        return list(self._running)

    def waited(self, pid: int, now: float) -> float:
        """Seconds ``pid`` has been ready without running (0 while it runs)."""
        if pid in self._running or pid not in self._ready_since:
            return 0.0
        return max(0.0, now - self._ready_since[pid])

    def used(self, pid: int) -> tuple[float, float]:
        """(tokens, seconds) charged to ``pid`` so far."""
        u = self._used.get(pid, [0.0, 0.0])
        return (u[0], u[1])

    def explain(self, pid: int) -> list[str]:
        """Recorded decisions for ``pid``, oldest first, plus its standing now."""
        out = list(self._log.get(pid, ()))
        task = self._tasks.get(pid)
        if task is not None:
            now = self.clock.time()
            if pid in self._running:
                tok, sec = self._slice.get(pid, [0.0, 0.0])
                out.append(f"now: running ({tok:g} tokens, {sec:.2f} s since dispatch)")
            else:
                order = self._order((self._tasks[p] for p in self.ready()), now)
                pos = next(i for i, t in enumerate(order) if t.pid == pid) + 1
                out.append(f"now: ready, {pos} of {len(order)} in line ({self._why(task, now)})")
        return out

    # ── mutations ──────────────────────────────────────────────────────────
    def add(self, task: Task) -> None:
        if not isinstance(task, Task):
            raise InvalidArgument("task: expected a Task", field="task", expected="Task")
        task.validate()
        if task.pid in self._tasks:
            raise InvalidArgument(f"pid {task.pid} is already queued", field="pid",
                                  expected="a pid not already in the scheduler")
        self._now = max(self._now, task.arrival_s)
        self._tasks[task.pid] = task
        self._ready_since[task.pid] = task.arrival_s
        self._used[task.pid] = [0.0, 0.0]
        self._on_add(task)
        self._record(task.pid, f"queued (priority {task.priority}, owner {task.owner}, kind {task.kind})")

    def remove(self, pid: int) -> Task:
        """Forget ``pid`` (killed, or finished outside an Outcome); returns its Task."""
        task = self.get(pid)
        self._on_remove(task)
        del self._tasks[pid]
        self._running.pop(pid, None)
        self._ready_since.pop(pid, None)
        self._used.pop(pid, None)
        self._slice.pop(pid, None)
        return task

    def renice(self, pid: int, priority: int) -> None:
        task = self.get(pid)
        try:
            check_priority(priority)
        except ValueError as e:
            raise InvalidArgument(str(e), field="priority", expected="integer in [-20, 19]") from None
        self._tasks[pid] = dataclasses.replace(task, priority=priority)
        self._record(pid, f"reniced {task.priority} -> {priority}")

    # ── the loop's two calls ───────────────────────────────────────────────
    def schedule(self, now: float, free_slots: int) -> Plan:
        """Choose ready tasks for ``free_slots`` slots, and preemptions. Pure: changes nothing.

        NOTE: ready tasks are ordered by ``_order``; the first ``free_slots`` run.
        Negative ``free_slots`` (the cap shrank) preempts that many running tasks,
        least deserving first. Then, if preemption is on, each remaining ready
        task in order may take the slot of the least deserving running task for
        which ``_preempts(victim, cand)`` gives a reason; a victim must be
        preemptible (kind) and settled (``min_run_tokens`` or ``min_run_s`` since
        dispatch), which is the hysteresis that stops thrashing.
        """
        if isinstance(free_slots, bool) or not isinstance(free_slots, int):
            raise InvalidArgument(f"free_slots: expected an integer, got {free_slots!r}",
                                  field="free_slots", expected="integer")
        self._now = max(self._now, now)
        plan = Plan(at_s=now)
        ready = self._order((self._tasks[p] for p in self.ready()), now)
        running = [self._tasks[p] for p in self._running]
        victims = self._victim_order(running, now)
        over = max(0, -free_slots)
        for v in victims[:over]:
            plan.preempt.append(v.pid)
            plan.reasons[v.pid] = f"preempted: over capacity by {over}"
        victims = victims[over:]
        n = max(0, free_slots)
        for t in ready[:n]:
            plan.run.append(t.pid)
            plan.reasons[t.pid] = self._why(t, now)
        if not self.opts["preempt"]:
            return plan
        for cand in ready[n: n + len(victims)]:
            for i, v in enumerate(victims):
                if not self._can_preempt(v, now):
                    continue
                why = self._preempts(v, cand, now)
                if why is None:
                    continue
                plan.preempt.append(v.pid)
                plan.reasons[v.pid] = f"preempted by pid {cand.pid}: {why}"
                plan.run.append(cand.pid)
                plan.reasons[cand.pid] = f"{self._why(cand, now)}; preempts pid {v.pid}"
                del victims[i]
                break
        return plan

    def update(self, plan: Plan, outcome: Outcome) -> None:
        """Apply ``plan`` (dispatch / preempt), then ``outcome`` (usage, finishes)."""
        now = plan.at_s
        self._now = max(self._now, now)
        for pid in plan.preempt:
            if pid in self._running:
                del self._running[pid]
                self._ready_since[pid] = now
                self._record(pid, plan.reasons.get(pid, "preempted"))
        for pid in plan.run:
            if pid in self._tasks and pid not in self._running:
                self._running[pid] = now
                self._slice[pid] = [0.0, 0.0]
                self._record(pid, "dispatched: " + plan.reasons.get(pid, self.name))
        for pid, (tokens, seconds) in outcome.usage.items():
            if pid not in self._tasks:
                continue
            if not _finite(tokens) or not _finite(seconds) or tokens < 0 or seconds < 0:
                raise InvalidArgument(f"usage[{pid}]: expected (tokens >= 0, seconds >= 0), "
                                      f"got {(tokens, seconds)!r}", field=f"usage[{pid}]",
                                      expected="(tokens >= 0, seconds >= 0)")
            u = self._used[pid]
            u[0] += tokens
            u[1] += seconds
            s = self._slice.setdefault(pid, [0.0, 0.0])
            s[0] += tokens
            s[1] += seconds
            self._charge(pid, tokens, seconds)
        for pid in outcome.finished:
            if pid not in self._tasks:
                continue
            tok, sec = self.used(pid)
            task = self.remove(pid)
            self._record(pid, f"finished after {tok:g} tokens, {sec:.2f} s")
            if self.estimates is not None and self.opts["learn"]:
                self.estimates.observe(self.estimate_key(task), tok, sec)

    # ── helpers ────────────────────────────────────────────────────────────
    @staticmethod
    def estimate_key(task: Task) -> tuple[str, str, str]:
        """The estimates key the scheduler learns and predicts under (any model)."""
        return (task.owner, task.kind, "*")

    def _can_preempt(self, task: Task, now: float) -> bool:
        kinds = self.opts["preemptible_kinds"]
        if kinds is not None and task.kind not in kinds:
            return False
        tok, _ = self._slice.get(task.pid, [0.0, 0.0])
        ran_s = now - self._running.get(task.pid, now)
        return tok >= self.opts["min_run_tokens"] or ran_s >= self.opts["min_run_s"]

    def _record(self, pid: int, reason: str) -> None:
        log = self._log.get(pid)
        if log is None:
            log = self._log[pid] = collections.deque(maxlen=EXPLAIN_KEEP)
            extra = len(self._log) - EXPLAIN_PIDS
            if extra > 0:   # drop the oldest logs of pids that have left; live ones stay
                for old in [p for p in self._log if p not in self._tasks][:extra]:
                    del self._log[old]
        else:
            self._log.move_to_end(pid)
        log.append(reason)

    def clone(self) -> Scheduler:
        """A fresh, empty scheduler of the same policy and options."""
        return type(self)(self.clock, self.estimates, **{k: v for k, v in self.opts.items()})

    def step_policy(self) -> TokenPolicy:
        """The token-level hook for ``engine.set_policy``: this policy, per engine step."""
        from llmos.kernel.sched.step import TokenPolicy

        return TokenPolicy(self.clone(), batch_cap=self.opts["batch_cap"])

    def admission(self, max_in_flight: int) -> AdmissionController:
        """Admission control for engines without token-level steps (remote servers)."""
        from llmos.kernel.sched.admission import AdmissionController

        return AdmissionController(self.clone(), max_in_flight)
