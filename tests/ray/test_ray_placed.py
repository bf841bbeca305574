"""Tool steps and jobs on the node the allocator chose: what the Ray executor sends out and
what it says when a step ran elsewhere (default tier, no cluster), and on conftest's two
one-CPU nodes through the kernel (opt-in: -m ray): a step placed on a node runs there, and
one placed on a node that has left runs on another, its end reason saying so."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from types import SimpleNamespace

import pytest

from llmos.executor.base import Work
from llmos.hal.cluster import ClusterView

ray = pytest.importorskip("ray")

CLUSTER_NODES = 2                     # conftest's cluster: two nodes with one CPU each
A, B = "aa" * 28, "bb" * 28


def _executor(alive: dict[str, bool]):
    from llmos.executor.ray import RayExecutor
    from llmos.tools.registry import default_registry

    def rows():
        return [{"NodeID": n, "Alive": up, "NodeManagerAddress": "10.0.0.1", "Resources": {"CPU": 1.0}}
                for n, up in alive.items()], {}

    async def claim(pids):
        return {}
    conn = SimpleNamespace(view=ClusterView(rows, local=set()), close=lambda: None)
    return RayExecutor(claim, connection=conn, tools=default_registry())


def plain(n: int) -> int:
    return n


async def coroutine(n: int) -> int:
    return n


def test_what_the_executor_sends_out_is_known_before_it_runs():
    ex = _executor({A: True})
    tool = {"args": {}, "risk": "read"}
    assert ex.sends("tool", {**tool, "tool": "python.run", "risk": "exec"})     # a program
    assert ex.sends("tool", {**tool, "tool": "files.list"})                     # a read
    assert not ex.sends("tool", {**tool, "tool": "files.write", "risk": "write"})   # undo keeps it here
    assert not ex.sends("tool", {**tool, "tool": "todo.add", "risk": "write"})  # the kernel's hooks
    assert ex.sends("job", {"type": "fit"}, plain)
    assert not ex.sends("job", {"type": "fit"}, coroutine)                      # runs on the kernel's loop
    assert not ex.sends("job", {"type": "train"}, plain)                        # places its own ranks
    assert not ex.sends("job", {"type": "call"}) and ex.sends("job", {"type": "call", "device": "gpu"})
    assert not ex.sends("llm", {"prompt": "x"})


def test_a_step_that_ran_off_its_node_says_where_and_why():
    alive = {A: False, B: True}
    ex = _executor(alive)
    w = Work(1, "job", "root", 0, {"type": "fit"}, node=A)
    assert ex._off_node(w, {"node": A}) == ""
    assert ex._off_node(dataclasses.replace(w, node=None), {"node": B}) == ""
    assert ex._off_node(w, {"node": B}) == (f"placed on node:{A[:12]}, which had left the cluster: "
                                            f"Ray ran it on node:{B[:12]}")
    alive[A] = True
    assert "which could not hold it" in ex._off_node(w, {"node": B})
    assert ex.stats["off_node"] == 2
    from llmos.executor.base import Result

    here = ex._here(w, "its callable cannot be sent to a worker", Result(1, True, 7))
    assert here.note == (f"placed on node:{A[:12]} but run in the kernel's process: its callable cannot be "
                         "sent to a worker")


# ── on the cluster ──────────────────────────────────────────────────────────
def where(hold_s: float = 0.0) -> str:
    time.sleep(hold_s)
    return ray.get_runtime_context().get_node_id()


@pytest.mark.ray
async def test_a_step_runs_on_the_allocators_node_and_elsewhere_once_that_left(cluster, config, tmp_path):
    from llmos.kernel import Kernel, ProcState
    from llmos.kernel.placement import NODES_S
    from llmos.llm.fake import FakeEngine
    from llmos.tools.registry import default_registry

    c, (a, b) = cluster
    k = await Kernel.boot(dataclasses.replace(config, ray="auto"), engines={"fake": FakeEngine("ok")},
                          tools=default_registry(), hal=False)
    try:
        k.register_job("where", where, idempotent=True)

        async def job(hold_s: float) -> int:
            return (await k.syscall("root", "proc.spawn", {"kind": "job", "spec": {
                "type": "where", "args": {"hold_s": hold_s}}})).unwrap()["pid"]
        ws = tmp_path / "ws"
        ws.mkdir()
        (ws / "f.txt").write_text("x")
        step = (await k.syscall("root", "proc.spawn", {"kind": "tool", "spec": {
            "tool": "files.list", "workdir": str(ws), "args": {"path": "."}}})).unwrap()["pid"]
        jobs = [await job(1.0), await job(1.0)]
        ran = {pid: await k.result(pid, timeout_s=60) for pid in jobs}
        await k.run_until_idle(60)
        on = {pid: k.procs.get(pid).placed_on for pid in jobs}
        assert set(on.values()) == {f"node:{n.node_id[:12]}" for n in (a, b)}   # one lane each: one each
        assert all(on[pid] == f"node:{ran[pid][:12]}" for pid in jobs)          # each ran where placed
        assert all(k.procs.get(pid).reason == "finished" for pid in jobs)
        s = k.procs.get(step)
        assert s.state == ProcState.SUCCEEDED and s.placed_on in on.values()    # a read goes out too
        k.journal.flush()
        dispatch = next(h["reason"] for h in k.view(s, history=True)["history"]
                        if h["reason"].startswith("dispatched"))
        assert f"a Ray task on node {s.placed_on[5:]}" in dispatch

        # B leaves after the placer's last read of the nodes: the allocator still places on it
        last = [n for n in k.executor.connection.view.nodes() if n.node_id == b.node_id]
        k.placer.cluster = lambda: last
        c.remove_node(b)
        end = time.monotonic() + 60
        while any(n["NodeID"] == b.node_id and n["Alive"] for n in ray.nodes()):
            assert time.monotonic() < end, "node B did not leave"
            await asyncio.sleep(0.2)
        await asyncio.sleep(NODES_S)
        pid = await job(0.0)
        assert await k.result(pid, timeout_s=60) == a.node_id                 # Ray's choice: the live node
        p = k.procs.get(pid)
        assert p.state == ProcState.SUCCEEDED and p.placed_on == f"node:{b.node_id[:12]}"
        assert p.reason == (f"finished; placed on node:{b.node_id[:12]}, which had left the cluster: "
                            f"Ray ran it on node:{a.node_id[:12]}")
        assert k.executor.stats["off_node"] == 1
    finally:
        await k.shutdown(grace_s=1.0)
