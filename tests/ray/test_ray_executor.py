"""The Ray executor on a real local Ray head with two CPUs (opt-in: -m ray).

The head is started once for the module by ``ray_connect.connect("auto")`` in this
process and stopped at the end by its processes' PIDs (checked)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmos.errors import Cancelled, NotFound
from llmos.executor.base import Outcome, Work
from llmos.kernel.sched import Plan

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


@pytest.fixture(scope="module")
def head():
    from llmos.executor.ray_connect import connect

    os.environ.pop("RAY_ADDRESS", None)
    conn = connect("auto", num_cpus=2)
    assert conn.started_head and conn.pids
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # job callables defined here
    yield conn
    conn.close()
    assert [p for p in conn.pids if _state(p) not in ("gone", "Z")] == []


class Harness:
    """A RayExecutor over hand-built Works (as tests/executor does for the local one)."""

    def __init__(self, conn, tools=None, versions=None):
        from llmos.executor.ray import RayExecutor
        from llmos.executor.ray_connect import RayConnection

        self.works: dict[int, Work] = {}

        async def claim(pids):
            return {p: self.works[p] for p in pids if p in self.works}
        shared = RayConnection(conn.address, False, view=conn.view, owner=False)   # the module keeps the head
        self.ex = RayExecutor(claim, connection=shared, tools=tools, versions=versions)

    async def until_done(self, pids, plan=None, timeout=90.0) -> Outcome:
        total = Outcome()
        plan = plan or Plan()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            out = await asyncio.wait_for(self.ex.run(plan), max(0.1, end - time.monotonic()))
            plan = Plan()
            total.finished |= out.finished
            total.results.update(out.results)
            if set(pids) <= total.finished:
                return total
        raise AssertionError("did not finish")


@pytest.fixture
async def h(head):
    from llmos.tools.registry import default_registry

    harness = Harness(head, tools=default_registry())
    yield harness
    await harness.ex.close()


def _tool(pid, ws: Path, tool: str, args: dict, risk: str, idempotent: bool = False) -> Work:
    return Work(pid, "tool", "root", 0, {"tool": tool, "args": args, "risk": risk, "idempotent": idempotent},
                workdir=str(ws), read_roots=(str(ws),), write_roots=(str(ws),))


# ── tool steps ──────────────────────────────────────────────────────────────
async def test_a_program_runs_in_the_sandbox_on_a_worker(h, tmp_path):
    code = ("import os, socket\nprint(socket.gethostname(), os.getpid())\n"
            "open('out.txt', 'w').write('from the worker')\n")
    h.works[1] = _tool(1, tmp_path, "python.run", {"code": code}, "exec")
    out = await h.until_done([1], Plan(run=[1]))
    res = out.results[1]
    assert res.ok, res.error
    host, pid = res.value["output"]["stdout"].split()
    assert host == "sandbox" and int(pid) != os.getpid()         # bwrap's hostname: the sandbox applied
    assert (tmp_path / "out.txt").read_text() == "from the worker"
    assert h.ex.stats["ray"] == 1 and h.ex.stats["local"] == 0


async def test_reads_go_to_ray_writes_stay_here(h, tmp_path):
    (tmp_path / "a.txt").write_text("alpha\n")
    h.works[1] = _tool(1, tmp_path, "files.read", {"path": "a.txt"}, "read", idempotent=True)
    h.works[2] = _tool(2, tmp_path, "files.write", {"path": "b.txt", "content": "beta"}, "write")
    h.works[3] = _tool(3, tmp_path, "files.read", {"path": "missing.txt"}, "read", idempotent=True)
    out = await h.until_done([1, 2, 3], Plan(run=[1, 2, 3]))
    assert out.results[1].ok and "alpha" in json.dumps(out.results[1].value["output"])
    assert out.results[2].ok and (tmp_path / "b.txt").read_text() == "beta"
    bad = out.results[3]
    assert not bad.ok and isinstance(bad.error, NotFound) and "missing.txt" in bad.error.message
    assert h.ex.stats["ray"] == 2 and h.ex.stats["local"] == 1


async def test_a_programs_changes_are_versioned_on_the_head(head, tmp_path, tmp_path_factory):
    from llmos.kernel.versions import VersionStore
    from llmos.tools.registry import default_registry

    store = VersionStore(tmp_path_factory.mktemp("home"), quota_bytes=1 << 30, max_age_s=86400.0)
    harness = Harness(head, tools=default_registry(), versions=store)
    try:
        (tmp_path / "a.txt").write_text("before\n")
        harness.works[1] = _tool(1, tmp_path, "python.run", {"code": "open('a.txt', 'w').write('after')"}, "exec")
        harness.works[1].idempotency_key = "root:1"
        out = await harness.until_done([1], Plan(run=[1]))
        assert out.results[1].ok and (tmp_path / "a.txt").read_text() == "after"
        rows = store.history(str(tmp_path / "a.txt"), None)
        assert [r["op"] for r in rows] == ["exec"]
    finally:
        await harness.ex.close()
        store.close()


async def test_cancel_stops_a_running_program(h, tmp_path):
    h.works[1] = _tool(1, tmp_path, "python.run", {"code": "import time\ntime.sleep(60)"}, "exec")
    await h.ex.run(Plan(run=[1]))
    for _ in range(100):
        if 1 in h.ex._refs:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)                        # the program is running on a worker
    t0 = time.monotonic()
    assert h.ex.cancel(1)
    out = await h.until_done([1], timeout=20)
    assert isinstance(out.results[1].error, Cancelled) and time.monotonic() - t0 < 10


async def test_coroutines_and_in_process_callables_stay_here(h):
    async def coro():
        return "on the kernel's loop"
    h.works[1] = Work(1, "job", "root", 0, {"type": "x"}, call=coro)                    # e.g. a train job
    h.works[2] = Work(2, "job", "root", 0, {"type": "call"}, call=lambda: os.getpid())  # Kernel.submit(fn)
    out = await h.until_done([1, 2], Plan(run=[1, 2]))
    assert out.results[1].value == "on the kernel's loop" and out.results[2].value == os.getpid()
    assert h.ex.stats["local"] == 2 and h.ex.stats["ray"] == 0


# ── a worker killed mid-task ────────────────────────────────────────────────
def hold_once(marker: str, hold_s: float) -> dict:
    """The first run writes its worker's PID and holds; a re-run returns at once."""
    p = Path(marker)
    first = not p.exists()
    p.write_text(str(os.getpid()))
    if first:
        time.sleep(hold_s)
    return {"first": first, "pid": os.getpid()}


async def _kill_worker_mid_job(h, marker: Path, idempotent: bool):
    h.works[1] = Work(1, "job", "root", 0, {"type": "hold", "idempotent": idempotent},
                      call=functools.partial(hold_once, str(marker), 60.0))
    runner = asyncio.ensure_future(h.until_done([1], Plan(run=[1])))
    for _ in range(400):
        if marker.exists() and marker.read_text():
            break
        await asyncio.sleep(0.05)
    pid = int(marker.read_text())
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)                    # the Ray worker running the job
    return (await asyncio.wait_for(runner, 60)).results[1], pid


async def test_killed_worker_reruns_an_idempotent_step(h, tmp_path):
    res, killed = await _kill_worker_mid_job(h, tmp_path / "pid", idempotent=True)
    assert res.ok, res.error
    assert res.value["first"] is False and res.value["pid"] != killed
    assert h.ex.stats["died"] == 1 and h.ex.stats["retried"] == 1


async def test_killed_worker_fails_a_step_that_is_not_idempotent(h, tmp_path):
    res, _ = await _kill_worker_mid_job(h, tmp_path / "pid", idempotent=False)
    assert not res.ok and "died mid-task" in res.error.message and "not idempotent" in res.error.message
    assert "\n" not in res.error.message
    assert h.ex.stats["retried"] == 0


# ── the kernel on Ray ───────────────────────────────────────────────────────
def square(n: int) -> int:
    return n * n


async def test_the_kernel_runs_steps_on_ray_and_journals_them(head, config, tmp_path):
    from llmos.errors import AllocError
    from llmos.kernel import Kernel, ProcState
    from llmos.llm.fake import FakeEngine
    from llmos.tools.registry import default_registry

    k = await Kernel.boot(dataclasses.replace(config, ray="auto"), engines={"fake": FakeEngine("ok")},
                          tools=default_registry(), hal=False)
    try:
        assert type(k.executor).__name__ == "RayExecutor"
        k.register_job("square", square, idempotent=True)
        ws = tmp_path / "ws"
        ws.mkdir()
        spawn = (await k.syscall("root", "proc.spawn", {
            "kind": "tool", "confirmed": True,
            "spec": {"tool": "python.run", "workdir": str(ws), "args": {"code": "print(6 * 7)"}}})).unwrap()
        job = (await k.syscall("root", "proc.spawn", {
            "kind": "job", "spec": {"type": "square", "args": {"n": 9}}})).unwrap()
        await k.run_until_idle(60)
        p = k.procs.get(spawn["pid"])
        assert p.state == ProcState.SUCCEEDED, p.reason
        assert k.procs.get(job["pid"]).state == ProcState.SUCCEEDED
        k.journal.flush()
        rows = k.journal.query("SELECT state, result FROM processes WHERE pid IN (?, ?) ORDER BY pid",
                               (spawn["pid"], job["pid"]))
        assert "42" in rows[0][1] and rows[1][1] == "81"
        assert k.executor.stats["ray"] == 2
        from types import SimpleNamespace

        from llmos.api.observe import hardware
        from llmos.clock import FakeClock
        from llmos.hal.fake import FakeHAL

        shown = hardware(SimpleNamespace(hal=FakeHAL(FakeClock()), executor=k.executor))   # GET /system
        assert [n["alive"] for n in shown["cluster"]["nodes"]] == [True] and shown["cluster"]["totals"]["cpus"] == 2
        bad = await k.syscall("root", "proc.spawn", {"kind": "job", "spec": {"type": "square", "device": "gpu",
                                                                            "args": {"n": 1}}})
        assert not bad.ok and bad.error.code == AllocError.code
        assert bad.error.message.startswith("spec.device: the job asks for 1 GPUs on one node")
    finally:
        await k.shutdown(grace_s=1.0)
    assert head.view.nodes()                        # the module's head outlives the kernel (not its own)


async def test_the_journal_records_how_a_killed_workers_steps_ended(head, config, tmp_path):
    from llmos.kernel import Kernel, ProcState

    k = await Kernel.boot(dataclasses.replace(config, ray="auto"), tools=None, hal=False)
    try:
        k.register_job("hold", hold_once, idempotent=True)
        k.register_job("hold_once_only", hold_once, idempotent=False)
        pids = {}
        for kind in ("hold", "hold_once_only"):
            marker = tmp_path / kind
            pids[kind] = (await k.syscall("root", "proc.spawn", {"kind": "job", "spec": {
                "type": kind, "args": {"marker": str(marker), "hold_s": 60.0}}})).unwrap()["pid"]
            for _ in range(600):
                if marker.exists() and marker.read_text():
                    break
                await asyncio.sleep(0.05)
            os.kill(int(marker.read_text()), signal.SIGKILL)
        await k.run_until_idle(90)
        again = k.procs.get(pids["hold"])
        lost = k.procs.get(pids["hold_once_only"])
        assert again.state == ProcState.SUCCEEDED and again.attempts == 1
        assert lost.state == ProcState.FAILED and "not idempotent" in lost.reason
        k.journal.flush()
        rows = dict(k.journal.query("SELECT pid, state FROM processes WHERE pid IN (?, ?)",
                                    (pids["hold"], pids["hold_once_only"])))
        assert rows == {pids["hold"]: ProcState.SUCCEEDED, pids["hold_once_only"]: ProcState.FAILED}
    finally:
        await k.shutdown(grace_s=1.0)


# ── the cluster view, joining by address, stopping a head ───────────────────
def test_cluster_view_of_the_local_head(head):
    (node,) = head.view.nodes()
    assert node.alive and node.head and node.this_machine and node.cpus == 2 and node.gpus == 0
    assert node.memory_bytes and node.cpus_free is not None


def _py(code: str, timeout: float = 90) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)


def test_another_process_joins_by_address_and_leaves_the_head_running(head):
    r = _py("from llmos.executor.ray_connect import connect\n"
            f"c = connect({head.address!r})\nprint(c.started_head, len(c.view.nodes()))\nc.close()\n")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["False", "1"]
    assert head.view.nodes()[0].alive


def test_a_local_head_is_stopped_by_its_pids(head):
    r = _py("import json\nfrom llmos.executor.ray_connect import connect\n"
            "c = connect('auto', num_cpus=1)\nprint(json.dumps([c.started_head, list(c.pids)]))\nc.close()\n")
    assert r.returncode == 0, r.stderr[-2000:]
    started, pids = json.loads(r.stdout.strip().splitlines()[-1])
    assert started and len(pids) >= 2
    time.sleep(0.5)
    assert [p for p in pids if _state(p) not in ("gone", "Z")] == []


@pytest.mark.model
async def test_ray_engines_serve_the_embedded_model_as_one_actor_per_node(head, config):
    """``ray_engines``: the kernel's engine set builds the default model as a RayEngine whose
    actors (one per node with CPUs) each load the model through ``llm.make_engine``; once
    it is up the allocator places a generation on a node, whose actor streams it."""
    from llmos.executor.ray_engines import RayEngine
    from llmos.kernel import Kernel

    k = await Kernel.boot(dataclasses.replace(config, ray="auto", ray_engines=True), tools=None, hal=False)
    try:
        res = await k.syscall("root", "llm.generate", {
            "messages": [{"role": "user", "content": "Name one colour."}], "max_tokens": 8})
        assert res.ok, res.error
        assert res.value["text"].strip()
        engine = k.engine_set.loaded[config.model]
        assert isinstance(engine, RayEngine)
        nodes = {n["NodeID"] for n in ray.nodes() if n.get("Alive") and (n.get("Resources") or {}).get("CPU")}
        assert {r.node for r in engine.replicas} == nodes
        assert sum(engine.routes.values()) == 1
        events = [e async for e in k.syscall_stream("root", "llm.generate", {      # the engine is up: by node
            "messages": [{"role": "user", "content": "Name one colour."}], "max_tokens": 8, "stream": True})]
        assert events[-1]["ok"] and [e for e in events if e["type"] == "chunk"]
        node = k.procs.get(events[-1]["value"]["pid"]).placed_on.split("@")[1]
        assert engine.routes[next(n for n in nodes if n.startswith(node))] >= 1
    finally:
        await k.shutdown()
