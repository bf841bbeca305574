"""Fixtures for the tool tests: a workspace, a context on a fake clock, the registry, a sandbox.

``sandbox`` has small limits so the escape suite runs in seconds; where bubblewrap
cannot make a sandbox, the tests that need one are skipped with the reason.
"""

from __future__ import annotations

import datetime as dt

import pytest

from llmos.clock import FakeClock
from llmos.errors import SandboxError
from llmos.tools import ToolContext, default_registry
from llmos.tools.sandbox import Sandbox, SandboxLimits

# 2026-03-04 10:00 local time, a Wednesday
T0 = dt.datetime(2026, 3, 4, 10, 0, 0).timestamp()


@pytest.fixture
def clock():
    return FakeClock(start=T0)


@pytest.fixture
def ctx(ws, clock):
    return ToolContext(workdir=ws, agent="tester", clock=clock)


@pytest.fixture(scope="session")
def reg():
    return default_registry()


@pytest.fixture
def call(reg, ctx):
    """call(name, **args) -> ToolResult, in the test's workspace."""
    def _call(_tool, _ctx=None, **args):
        return reg.call(_tool, args, _ctx or ctx)
    return _call


SMALL = SandboxLimits(timeout_s=10, cpu_s=3, memory_bytes=512 << 20, nproc=32, fsize_bytes=1 << 20,
                      output_bytes=8192, tmp_bytes=8 << 20, shm_bytes=1 << 20)


@pytest.fixture(scope="session")
def sandbox():
    sb = Sandbox(limits=SMALL)
    try:
        sb.check()
    except SandboxError as exc:
        pytest.skip(f"no sandbox here: {exc} ({exc.hint})")
    return sb


@pytest.fixture
def xctx(ws, clock, sandbox):
    """A context whose exec tools use the small-limit sandbox."""
    return ToolContext(workdir=ws, agent="tester", clock=clock, sandbox=sandbox)
