"""Fixtures for the API tests: an in-process app on a FakeEngine, and a real daemon thread.

- ``make_app(config, **kw)``: ``create_app`` with a FakeEngine, the builtin tools and a
  FakeHAL (hermetic: no model, no hardware reads), plus its engine.
- ``api``: that app's lifespan entered, an httpx client over the ASGI transport with
  the admin token, and the Services (``api.client``, ``api.svc``, ``api.engine``).
- ``daemon``: a real uvicorn daemon on a free loopback port (``ServerThread``), for
  the tests that need a socket: SSE streams, the official ``openai`` client, the browser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from llmos.api.app import create_app, lifespan_services
from llmos.api.server import ServerThread
from llmos.hal.fake import FakeHAL
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import default_registry


def plan_json(*steps: tuple[str, dict, str], answer: str = "Done.") -> str:
    return json.dumps({"steps": [{"tool": t, "args": a, "why": w} for t, a, w in steps],
                       "answer": answer})


def make_app(config, script: Any = None, **kw: Any):
    engine = FakeEngine(script, model="fake")
    kw.setdefault("engines", {"fake": engine})
    kw.setdefault("tools", default_registry())
    kw.setdefault("hal", FakeHAL())
    kw.setdefault("preload_models", False)
    return create_app(config, **kw), engine


@dataclass
class Api:
    client: httpx.AsyncClient
    svc: Any
    engine: FakeEngine
    app: Any
    token: str

    def as_agent(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://localhost",
                                 headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def script():
    """What the FakeEngine answers (None: echo the last user message)."""
    return None


@pytest.fixture
async def api(config, script):
    app, engine = make_app(config, script)
    async with lifespan_services(app) as svc:
        token = svc.tokens.admin_token()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost",
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            yield Api(client, svc, engine, app, token)


def start_daemon(config, script: Any = None) -> ServerThread:
    """A started daemon thread on a FakeEngine (``.engine``); the caller stops it."""
    engine = FakeEngine(script, model="fake")
    srv = ServerThread(config, engines={"fake": engine}, tools=default_registry(), hal=FakeHAL(),
                       preload_models=False)
    srv.engine = engine
    return srv.start()


@pytest.fixture
def daemon(config, script):
    srv = start_daemon(config, script)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def daemon_factory():
    """``start_daemon`` for module-scoped fixtures (conftest is not importable by name)."""
    return start_daemon


@pytest.fixture(scope="module")
def module_config(tmp_path_factory):
    """A config on a state directory shared by one module's tests (for a shared daemon)."""
    from llmos.config import load_config

    home = tmp_path_factory.mktemp("llmos-home")
    return load_config(env={"LLMOS_HOME": str(home)})
