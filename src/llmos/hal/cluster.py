"""The cluster view: every node of a Ray cluster, its CPUs, GPUs and memory.

Map:
- ``NodeInfo``: one node as Ray's resource view reports it (totals and what is free
  now); figures a node does not report are None, never guessed.
- ``nodes_from_ray(nodes, available)``: Ray's ``ray.nodes()`` rows and its free
  resources per node -> ``NodeInfo``s (pure: tests feed it rows).
- ``ClusterView(read)``: the nodes now, read through ``read()``; ``ray_reader()``
  reads a connected Ray driver's view (Ray is imported only there).
- ``admit(nodes, kind, spec)``: admission for a job on a cluster: refused
  (``AllocError`` naming the resource) when no single node has the GPUs, cores or
  memory it asks for.
- ``cluster_resources(nodes)``: the cluster's GPUs as one allocator resource
  (``ray:gpu``), so a GPU job can be placed when the head itself has none.
- ``node_resources(nodes)``: one allocator resource per live node with CPUs
  (``node:<node id[:12]>``), so the allocator chooses the node of a tool step or job
  the Ray executor runs (``kernel.placement``, the NOTE on cluster nodes).

Energy: Ray's resource view carries no power or energy figures, so a node's
``energy_j`` is None unless the node is this machine, whose counters the local HAL
reads (``llmos hw`` shows them in its energy table).
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmos.errors import AllocError

__all__ = ["NodeInfo", "ClusterView", "nodes_from_ray", "ray_reader", "admit", "cluster_resources",
           "node_resources", "node_resource_name", "RAY_GPU_RESOURCE", "NODE_LABEL"]

RAY_GPU_RESOURCE = "ray:gpu"     # the allocator resource standing for the cluster's GPUs
NODE_LABEL = "node"              # provided by the resources of cluster nodes (node_resources)


@dataclass(frozen=True)
class NodeInfo:
    """One Ray node at one moment. Counts are Ray's logical resources."""

    node_id: str                         # Ray's node id (hex)
    address: str                         # the node's IP as Ray knows it
    hostname: str                        # its host name ("" when not reported)
    alive: bool                          # False: the node left (kept in Ray's table)
    head: bool                           # the node running the cluster's GCS
    cpus: float                          # logical CPUs
    gpus: float                          # GPUs (0 when none)
    memory_bytes: int | None             # bytes of Ray's memory resource (for tasks)
    object_store_bytes: int | None       # bytes of its shared-memory object store
    cpus_free: float | None = None       # logical CPUs not held by running tasks now
    gpus_free: float | None = None
    memory_free_bytes: int | None = None
    gpu_type: str | None = None          # Ray's accelerator_type label, e.g. "A100"
    this_machine: bool = False           # the node runs on the host reading the view
    energy_j: float | None = None        # cumulative J when the node reports it (Ray does not)

    @property
    def name(self) -> str:
        """A short label: ``node:<first 8 hex of the id>``."""
        return f"node:{self.node_id[:8]}"


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _local_addresses() -> set[str]:
    out = {"127.0.0.1", "localhost"}
    try:
        host = socket.gethostname()
        out.add(host)
        out.update(i[4][0] for i in socket.getaddrinfo(host, None))
    except OSError:
        pass
    return out


def nodes_from_ray(nodes: Sequence[Mapping[str, Any]], available: Mapping[str, Mapping[str, Any]],
                   *, local: set[str] | None = None) -> list[NodeInfo]:
    """Ray's node rows (``ray.nodes()``) and free resources per node id -> ``NodeInfo``s,
    live nodes first, the head first among them."""
    local = _local_addresses() if local is None else local
    out: list[NodeInfo] = []
    for row in nodes:
        res = row.get("Resources") or {}
        free = available.get(str(row.get("NodeID", ""))) or {}
        mem, store = _num(res.get("memory")), _num(res.get("object_store_memory"))
        free_mem = _num(free.get("memory"))
        gpu_type = next((k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:")), None)
        addr = str(row.get("NodeManagerAddress") or "")
        host = str(row.get("NodeManagerHostname") or "")
        alive = bool(row.get("Alive", row.get("alive", False)))
        out.append(NodeInfo(
            node_id=str(row.get("NodeID", "")), address=addr, hostname=host, alive=alive,
            head="node:__internal_head__" in res or bool(row.get("IsHead")),
            cpus=_num(res.get("CPU")) or 0.0, gpus=_num(res.get("GPU")) or 0.0,
            memory_bytes=None if mem is None else int(mem),
            object_store_bytes=None if store is None else int(store),
            cpus_free=(_num(free.get("CPU")) or 0.0) if alive else None,
            gpus_free=(_num(free.get("GPU")) or 0.0) if alive else None,
            memory_free_bytes=None if free_mem is None or not alive else int(free_mem),
            gpu_type=gpu_type, this_machine=addr in local or host in local))
    out.sort(key=lambda n: (not n.alive, not n.head, n.address, n.node_id))
    return out


Reader = Callable[[], tuple[Sequence[Mapping[str, Any]], Mapping[str, Mapping[str, Any]]]]


def ray_reader() -> Reader:
    """Reads the view of the Ray cluster this process is connected to as a driver."""
    import ray

    def read() -> tuple[list[dict], dict]:
        nodes = ray.nodes()
        try:
            from ray._private.state import available_resources_per_node
            available = available_resources_per_node()
        except Exception:      # private API moved: totals still show, free figures do not
            available = {}
        return nodes, available
    return read


class ClusterView:
    """The nodes of one cluster, read fresh on each call (Ray's view changes as nodes come
    and go). Owner: the Ray executor's connection, or a test with a fake reader."""

    def __init__(self, read: Reader, *, address: str = "", local: set[str] | None = None) -> None:
        self._read = read
        self.address = address         # the GCS address, for messages
        self._local = local

    def nodes(self, *, alive_only: bool = True) -> list[NodeInfo]:
        rows, available = self._read()
        nodes = nodes_from_ray(rows, available, local=self._local)
        return [n for n in nodes if n.alive] if alive_only else nodes

    def admit(self, kind: str, spec: Mapping[str, Any]) -> None:
        admit(self.nodes(), kind, spec, where=self.address)

    def report(self) -> dict[str, Any]:
        """What ``llmos hw`` prints: the address and every node, live or gone."""
        from dataclasses import asdict

        nodes = self.nodes(alive_only=False)
        return {"address": self.address, "nodes": [{**asdict(n), "name": n.name} for n in nodes],
                "totals": {"cpus": sum(n.cpus for n in nodes if n.alive),
                           "gpus": sum(n.gpus for n in nodes if n.alive),
                           "memory_bytes": sum(n.memory_bytes or 0 for n in nodes if n.alive)}}


def _asked(spec: Mapping[str, Any]) -> dict[str, float]:
    """(resource -> amount) a job spec asks of one node: gpus, cores, memory_bytes."""
    from llmos.executor.ray_request import job_gpus

    demand = spec.get("demand") if isinstance(spec.get("demand"), Mapping) else {}
    out = {"gpus": job_gpus(spec)}
    device = spec.get("device")
    if isinstance(device, str) and device.startswith("gpu:") and device[4:].isdigit():
        out["gpus"] = max(out["gpus"], float(int(device[4:]) + 1))   # gpu:N needs N+1 on a node
    for key in ("cores", "memory_bytes"):
        v = _num(demand.get(key))
        if v is not None and v > 0:
            out[key] = v
    return out


def admit(nodes: Sequence[NodeInfo], kind: str, spec: Mapping[str, Any], *, where: str = "") -> None:
    """Refuse a job no single live node can hold (``AllocError`` naming the resource)."""
    if kind != "job" or not isinstance(spec, Mapping):
        return
    live = [n for n in nodes if n.alive]
    cluster = f"the Ray cluster{f' at {where}' if where else ''}"
    if not live:
        raise AllocError(f"{cluster} has no live node", hint="start a node, or serve without --ray")
    have = {"gpus": lambda n: n.gpus, "cores": lambda n: n.cpus,
            "memory_bytes": lambda n: float(n.memory_bytes or 0)}
    unit = {"gpus": "GPUs", "cores": "CPUs", "memory_bytes": "bytes of memory"}
    for key, amount in _asked(spec).items():
        if amount <= 0:
            continue
        best = max(live, key=have[key])
        most = have[key](best)
        if amount > most + 1e-9:
            field = "spec.device" if key == "gpus" and "gpus" not in (spec.get("demand") or {}) \
                else f"spec.demand.{key}"
            err = AllocError(f"{field}: the job asks for {amount:g} {unit[key]} on one node; the most "
                             f"any node of {cluster} has is {most:g} ({best.name} {best.address})",
                             hint="ask for less, or add a node that has it")
            err.resource, err.constraint = key, f"capacity {key}"
            raise err


def cluster_resources(nodes: Sequence[NodeInfo]) -> list[Any]:
    """The cluster's GPUs as one allocator resource (``ray:gpu``; none without GPUs):
    lanes = GPUs in the cluster, capacity ``gpus`` = the most one node has."""
    try:
        from llmos.alloc.model import Resource
    except ImportError:        # the allocator's older home
        from llmos.kernel.alloc_model import Resource  # type: ignore[no-redef]

    live = [n for n in nodes if n.alive and n.gpus > 0]
    if not live:
        return []
    total = int(sum(n.gpus for n in live))
    return [Resource(RAY_GPU_RESOURCE, kind="gpu", capacity={"gpus": max(n.gpus for n in live)},
                     lanes=max(1, total), speed=1.0, cost_per_unit=0.0,
                     provides=frozenset({"gpu", "job"}))]


def node_resource_name(node_id: str) -> str:
    """The allocator resource of a node: ``node:<the first 12 hex of its id>``."""
    return f"node:{node_id[:12]}"


def node_resources(nodes: Sequence[NodeInfo]) -> list[Any]:
    """One allocator resource per live node that has CPUs (a Ray task asks at least one):
    lanes = its CPUs, capacity its CPUs (``cores``), GPUs (``gpus``) and memory when Ray
    reports it; provides ``node``, ``cpu`` and ``gpu`` when it has GPUs. Speed 1 and no
    cost or power are stated: the allocator learns each node's speed per kind of work."""
    from llmos.alloc.model import Resource

    out = []
    for n in nodes:
        if not n.alive or n.cpus <= 0:
            continue
        cap = {"cores": float(n.cpus), "gpus": float(n.gpus)}
        if n.memory_bytes:
            cap["memory_bytes"] = float(n.memory_bytes)
        provides = {NODE_LABEL, "cpu"} | ({"gpu"} if n.gpus > 0 else set())
        out.append(Resource(node_resource_name(n.node_id), kind="node", capacity=cap,
                            lanes=max(1, int(n.cpus)), speed=1.0, cost_per_unit=0.0,
                            provides=frozenset(provides)))
    return out
