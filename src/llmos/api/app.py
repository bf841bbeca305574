"""The daemon's ASGI app: ``create_app`` (factory) and its lifespan.

Map:
- ``create_app(config, *, kernel=None, ...)``: a FastAPI app with the REST routes
  (``/api/v1``), the OpenAI-compatible routes (``/v1``), ``/metrics``, the dashboard
  (``/`` and ``/dashboard/*``), JSON error handlers and the ``Guard`` middleware
  (loopback only unless ``allow_remote``, Host header checked against loopback names and
  ``allowed_hosts``, body size limit, request metrics). ``/metrics`` needs the admin or
  a metrics-only token, ``/openapi.json`` any valid token; ``/docs`` and ``/redoc`` are
  off (they load their scripts from a CDN).
- Lifespan, in order (reversed at exit):
    1. token store (the kernel's, ``kernel.tokens.shared``); the admin token is created
       (mode 0600) on first start; tokens older journals kept are moved in after boot
    2. tool registry (builtins + MCP servers from ``config.mcp``) and the HAL
    3. kernel booted (unless one was given; a given kernel is not shut down)
    4. event hub, fed by ``kernel.events()``
    5. run manager (plain-language runs through the shell's runner)
    6. ``system.stats`` ticker for live dashboards
- ``lifespan_services(app)``: enter the lifespan by hand (the MCP server and tests use
  the app in-process through httpx's ASGI transport, which does not run lifespans).

Every request goes through the kernel: a route decodes, makes a syscall as the
calling agent, and encodes the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from llmos import __version__, params
from llmos.api import errors as api_errors
from llmos.api.auth import Principal
from llmos.api.deps import Services, metrics_principal, principal
from llmos.api.events import EventHub
from llmos.api.metrics import CONTENT_TYPE_LATEST, Metrics
from llmos.api.middleware import Guard
from llmos.config import Config, ensure_home
from llmos.kernel.tokens import shared as shared_tokens

__all__ = ["create_app", "lifespan_services", "DASHBOARD_DIR"]

log = logging.getLogger("llmos.api")

DASHBOARD_DIR = resources.files("llmos.api") / "dashboard"
DASHBOARD_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}


def create_app(config: Config, *, kernel: Any = None, engines: Any = None, tools: Any = None,
               clock: Any = None, hal: Any = None, runner_factory: Any = None,
               allow_remote: bool = False, max_body: int = params.API_MAX_BODY_BYTES,
               preload_models: bool = True, allowed_hosts: tuple[str, ...] = ()) -> FastAPI:
    """Build the daemon app. With ``kernel=None`` the lifespan boots one from ``config``
    (with ``engines``/``tools``/``clock``/``hal`` passed to ``Kernel.boot``)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _running(app, config, kernel=kernel, engines=engines, tools=tools, clock=clock,
                            hal=hal, runner_factory=runner_factory, preload_models=preload_models):
            yield

    app = FastAPI(title="LLM OS", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None,
                  description="Processes, runs, agents, tools, timers, memory and events of an "
                              "LLM OS daemon (/api/v1), and an OpenAI-compatible API (/v1). "
                              "Authenticate with 'Authorization: Bearer <token>'.",
                  openapi_tags=[{"name": n} for n in ("daemon", "processes", "runs", "agents", "tools",
                                                      "timers", "memory", "alloc", "events", "openai")])
    api_errors.install(app)
    metrics = Metrics()
    app.state.metrics = metrics
    app.state.svc = None

    from llmos.api import openai as openai_routes
    from llmos.api import routes, runs, workflows

    app.include_router(routes.router)
    app.include_router(runs.router)
    app.include_router(workflows.router)
    app.include_router(openai_routes.router)
    _static_routes(app)
    app.add_middleware(Guard, max_body=max_body, allow_remote=allow_remote,
                       observe=metrics.observe_request, allowed_hosts=tuple(allowed_hosts))
    return app


def _static_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return FileResponse(str(DASHBOARD_DIR / "index.html"), media_type="text/html")

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_root() -> Response:
        return RedirectResponse("/")

    @app.get("/dashboard/{name}", include_in_schema=False)
    async def dashboard_file(name: str) -> Response:
        if name not in DASHBOARD_FILES:
            raise api_errors.ApiError(404, "not_found", f"no dashboard file {name!r}")
        return FileResponse(str(DASHBOARD_DIR / name), media_type=DASHBOARD_FILES[name],
                            headers={"Cache-Control": "no-cache"})

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_route(who: Principal = Depends(principal)) -> Response:
        """The API schema, for a caller with a token."""
        return JSONResponse(app.openapi())

    @app.get("/metrics", include_in_schema=False)
    async def metrics_route(who: Principal = Depends(metrics_principal)) -> Response:
        """Prometheus text format: the admin token or a metrics-only token."""
        svc: Services | None = app.state.svc
        if svc is None:
            return JSONResponse({"error": "starting", "message": "the daemon is starting"}, 503)
        from llmos.api.observe import metrics_snapshot

        svc.metrics.update(await metrics_snapshot(svc))
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def _boot_kernel(config: Config, **kw: Any) -> Any:
    from llmos.kernel import Kernel

    return await Kernel.boot(config, **{k: v for k, v in kw.items() if v is not None})


@contextlib.asynccontextmanager
async def _running(app: FastAPI, config: Config, *, kernel: Any, engines: Any, tools: Any,
                   clock: Any, hal: Any, runner_factory: Any,
                   preload_models: bool = True) -> AsyncIterator[Services]:
    ensure_home(config.home)
    tokens = shared_tokens(config.home)                                # 1. tokens (the kernel's store)
    tokens.admin_token()
    mounts = None
    owns = kernel is None
    if owns and tools is None:                                         # 2. tools: builtins,
        from llmos.tools.registry import default_registry

        tools = default_registry()
    if owns and config.mcp:                                            #    and MCP servers' tools
        from llmos.tools.mcp import mount_from_config

        mounts = await asyncio.to_thread(mount_from_config, config, tools)
    own_hal = owns and hal is None
    if own_hal:                                                        #    and this machine's hardware
        from llmos.hal import detect

        hal = await asyncio.to_thread(detect)
    try:
        if owns:                                                       # 3. kernel
            kernel = await _boot_kernel(config, engines=engines, tools=tools, clock=clock, hal=hal)
        legacy = getattr(getattr(kernel, "agents", None), "take_legacy_tokens", None)
        for h, aid in (legacy() if legacy is not None else []):        #    tokens older journals kept
            tokens.adopt(h, aid, label="agent.create (before the token store)")
        hub = EventHub()                                               # 4. events
        svc = Services(config=config, kernel=kernel, tokens=tokens, hub=hub,
                       metrics=app.state.metrics, mounts=mounts, owns_kernel=owns)
        from llmos.api.observe import ticker
        from llmos.api.runs import RunManager

        svc.runs = RunManager(svc, runner_factory=runner_factory)    # 5. runs
        from llmos.api import workflows
        await workflows.start(svc)                                     #    workflows: triggers fire here
        tasks = [asyncio.create_task(hub.pump(kernel.events), name="llmos-events"),
                 asyncio.create_task(ticker(svc), name="llmos-ticker")]  # 6. ticker
        if preload_models:
            from llmos.api.openai import registry_models

            tasks.append(asyncio.ensure_future(registry_models(svc)))  # warm the /v1/models list
        app.state.svc = svc
        try:
            yield svc
        finally:
            app.state.svc = None
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await workflows.stop(svc)
            await svc.runs.close()
            if owns:
                await kernel.shutdown()
    finally:
        if mounts is not None:
            await asyncio.to_thread(mounts.close)
        if own_hal and hal is not None:
            hal.close()


@contextlib.asynccontextmanager
async def lifespan_services(app: FastAPI) -> AsyncIterator[Services]:
    """Run ``app``'s lifespan by hand; yields its Services."""
    async with app.router.lifespan_context(app):
        yield app.state.svc
