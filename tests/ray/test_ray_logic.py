"""The Ray executor's decisions without Ray: resource requests, routes, retries, the cluster
view and its admission, addresses and their one-line errors (default tier: hermetic)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from llmos.config import load_config
from llmos.errors import AllocError, ConfigError
from llmos.executor.base import Work
from llmos.executor.ray_connect import connect, probe
from llmos.executor.ray_request import (
    RAY_RETRIES,
    RayRequest,
    may_retry,
    memory_limit,
    parse_address,
    request_for,
    tool_route,
)
from llmos.executor.ray_worker import pack, unpack
from llmos.hal.cluster import RAY_GPU_RESOURCE, ClusterView, admit, cluster_resources, nodes_from_ray
from llmos.tools.builtin import all_tools

GIB = 1 << 30


# ── resource requests ───────────────────────────────────────────────────────
def test_tool_asks_one_cpu_and_the_agents_memory_quota():
    w = Work(7, "tool", "a", 0, {"tool": "python.run"})
    assert request_for(w) == RayRequest(num_cpus=1.0, num_gpus=0.0, memory=None, name="llmos-pid-7")
    w.memory_bytes = 512 << 20
    opts = request_for(w).as_options()
    assert opts["memory"] == 512 << 20 and opts["max_retries"] == 0 and opts["retry_exceptions"] is False


def test_memory_request_is_the_tighter_of_quota_and_grant():
    from llmos.executor.base import Grant

    w = Work(7, "tool", "a", 0, {"tool": "python.run"}, memory_bytes=2 * GIB,
             grant=Grant(cores=(0,), memory_bytes=GIB, gpus=()))
    assert memory_limit(w) == GIB and request_for(w).memory == GIB
    w.grant = Grant(cores=(1,))                      # CPU ids of the head: Ray assigns its own
    assert memory_limit(w) == 2 * GIB and request_for(w).num_cpus == 1.0
    w.memory_bytes = None
    assert memory_limit(w) is None


def test_job_request_follows_demand_and_placement():
    spec = {"type": "fit", "device": "gpu", "demand": {"cores": 4, "memory_bytes": 8 * GIB}}
    req = request_for(Work(1, "job", "a", 0, spec))
    assert (req.num_cpus, req.num_gpus, req.memory) == (4.0, 1.0, 8 * GIB)
    req = request_for(Work(2, "job", "a", 0, {"type": "fit", "demand": {"gpus": 2}}))
    assert (req.num_cpus, req.num_gpus, req.memory) == (1.0, 2.0, None)
    # no device asked, but the allocator placed it on the cluster's GPUs: one GPU
    req = request_for(Work(3, "job", "a", 0, {"type": "fit"}, device=RAY_GPU_RESOURCE))
    assert req.num_gpus == 1.0
    assert request_for(Work(4, "job", "a", 0, {"type": "fit"})).num_gpus == 0.0
    with pytest.raises(ValueError):
        request_for(Work(5, "llm", "a", 0, {}))


# ── routes and retries ──────────────────────────────────────────────────────
def test_routes_programs_and_reads_to_ray_and_writes_here():
    tools = {t.name: t for t in all_tools()}
    assert tool_route(tools["python.run"], {"risk": "exec"}, tools["python.run"]) is None
    assert tool_route(tools["files.read"], {"risk": "read"}, tools["files.read"]) is None
    why = tool_route(tools["files.write"], {"risk": "write"}, tools["files.write"])
    assert why and "undo" in why
    assert "hooks" in tool_route(tools["timer.set"], {"risk": "write"}, tools["timer.set"])
    assert "builtin" in tool_route(tools["files.read"], {"risk": "read"}, None)        # e.g. an MCP tool
    other = type("T", (), {"fn": lambda *a: None, "kind": "text"})()
    assert "builtin" in tool_route(other, {"risk": "read"}, tools["text.sort"])       # same name, other code


def test_retries_follow_idempotency():
    assert may_retry({"idempotent": True}, 0) and may_retry({"idempotent": True}, RAY_RETRIES - 1)
    assert not may_retry({"idempotent": True}, RAY_RETRIES)
    assert not may_retry({"idempotent": False}, 0) and not may_retry({}, 0)


def test_errors_cross_the_worker_boundary_with_their_fields():
    from llmos.errors import InvalidArgument, NotFound

    e = unpack(pack(InvalidArgument("args.x: expected a number", field="args.x", expected="number")))
    assert isinstance(e, InvalidArgument) and e.field == "args.x" and e.expected == "number"
    assert str(e) == "args.x: expected a number"
    assert isinstance(unpack(pack(NotFound("no such file: a.txt"))), NotFound)
    assert type(unpack({"cls": "Bogus", "message": "m"})).__name__ == "ToolError"
    assert unpack(pack(ZeroDivisionError("division by zero"))).message   # foreign: mapped, one line


# ── addresses, config, unreachable clusters ─────────────────────────────────
@pytest.mark.parametrize("bad", ["", "nohost", "host:", ":6379", "host:99999", "host:port"])
def test_bad_addresses_name_the_option(bad):
    with pytest.raises(ConfigError, match=r"^--ray: expected auto or HOST:PORT"):
        parse_address(bad)


def test_ray_client_address_is_explained():
    with pytest.raises(ConfigError, match="Ray Client address"):
        parse_address("ray://head:10001")
    assert parse_address("auto") == "auto" and parse_address(" 10.0.0.5:6379 ") == "10.0.0.5:6379"


def test_config_key_and_env(home):
    assert load_config(env={"LLMOS_HOME": str(home)}).ray is None
    assert load_config(env={"LLMOS_HOME": str(home), "LLMOS_RAY": "auto"}).ray == "auto"
    assert load_config(env={"LLMOS_HOME": str(home)}, overrides={"ray": "127.0.0.1:6379"}).ray == "127.0.0.1:6379"
    (home / "config.toml").write_text('ray = "head"\n')
    with pytest.raises(ConfigError, match=r"^ray: expected auto or HOST:PORT"):
        load_config(env={"LLMOS_HOME": str(home)})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]       # nothing listens once it is closed


def test_unreachable_cluster_is_one_line_and_fast():
    port = _closed_port()
    assert probe(f"127.0.0.1:{port}") is not None
    with pytest.raises(ConfigError) as ei:
        connect(f"127.0.0.1:{port}")
    msg = ei.value.message
    assert msg.startswith(f"--ray 127.0.0.1:{port}: no Ray cluster answers there") and "\n" not in msg
    assert "--ray auto" in ei.value.hint


def test_auto_joins_ray_address_from_the_environment(monkeypatch):
    port = _closed_port()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(ConfigError, match="no Ray cluster answers there"):
        connect("auto")


def test_missing_ray_says_how_to_install(monkeypatch):
    import llmos.executor.ray_connect as rc

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(rc, "ray_installed", lambda: False)
    with pytest.raises(ConfigError, match="Ray is not installed") as ei:
        connect("auto")
    assert "llmos[ray]" in ei.value.hint


# ── the cluster view ────────────────────────────────────────────────────────
def _rows():
    head = {"NodeID": "aa" * 28, "Alive": True, "NodeManagerAddress": "10.0.0.1", "NodeManagerHostname": "h1",
            "Resources": {"CPU": 8.0, "memory": 16.0 * GIB, "object_store_memory": 2.0 * GIB,
                          "node:__internal_head__": 1.0, "node:10.0.0.1": 1.0}}
    gpu = {"NodeID": "bb" * 28, "Alive": True, "NodeManagerAddress": "10.0.0.2", "NodeManagerHostname": "h2",
           "Resources": {"CPU": 32.0, "GPU": 2.0, "memory": 200.0 * GIB, "accelerator_type:A100": 1.0}}
    gone = {"NodeID": "cc" * 28, "Alive": False, "NodeManagerAddress": "10.0.0.3",
            "Resources": {"CPU": 64.0, "GPU": 8.0, "memory": 500.0 * GIB}}
    free = {"aa" * 28: {"CPU": 6.0, "memory": 12.0 * GIB}, "bb" * 28: {"CPU": 30.0, "GPU": 1.0}}
    return [gone, gpu, head], free


def test_nodes_from_rays_rows():
    rows, free = _rows()
    nodes = nodes_from_ray(rows, free, local={"10.0.0.1"})
    head, gpu, gone = nodes
    assert head.head and head.this_machine and head.cpus == 8 and head.cpus_free == 6
    assert head.memory_bytes == 16 * GIB and head.memory_free_bytes == 12 * GIB and head.gpus == 0
    assert gpu.gpus == 2 and gpu.gpus_free == 1 and gpu.gpu_type == "A100" and not gpu.this_machine
    assert gpu.name == "node:bbbbbbbb" and gpu.energy_j is None        # Ray reports no energy
    assert not gone.alive and gone.cpus_free is None
    view = ClusterView(lambda: _rows(), address="10.0.0.1:6379", local={"10.0.0.1"})
    assert len(view.nodes()) == 2 and len(view.nodes(alive_only=False)) == 3
    rep = view.report()
    assert rep["totals"] == {"cpus": 40.0, "gpus": 2.0, "memory_bytes": 216 * GIB}
    assert [n["name"] for n in rep["nodes"]][:1] == ["node:aaaaaaaa"]


def test_admission_refuses_more_than_any_node_has():
    rows, free = _rows()
    nodes = nodes_from_ray(rows, free, local=set())
    admit(nodes, "job", {"type": "fit", "device": "gpu"})                 # 2 GPUs on node b
    admit(nodes, "job", {"type": "fit", "demand": {"gpus": 2, "cores": 32}})
    admit(nodes, "tool", {"tool": "python.run"})                          # tools ask one CPU
    with pytest.raises(AllocError) as ei:
        admit(nodes, "job", {"type": "fit", "demand": {"gpus": 4}}, where="10.0.0.1:6379")
    e = ei.value
    assert e.message.startswith("spec.demand.gpus: the job asks for 4 GPUs on one node; the most any node "
                                "of the Ray cluster at 10.0.0.1:6379 has is 2")
    assert e.resource == "gpus" and "node:bbbbbbbb" in e.message       # the dead 8-GPU node does not count
    with pytest.raises(AllocError, match=r"^spec.device: the job asks for 3 GPUs"):
        admit(nodes, "job", {"type": "fit", "device": "gpu:2"})
    with pytest.raises(AllocError, match=r"^spec.demand.cores: .* 64 CPUs"):
        admit(nodes, "job", {"type": "fit", "demand": {"cores": 64}})
    with pytest.raises(AllocError, match="no live node"):
        admit([n for n in nodes if not n.alive], "job", {"type": "fit"})


def test_cluster_gpus_become_one_allocator_resource():
    rows, free = _rows()
    nodes = nodes_from_ray(rows, free, local=set())
    (r,) = cluster_resources(nodes)
    assert r.name == RAY_GPU_RESOURCE and r.capacity == {"gpus": 2.0} and r.lanes == 2
    assert {"gpu", "job"} <= set(r.provides)
    assert cluster_resources([n for n in nodes if n.gpus == 0]) == []


def _serve(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("llmos")), "serve", *args]


def test_serve_with_an_unreachable_cluster_says_one_line(home):
    port = _closed_port()
    r = subprocess.run(_serve("--ray", f"127.0.0.1:{port}", "--port", "0"), capture_output=True, text=True,
                       timeout=60, env={**os.environ, "LLMOS_HOME": str(home)})
    assert r.returncode != 0 and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "no Ray cluster answers" in ln]
    assert len(lines) == 1 and lines[0].startswith(f"error: --ray 127.0.0.1:{port}"), r.stderr


@pytest.mark.ray      # opt-in: it boots the daemon (about 9 s here)
def test_serve_ray_or_local_keeps_serving_alone(home):
    port = _closed_port()
    proc = subprocess.Popen(_serve("--ray", f"127.0.0.1:{port}", "--ray-or-local", "--port", "0"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "LLMOS_HOME": str(home)})
    try:
        first = proc.stdout.readline()
        assert first.startswith("llmos daemon on http://127.0.0.1:"), first
    finally:
        proc.send_signal(signal.SIGINT)      # by its PID
        _, err = proc.communicate(timeout=30)
    assert "serving on this machine alone (--ray-or-local)" in err
