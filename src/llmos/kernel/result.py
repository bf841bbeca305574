"""``SyscallResult``: what every syscall returns — a value or an error, never a raise.

Also the two value converters the kernel uses at its edge: ``jsonable`` (anything ->
JSON data) and ``error_from_dict`` (an error's ``to_dict()`` form -> the error again; the
one codec, defined in ``llmos.errors`` and re-exported here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llmos.errors import LLMOSError, error_from_dict

__all__ = ["SyscallResult", "error_from_dict", "jsonable"]


@dataclass(frozen=True)
class SyscallResult:
    ok: bool
    value: Any = None                  # JSON-able value when ok
    error: LLMOSError | None = None    # the error when not ok
    call: str = ""                     # syscall name, for logs

    @classmethod
    def success(cls, value: Any, call: str = "") -> SyscallResult:
        return cls(True, value, None, call)

    @classmethod
    def failure(cls, error: LLMOSError, call: str = "") -> SyscallResult:
        return cls(False, None, error, call)

    def unwrap(self) -> Any:
        """The value, or raise the error (for programs that prefer exceptions)."""
        if not self.ok:
            assert self.error is not None
            raise self.error
        return self.value

    def to_dict(self) -> dict[str, Any]:
        if self.ok:
            return {"ok": True, "value": self.value}
        assert self.error is not None
        return {"ok": False, "error": self.error.to_dict()}


def jsonable(v: Any) -> Any:
    """A JSON value for the journal and syscall answers (unknown objects become strings)."""
    try:
        return json.loads(json.dumps(v, default=str))
    except (TypeError, ValueError):
        return str(v)
