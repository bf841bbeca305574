"""Shared fixtures: a temporary state directory, its config, a fake clock, a fake engine.

The default tier is hermetic: no model, network, GPU or wall-clock waits.
"""

from __future__ import annotations

import pytest

from llmos.clock import FakeClock
from llmos.config import load_config
from llmos.llm.fake import FakeEngine


@pytest.fixture
def home(tmp_path_factory, monkeypatch):
    """A fresh $LLMOS_HOME for this test, beside (never inside) its tmp_path: tests use
    tmp_path as a workspace, and a workspace holding the state directory is refused."""
    h = tmp_path_factory.mktemp("llmos-home")
    monkeypatch.setenv("LLMOS_HOME", str(h))
    for var in ("LLMOS_MODEL", "LLMOS_PLANNER_MODEL", "LLMOS_PLANNER_GGUF", "LLMOS_SCHEDULER",
                "LLMOS_ALLOC_MODE", "LLMOS_PORT", "LLMOS_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LLMOS_SHELL_MEMORY", "0")    # the shell's memory embeds: on in its own tests
    return h


@pytest.fixture
def config(home):
    return load_config(env={"LLMOS_HOME": str(home)})


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
async def fake_engine():
    engine = FakeEngine()
    await engine.start()
    yield engine
    await engine.close()


@pytest.fixture
def ws(tmp_path):
    """An empty workspace for runs: ``tmp_path/ws`` (the state directory lies elsewhere)."""
    d = tmp_path / "ws"
    d.mkdir()
    return d


@pytest.fixture
async def boot_kernel(config):
    """``await boot_kernel(answer, **boot_kw) -> Kernel``: a kernel on this test's state
    directory with the default tools and one engine, ``"fake"``: ``answer`` itself when it
    is a ``FakeEngine``, else a ``FakeEngine`` answering with it (a text, a list, or a
    function of the request). ``boot_kw`` go to ``Kernel.boot`` (``hal``, ``clock``, ``tools``).
    Every kernel it booted is shut down after the test; a test may shut one down sooner."""
    from llmos.kernel import Kernel
    from llmos.tools.registry import default_registry

    booted: list = []

    async def boot(answer=None, **kw):
        engine = answer if isinstance(answer, FakeEngine) else FakeEngine(answer)
        kw.setdefault("tools", default_registry())
        kernel = await Kernel.boot(config, engines={"fake": engine}, **kw)
        booted.append(kernel)
        return kernel

    yield boot
    for kernel in booted:
        await kernel.shutdown()
