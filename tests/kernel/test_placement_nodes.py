"""The allocator chooses the Ray node of the tool steps and jobs the Ray executor sends out:
a fake cluster view (Ray's rows, as ``hal.cluster.ClusterView`` reads them) and the
executor's ``sends`` as a plain function; the ray tier runs them on real nodes."""

from __future__ import annotations

from collections import Counter

import pytest

from llmos.alloc import Allocator
from llmos.alloc.resources import device_resources
from llmos.errors import AllocError
from llmos.hal.cluster import RAY_GPU_RESOURCE, ClusterView
from llmos.kernel import ProcState
from llmos.kernel.placement import NODES_S, Placer
from llmos.kernel.process import Process

GIB = 1 << 30
A, B, G = "aa" * 28, "bb" * 28, "cc" * 28      # one CPU; two CPUs; four CPUs and a GPU


class Rows:
    """Ray's node rows for ClusterView; a test marks a node dead in ``alive``."""

    def __init__(self) -> None:
        self.alive = {A: True, B: True, G: True}
        self.reads = 0

    def __call__(self):
        self.reads += 1
        res = {A: {"CPU": 1.0, "memory": 2.0 * GIB}, B: {"CPU": 2.0, "memory": 4.0 * GIB},
               G: {"CPU": 4.0, "GPU": 1.0, "memory": 8.0 * GIB}}
        head = {"NodeID": "dd" * 28, "Alive": True, "NodeManagerAddress": "10.0.0.9",
                "Resources": {"CPU": 0.0, "node:__internal_head__": 1.0}}      # no CPUs: never a place
        rows = [{"NodeID": n, "Alive": self.alive[n], "NodeManagerAddress": f"10.0.0.{i}",
                 "Resources": res[n]} for i, n in enumerate((A, B, G), 1)]
        return [head, *rows], {}


def sends(kind, spec, fn=None) -> bool:
    """What the Ray executor sends out, as far as these tests go: everything but writes."""
    return spec.get("tool") != "files.write"


def _placer(config, clock, rows: Rows | None = None) -> tuple[Placer, Rows]:
    rows = rows or Rows()
    placer = Placer(Allocator(device_resources(None), clock=clock), config=config, live=False)
    placer.cluster = ClusterView(rows, local=set()).nodes
    placer.sends = sends
    placer.sync_nodes()
    return placer, rows


def tool(pid: int, name: str = "python.run") -> Process:
    return Process(pid, "tool", "root", {"tool": name, "args": {}, "risk": "exec"})


def job(pid: int, **spec) -> Process:
    return Process(pid, "job", "root", {"type": "fit", "args": {}, **spec})


def test_steps_sent_out_are_placed_on_nodes_and_the_reason_names_the_node(config, clock):
    placer, _ = _placer(config, clock)
    names = {r.name for r in placer.alloc.resources if r.kind == "node"}
    assert names == {f"node:{n[:12]}" for n in (A, B, G)}                 # the head has no CPUs
    where = Counter()
    for pid in range(1, 8):                                               # 7 steps over 1 + 2 + 4 lanes
        pl = placer.place(tool(pid))
        where[pl.resource] += 1
        node = placer.node_of(pid)
        assert pl.resource == f"node:{node[:12]}" and f"a Ray task on node {node}" in pl.reason
        assert placer.grant(pid).cores is None                           # Ray assigns the node's CPUs
    assert where == {f"node:{A[:12]}": 1, f"node:{B[:12]}": 2, f"node:{G[:12]}": 4}   # by lanes
    stays = placer.place(tool(9, "files.write"))                          # not sent out: this machine
    assert stays.resource == "cpu" and placer.node_of(9) is None


def test_a_job_goes_to_a_node_with_room_for_what_it_asks(config, clock):
    placer, _ = _placer(config, clock)
    gpu = placer.place(job(1, device="gpu"))
    assert gpu.resource == f"node:{G[:12]}" and placer.device_of(1) == RAY_GPU_RESOURCE
    assert placer.place(job(2, device="gpu")) is None                    # its one GPU is held: wait
    two = placer.place(job(3, demand={"cores": 2, "memory_bytes": 3 * GIB}))
    assert two.resource in (f"node:{B[:12]}", f"node:{G[:12]}") and placer.device_of(3) == "cpu"
    assert placer.grant(3).memory_bytes == 3 * GIB
    with pytest.raises(AllocError):                                       # no node has 16 CPUs
        placer.check("job", {"type": "fit", "demand": {"cores": 16}})
    placer.finish(1, seconds=1.0)
    assert placer.place(job(2, device="gpu")).resource == f"node:{G[:12]}"


def test_a_node_that_leaves_takes_no_new_work_and_goes_once_free(config, clock):
    placer, rows = _placer(config, clock)
    on_a = next(pid for pid in range(1, 10) if placer.place(tool(pid)) and placer.node_of(pid) == A)
    rows.alive[A] = False
    clock.advance(NODES_S)
    placer.sync_nodes()
    assert f"node:{A[:12]}" in {r.name for r in placer.alloc.resources}   # still holds on_a
    assert placer.node_of(on_a) == A
    for pid in range(20, 30):
        placer.place(tool(pid))
        assert placer.node_of(pid) in (B, G)                              # nothing new goes to A
    placer.finish(on_a, seconds=1.0)
    clock.advance(NODES_S)
    placer.sync_nodes()
    assert f"node:{A[:12]}" not in {r.name for r in placer.alloc.resources}
    rows.alive[B] = rows.alive[G] = False                                 # no live node: this machine
    for pid in range(20, 30):
        placer.finish(pid, seconds=1.0)
    clock.advance(NODES_S)
    placer.sync_nodes()
    assert placer.place(tool(40)).resource == "cpu" and placer.node_of(40) is None


def test_the_cluster_is_read_every_nodes_s_not_every_step(config, clock):
    placer, rows = _placer(config, clock)
    for _ in range(5):
        placer.sync_nodes()
    assert rows.reads == 1
    clock.advance(NODES_S)
    placer.sync_nodes()
    assert rows.reads == 2


async def test_through_the_kernel_the_dispatch_line_names_the_node(boot_kernel, clock, ws):
    k = await boot_kernel("ok", clock=clock, hal=False)
    rows = Rows()
    rows.alive[B] = rows.alive[G] = False
    k.placer.cluster = ClusterView(rows, local=set()).nodes
    k.placer.sends = sends
    seen = []
    run_here = k.executor._exec_tool

    async def exec_tool(w):                          # the local executor runs it; the Work says where
        seen.append(w.node)
        return await run_here(w)
    k.executor._exec_tool = exec_tool
    spawn = (await k.syscall("root", "proc.spawn", {"kind": "tool", "spec": {
        "tool": "files.list", "workdir": str(ws), "args": {"path": "."}}})).unwrap()
    await k.run_until_idle(10)
    p = k.procs.get(spawn["pid"])
    assert p.state == ProcState.SUCCEEDED, p.reason
    assert p.placed_on == f"node:{A[:12]}"
    k.journal.flush()
    dispatch = next(h["reason"] for h in k.view(p, history=True)["history"] if h["reason"].startswith("dispatched"))
    assert f"placed on node:{A[:12]} (" in dispatch and f"a Ray task on node {A}" in dispatch
    assert seen == [A]
