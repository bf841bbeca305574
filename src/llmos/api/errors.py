"""HTTP face of the error tree: status codes and JSON bodies, never a traceback.

Map:
- ``status_for(err)``: the HTTP status of an ``LLMOSError`` (by class, most specific first).
- ``error_body(err)``: ``{error, message, field?, expected?, hint?, reason?, retry_after?}``.
- ``install(app)``: exception handlers for LLMOSError, request validation and HTTP
  errors. Anything else is caught by ``middleware.Guard`` (logged with its traceback,
  answered with one JSON line).
- ``ApiError``: an LLMOSError raised by the API layer itself with an explicit status.

The OpenAI-compatible routes (``/v1``) answer the OpenAI error shape instead
(``{"error": {message, type, param, code}}``) so unchanged OpenAI clients parse it;
``install`` picks the shape by path.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmos import errors as E

__all__ = ["ApiError", "status_for", "error_body", "openai_error_body", "install",
           "validation_error"]

log = logging.getLogger("llmos.api")

# most specific first: the first isinstance match wins
_STATUS: tuple[tuple[type[E.LLMOSError], int], ...] = (
    (E.UnknownSyscall, 404),
    (E.InvalidArgument, 400),
    (E.InvalidRequest, 400),
    (E.ContextOverflow, 400),
    (E.PermissionDenied, 403),
    (E.NotFound, 404),
    (E.ModelNotFound, 404),
    (E.QuotaExceeded, 429),
    (E.Busy, 429),
    (E.EngineBusy, 503),
    (E.NeedsConfirmation, 409),
    (E.Cancelled, 409),
    (E.RemoteUnavailable, 502),
    (E.RemoteError, 502),
    (E.AllocError, 422),
    (E.ConfigError, 400),
    (E.ToolError, 422),
    (E.JournalError, 503),
    (E.EngineError, 503),
)


class ApiError(E.LLMOSError):
    """An error the API layer raises itself, with its HTTP status."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 expected: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
        self.field = field
        self.expected = expected


def status_for(err: BaseException) -> int:
    if isinstance(err, ApiError):
        return err.status
    if getattr(err, "code", None) == "unauthorized":
        return 401
    for cls, status in _STATUS:
        if isinstance(err, cls):
            return status
    return 500


def error_body(err: E.LLMOSError) -> dict[str, Any]:
    return err.to_dict()


def openai_error_body(err: E.LLMOSError, status: int) -> dict[str, Any]:
    """The OpenAI error envelope, with our field/expectation/hint kept inside it."""
    kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 409: "conflict_error", 413: "invalid_request_error",
            422: "invalid_request_error", 429: "rate_limit_error"}.get(status, "server_error")
    inner: dict[str, Any] = {"message": err.message, "type": kind,
                             "param": getattr(err, "field", None), "code": err.code}
    for k in ("expected", "hint", "reason", "retry_after"):
        v = getattr(err, k, None)
        if v is not None:
            inner[k] = v
    return {"error": inner}


def validation_error(exc: RequestValidationError | Any) -> ApiError:
    """The first pydantic/FastAPI validation problem as one clear InvalidArgument."""
    errs = list(exc.errors()) if hasattr(exc, "errors") else []
    first = errs[0] if errs else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body",)]
    field = ".".join(loc) or "body"
    msg = str(first.get("msg", "invalid request"))
    kind = str(first.get("type", ""))
    expected = msg[len("Input should be "):] if msg.startswith("Input should be ") else msg
    if kind == "missing":
        expected = "a value (this field is required)"
    elif kind == "json_invalid":
        field, expected = "body", "a valid JSON document"
    elif kind.startswith("extra_forbidden"):
        expected = "no such field (remove it)"
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return ApiError(422, "invalid_argument", f"{field}: {msg}{more}", field=field,
                    expected=expected)


def _respond(request: Request, err: E.LLMOSError, status: int) -> JSONResponse:
    headers = {}
    retry = getattr(err, "retry_after", None)
    if retry is not None:
        headers["Retry-After"] = str(max(1, int(round(float(retry)))))
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    body = (openai_error_body(err, status) if request.url.path.startswith("/v1/")
            else error_body(err))
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into a JSON error body."""

    @app.exception_handler(E.LLMOSError)
    async def _llmos(request: Request, exc: E.LLMOSError) -> JSONResponse:
        return _respond(request, exc, status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = validation_error(exc)
        return _respond(request, err, err.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large",
                401: "unauthorized", 403: "forbidden"}.get(exc.status_code, "http_error")
        msg = str(exc.detail) if exc.detail else code.replace("_", " ")
        if exc.status_code == 404 and msg == "Not Found":
            msg = f"no such endpoint: {request.method} {request.url.path}"
        if exc.status_code == 405:
            msg = f"method {request.method} not allowed on {request.url.path}"
        err = ApiError(exc.status_code, code, msg,
                       hint="GET /openapi.json (with a token) lists the endpoints" if exc.status_code in (404, 405) else None)
        resp = _respond(request, err, exc.status_code)
        for k, v in (exc.headers or {}).items():
            resp.headers[k] = v
        return resp
