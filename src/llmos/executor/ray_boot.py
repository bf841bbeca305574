"""The kernel's hook for Ray: connect, teach admission the cluster's nodes, build the executor.

Map:
- ``ray_executor(kernel, tools)``: joins the cluster ``kernel.config.ray`` names
  (``ray_connect.connect``), adds the cluster's GPUs to the allocator (``ray:gpu``),
  makes admission refuse a job no node can hold (``hal.cluster.admit``), and returns
  a ``RayExecutor`` that leaves the cluster (stopping a head it started) on close.
- ``attach_admission(placer, view)``: the admission part alone.
- ``attach_nodes(kernel, executor, view)``: the allocator places the steps and jobs the
  executor sends out on the cluster's live nodes (``kernel.placement``, cluster nodes).

The kernel is duck-typed here (config, placer, versions, engine_for, _claim): the
executor layer never imports it.
"""

from __future__ import annotations

import logging
from typing import Any

from llmos.executor.ray_connect import RayConnection, connect
from llmos.hal.cluster import ClusterView, cluster_resources

__all__ = ["ray_executor", "attach_admission", "attach_nodes"]

log = logging.getLogger(__name__)


def attach_admission(placer: Any, view: ClusterView) -> None:
    """Before the allocator's own check, a job must fit one live node of the cluster."""
    if placer is None:
        return
    inner = placer.check

    def check(kind: str, spec: Any) -> None:
        view.admit(kind, spec)
        inner(kind, spec)
    placer.check = check
    known = {r.name for r in placer.alloc.resources}
    for r in cluster_resources(view.nodes()):
        if r.name not in known:
            placer.alloc.add_resource(r)


def attach_nodes(kernel: Any, executor: Any, view: ClusterView) -> None:
    """The placer reads the cluster's live nodes and asks the executor what it sends out."""
    placer = kernel.placer
    if placer is None:
        return
    types = getattr(kernel, "job_types", {})
    placer.cluster = view.nodes
    placer.sends = executor.sends
    placer.job_fn = lambda t: getattr(types.get(t), "fn", None)


def ray_executor(kernel: Any, tools: Any, connection: RayConnection | None = None) -> Any:
    from llmos.executor.ray import RayExecutor

    conn = connection or connect(kernel.config.ray)
    try:
        attach_admission(kernel.placer, conn.view)
        ex = RayExecutor(kernel._claim, connection=conn, engine_for=kernel.engine_for, tools=tools,
                         versions=kernel.versions)
        attach_nodes(kernel, ex, conn.view)
    except BaseException:
        conn.close()
        raise
    nodes = conn.view.nodes()
    log.info("ray: executor on %s: %d nodes, %g CPUs, %g GPUs", conn.address, len(nodes),
             sum(n.cpus for n in nodes), sum(n.gpus for n in nodes))
    return ex
