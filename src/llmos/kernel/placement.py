"""Placement: the allocator as a live kernel feature.

Map:
- ``Placer(allocator, engines, config, snapshot)``: the kernel's bridge from
  processes to ``Allocator.place`` / ``started`` / ``release``.
- ``task_for(p)``: a process as an allocation ``Task`` (what it needs, how much work).
- ``check(kind, spec, owner)``: at admission, refuse work that could never be placed
  (``AllocError`` naming the resource), e.g. a job that needs a GPU on a machine with none.
- ``batch(procs, mode_of)``: before a step places anything, the queued work (QUEUED,
  not yet placed, in the kernel's default mode) goes to ``alloc.live.LiveSolver``, which
  re-solves it with HiGHS when it changed enough (see ``llmos.alloc.live``).
- ``place(p, mode) -> Placement | None``: where ``p`` runs now (None: no room yet): the
  live batch's resource when it has one for ``p``, else list scheduling (priced by the
  batch's duals); the reason names which decided and why.
- ``started(pid)`` / ``finish(pid, seconds=, joules=, ok=, done=)`` / ``drop(pid)``.
- ``engine_of(pid)`` (the ``EngineSet`` key serving an llm process), ``devices_of(pid)``
  (the devices its energy is metered on), ``placement(pid)``.
- ``grant(pid)``: what a placed tool or job was given (``executor.base.Grant``: CPU ids,
  memory, GPUs); the executor enforces it on the child a tool starts. The placement's
  reason says what was granted, whether it is enforced and how (``llmos explain``).
- ``refresh()``: every ``REFRESH_S`` (called from ``batch``), device capacities are read
  again from the HAL (free memory, GPU memory, cores) while the kernel runs.
- ``sync_nodes()`` (called from ``batch``): an engine spread over nodes gets one resource
  per live node, so the allocator chooses the node (see the NOTE on nodes); so does each
  live node of the Ray cluster for the tool steps and jobs sent there (NOTE on cluster nodes).
- ``node_of(pid)``: the Ray node id a tool step or job was placed on (None: not on a node);
  ``device_of(pid)``: the device a job that named one is told.

NOTE (grants). CPU ids come from the kernel's own affinity (``os.sched_getaffinity``).
A job whose demand names ``cores`` holds that many CPU ids alone while it runs
(lowest free ids first); every other tool or job gets the ids no job holds (all of
them when jobs hold every one). A job placed on ``gpu:N`` gets GPU N, anything else
none (``CUDA_VISIBLE_DEVICES=""``); a job's ``memory_bytes`` demand is its memory
limit. Exec tools (python.run, shell.run) run in a sandboxed child: affinity,
memory (cgroup v2 or RLIMIT_AS) and ``CUDA_VISIBLE_DEVICES`` are enforced there. Other
tools run in a kernel thread and jobs in the kernel's process: their grant is stated
(and handed to a job that takes ``grant=``) but cannot be enforced, and explain says so.

NOTE (what is placed, and what is learned). Each loop step the kernel first hands the
queue to the live solver (a HiGHS batch when the queue changed enough, within its time
budget), then places the plan's newly started processes one by one
(``Allocator.place``: the batch's choice, else list scheduling over the resources'
outstanding placements):
  llm   needs ``llm`` and ``model:<m>`` when the spec names model m, else ``default``
        (the engines that serve an unnamed request); work = max_tokens; the chosen
        resource's engine serves it. A model named by path gets its resource on first use.
  tool  needs ``tool`` (the CPU); kind ``tool:<name>``, work 1 (learned: its seconds).
  job   needs ``job`` and ``spec.device`` (``cpu`` by default, ``gpu`` or ``gpu:N``),
        holds ``spec.demand`` ({cores, memory_bytes, gpu_memory_bytes}) while placed;
        kind ``job:<type>``, work 1.
The agent's ``alloc_mode`` capability, else ``config.alloc_mode``, picks the rule.
A placement is held from start to the end of the process (a preempted generation
keeps its place: its state stays on that engine). When it ends, the measured run
time and joules are fed back. For an llm the predicted work was max_tokens but the
work done is the tokens generated, so both are scaled to the predicted work
(seconds × work/done): the allocator learns tokens per second and joules per token,
and its prediction spread measures the speed error, not early stops.

NOTE (engines on nodes). A loaded engine that runs on several nodes states them:
``nodes() -> {node id: lanes}`` of its live nodes, and ``at(node)`` is the same engine
with its generations sent to that node (``executor.ray_engines.RayEngine``). Once it
states nodes, its resource ``engine:<key>`` (free of placements) gives way to one per live
node, ``engine:<key>@<node id[:12]>``, with the same labels, power and devices and the
node's lanes, served by the EngineSet key ``<key>@<node id>`` (the engine ``at`` that
node). So the allocator picks the node like any resource (load, learned speed per node,
the mode's rule) and the dispatch line (``llmos explain``) names it. A node that leaves
loses its resource once nothing is placed on it; a generation placed there is run by
the engine on a live node (its own rule). With no live node the engine's resource returns.

NOTE (cluster nodes). Under the Ray executor (``executor.ray_boot`` sets ``cluster``, the
live nodes of the HAL's cluster view, and ``sends(kind, spec, fn)``, whether that tool step
or job becomes a Ray task), each live node with CPUs is a resource ``node:<node id[:12]>``
(``hal.cluster.node_resources``: lanes and ``cores`` its CPUs, ``gpus``, ``memory_bytes``),
read again every ``NODES_S``. A step or job the executor sends out needs ``node`` and
``cpu`` (``gpu`` and one ``gpus`` when its device is a GPU), so the allocator picks the node
like any resource (room, lanes, learned speed per node, the mode's rule); the dispatch line
names it and the executor asks Ray for that node (soft node affinity: a node that has left
by then is replaced by Ray's choice, and the result says so). Work that stays in the
kernel's process keeps this machine's resources. A node that leaves loses its resource
once nothing is placed on it; with no live node, work is placed here as without a cluster.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from llmos.alloc import Allocator, Placement, Task
from llmos.alloc.live import LiveSolver
from llmos.alloc.resources import (
    DEFAULT_LABEL,
    EngineResource,
    device_resources,
    engine_resources,
    local_engine,
)
from llmos.errors import InvalidArgument, LLMOSError
from llmos.executor.base import Grant
from llmos.hal.cluster import NODE_LABEL, RAY_GPU_RESOURCE, node_resource_name, node_resources
from llmos.kernel.process import ProcState

if TYPE_CHECKING:
    from llmos.config import Config
    from llmos.hal.base import HAL, HardwareSnapshot
    from llmos.hal.cluster import NodeInfo
    from llmos.kernel.process import Process

__all__ = ["Placer", "JOB_DEMAND_DIMS", "PLACED", "check_job_placement"]

PLACED = ("llm", "tool", "job")      # process kinds the allocator places
REFRESH_S = 5.0                      # s between capacity refreshes from the HAL while running
NODES_S = 1.0                        # s between reads of the Ray cluster's live nodes

log = logging.getLogger(__name__)

JOB_DEMAND_DIMS = ("cores", "memory_bytes", "gpu_memory_bytes")   # capacity a job spec may hold


def check_job_placement(spec: Mapping[str, Any]) -> tuple[str, dict[str, float]]:
    """Validate a job spec's ``device`` and ``demand``; return them normalized."""
    device = spec.get("device", "cpu")
    if not isinstance(device, str) or not (device in ("cpu", "gpu") or
                                           (device.startswith("gpu:") and device[4:].isdigit())):
        raise InvalidArgument(f"spec.device: expected cpu, gpu or gpu:N, got {device!r}",
                              field="spec.device", expected="cpu | gpu | gpu:N")
    demand = spec.get("demand") or {}
    if not isinstance(demand, dict):
        raise InvalidArgument("spec.demand: expected an object", field="spec.demand",
                              expected=f"{{dim: amount}} with dims {', '.join(JOB_DEMAND_DIMS)}")
    out: dict[str, float] = {}
    for k, v in demand.items():
        if k not in JOB_DEMAND_DIMS:
            raise InvalidArgument(f"spec.demand.{k}: unknown capacity", field=f"spec.demand.{k}",
                                  expected=f"one of {', '.join(JOB_DEMAND_DIMS)}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise InvalidArgument(f"spec.demand.{k}: expected a positive number, got {v!r}",
                                  field=f"spec.demand.{k}", expected="number > 0")
        out[k] = float(v)
    return device, out


class Placer:
    """Owns the kernel's allocator and the placements of running processes. Loop-only."""

    def __init__(self, allocator: Allocator, *, config: Config, given: Mapping[str, Any] | None = None,
                 snapshot: HardwareSnapshot | None = None, live: LiveSolver | bool = True,
                 hal: HAL | None = None, tools: Any = None,
                 loaded: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.alloc = allocator                        # owner: this Placer
        self._loaded = loaded                         # () -> the kernel's loaded engines by key (sync_nodes)
        self._hal = hal                               # refreshed capacities come from it (None: fixed)
        self._tools = tools                           # the tool registry (which tools start a child)
        self._refreshed = allocator.clock.monotonic() # when capacities were last read
        self._cpus = _cpus()                          # CPU ids this kernel may use
        self._held: dict[int, tuple[int, ...]] = {}   # pid -> CPU ids a job holds alone; owner: place/finish
        self._grants: dict[int, Grant] = {}           # pid -> what it was given; owner: place/finish
        self.live = (LiveSolver(allocator) if live is True else live) or None   # HiGHS batches; None: off
        self.config = config
        self._snapshot = snapshot                     # HAL snapshot at boot (lazy local engines)
        self._engines: dict[str, EngineResource] = {} # resource name -> engine resource
        self._by_pid: dict[int, Placement] = {}       # live placements; owner: place/finish/drop
        self.cluster: Callable[[], Sequence[NodeInfo]] | None = None   # live Ray nodes; set by ray_boot
        self.sends: Callable[..., bool] | None = None  # (kind, spec, fn) -> runs as a Ray task; ray_boot
        self.job_fn: Callable[[str], Any] = lambda t: None   # job type -> its function (for sends)
        self._nodes: dict[str, str] = {}              # node resource name -> Ray node id; owner: _sync_cluster
        self._live_nodes: tuple[str, ...] = ()        # node resources live at the last read (new work goes there)
        self._nodes_read = -math.inf                  # when the cluster's nodes were last read (monotonic s)
        known = {r.name for r in allocator.resources}
        for e in engine_resources(config, given, snapshot):
            self._engines[e.resource.name] = e
            if e.resource.name not in known:
                allocator.add_resource(e.resource)

    # ── processes as tasks ─────────────────────────────────────────────────
    def task_for(self, p: Process) -> Task:
        return self._task(p.kind, p.spec, f"pid {p.pid}")

    def _task(self, kind: str, spec: Mapping[str, Any], name: str) -> Task:
        if kind == "llm":
            model = spec.get("model")
            if model is not None:
                self._ensure_model(model)
            needs = {"llm", f"model:{model}" if model is not None else DEFAULT_LABEL}
            from llmos.llm.base import SamplingParams

            work = float(spec.get("max_tokens") or SamplingParams.max_tokens)
            return Task(name, kind="llm", work=work, needs=frozenset(needs))
        if kind == "tool":
            if self._on_nodes(kind, spec):
                return Task(name, kind=f"tool:{spec.get('tool')}", work=1.0, needs=frozenset({NODE_LABEL, "cpu"}),
                            allowed=self._live_nodes)
            return Task(name, kind=f"tool:{spec.get('tool')}", work=1.0, needs=frozenset({"tool"}))
        if kind == "job":
            device, demand = check_job_placement(spec)
            if self._on_nodes(kind, spec):
                gpu = device.startswith("gpu")
                demand = {**demand, "gpus": 1.0} if gpu else demand
                return Task(name, kind=f"job:{spec.get('type')}", work=1.0, demand=demand,
                            needs=frozenset({NODE_LABEL, "gpu" if gpu else "cpu"}), allowed=self._live_nodes)
            return Task(name, kind=f"job:{spec.get('type')}", work=1.0, demand=demand,
                        needs=frozenset({"job", device}))
        raise InvalidArgument(f"kind: a {kind} process is not placed", field="kind",
                              expected="llm | tool | job")

    def _on_nodes(self, kind: str, spec: Mapping[str, Any]) -> bool:
        """Whether this tool step or job is placed on a cluster node (NOTE on cluster nodes)."""
        if not self._live_nodes or self.sends is None:
            return False
        fn = self.job_fn(spec.get("type")) if kind == "job" else None
        return bool(self.sends(kind, spec, fn))

    def _ensure_model(self, model: str) -> None:
        label = f"model:{model}"
        if any(label in r.provides for r in self.alloc.resources):
            return
        e = local_engine(model, self.config, self._snapshot)
        self._engines[e.resource.name] = e
        self.alloc.add_resource(e.resource)

    def check(self, kind: str, spec: Mapping[str, Any]) -> None:
        """Admission: raise AllocError when a process of this kind/spec could never run."""
        if kind in ("llm", "tool", "job"):
            self.alloc.check(self._task(kind, spec, "new process"))

    # ── placements ─────────────────────────────────────────────────────────
    def batch(self, procs: Iterable[Process], mode_of: Callable[[Process], str | None]) -> bool:
        """The queue to the live solver (queued, not placed, in the default mode). True: it solved."""
        self.refresh()
        self.sync_nodes()
        if self.live is None:
            return False
        queue: dict[int, Task] = {}
        for p in procs:
            if p.state != ProcState.QUEUED or p.kind not in PLACED or p.pid in self._by_pid:
                continue
            if (mode_of(p) or self.alloc.mode) != self.alloc.mode:
                continue                              # another mode: list scheduling under it
            try:
                queue[p.pid] = self.task_for(p)
            except LLMOSError:
                continue                              # place() reports it
        return self.live.update(queue, self.alloc.mode)

    def place(self, p: Process, mode: str | None = None) -> Placement | None:
        """Place ``p`` (kept if it already holds a placement). None: no room now."""
        held = self._by_pid.get(p.pid)
        if held is not None:
            return held
        solved = note = None
        if self.live is not None and (mode or self.alloc.mode) == self.alloc.mode:
            solved = self.live.choice(p.pid)
            note = self._why_listed()
        pl = self.alloc.place(self.task_for(p), mode=mode, solved=solved, note=note)
        if pl is not None and p.kind in ("tool", "job"):
            g = self._grant(p, pl)
            self._grants[p.pid] = g
            pl = replace(pl, reason=f"{pl.reason}; {self._enforced(p, g, pl)}")
        if pl is not None:
            self._by_pid[p.pid] = pl
        return pl

    # ── grants and capacities ──────────────────────────────────────────────
    def grant(self, pid: int) -> Grant | None:
        return self._grants.get(pid)

    def _grant(self, p: Process, pl: Placement) -> Grant:
        demand = pl.task.demand
        if pl.resource in self._nodes:                # CPUs and GPUs there are Ray's to assign
            mem = demand.get("memory_bytes")
            return Grant(memory_bytes=int(mem) if mem else None)
        held = {c for cs in self._held.values() for c in cs}
        free = [c for c in self._cpus if c not in held]
        cores: tuple[int, ...] = tuple(free or self._cpus)
        want = demand.get("cores")
        if p.kind == "job" and want:
            n = min(len(self._cpus), max(1, math.ceil(want)))
            cores = tuple(sorted((free + [c for c in self._cpus if c in held])[:n]))
            self._held[p.pid] = cores
        gpus: tuple[str, ...] = ()
        if pl.resource.startswith("gpu:"):
            gpus = (pl.resource[4:],)
        mem = demand.get("memory_bytes")
        return Grant(cores=cores, memory_bytes=int(mem) if mem else None, gpus=gpus)

    def _enforced(self, p: Process, g: Grant, pl: Placement) -> str:
        """One clause for the dispatch line: what was granted, and whether and how it is enforced."""
        if pl.resource in self._nodes:
            mem = f"; memory {g.memory_bytes / (1 << 20):.0f} MiB" if g.memory_bytes else ""
            return (f"a Ray task on node {self._nodes[pl.resource]} (Ray holds its CPUs and GPUs "
                    f"there{mem}; a program runs in that node's sandbox)")
        if p.kind == "tool" and self._starts_child(p.spec.get("tool")):
            from llmos.tools.sandbox import memory_limit_how

            mem = "its memory limit" if g.memory_bytes is None else "it"
            return (f"granted {g.describe()}: enforced on its sandboxed child (CPU affinity by "
                    f"sched_setaffinity, {mem} by {memory_limit_how()}, "
                    f"CUDA_VISIBLE_DEVICES={','.join(g.gpus or ())!r})")
        where = "runs in a kernel thread" if p.kind == "tool" else \
            "runs in the kernel's process (handed to it as grant= when it takes one)"
        return f"granted {g.describe()}: not enforced, it {where} and starts no child the kernel confines"

    def _starts_child(self, tool: Any) -> bool:
        try:
            return getattr(self._tools.get(tool), "kind", None) == "code"
        except Exception:                             # no registry, or no such tool: the call says so
            return False

    def refresh(self, now: float | None = None) -> bool:
        """Read device capacities again from the HAL (every ``REFRESH_S``). True: refreshed."""
        now = self.alloc.clock.monotonic() if now is None else now
        if self._hal is None or now - self._refreshed < REFRESH_S:
            return False
        self._refreshed = now
        self._cpus = _cpus()
        known = {r.name: r for r in self.alloc.resources}
        load = self.alloc.load()
        for r in device_resources(self._hal.snapshot()):
            if r.name not in known:
                self.alloc.add_resource(r)            # a device appeared (hot-plug, driver loaded)
                continue
            held = load[r.name]["used"]
            cap = {k: v + held.get(k, 0.0) if k.endswith("memory_bytes") else v   # free + what we hold
                   for k, v in r.capacity.items()}
            self.alloc.set_capacity(r.name, cap)
        return True

    def sync_nodes(self) -> None:
        """One resource per live node of each loaded engine that states nodes (see the NOTE),
        and of the Ray cluster (NOTE on cluster nodes)."""
        self._sync_cluster()
        if self._loaded is None:
            return
        for key, engine in list(self._loaded().items()):
            nodes_of = getattr(engine, "nodes", None)
            base = self._engines.get(f"engine:{key}")
            if not (callable(nodes_of) and callable(getattr(engine, "at", None))) or base is None \
                    or base.engine != key:
                continue
            nodes: Mapping[str, int] = nodes_of()
            mine = {name: e.engine.partition("@")[2] for name, e in self._engines.items()
                    if e.engine.startswith(f"{key}@")}
            present = {r.name for r in self.alloc.resources}
            for node, lanes in nodes.items():
                name = f"{base.resource.name}@{node[:12]}"
                if name not in present:
                    r = replace(base.resource, name=name, lanes=max(1, int(lanes)))
                    self.alloc.add_resource(r)
                    self._engines[name] = replace(base, resource=r, engine=f"{key}@{node}")
            for name, node in mine.items():
                if node not in nodes and name in present:
                    self._remove(name)
            if nodes and base.resource.name in present:
                self._remove(base.resource.name)
            elif not nodes and base.resource.name not in present:
                self.alloc.add_resource(base.resource)

    def _sync_cluster(self) -> None:
        """One resource per live node of the Ray cluster (every ``NODES_S``; NOTE on cluster nodes)."""
        now = self.alloc.clock.monotonic()
        if self.cluster is None or now - self._nodes_read < NODES_S:
            return
        self._nodes_read = now
        try:
            live = self.cluster()
        except Exception as e:                        # the GCS did not answer: keep what we had
            log.warning("placement: the Ray cluster's nodes could not be read: %s", e)
            return
        ids = {node_resource_name(n.node_id): n.node_id for n in live}
        present = {r.name for r in self.alloc.resources}
        fresh = node_resources(live)
        for r in fresh:
            if r.name not in present:
                self.alloc.add_resource(r)
            self._nodes[r.name] = ids[r.name]
        self._live_nodes = tuple(r.name for r in fresh)
        for name in list(self._nodes):
            if name not in self._live_nodes and name in present:
                self._remove(name)                    # later, when what runs there has ended
            if name not in {r.name for r in self.alloc.resources}:
                del self._nodes[name]

    def node_of(self, pid: int) -> str | None:
        """The Ray node id ``pid`` was placed on (None: not placed on a cluster node)."""
        pl = self._by_pid.get(pid)
        return self._nodes.get(pl.resource) if pl is not None else None

    def device_of(self, pid: int) -> str | None:
        """The device a job that named one is told: the resource it was placed on; on a
        cluster node ``ray:gpu`` for a GPU (Ray picks it there), else ``cpu``."""
        pl = self._by_pid.get(pid)
        if pl is None or pl.resource not in self._nodes:
            return pl.resource if pl is not None else None
        return RAY_GPU_RESOURCE if "gpu" in pl.task.needs else "cpu"

    def _remove(self, name: str) -> None:
        """Take resource ``name`` out of the allocator once nothing is placed on it (else later)."""
        if self.alloc.load()[name]["outstanding"] == 0:
            self.alloc.remove_resource(name)

    def _why_listed(self) -> str:
        last = self.live.last if self.live is not None else None
        if last is None:
            return "list scheduling (no HiGHS batch yet: the queue was below two tasks)"
        if not last.used:
            return last.why
        return f"list scheduling (not in HiGHS live batch {last.id}; priced by its duals)"

    def placement(self, pid: int) -> Placement | None:
        return self._by_pid.get(pid)

    def started(self, pid: int) -> None:
        pl = self._by_pid.get(pid)
        if pl is not None:
            self.alloc.started(pl)

    def finish(self, pid: int, *, seconds: float | None, joules: float | None = None, ok: bool = True,
               done: float | None = None) -> Placement | None:
        """Release ``pid``'s placement and learn from what was measured. ``done``: work
        actually done, when it differs from the predicted work (llm: tokens generated)."""
        pl = self._by_pid.pop(pid, None)
        self._held.pop(pid, None)
        self._grants.pop(pid, None)
        if pl is None:
            return None
        if seconds is not None and done is not None:
            if done <= 0:
                seconds = None                       # nothing generated: no speed to learn
            else:
                scale = pl.task.work / done
                seconds *= scale
                joules = None if joules is None else joules * scale
        self.alloc.release(pl, seconds=seconds, joules=joules, ok=ok)
        return pl

    def drop(self, pid: int) -> None:
        """Release without learning (killed, re-queued, never started)."""
        self.finish(pid, seconds=None)

    def engine_of(self, pid: int) -> str | None:
        pl = self._by_pid.get(pid)
        e = self._engines.get(pl.resource) if pl is not None else None
        return e.engine if e is not None else None

    def devices_of(self, pid: int) -> tuple[str, ...]:
        """Devices whose energy ``pid``'s work draws: its engine's, or the device it was placed on."""
        pl = self._by_pid.get(pid)
        if pl is None:
            return ()
        e = self._engines.get(pl.resource)
        return e.devices if e is not None else (pl.resource,)

    def running(self) -> dict[int, Placement]:
        return dict(self._by_pid)


def _cpus() -> list[int]:
    """The CPU ids this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):                 # not Linux
        return list(range(os.cpu_count() or 1))
