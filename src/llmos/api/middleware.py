"""Pure-ASGI middleware (no per-request task, streaming-safe).

Map:
- ``Guard``: one pass per request that (1) refuses non-loopback peers unless remote
  access was allowed, and a Host header that does not name this machine (a loopback
  name or address, or one of ``allowed_hosts``; DNS rebinding), (2) refuses bodies over ``max_body`` bytes, by Content-Length
  at once or by counting a chunked body as it arrives, (3) records the request in
  ``Metrics`` with the route template (not the raw path, so labels stay bounded).

  (4) catches any exception no handler took and answers it as JSON (Starlette's own
  last-resort handler would re-raise it after answering).

Every refusal is a JSON error body with ``error``, ``message`` and ``hint``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmos.api.auth import host_allowed, is_loopback

__all__ = ["Guard", "BodyTooLarge"]

log = logging.getLogger("llmos.api")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit; FastAPI re-raises
    HTTPExceptions from body parsing, so the app's handler answers a JSON 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


def _json(status: int, body: dict, path: str) -> tuple[dict, bytes]:
    if path.startswith("/v1/"):
        body = {"error": {"message": body["message"],
                          "type": "server_error" if status >= 500 else "invalid_request_error",
                          "param": body.get("field"), "code": body["error"], "hint": body.get("hint")}}
    raw = json.dumps(body).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(raw)).encode())]}
    return start, raw


class Guard:
    def __init__(self, app: ASGIApp, *, max_body: int, allow_remote: bool = False,
                 observe: Callable[[str, str, int, float], None] | None = None,
                 allowed_hosts: tuple[str, ...] = ()) -> None:
        self.app = app
        self.allowed_hosts = tuple(allowed_hosts)   # Host names answered besides loopback ones
        self.max_body = max_body          # bytes; larger request bodies get 413
        self.allow_remote = allow_remote  # False: only loopback peers are answered
        self.observe = observe            # metrics hook: (method, route, status, seconds)

    async def _refuse(self, send: Send, status: int, body: dict, path: str) -> None:
        start, raw = _json(status, body, path)
        await send(start)
        await send({"type": "http.response.body", "body": raw})

    async def _unexpected(self, send: Send, scope: Scope, exc: Exception, started: bool) -> None:
        """An exception no handler took: mapped to the error tree and answered as JSON
        (a foreign ValueError is a 400 naming what it can; anything else a logged 500)."""
        from llmos.api.errors import status_for
        from llmos.errors import map_foreign

        method, path = scope.get("method", "?"), scope.get("path", "")
        err = map_foreign(exc, context=f"{method} {path}")
        status = status_for(err)
        if status >= 500:
            log.error("unexpected error in %s %s", method, path, exc_info=exc)
            body = {"error": "internal", "message": f"internal error ({type(exc).__name__})",
                    "hint": "the daemon log has the details"}
        else:
            body = err.to_dict()
        if started:              # headers are out: all we can do is end the stream
            return
        await self._refuse(send, status, body, path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        client = scope.get("client")
        if not self.allow_remote and not is_loopback(client[0] if client else None):
            await self._refuse(send, 403, {
                "error": "forbidden", "message": f"remote peer {client[0] if client else '?'} refused",
                "hint": "the daemon answers loopback only; start it with --allow-remote to change "
                        "that"}, path)
            return
        host = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), None)
        if not host_allowed(host, self.allowed_hosts, allow_remote=self.allow_remote):
            await self._refuse(send, 403, {
                "error": "forbidden", "message": f"Host header {host!r} does not name this machine",
                "hint": "use http://localhost or http://127.0.0.1; other names must be allowed "
                        "(llmos serve --allow-host NAME)"}, path)
            return
        declared = None
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    declared = -1
                break
        if declared is not None and (declared < 0 or declared > self.max_body):
            await self._refuse(send, 413 if declared > 0 else 400, {
                "error": "too_large" if declared > 0 else "invalid_argument",
                "message": (f"request body of {declared} bytes exceeds the limit of {self.max_body}"
                            if declared > 0 else "Content-Length: expected a non-negative integer"),
                "hint": "send a smaller body"}, path)
            return

        seen = 0
        started = False
        status_box = [0]
        t0 = time.perf_counter()

        async def counted_receive() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                status_box[0] = msg["status"]
                if self.observe is not None:
                    route = _route_of(scope)
                    self.observe(scope.get("method", "?"), route, msg["status"], time.perf_counter() - t0)
            await send(msg)

        try:
            await self.app(scope, counted_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, 413, {
                    "error": "too_large",
                    "message": f"request body exceeds the limit of {self.max_body} bytes",
                    "hint": "send a smaller body"}, path)
        except Exception as exc:  # noqa: BLE001 - the last boundary: one JSON line, never a traceback
            await self._unexpected(send, scope, exc, started)


def _route_of(scope: dict[str, Any]) -> str:
    route = scope.get("route")
    p = getattr(route, "path", None)
    if p:
        return str(p)
    path = str(scope.get("path", ""))
    return path if path in ("/", "/metrics") or path.startswith("/dashboard") else "other"
