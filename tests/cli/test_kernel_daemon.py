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
