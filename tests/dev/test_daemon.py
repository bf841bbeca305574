"""``llmos dev`` when a daemon serves the state directory: the run's agent, its model calls and
its sandboxed test runs live in the daemon's kernel; nothing boots in this process."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from llmos.api.server import ServerThread
from llmos.cli import daemon as daemon_cli
from llmos.cli import dev as dev_cli_mod
from llmos.hal.fake import FakeHAL
from llmos.llm.fake import FakeEngine
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


def test_dev_through_the_daemon(daemon, tiny_repo, texts):
    app = typer.Typer()
    dev_cli_mod.register(app)

    @app.callback()
    def _root() -> None:
        pass
    res = CliRunner().invoke(app, ["dev", "--repo", str(tiny_repo), "--test-cmd", "python test_calc.py",
                                   "--model", "fake", "--yes", "fix add"])
    assert res.exit_code == 0, res.output
    assert "daemon at" in res.output and "tests pass" in res.output
    assert (tiny_repo / "calc.py").read_text() == texts["BUGGY"].replace("a - b", "a + b")
