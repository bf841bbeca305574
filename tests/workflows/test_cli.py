"""``llmos workflow`` and ``llmos reminders`` end to end, in-process and through a daemon
(the commands find it the way a user's daemon is found); bad input is one line."""

from __future__ import annotations

import json

import pytest

from llmos.api.server import ServerThread
from llmos.cli import daemon as daemon_cli
from llmos.cli import main
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import default_registry


def model(req) -> str:
    if "task" in (req.json_schema or {}).get("properties", {}):
        return json.dumps({"trigger": "time", "cron": "0 9 * * 1-5", "timezone": "Europe/Paris", "folder": "",
                           "pattern": "", "after": "", "task": "count the lines of poem.txt"})
    return json.dumps({"steps": [{"tool": "files.count", "args": {"path": "poem.txt"}, "why": "count"}],
                       "answer": "$step1.output.lines lines"})


@pytest.fixture(params=["in-process", "daemon"])
def mode(request, config, monkeypatch):
    if request.param == "in-process":
        async def boot(cfg):
            return await Kernel.boot(cfg, engines={"fake": FakeEngine(model, model="fake")},
                                     tools=default_registry(), hal=FakeHAL())
        monkeypatch.setattr(daemon_cli, "boot_kernel", boot)
        yield request.param
        return

    async def refuse(cfg):
        raise AssertionError("booted in-process while a daemon serves the state directory")
    monkeypatch.setattr(daemon_cli, "boot_kernel", refuse)
    srv = ServerThread(config, engines={"fake": FakeEngine(model, model="fake")}, tools=default_registry(),
                       hal=FakeHAL(), preload_models=False).start()
    try:
        yield request.param
    finally:
        srv.stop()


def test_workflow_commands(mode, tmp_path, capsys):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "poem.txt").write_text("a\nb\nc\n")
    assert main(["workflow", "new", "every weekday at 9 Paris time count the lines of poem.txt",
                 "-C", str(ws), "--name", "lines", "--yes"]) == 0
    o = capsys.readouterr().out
    assert "0 9 * * 1-5" in o and "files.count" in o and f"read and write files in {ws} only" in o
    assert "saved workflow lines; next run" in o
    assert main(["workflow", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(w["name"], w["state"], w["trigger"]["tz"]) for w in rows] == [("lines", "active", "Europe/Paris")]
    assert main(["workflow", "run-now", "lines"]) == 0
    assert "3 lines" in capsys.readouterr().out
    assert main(["workflow", "pause", "lines"]) == 0
    assert main(["workflow", "show", "lines", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert shown["state"] == "paused" and shown["runs"][0]["cause"] == "run now"
    assert main(["workflow", "show", "ghost"]) != 0
    e = capsys.readouterr().err.strip().splitlines()
    assert "no workflow named 'ghost'" in e[0] and "Traceback" not in "".join(e)
    assert main(["workflow", "delete", "lines"]) == 0
    assert main(["reminders", "add", "send the timesheet", "--in", "1h", "--every", "7d"]) == 0
    assert "every 1w" in capsys.readouterr().out
    assert main(["reminders", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["reminders"]
    assert [(r["message"], r["every_s"]) for r in got] == [("send the timesheet", 604800.0)]
    assert main(["reminders", "cancel", str(got[0]["id"])]) == 0
    assert main(["reminders", "add", "x", "--in", "soon"]) != 0
    assert "--in: 'soon' is not a duration" in capsys.readouterr().err
