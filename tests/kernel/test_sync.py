from __future__ import annotations

import threading

import pytest

from llmos.errors import KernelError
from llmos.kernel import SyncKernel


def test_sync_kernel_runs_tasks_by_priority_and_returns_results(config):
    order: list[int] = []
    release = threading.Event()
    with SyncKernel(config, scheduler="priority") as k:
        k.kernel.loop.slots = 1                       # one at a time, so the order is visible
        gate = k.add_task(lambda: release.wait(10) and order.append(0), name="first")
        handles = [k.add_task(lambda i=i: order.append(i) or i * i, name=f"t{i}", priority=p)
                   for i, p in ((1, 10), (2, -10), (3, 0))]
        release.set()
        k.run_until_idle(10)
        assert [h.result() for h in handles] == [1, 4, 9]
        assert order[0] == 0 and order[1:] == [2, 3, 1]
        assert gate.state == "succeeded"

        def fail():
            raise RuntimeError("bad input file")
        h = k.add_task(fail)
        with pytest.raises(RuntimeError, match="bad input file"):
            h.result(5)
        assert k.syscall("root", "proc.get", {"pid": h.pid}).value["state"] == "failed"
        pid = k.submit("run", {"title": "x"})
        assert k.wait(pid, timeout=0)["state"] == "waiting"
    with pytest.raises(KernelError, match="closed"):
        k.syscall("root", "proc.list", {})
    with SyncKernel(config) as again:                 # the state dir can be reopened
        assert again.syscall("root", "proc.get", {"pid": pid}).value["state"] == "waiting"


def test_sync_kernel_reads_stats_and_energy_on_its_loop(config):
    from llmos.clock import FakeClock
    from llmos.hal.fake import FakeHAL

    clock = FakeClock()
    release = threading.Event()
    with SyncKernel(config, clock=clock, hal=FakeHAL(clock)) as k:
        h = k.add_task(lambda: release.wait(10), name="hold")
        for _ in range(500):
            if h.state == "running":
                break
            threading.Event().wait(0.005)
        clock.advance(5.0)
        st = k.stats()
        assert st["processes"]["running"] == 1 and st["live"][0]["pid"] == h.pid
        assert k.energy_by_agent()["root"]["joules"] == pytest.approx(20.0)   # FakeHAL CPU idle: 4 W
        release.set()
        k.run_until_idle(10)
        assert k.kernel.procs.get(h.pid).joules_label == "modelled"
