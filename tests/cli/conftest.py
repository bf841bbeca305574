"""Fixtures for the CLI tests: the shell commands in both modes, on one scripted engine.

- ``script``: ``{"plan": TEXT}``, what the FakeEngine answers every generation (a test
  may change it between commands).
- ``mode``: parametrized ``"in-process"`` | ``"daemon"``. In-process: ``cli.daemon``'s
  kernel boot gets the FakeEngine. Daemon: a real daemon (``ServerThread``, uvicorn on a
  free loopback port) serves the test's state directory with the FakeEngine, found by
  ``discover`` the way a user's daemon is, and booting in-process fails the test.
- ``cli``: a typer app with the shell commands registered, invoked with ``cli(*args, input=)``.
- ``use_local_kernel()`` / ``daemon_starter(config)``: the two modes by hand, for a test
  that compares them in one process (conftest modules are not importable by name).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from llmos.api.server import ServerThread
from llmos.cli import daemon as daemon_cli
from llmos.cli import shell as shell_cli
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import default_registry

MODES = ("in-process", "daemon")


def plan_json(*steps: tuple[str, dict], answer: str = "$step1.output") -> str:
    return json.dumps({"steps": [{"tool": t, "args": a, "why": "scripted"} for t, a in steps],
                       "answer": answer})


@pytest.fixture
def script() -> dict[str, str]:
    return {"plan": plan_json(("files.count", {"path": "poem.txt"}),
                              answer="The file has $step1.output.lines lines.")}


def _engine(script: dict[str, str]) -> FakeEngine:
    return FakeEngine(lambda req: script["plan"], model="fake")


def local_kernel(monkeypatch, script: dict[str, str]) -> None:
    """In-process commands boot a kernel on the scripted engine."""
    async def boot(cfg: Any) -> Any:
        return await Kernel.boot(cfg, engines={"fake": _engine(script)}, tools=default_registry(),
                                 hal=FakeHAL())
    monkeypatch.setattr(daemon_cli, "boot_kernel", boot)


def start_daemon(config: Any, script: dict[str, str]) -> ServerThread:
    return ServerThread(config, engines={"fake": _engine(script)}, tools=default_registry(),
                        hal=FakeHAL(), preload_models=False).start()


@pytest.fixture(params=MODES)
def mode(request, config, script, monkeypatch):
    if request.param == "in-process":
        local_kernel(monkeypatch, script)
        yield request.param
        return

    async def refuse(cfg: Any) -> Any:
        raise AssertionError("booted a kernel in-process while a daemon serves the state directory")
    monkeypatch.setattr(daemon_cli, "boot_kernel", refuse)
    srv = start_daemon(config, script)
    try:
        yield request.param
    finally:
        srv.stop()


@pytest.fixture
def cli():
    app = typer.Typer()
    shell_cli.register(app)

    def invoke(*args: str, input: str | None = None):
        return CliRunner().invoke(app, list(args), input=input)
    return invoke


@pytest.fixture
def use_local_kernel(monkeypatch, script):
    return lambda: local_kernel(monkeypatch, script)


@pytest.fixture
def daemon_starter(script):
    return lambda config: start_daemon(config, script)
