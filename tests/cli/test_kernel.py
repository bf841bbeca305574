"""``llmos ps / kill / nice / agents / top / explain`` on a real state directory."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llmos.cli import app
from llmos.config import load_config
from llmos.hal.fake import FakeHAL
from llmos.kernel import SyncKernel


@pytest.fixture
def state(home):
    with SyncKernel(load_config(env={"LLMOS_HOME": str(home)}), hal=FakeHAL()) as k:
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


def test_top_without_a_daemon_counts_recent_generations(state, monkeypatch):
    import sys

    monkeypatch.setattr(sys.modules["llmos.sdk.discover"], "discover", lambda cfg, **kw: None)
    top = invoke("top", "--once").stdout
    assert "finished in the last" in top and "joules" in top


async def test_top_frame_from_an_in_process_kernel(config, clock):
    from rich.console import Console

    from llmos.cli.kernel import top_frame
    from llmos.hal.fake import FakeHAL
    from llmos.kernel import Kernel
    from llmos.llm.base import EngineStats
    from llmos.llm.fake import FakeEngine

    class Busy(FakeEngine):
        def stats(self):
            return EngineStats(active=1, tokens_generated=99, tokens_per_s=41.0)

    k = await Kernel.boot(config, engines={"busy": Busy()}, clock=clock, hal=FakeHAL(clock))
    try:
        k.register_job("hold", __import__("asyncio").Event().wait)
        pid = await k.submit("job", {"type": "hold"})
        while k.procs.get(pid).state.name != "RUNNING":
            await __import__("asyncio").sleep(0.005)
        clock.advance(3.0)
        console = Console(width=160, record=True)
        console.print(top_frame(k.stats()))
        text = console.export_text()
        assert "tok/s 41.0 (engines, live)" in text and "running 1" in text
        assert "12.0 J modelled" in text                   # FakeHAL CPU: 4 W × 3 s, per process and agent
    finally:
        await k.shutdown(grace_s=0.1)


def test_explain_shows_the_placement_and_labelled_joules(state):
    exp = " ".join(invoke("explain", str(state["done"])).stdout.split())
    assert "placed on cpu (throughput: cpu (smallest makespan" in exp and "placed on: cpu" in exp
    assert " J, attempts 1" in exp


def test_reading_commands_never_migrate_a_journal_of_another_schema(home):
    """Without a daemon the journal is read as it is: an older or newer schema is named
    (one line, what to do), and the file is left alone."""
    from llmos.kernel.storage import MIGRATIONS, SCHEMA_VERSION, Journal, Reader

    path = home / "llmos.db"
    j = Journal(path, migrations=MIGRATIONS[:1])
    j.write("INSERT INTO processes(pid, kind, owner, spec, priority, state, reason, created_s) "
            "VALUES (1, 'job', 'root', '{\"type\": \"x\"}', 0, 1, 'admitted', 1.0)")
    j.close()
    before = path.read_bytes()
    for cmd in (["ps"], ["agents"], ["top", "--once"], ["explain", "1"]):
        res = CliRunner().invoke(app, cmd)
        assert res.exit_code != 0, cmd
        assert "schema version 1, older than" in str(res.exception) and "never migrate" in str(res.exception)
    r = Reader(path)
    assert r.query("PRAGMA user_version")[0][0] == 1 and path.read_bytes() == before
    r.close()
    newer = home / "newer"
    newer.mkdir()
    Journal(newer / "llmos.db").close()
    import sqlite3

    con = sqlite3.connect(newer / "llmos.db")
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    res = CliRunner().invoke(app, ["--home", str(newer), "ps"])
    assert res.exit_code != 0 and "newer than this llmos understands" in str(res.exception)


def test_reading_commands_on_a_fresh_state_dir_create_no_journal(home):
    assert "no processes" in invoke("ps").stdout
    assert "queued 0" in invoke("top", "--once").stdout
    assert not (home / "llmos.db").exists()
