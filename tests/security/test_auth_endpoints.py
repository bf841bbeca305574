"""Issue 12, item 12: every endpoint but health needs a token, and the Host header is checked.

- ``/metrics`` and ``/openapi.json`` answer 401 without a token; ``/metrics`` takes the
  admin token or a metrics-only token (which opens nothing else).
- ``/docs`` and ``/redoc`` are off (they would load scripts from a CDN).
- A request whose Host is not a loopback name is refused (DNS rebinding), unless the
  name is in the configured allow-list.
"""

from __future__ import annotations

import httpx
import pytest

from llmos.api.app import create_app, lifespan_services
from llmos.hal.fake import FakeHAL
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import default_registry


def _app(config, **kw):
    return create_app(config, engines={"fake": FakeEngine(model="fake")}, tools=default_registry(),
                      hal=FakeHAL(), preload_models=False, **kw)


def _client(app, host="localhost", token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}",
                             headers=headers)


@pytest.fixture
async def running(config):
    app = _app(config)
    async with lifespan_services(app) as svc:
        yield app, svc


@pytest.mark.parametrize("path", ["/metrics", "/openapi.json"])
async def test_metrics_and_schema_need_a_token(running, path):
    app, svc = running
    async with _client(app) as anon:
        r = await anon.get(path)
    assert r.status_code == 401, (path, r.status_code, r.text[:200])
    async with _client(app, token=svc.tokens.admin_token()) as admin:
        assert (await admin.get(path)).status_code == 200


async def test_a_metrics_only_token_opens_metrics_and_nothing_else(running):
    app, svc = running
    token, _ = svc.tokens.issue("root", label="prometheus", scope="metrics")
    async with _client(app, token=token) as scraper:
        assert (await scraper.get("/metrics")).status_code == 200
        r = await scraper.get("/api/v1/processes")
        assert r.status_code == 401 and "metrics" in r.json()["message"]


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_docs_load_nothing_from_the_internet(running, path):
    app, svc = running
    async with _client(app, token=svc.tokens.admin_token()) as admin:
        r = await admin.get(path)
    assert r.status_code == 404 or "cdn" not in r.text.lower()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8420", "192.168.1.5:8420"])
async def test_a_foreign_host_header_is_refused(running, host):
    app, svc = running
    async with _client(app, host=host, token=svc.tokens.admin_token()) as c:
        r = await c.get("/api/v1/whoami")
    assert r.status_code == 403 and "host" in r.json()["message"].lower()


@pytest.mark.parametrize("host", ["localhost:8420", "127.0.0.1:8420", "[::1]:8420", "localhost"])
async def test_loopback_host_names_are_answered(running, host):
    app, svc = running
    async with _client(app, host=host, token=svc.tokens.admin_token()) as c:
        assert (await c.get("/api/v1/whoami")).status_code == 200


async def test_the_allow_list_is_configurable(config):
    app = _app(config, allowed_hosts=("llmos.lan",))
    async with lifespan_services(app) as svc, _client(app, host="llmos.lan:8420",
                                                       token=svc.tokens.admin_token()) as c:
        assert (await c.get("/api/v1/whoami")).status_code == 200
