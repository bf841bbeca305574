"""``llmos undo RUN`` and ``llmos history PATH`` on a real state directory (in-process
kernel): a run's file changes put back, a file changed since reported with exit 1 and
kept, versions listed, bad input one line naming what was expected."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llmos.cli import app
from llmos.config import load_config
from llmos.hal.fake import FakeHAL
from llmos.kernel import SyncKernel
from llmos.tools.registry import default_registry

RUN = "r0a1b2c3d"


@pytest.fixture
def ws(home, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("original a")
    (ws / "b.txt").write_text("original b")
    (ws / "dir").mkdir()
    (ws / "dir" / "c.txt").write_text("original c")
    with SyncKernel(load_config(env={"LLMOS_HOME": str(home)}), hal=FakeHAL(), tools=default_registry()) as k:
        k.syscall("root", "agent.create", {"name": "alice", "capabilities": {
            "syscalls": ["tool.*", "may.risky"], "write_roots": [str(ws)]}}).unwrap()
        for i, (tool, args) in enumerate([("files.write", {"path": "a.txt", "content": "run a"}),
                                          ("files.write", {"path": "b.txt", "content": "run b"}),
                                          ("files.delete", {"path": "dir", "recursive": True})]):
            k.syscall("alice", "tool.call", {"tool": tool, "args": args, "workdir": str(ws), "confirmed": True,
                                             "idempotency_key": f"{RUN}:{i}:x"}).unwrap()
    return ws


def invoke(*args):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_undo_puts_back_a_run_and_reports_a_file_changed_since(ws):
    (ws / "a.txt").write_text("edited later")
    res = invoke("undo", RUN)
    assert res.exit_code == 1, res.output
    assert "NOT restored" in res.stdout and "changed since" in res.stdout and "--force" in res.stderr
    assert (ws / "a.txt").read_text() == "edited later"
    assert (ws / "b.txt").read_text() == "original b"
    assert (ws / "dir" / "c.txt").read_text() == "original c"
    res = invoke("undo", RUN, "--force", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r["path"] for r in report["restored"]] == [str(ws / "a.txt")]
    assert (ws / "a.txt").read_text() == "original a"


def test_history_path_lists_versions(ws):
    res = invoke("history", str(ws / "a.txt"), "--json")
    assert res.exit_code == 0, res.output
    versions = json.loads(res.stdout)["versions"]
    assert [(v["op"], v["run"], v["agent"]) for v in versions] == [("write", RUN, "alice")]
    res = invoke("history", str(ws / "dir" / "c.txt"))
    assert res.exit_code == 0 and "delete" in res.stdout
    # one version put back by id
    res = invoke("undo", "--version", str(versions[0]["version"]))
    assert res.exit_code == 0, res.output
    assert (ws / "a.txt").read_text() == "original a"
    res = invoke("history", str(ws / "never.txt"))
    assert res.exit_code == 0 and "no versions" in res.stdout


@pytest.mark.parametrize("args, words", [
    (["undo", "r99999999"], "no file changes"),
    (["undo"], "give a RUN or --version"),
    (["undo", RUN, "--version", "3"], "give a RUN or --version"),
    (["undo", "x" * 200], "1..100 characters"),
    (["undo", "--version", "424242"], "no such version"),
    (["history", "/etc/passwd-nothing-here"], None),
])
def test_bad_input_is_one_line_not_a_traceback(ws, args, words):
    res = CliRunner().invoke(app, args)
    if words is None:          # root may read anywhere: an empty list, no error
        assert res.exit_code == 0 and "no versions" in res.stdout
        return
    assert res.exit_code != 0
    text = res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert "Traceback" not in text
    assert words in text or words in str(res.exception), (text, res.exception)


def test_undo_and_history_go_through_the_daemon_when_one_serves(ws, daemon_starter, config):
    # the daemon holds the state directory's lock: a kernel booted here would be refused
    srv = daemon_starter(config)
    try:
        res = invoke("undo", RUN)
        assert res.exit_code == 0, res.output
        assert (ws / "a.txt").read_text() == "original a" and (ws / "dir" / "c.txt").read_text() == "original c"
        res = invoke("history", str(ws / "a.txt"), "--json")
        ops = [v["op"] for v in json.loads(res.stdout)["versions"]]
        assert ops == ["restore", "write"]
    finally:
        srv.stop()


def test_llmos_undo_last_puts_back_what_llmos_run_changed(mode, script, cli, tmp_path):
    wd = tmp_path / "work"
    wd.mkdir()
    (wd / "poem.txt").write_text("roses\n")
    script["plan"] = json.dumps({"steps": [
        {"tool": "files.write", "args": {"path": "poem.txt", "content": "overwritten\n"}, "why": "scripted"},
        {"tool": "files.write", "args": {"path": "new.txt", "content": "new\n"}, "why": "scripted"}],
        "answer": "done"})
    res = cli("run", "--workdir", str(wd), "--yes", "rewrite poem.txt and make new.txt")
    assert res.exit_code == 0, res.output
    assert (wd / "poem.txt").read_text() == "overwritten\n" and (wd / "new.txt").exists()
    assert "llmos undo" in res.output
    res = invoke("undo", "last")
    assert res.exit_code == 0, res.output
    assert (wd / "poem.txt").read_text() == "roses\n" and not (wd / "new.txt").exists()
