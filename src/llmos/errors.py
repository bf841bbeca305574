"""The LLM OS error tree, and the mappers that turn foreign errors into it.

Every error a user can see is one of these. Each carries a one-line message
and an optional ``hint`` (what to do about it). Foreign exceptions (OSError,
sqlite3, httpx, llama.cpp, pydantic) are mapped at the boundary that meets
them with :func:`map_foreign`, so nothing above a boundary ever sees them.
An error travels as ``to_dict()`` (journal, syscall answers, HTTP bodies) and comes
back as the same class with :func:`error_from_dict`, the one codec (the SDK's
``from_body`` is it, with its own class for codes this tree does not know).

    LLMOSError
     ├── ConfigError              bad config file, env var or flag
     │    └── StateDirError       $LLMOS_HOME missing / unwritable
     ├── ModelError
     │    ├── ModelNotFound       unknown model name or missing GGUF file
     │    └── ModelPackageMissing the package that ships the default model is absent
     ├── EngineError
     │    ├── InvalidRequest      bad generation request (field + expectation)
     │    ├── ContextOverflow     prompt / max_tokens do not fit the context
     │    ├── EngineBusy          KV budget or queue full; retry later
     │    ├── Cancelled           the request was cancelled
     │    │    └── TimedOut        ... because it ran past its time limit
     │    └── RemoteError         an OpenAI-compatible server failed
     │         └── RemoteUnavailable  could not connect / timed out
     ├── KernelError
     │    ├── SyscallError        a syscall failed; carries ``code``
     │    │    ├── UnknownSyscall
     │    │    ├── InvalidArgument   names ``field`` and ``expected``
     │    │    ├── PermissionDenied  capability check failed; ``reason``
     │    │    ├── NotFound          unknown pid / agent / timer / run
     │    │    ├── QuotaExceeded
     │    │    └── Busy              bounded queue full; ``retry_after`` s
     │    └── JournalError        the durable journal failed
     ├── ToolError                a tool failed (bad arguments, runtime failure)
     │    ├── SandboxError        no sandbox could be made, or it cut the tool off
     │    └── NeedsConfirmation   a risky step waits for the person's yes
     └── AllocError               allocation problem infeasible or malformed
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = [
    "LLMOSError", "ConfigError", "StateDirError", "ModelError", "ModelNotFound",
    "ModelPackageMissing", "EngineError", "InvalidRequest", "ContextOverflow",
    "EngineBusy", "Cancelled", "TimedOut", "RemoteError", "RemoteUnavailable", "KernelError",
    "SyscallError", "UnknownSyscall", "InvalidArgument", "PermissionDenied",
    "NotFound", "QuotaExceeded", "Busy", "JournalError", "ToolError",
    "SandboxError", "NeedsConfirmation", "AllocError", "map_foreign", "error_from_dict",
]

EXTRA_FIELDS = ("field", "expected", "hint", "reason", "retry_after")   # to_dict()'s optional keys


class LLMOSError(Exception):
    """Base of every LLM OS error. ``str(err)`` is one line; ``hint`` says what to do."""

    code = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict:
        d = {"error": self.code, "message": self.message}
        if self.hint:
            d["hint"] = self.hint
        for k in ("field", "expected", "reason", "retry_after"):
            v = getattr(self, k, None)
            if v is not None:
                d[k] = v
        return d

    def __str__(self) -> str:
        return self.message


class ConfigError(LLMOSError):
    code = "config"


class StateDirError(ConfigError):
    code = "state_dir"


class ModelError(LLMOSError):
    code = "model"


class ModelNotFound(ModelError):
    code = "model_not_found"


class ModelPackageMissing(ModelError):
    code = "model_package_missing"


class EngineError(LLMOSError):
    code = "engine"


class InvalidRequest(EngineError):
    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None,
                 expected: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.field = field
        self.expected = expected


class ContextOverflow(EngineError):
    code = "context_overflow"


class EngineBusy(EngineError):
    code = "engine_busy"


class Cancelled(EngineError):
    code = "cancelled"


class TimedOut(Cancelled):
    code = "timed_out"


class RemoteError(EngineError):
    code = "remote"


class RemoteUnavailable(RemoteError):
    code = "remote_unavailable"


class KernelError(LLMOSError):
    code = "kernel"


class SyscallError(KernelError):
    code = "syscall"


class UnknownSyscall(SyscallError):
    code = "unknown_syscall"


class InvalidArgument(SyscallError):
    code = "invalid_argument"

    def __init__(self, message: str, *, field: str | None = None,
                 expected: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.field = field
        self.expected = expected


class PermissionDenied(SyscallError):
    code = "permission_denied"

    def __init__(self, message: str, *, reason: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason or message


class NotFound(SyscallError):
    code = "not_found"


class QuotaExceeded(SyscallError):
    code = "quota_exceeded"


class Busy(SyscallError):
    code = "busy"

    def __init__(self, message: str, *, retry_after: float = 1.0,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint or f"retry in {retry_after:g} s")
        self.retry_after = retry_after


class JournalError(KernelError):
    code = "journal"


class ToolError(LLMOSError):
    code = "tool"


class SandboxError(ToolError):
    code = "sandbox"


class NeedsConfirmation(ToolError):
    code = "needs_confirmation"

    def __init__(self, message: str, *, reason: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint or "re-run with --yes to approve")
        self.reason = reason or message


class AllocError(LLMOSError):
    code = "alloc"


def map_foreign(exc: BaseException, *, context: str = "") -> LLMOSError:
    """Map any exception to the tree: one line, the original kept as __cause__.

    Call this at a boundary (file system, SQLite, HTTP, llama.cpp, pydantic).
    """
    if isinstance(exc, LLMOSError):
        return exc
    prefix = f"{context}: " if context else ""
    name = type(exc).__name__
    mod = type(exc).__module__ or ""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    out: LLMOSError
    if isinstance(exc, PermissionError):
        out = PermissionDenied(f"{prefix}permission denied: {exc.filename or msg}",
                               hint="check the path's owner and mode")
    elif isinstance(exc, FileNotFoundError):
        out = NotFound(f"{prefix}no such file: {exc.filename or msg}")
    elif isinstance(exc, OSError):
        out = LLMOSError(f"{prefix}{msg}")
    elif mod.startswith("sqlite3"):
        out = JournalError(f"{prefix}journal error: {msg}",
                           hint="check disk space and $LLMOS_HOME permissions")
    elif mod.startswith("httpx") or mod.startswith("httpcore"):
        if name in ("ConnectError", "ConnectTimeout", "ReadTimeout", "WriteTimeout",
                    "PoolTimeout", "TimeoutException", "RemoteProtocolError"):
            out = RemoteUnavailable(f"{prefix}remote server unreachable ({name}): {msg}",
                                    hint="is the server running and the base URL right?")
        else:
            out = RemoteError(f"{prefix}remote error ({name}): {msg}")
    elif mod.startswith("pydantic") and hasattr(exc, "errors"):
        errs = exc.errors()  # type: ignore[attr-defined]
        first = errs[0] if errs else {}
        field = ".".join(str(p) for p in first.get("loc", ())) or "?"
        out = InvalidArgument(f"{prefix}{field}: {first.get('msg', msg)}",
                              field=field, expected=first.get("msg"))
    elif isinstance(exc, (ValueError, TypeError)):
        out = InvalidArgument(f"{prefix}{msg}")
    else:
        out = LLMOSError(f"{prefix}{name}: {msg}")
    out.__cause__ = exc
    return out


def _classes() -> dict[str, type[LLMOSError]]:
    """code -> class, for the classes of this module only (so the answer does not depend
    on which other modules this process happened to import)."""
    out: dict[str, type[LLMOSError]] = {}
    stack: list[type[LLMOSError]] = [LLMOSError]
    while stack:
        cls = stack.pop()
        if cls.__module__ == __name__:
            out.setdefault(cls.code, cls)
        stack.extend(cls.__subclasses__())
    return out


def error_from_dict(body: Any, *, status: int | None = None,
                    unknown: Callable[..., LLMOSError] | None = None) -> LLMOSError:
    """The error a ``to_dict()`` body describes, as the class whose ``code`` matches.

    ``body``: ``{error, message, field?, expected?, hint?, reason?, retry_after?}``, or the
    OpenAI envelope ``{"error": {message, type, code, param}}``. ``status``: the HTTP
    status it came with (kept as ``err.status``). ``unknown``: builds the error for a code
    this tree has no class for, called as ``unknown(message, status=, code=, field=,
    expected=, hint=)``; without it such an error is an ``LLMOSError`` carrying that code.
    """
    if isinstance(body, dict) and isinstance(body.get("error"), dict):   # OpenAI envelope
        inner = dict(body["error"])
        body = {"error": inner.get("code") or inner.get("type") or "error",
                "message": inner.get("message", ""), "field": inner.get("param"),
                **{k: inner[k] for k in ("expected", "hint", "reason", "retry_after") if k in inner}}
    if not isinstance(body, dict):
        text = f"HTTP {status}: {str(body)[:200]}" if status else str(body)[:200]
        body = {"error": "http_error", "message": text}
    code = str(body.get("error") or "error")
    message = str(body.get("message") or code)
    extra = {k: body.get(k) for k in EXTRA_FIELDS if body.get(k) is not None}
    cls = _classes().get(code)
    if cls is None or cls is LLMOSError:
        if unknown is not None:
            return unknown(message, status=status or 0, code=code, field=extra.get("field"),
                           expected=extra.get("expected"), hint=extra.get("hint"))
        cls = LLMOSError
    params = inspect.signature(cls.__init__).parameters
    try:
        err = cls(message, **{k: v for k, v in extra.items() if k in params})
    except TypeError:
        err = cls(message)
    if cls is LLMOSError and code != LLMOSError.code:
        err.code = code                    # keep the code this tree has no class for
    for k in EXTRA_FIELDS:                 # keep what the constructor did not take
        if getattr(err, k, None) is None:
            setattr(err, k, extra.get(k))
    if status is not None:
        err.status = status  # type: ignore[attr-defined]
    return err
