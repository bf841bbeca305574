"""Fixtures for the development agent: a tiny repository and the CLI on a scripted engine.

- ``tiny_repo``: calc.py with a bug (add subtracts) and test_calc.py, a plain Python
  script that fails while the bug is there (so a test run is a fraction of a second).
- ``texts``: the scripted texts (the buggy file, a fixing reply, a wrong one).
- ``replies``: the list the FakeEngine answers, in order (the last one repeats).
- ``engine_opts``: more keyword arguments for that FakeEngine (e.g. ``step_delay_s``), read
  when the CLI boots its kernel.
- ``dev_cli(*args, input=)``: ``llmos dev`` in a kernel booted in this process on the
  scripted engine (``cli.daemon.boot_kernel`` replaced), through typer's runner.
"""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from llmos.cli import daemon as daemon_cli
from llmos.cli import dev as dev_cli_mod
from llmos.errors import SandboxError
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import default_registry
from llmos.tools.sandbox import default_sandbox

BUGGY = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
TEST = "from calc import add, mul\n\nassert mul(2, 3) == 6\nassert add(2, 3) == 5, f'add(2, 3) = {add(2, 3)}'\n" \
       "print('ok')\n"
FIX = "calc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n"
WRONG = "calc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a * b\n>>>>>>> REPLACE\n"


@pytest.fixture(scope="session")
def sandboxed():
    try:
        default_sandbox().check()
    except SandboxError as exc:
        pytest.skip(f"no sandbox here: {exc} ({exc.hint})")


@pytest.fixture
def tiny_repo(tmp_path):
    d = tmp_path / "proj"
    d.mkdir()
    (d / "calc.py").write_text(BUGGY)
    (d / "test_calc.py").write_text(TEST)
    return d


@pytest.fixture
def replies() -> list[str]:
    return [FIX]


@pytest.fixture
def engine_opts() -> dict[str, Any]:
    return {}


@pytest.fixture
def texts() -> dict[str, str]:
    """The scripted texts: BUGGY (calc.py), FIX (a reply that fixes it), WRONG (one that does not)."""
    return {"BUGGY": BUGGY, "FIX": FIX, "WRONG": WRONG, "TEST": TEST}


@pytest.fixture
def dev_cli(config, replies, engine_opts, monkeypatch, sandboxed):
    async def boot(cfg: Any) -> Any:
        engine = FakeEngine(lambda req: replies.pop(0) if len(replies) > 1 else replies[0], model="fake",
                            **engine_opts)
        return await Kernel.boot(cfg, engines={"fake": engine}, tools=default_registry(), hal=FakeHAL())
    monkeypatch.setattr(daemon_cli, "boot_kernel", boot)
    app = typer.Typer()
    dev_cli_mod.register(app)

    @app.callback()
    def _root() -> None:     # keeps `dev` a sub-command
        pass

    def invoke(*args: str, input: str | None = None):
        return CliRunner().invoke(app, ["dev", *args], input=input)
    return invoke
