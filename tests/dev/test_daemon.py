"""``llmos dev`` when a daemon serves the state directory: the run's agent, its model calls and
its sandboxed test runs live in the daemon's kernel; nothing boots in this process."""

from __future__ import annotations

import json
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from llmos.api.server import ServerThread
from llmos.cli import daemon as daemon_cli
from llmos.cli import dev as dev_cli_mod
from llmos.hal.fake import FakeHAL
from llmos.llm.fake import FakeEngine
from llmos.sdk.client import Client
from llmos.tools.registry import default_registry


@pytest.fixture
def daemon(config, texts, monkeypatch, sandboxed):
    async def refuse(cfg: Any) -> Any:
        raise AssertionError("booted a kernel in-process while a daemon serves the state directory")
    monkeypatch.setattr(daemon_cli, "boot_kernel", refuse)
    srv = ServerThread(config, engines={"fake": FakeEngine(texts["FIX"], model="fake")},
                       tools=default_registry(), hal=FakeHAL(), preload_models=False).start()
    try:
        yield srv
    finally:
        srv.stop()


def _dev(args: list[str]):
    """``llmos dev ARGS`` through the CLI, as a person types it."""
    app = typer.Typer()
    dev_cli_mod.register(app)

    @app.callback()
    def _root() -> None:
        pass
    return CliRunner().invoke(app, ["dev", *args])


def test_dev_through_the_daemon(daemon, tiny_repo, texts):
    res = _dev(["--repo", str(tiny_repo), "--test-cmd", "python test_calc.py",
                                   "--model", "fake", "--yes", "fix add"])
    assert res.exit_code == 0, res.output
    assert "daemon at" in res.output and "tests pass" in res.output
    assert (tiny_repo / "calc.py").read_text() == texts["BUGGY"].replace("a - b", "a + b")



PROBE = """import sys
ifaces = sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:])
print("interfaces:", " ".join(ifaces))
try:
    print(open(sys.argv[1]).read())
except OSError as e:
    print("unreadable:", type(e).__name__)
"""


def test_test_runs_in_the_daemon_are_the_dev_agents(daemon, tiny_repo, tmp_path):
    """The person's token confirms the test runs (an agent cannot confirm its own exec step),
    but they run as the development agent: its process, its sandbox (the scratch copy, no
    network), not the person's rights."""
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("the person's secret\n")
    (tiny_repo / "probe.py").write_text(PROBE)
    res = _dev(["--repo", str(tiny_repo), "--test-cmd",
                                   f"python probe.py {secret} && python test_calc.py", "--model", "fake",
                                   "--json", "--tries", "1", "fix add"])
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["passed"] is True, out
    assert "the person's secret" not in out["tests_output"] and "unreadable: FileNotFoundError" in out["tests_output"]
    assert "interfaces: lo\n" in out["tests_output"]          # no network: the agent's, not the person's
    with Client(daemon.url, daemon.token) as admin:
        tools = [p for p in admin.ps(limit=1000) if p["kind"] == "tool"]
    assert len(tools) == 2 and all(p["owner"].startswith("dev-") for p in tools), tools


def test_hanging_tests_through_the_daemon_are_stopped_and_reported(daemon, tiny_repo, texts):
    (tiny_repo / "test_calc.py").write_text("import time\ntime.sleep(60)\n")
    res = _dev(["--repo", str(tiny_repo), "--test-cmd", "python test_calc.py",
                                   "--test-timeout", "2", "--model", "fake", "--tries", "1", "--yes", "fix add"])
    assert res.exit_code == 1, res.output
    assert "tests did not finish" in res.output and "2" in res.output
    assert (tiny_repo / "calc.py").read_text() == texts["BUGGY"]


def test_a_model_call_that_never_ends_in_the_daemon_is_stopped(config, tiny_repo, texts, monkeypatch, sandboxed):
    """Through the daemon the limit is the kernel's too: the TimedOut comes back over HTTP as
    itself, the try is spent in one line, and the daemon's engine drops the generation."""
    async def refuse(cfg: Any) -> Any:
        raise AssertionError("booted a kernel in-process while a daemon serves the state directory")
    monkeypatch.setattr(daemon_cli, "boot_kernel", refuse)
    engine = FakeEngine(texts["FIX"], model="fake", step_delay_s=3600)
    srv = ServerThread(config, engines={"fake": engine}, tools=default_registry(), hal=FakeHAL(),
                       preload_models=False).start()
    try:
        app = typer.Typer()
        dev_cli_mod.register(app)

        @app.callback()
        def _root() -> None:
            pass
        res = CliRunner().invoke(app, ["dev", "--repo", str(tiny_repo), "--test-cmd", "python test_calc.py",
                                       "--model", "fake", "--model-timeout", "1", "--tries", "1", "fix add"])
        assert res.exit_code == 1, res.output
        assert "model timed out: no reply within 1 s" in res.output and "daemon at" in res.output
        assert engine.views() == []
        with Client(srv.url, srv.token) as admin:
            llm = [p for p in admin.ps(limit=1000) if p["kind"] == "llm"]
        assert [p["state"] for p in llm] == ["killed"] and "timed out" in llm[0]["reason"]
    finally:
        srv.stop()
    assert (tiny_repo / "calc.py").read_text() == texts["BUGGY"]
