"""`llmos run / history / explain / rate / habits` through typer's CliRunner; the kernel is
real, the engine is the scripted FakeEngine (patched into the CLI's boot)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from llmos.cli import shell as shell_cli
from llmos.kernel import Kernel
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import default_registry


def _plan(*steps, answer="$step1.output"):
    return json.dumps({"steps": [{"tool": t, "args": a, "why": "scripted"} for t, a in steps], "answer": answer})


@pytest.fixture
def app(home, monkeypatch):
    script = {"plan": _plan(("files.count", {"path": "poem.txt"}), answer="The file has $step1.output.lines lines.")}

    async def boot(cfg):
        engine = FakeEngine(lambda req: script["plan"])
        return await Kernel.boot(cfg, engines={"fake": engine}, tools=default_registry())
    monkeypatch.setattr(shell_cli, "_boot", boot)
    a = typer.Typer()
    shell_cli.register(a)
    a.script = script  # type: ignore[attr-defined]
    return a


def last_json(output: str) -> dict:
    return json.loads([ln for ln in output.strip().splitlines() if ln.strip()][-1])


def test_run_json_contract(app, tmp_path):
    (tmp_path / "poem.txt").write_text("a\nb\nc\n")
    r = CliRunner().invoke(app, ["run", "--json", "--workdir", str(tmp_path), "how many lines are in poem.txt?"])
    assert r.exit_code == 0, r.output
    out = last_json(r.stdout)
    assert out["status"] == "succeeded" and "3" in out["answer"] and out["run"].startswith("r")
    assert out["steps"][0]["tool"] == "files.count" and out["steps"][0]["risk"] == "read"


def test_run_without_yes_stops_before_destructive(app, tmp_path):
    (tmp_path / "x.tmp").write_text("1")
    app.script["plan"] = _plan(("files.delete", {"path": "*.tmp"}))
    r = CliRunner().invoke(app, ["run", "--json", "--workdir", str(tmp_path), "delete every .tmp file here"])
    assert r.exit_code == 2 and last_json(r.stdout)["status"] == "needs_confirmation"
    assert (tmp_path / "x.tmp").exists()
    r = CliRunner().invoke(app, ["run", "--yes", "--json", "--workdir", str(tmp_path), "delete every .tmp file here"])
    assert r.exit_code == 0 and not (tmp_path / "x.tmp").exists()


def test_run_outside_is_denied(app, tmp_path):
    app.script["plan"] = _plan(("files.read", {"path": "/etc/shadow"}))
    r = CliRunner().invoke(app, ["run", "--yes", "--json", "--workdir", str(tmp_path), "show me /etc/shadow"])
    out = last_json(r.stdout)
    assert r.exit_code == 3 and out["status"] == "denied" and "outside" in out["answer"]


def test_dry_run_and_bad_workdir(app, tmp_path):
    (tmp_path / "poem.txt").write_text("a\n")
    r = CliRunner().invoke(app, ["run", "--dry-run", "--json", "--workdir", str(tmp_path), "count poem.txt"])
    assert r.exit_code == 0 and last_json(r.stdout)["status"] == "planned"
    r = CliRunner().invoke(app, ["run", "--json", "--workdir", str(tmp_path / "nope"), "count"])
    assert r.exit_code == 1 and last_json(r.stdout)["status"] == "failed"
    assert "not a directory" in last_json(r.stdout)["answer"]


def test_history_explain_rate_habits(app, tmp_path):
    (tmp_path / "poem.txt").write_text("a\nb\n")
    r = CliRunner().invoke(app, ["run", "--json", "--workdir", str(tmp_path), "how many lines are in poem.txt?"])
    run = last_json(r.stdout)["run"]
    r = CliRunner().invoke(app, ["history", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["id"] == run
    r = CliRunner().invoke(app, ["explain", run])
    assert r.exit_code == 0
    for needle in ("plan:", "files.count", "why: scripted", "risk" if False else "[read]", "answer: The file has 2 lines"):
        assert needle in r.stdout, r.stdout
    r = CliRunner().invoke(app, ["rate", run, "good", "--note", "right"])
    assert r.exit_code == 0 and "example" in r.output
    r = CliRunner().invoke(app, ["explain", "last", "--json"])
    assert json.loads(r.stdout)["rating"] == "good"
    r = CliRunner().invoke(app, ["rate", run, "meh"])
    assert r.exit_code != 0
    r = CliRunner().invoke(app, ["habits", "set", "output_dir", "reports"])
    assert r.exit_code == 0 and "reports" in r.stdout
