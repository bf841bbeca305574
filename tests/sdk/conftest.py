"""Fixtures for the SDK tests: a real daemon on a free loopback port with a FakeEngine."""

from __future__ import annotations

import pytest

from llmos.api.server import ServerThread
from llmos.hal.fake import FakeHAL
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import default_registry


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    from llmos.config import load_config

    config = load_config(env={"LLMOS_HOME": str(tmp_path_factory.mktemp("llmos-home"))})
    engine = FakeEngine(model="fake")
    srv = ServerThread(config, engines={"fake": engine}, tools=default_registry(), hal=FakeHAL(),
                       preload_models=False)
    srv.engine = engine
    srv.start()
    yield srv
    srv.stop()
