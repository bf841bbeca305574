"""Turn a daemon's JSON error body back into the LLM OS error tree.

Map:
- ``DaemonError``: an error the daemon answered that has no class in the tree
  (``unauthorized``, ``too_large``, ``forbidden``...), with its HTTP ``status``.
- ``from_body(status, body)``: ``llmos.errors.error_from_dict`` (the one codec: REST
  ``{error, message, ...}`` or the OpenAI envelope) with the HTTP status, and
  ``DaemonError`` for codes the tree does not know; callers catch the same classes
  in-process and over HTTP.
"""

from __future__ import annotations

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


def from_body(status: int, body: Any) -> E.LLMOSError:
    """The LLMOSError a JSON error body describes (DaemonError when the code is unknown)."""
    return E.error_from_dict(body, status=status, unknown=DaemonError)
