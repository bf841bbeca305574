"""``llmos kill / nice`` while a daemon holds the kernel: they go through it, and say
exactly what they say in-process."""

from __future__ import annotations

from typer.testing import CliRunner

from llmos.cli import app
from llmos.config import load_config
from llmos.hal.fake import FakeHAL
from llmos.kernel import SyncKernel
from llmos.sdk import discover


def invoke(*args):
    return CliRunner().invoke(app, list(args))


def test_kill_and_nice_through_the_daemon_match_in_process(home, config, daemon_starter):
    with SyncKernel(load_config(env={"LLMOS_HOME": str(home)}), hal=FakeHAL()) as k:
        local_pid = k.submit("run", {"title": "weekly report"})
    local = [invoke("nice", str(local_pid), "-5"), invoke("kill", str(local_pid))]
    assert [r.exit_code for r in local] == [0, 0], [r.output for r in local]

    srv = daemon_starter(config)
    try:
        with discover(config) as c:
            pid = c.spawn("run", {"title": "weekly report"})["pid"]
            remote = [invoke("nice", str(pid), "-5"), invoke("kill", str(pid))]
            assert [r.exit_code for r in remote] == [0, 0], [r.output for r in remote]
            assert [r.stdout.replace(str(pid), "PID") for r in remote] == \
                   [r.stdout.replace(str(local_pid), "PID") for r in local]
            got = c.get_process(pid)
            assert got["state"] == "killed" and got["priority"] == -5
            bad = invoke("nice", str(pid), "40")                     # the kernel's error, one line
            assert bad.exit_code != 0
            missing = invoke("kill", "999999")
            assert missing.exit_code != 0
    finally:
        srv.stop()


def test_kill_without_a_daemon_while_another_kernel_runs(home):
    with SyncKernel(load_config(env={"LLMOS_HOME": str(home)}), hal=FakeHAL()) as k:
        pid = k.submit("run", {"title": "x"})
        res = invoke("kill", str(pid))
    assert res.exit_code != 0
    assert "no daemon answers" in str(res.exception)


def test_reading_commands_go_through_the_daemon_and_match_the_journal(home, config, daemon_starter,
                                                                      monkeypatch):
    """While a daemon serves the state directory, ps / agents / top / explain read through
    its syscalls (the journal is not opened); after it stops, the journal reader gives the
    same processes and agents."""
    import json

    from llmos.cli import kernel as kcli

    reader = kcli.open_journal
    srv = daemon_starter(config)
    try:
        with discover(config) as c:
            c.syscall("agent.create", {"name": "helper", "capabilities": {"syscalls": ["proc.*"]}})
            run = c.spawn("run", {"title": "weekly report"})["pid"]
            gone = c.spawn("run", {"title": "old one"})["pid"]
            c.nice(run, 3)
            c.kill(gone, "not needed")
            helper = c.syscall("proc.spawn", {"kind": "run", "spec": {"title": "helper's"}})["pid"]

        def no_journal(cfg):
            raise AssertionError("the journal was read while a daemon answers")
        monkeypatch.setattr(kcli, "open_journal", no_journal)
        live = json.loads(invoke("ps", "--json").stdout)["processes"]
        every = json.loads(invoke("ps", "--all", "--json").stdout)["processes"]
        agents = json.loads(invoke("agents", "--json").stdout)["agents"]
        top = " ".join(invoke("top", "--once").stdout.split())
        exp = invoke("explain", str(run)).stdout
        exp_gone = invoke("explain", str(gone)).stdout
    finally:
        srv.stop()
        monkeypatch.setattr(kcli, "open_journal", reader)
    assert [p["pid"] for p in live] == [helper, run] and {p["state"] for p in live} == {"waiting"}
    assert [(p["pid"], p["state"]) for p in every] == [(helper, "waiting"), (gone, "killed"), (run, "waiting")]
    assert [a["id"] for a in agents] == ["root", "helper"] and agents[0]["live"] == 2 and agents[0]["total"] == 3
    assert "waiting 2" in top and "tok/s 0.0 (engines, live)" in top and "per agent" in top
    assert f"pid {run}: run 'weekly report' by agent root, priority 3, now waiting" in exp
    assert "reniced 0 -> 3 by root" in exp and "waiting -> killed" in exp_gone and "not needed" in exp_gone

    # the same state read from the stopped system's journal
    assert json.loads(invoke("ps", "--json").stdout)["processes"] == live
    assert [(p["pid"], p["state"]) for p in json.loads(invoke("ps", "--all", "--json").stdout)["processes"]] == \
        [(p["pid"], p["state"]) for p in every]
    journal_agents = json.loads(invoke("agents", "--json").stdout)["agents"]
    assert [(a["id"], a["live"], a["total"]) for a in journal_agents] == \
        [(a["id"], a["live"], a["total"]) for a in agents]
    assert invoke("explain", str(run)).stdout == exp
