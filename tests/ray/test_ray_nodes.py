"""A node leaving mid-job (opt-in: -m ray): conftest's cluster of Ray nodes on this machine
(a head with no CPUs, worker nodes with one), one removed while it runs a step."""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path

import pytest

from llmos.executor.base import Work
from llmos.kernel.sched import Plan

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")


CLUSTER_NODES = 1                     # conftest's cluster: one node with a CPU to begin with


def hold_once(marker: str, hold_s: float) -> dict:
    p = Path(marker)
    first = not p.exists()
    p.write_text(ray.get_runtime_context().get_node_id())
    if first:
        time.sleep(hold_s)
    return {"first": first, "node": ray.get_runtime_context().get_node_id()}


async def test_a_node_leaving_mid_job_reruns_it_on_another(cluster, tmp_path):
    from llmos.executor.ray import RayExecutor
    from llmos.executor.ray_connect import RayConnection
    from llmos.hal.cluster import ClusterView, ray_reader

    c, (first,) = cluster
    conn = RayConnection(c.address, False, view=ClusterView(ray_reader(), address=c.address), owner=False)
    works = {1: Work(1, "job", "root", 0, {"type": "hold", "idempotent": True},
                     call=functools.partial(hold_once, str(tmp_path / "node"), 60.0))}

    async def claim(pids):
        return {p: works[p] for p in pids if p in works}
    ex = RayExecutor(claim, connection=conn)
    try:
        out = await ex.run(Plan(run=[1]))
        marker = tmp_path / "node"
        for _ in range(600):
            if marker.exists() and marker.read_text():
                break
            await asyncio.sleep(0.05)
        gone = marker.read_text()
        assert len(conn.view.nodes()) == 2
        c.add_node(num_cpus=1, object_store_memory=80 << 20)     # somewhere to go
        c.remove_node(first)                                      # the node running the job leaves
        results = dict(out.results)
        end = time.monotonic() + 90
        while 1 not in results and time.monotonic() < end:
            results.update((await asyncio.wait_for(ex.run(Plan()), 90)).results)
        res = results[1]
        assert res.ok, res.error
        assert res.value["first"] is False and res.value["node"] != gone
        assert ex.stats["died"] == 1 and ex.stats["retried"] == 1
        live = conn.view.nodes()
        assert len(live) == 2 and res.value["node"] in {n.node_id for n in live} and gone not in {
            n.node_id for n in live}
    finally:
        await ex.close()
