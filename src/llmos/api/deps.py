"""What every route gets: the app's services, the calling principal, a syscall helper.

Map:
- ``Services``: everything the app owns while it runs (kernel, token store, event hub,
  run manager, metrics, MCP mounts, start time). Built by the lifespan in ``app.py``.
- ``services(request)`` / ``principal(request)``: FastAPI dependencies. ``principal``
  reads ``Authorization: Bearer <token>`` and resolves it through the one token store
  (``kernel.tokens``: the tokens ``agent.create`` returns are there too).
- ``call(svc, who, name, args)``: one syscall as the principal's agent; returns the
  value or raises the kernel's error (the app's handlers make it a JSON body). Only the
  admin token's calls are made on behalf of the person (``person=True``): an agent's
  ``confirmed=true`` does not approve anything. ``as_agent``: the admin token only, the
  person making a call as one of the agents (its capabilities, roots and quotas; the
  person's yes still counts, since the person makes it), e.g. ``llmos dev``'s test runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request

from llmos.api.auth import AuthError, Principal, TokenStore
from llmos.config import Config
from llmos.errors import LLMOSError

if TYPE_CHECKING:
    from llmos.api.events import EventHub
    from llmos.api.metrics import Metrics
    from llmos.api.runs import RunManager

__all__ = ["Services", "services", "principal", "metrics_principal", "call", "bearer"]


@dataclass
class Services:
    config: Config
    kernel: Any                                    # llmos.kernel.Kernel (booted by the lifespan or given)
    tokens: TokenStore
    hub: EventHub
    metrics: Metrics
    runs: RunManager | None = None
    mounts: Any = None                             # tools.mcp.McpMounts when config.mcp is set
    started: float = field(default_factory=time.time)   # epoch seconds the app started
    owns_kernel: bool = False                      # shut the kernel down at exit
    extra: dict[str, Any] = field(default_factory=dict)


def services(request: Request) -> Services:
    svc = getattr(request.app.state, "svc", None)
    if svc is None:
        raise LLMOSError("the daemon is starting or stopping", hint="retry in a moment")
    return svc


def bearer(request: Request) -> str | None:
    h = request.headers.get("authorization", "")
    scheme, _, value = h.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def principal(request: Request) -> Principal:
    """The agent this request acts for (401 without a valid bearer token)."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    svc = services(request)
    token = bearer(request)
    who = svc.tokens.resolve(token)
    if who.scope != "all":
        raise AuthError(f"a {who.scope}-only token opens /{who.scope} and nothing else",
                        hint="use an agent's token or the admin token")
    request.state.principal = who
    return who


def metrics_principal(request: Request) -> Principal:
    """Who may read ``/metrics``: the admin token or a metrics-only token (every agent's
    usage is there, so an agent's own token is not enough)."""
    svc = services(request)
    who = svc.tokens.resolve(bearer(request))
    if not (who.admin or who.scope == "metrics"):
        from llmos.errors import PermissionDenied

        raise PermissionDenied("/metrics shows every agent's usage: it needs the admin token or a "
                               "metrics-only token", reason="metrics need the admin or a metrics token")
    return who


async def call(svc: Services, who: Principal, name: str, args: dict[str, Any] | None = None, *,
               as_agent: str | None = None) -> Any:
    """The syscall as ``who`` (or, for the admin token only, as ``as_agent``); only the admin
    token speaks for the person (``confirmed``)."""
    agent = who.agent
    if as_agent is not None and as_agent != who.agent:
        if not who.admin:
            from llmos.errors import PermissionDenied

            raise PermissionDenied(f"agent: only the admin token may call as another agent, not "
                                   f"{who.agent!r}", reason="acting as another agent is the person's act")
        agent = as_agent
    res = await svc.kernel.syscall(agent, name, args or {}, person=who.admin)
    if not res.ok:
        raise res.error
    return res.value
