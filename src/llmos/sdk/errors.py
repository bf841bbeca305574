"""Turn a daemon's JSON error body back into the LLM OS error tree.

Map:
- ``DaemonError``: an error the daemon answered that has no class in the tree
  (``unauthorized``, ``too_large``, ``forbidden``...), with its HTTP ``status``.
- ``from_body(status, body)``: ``{error, message, field?, expected?, hint?, reason?,
  retry_after?}`` (REST) or ``{"error": {...}}`` (OpenAI shape) -> an LLMOSError
  instance of the class whose ``code`` matches, so callers catch the same classes
  in-process and over HTTP.
"""

from __future__ import annotations

import inspect
from typing import Any

from llmos import errors as E

__all__ = ["DaemonError", "from_body"]


class DaemonError(E.LLMOSError):
    """An HTTP error from the daemon without a matching class in the error tree."""

    def __init__(self, message: str, *, status: int = 0, code: str = "error",
                 field: str | None = None, expected: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status         # HTTP status code
        self.code = code             # the daemon's error code
        self.field = field
        self.expected = expected


def _classes() -> dict[str, type[E.LLMOSError]]:
    """code -> class, for the classes of ``llmos.errors`` only (so the answer does not
    depend on which other modules this process happened to import)."""
    out: dict[str, type[E.LLMOSError]] = {}
    stack: list[type[E.LLMOSError]] = [E.LLMOSError]
    while stack:
        cls = stack.pop()
        if cls.__module__ == E.__name__:
            out.setdefault(cls.code, cls)
        stack.extend(cls.__subclasses__())
    return out


def from_body(status: int, body: Any) -> E.LLMOSError:
    """The LLMOSError a JSON error body describes (DaemonError when the code is unknown)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):   # OpenAI envelope
        inner = dict(body["error"])
        body = {"error": inner.get("code") or inner.get("type") or "error",
                "message": inner.get("message", ""), "field": inner.get("param"),
                **{k: inner[k] for k in ("expected", "hint", "reason", "retry_after") if k in inner}}
    if not isinstance(body, dict):
        return DaemonError(f"HTTP {status}: {str(body)[:200]}", status=status, code="http_error")
    code = str(body.get("error") or "error")
    message = str(body.get("message") or code)
    extra = {k: body.get(k) for k in ("field", "expected", "hint", "reason", "retry_after")
             if body.get(k) is not None}
    cls = _classes().get(code)
    if cls is None or cls is E.LLMOSError:
        return DaemonError(message, status=status, code=code, field=extra.get("field"),
                           expected=extra.get("expected"), hint=extra.get("hint"))
    params = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in extra.items() if k in params}
    try:
        err = cls(message, **kwargs)
    except TypeError:
        err = cls(message)
    for k, v in extra.items():       # keep what the constructor did not take
        if getattr(err, k, None) is None:
            setattr(err, k, v)
    err.status = status  # type: ignore[attr-defined]
    return err
