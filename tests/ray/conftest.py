"""Shared fixtures of the ray tier.

``cluster``: a cluster of Ray nodes on this machine for one test module
(``ray.cluster_utils.Cluster``): a head with no CPUs, so nothing runs there, and
``CLUSTER_NODES`` worker nodes with one CPU each (a module-level constant of the test
module, 1 when it names none). Yields ``(cluster, nodes)``; the test module is pickled
by value (callables defined in it run on the nodes). Every node's processes are
stopped at the end and checked gone by their PIDs (those of nodes a test added too).
"""

from __future__ import annotations

import logging
import os
import time

import pytest

NODE_STORE = 80 << 20                  # bytes of object store per node (the default is far more)


@pytest.fixture(scope="module")
def cluster(request):
    ray = pytest.importorskip("ray")
    from ray import cloudpickle
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                      "object_store_memory": NODE_STORE})
    nodes = [c.add_node(num_cpus=1, object_store_memory=NODE_STORE)
             for _ in range(getattr(request.module, "CLUSTER_NODES", 1))]
    ray.init(address=c.address, log_to_driver=False, logging_level=logging.WARNING)
    cloudpickle.register_pickle_by_value(request.module)
    pids = _pids(c)
    try:
        yield c, nodes
    finally:
        pids |= _pids(c)                # with the nodes a test added
        ray.shutdown()
        c.shutdown()
        time.sleep(0.5)
    assert [p for p in pids if os.path.exists(f"/proc/{p}")] == []


def _pids(c) -> set[int]:
    return {p.process.pid for n in c.list_all_nodes() for ps in n.all_processes.values() for p in ps}
