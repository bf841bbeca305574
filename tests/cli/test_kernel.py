"""``llmos ps / kill / nice / agents / top / explain`` on a real state directory."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llmos.cli import app
from llmos.config import load_config
from llmos.kernel import SyncKernel


@pytest.fixture
def state(home):
    with SyncKernel(load_config(env={"LLMOS_HOME": str(home)})) as k:
        k.syscall("root", "agent.create", {"name": "helper", "capabilities": {"syscalls": ["proc.*"],
                                                                               "quotas": {"max_procs": 3}}})
        done = k.add_task(lambda: 7, name="seven")
        k.run_until_idle(10)
        run = k.submit("run", {"title": "weekly report"})
        other = k.kernel.procs.get(k.syscall("helper", "proc.spawn", {"kind": "run"}).value["pid"])
    return {"done": done.pid, "run": run, "other": other.pid}


def invoke(*args):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_ps_lists_live_by_default_and_all_on_request(state):
    out = invoke("ps", "--json")
    pids = [p["pid"] for p in json.loads(out.stdout)["processes"]]
    assert pids == [state["other"], state["run"]]
    out = invoke("ps", "--all", "--agent", "root", "--json")
    procs = json.loads(out.stdout)["processes"]
    assert {p["pid"] for p in procs} == {state["done"], state["run"]}
    assert {p["state"] for p in procs} == {"succeeded", "waiting"}
    assert "weekly report" in invoke("ps").stdout


def test_kill_and_nice_change_state_through_the_kernel(state):
    out = invoke("nice", str(state["run"]), "-5")
    assert out.exit_code == 0 and "priority -5" in out.stdout
    out = invoke("kill", str(state["run"]))
    assert out.exit_code == 0 and "killed" in out.stdout
    lines = invoke("explain", str(state["run"])).stdout
    assert "reniced 0 -> -5 by root" in lines and "waiting -> killed" in lines
    bad = CliRunner().invoke(app, ["nice", str(state["other"]), "40"])
    assert bad.exit_code != 0


def test_kill_refuses_while_another_kernel_owns_the_state(state, home):
    with SyncKernel(load_config(env={"LLMOS_HOME": str(home)})):
        res = CliRunner().invoke(app, ["kill", str(state["run"])])
        assert res.exit_code != 0
        assert "is running" in (res.stdout + (res.stderr or "")) or "running" in str(res.exception)


def test_agents_top_and_explain(state):
    out = json.loads(invoke("agents", "--json").stdout)["agents"]
    assert [a["id"] for a in out] == ["root", "helper"] and out[1]["live"] == 1
    assert "helper" in invoke("agents").stdout
    top = invoke("top", "--once").stdout
    assert "queued 0" in top and "waiting 2" in top and "per agent" in top
    exp = invoke("explain", str(state["done"])).stdout
    assert "job 'seven' by agent root" in exp and "queued -> running" in exp and "dispatched:" in exp


def test_reading_commands_work_on_a_fresh_state_dir(home):
    assert "no processes" in invoke("ps").stdout
    assert json.loads(invoke("agents", "--json").stdout)["agents"][0]["id"] == "root"
    res = CliRunner().invoke(app, ["explain", "3"])
    assert res.exit_code != 0
