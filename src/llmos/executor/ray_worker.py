"""What runs inside a Ray worker: one tool call or one job, and its answer as plain data.

Map:
- ``run_tool(name, args, fields, memory_bytes)``: the builtin tool ``name`` through
  ``ToolRegistry.call`` under a ``ToolContext`` rebuilt from ``fields`` (the agent's
  roots, network flag, state area, workspace quota), in the node's sandbox (the
  agent's memory quota applied as the local executor does). Nothing kernel-side is
  reachable from here: no timers, no version store (the head keeps versions).
- ``run_job(payload, device, memory_bytes)``: a pickled job callable, told ``device`` and
  its ``grant`` (the memory part: CPUs and GPUs are Ray's on a node) when it takes them.
- ``pack(err)`` / ``unpack(data)``: an ``LLMOSError`` across the process boundary
  (its class by name, its message and fields), so the head reports the same error.

Every answer is ``{"ok": True, ...}`` or ``{"ok": False, "error": pack(err)}``: a tool's
failure is data, never a Ray task error, so only a dead worker or node surfaces as one.
This module imports neither Ray nor the kernel at import time (workers import it).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from typing import Any

__all__ = ["run_tool", "run_job", "pack", "unpack"]

_REGISTRY: Any = None            # this worker's builtin tool registry (built on first call)
_SANDBOXES: dict[int, Any] = {}  # memory limit (bytes) -> Sandbox, probed once per worker


def pack(err: BaseException) -> dict[str, Any]:
    """An error as data: class name, message, its simple fields (field, expected, hint...)."""
    from llmos.errors import LLMOSError, map_foreign

    e = err if isinstance(err, LLMOSError) else map_foreign(err, context="ray worker")
    attrs = {k: v for k, v in vars(e).items()
             if k != "message" and isinstance(v, (str, int, float, bool, type(None)))}
    return {"cls": type(e).__name__, "message": e.message, "attrs": attrs}


def unpack(data: dict[str, Any]) -> Any:
    """The ``LLMOSError`` ``pack`` described (a ToolError when the class is unknown here)."""
    from llmos import errors

    cls = getattr(errors, str(data.get("cls")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.LLMOSError)):
        cls = errors.ToolError
    err = cls.__new__(cls)
    Exception.__init__(err, data.get("message", ""))
    err.message = str(data.get("message", ""))
    err.hint = None
    for k, v in (data.get("attrs") or {}).items():
        setattr(err, k, v)
    return err


def _where() -> dict[str, Any]:
    """Where the task ran: host, worker pid and the Ray node id (None outside a Ray worker)."""
    node = None
    try:
        import ray

        node = ray.get_runtime_context().get_node_id()
    except Exception:   # not in a Ray worker (a test calling it directly)
        pass
    return {"host": socket.gethostname(), "worker_pid": os.getpid(), "node": node}


def _sandbox(memory_bytes: int | None) -> Any:
    """None (the node's default sandbox) unless the agent's memory quota is tighter."""
    if memory_bytes is None:
        return None
    from llmos.tools.sandbox import Sandbox, default_sandbox

    limits = default_sandbox().limits
    if memory_bytes >= limits.memory_bytes:
        return None
    box = _SANDBOXES.get(memory_bytes)
    if box is None:
        box = _SANDBOXES[memory_bytes] = Sandbox(limits=dataclasses.replace(limits, memory_bytes=memory_bytes))
    return box


def run_tool(name: str, args: dict[str, Any], fields: dict[str, Any],
             memory_bytes: int | None) -> dict[str, Any]:
    global _REGISTRY
    try:
        from llmos.kernel.access import StateArea
        from llmos.tools.registry import Stop, ToolContext, default_registry

        if _REGISTRY is None:
            _REGISTRY = default_registry()
        state = fields.get("state") or ()
        ctx = ToolContext(workdir=fields["workdir"], agent=fields.get("agent", "root"),
                          network=bool(fields.get("network")),
                          read_roots=tuple(fields.get("read_roots") or ()),
                          write_roots=tuple(fields.get("write_roots") or ()),
                          idempotency_key=fields.get("idempotency_key"),
                          sandbox=_sandbox(memory_bytes), state=StateArea(*state) if state else None,
                          workspace_bytes=fields.get("workspace_bytes"), stop=Stop())
        c0 = time.thread_time()
        res = _REGISTRY.call(name, args, ctx)
        cpu = time.thread_time() - c0
        return {"ok": True, "output": getattr(res, "output", res), "summary": getattr(res, "summary", ""),
                "files": [str(f) for f in (getattr(res, "files", ()) or ())], "cpu_s": cpu, **_where()}
    except Exception as e:        # the tool's failure is data (see the module map)
        return {"ok": False, "error": pack(e), **_where()}


def run_job(payload: bytes, device: str | None, memory_bytes: int | None = None) -> dict[str, Any]:
    try:
        from ray import cloudpickle

        fn = cloudpickle.loads(payload)
        if device is not None:
            fn = _with(fn, "device", device)
        if memory_bytes is not None:   # the grant's memory; CPUs and GPUs are Ray's on a node
            from llmos.executor.base import Grant

            fn = _with(fn, "grant", Grant(memory_bytes=memory_bytes))
        c0 = time.thread_time()
        value = fn()
        return {"ok": True, "value": value, "cpu_s": time.thread_time() - c0, **_where()}
    except Exception as e:
        return {"ok": False, "error": pack(e), **_where()}


def _with(fn: Any, name: str, value: Any) -> Any:
    """``fn`` with keyword ``name`` bound to ``value`` when it takes one not bound yet."""
    import functools
    import inspect

    if name in (getattr(fn, "keywords", None) or {}):
        return fn
    try:
        param = inspect.signature(fn).parameters.get(name)
    except (TypeError, ValueError):
        return fn
    if param is None or param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
        return fn
    return functools.partial(fn, **{name: value})
