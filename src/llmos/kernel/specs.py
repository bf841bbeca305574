"""Process specs: what each kind of process must say, checked before it is admitted.

Map (one checker per kind; each returns the normalized spec that gets journaled):
- ``llm``: generation fields (see ``executor.base.request_from_spec``).
- ``tool``: ``{tool, args, workdir}`` — the tool exists, its arguments fit its schema,
  the workdir may be a workspace (not ``/``, the home directory, or a folder holding the
  state directory) and exec tools may write it, every path argument (resolved: ``~``,
  ``..``, symlinks) is inside the agent's read or write roots and outside the kernel's
  state area (a pattern's fixed folder too), network tools need the network capability,
  and a call whose risk needs the person's yes is refused with NeedsConfirmation unless
  ``confirmed``. The normalized spec carries ``guard`` (the state area and the agent's
  workspace byte quota) for the executor's ToolContext.
- ``run``: a parent for a plan's steps: ``{title?, request?}`` (free-form, JSON).
- ``job``: ``{type, args, name?, device?, demand?}`` for a registered job runner
  (``Kernel.register_job``); type ``call`` is reserved for ``Kernel.add_task`` (a
  callable held in memory). ``device`` (cpu | gpu | gpu:N) and ``demand`` ({cores,
  memory_bytes, gpu_memory_bytes}) are what the allocator places it by; a job that
  names a device is told the one it got (``device=`` when its function takes it).

Access questions go through ``Call.check`` (``access.may`` + audit trail), so every
denial names the rule that refused it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos.errors import InvalidArgument, LLMOSError, NotFound, PermissionDenied, ToolError
from llmos.executor.base import request_from_spec
from llmos.kernel import consent
from llmos.kernel.access import NetRef, PathRef, StateArea, workspace_problem
from llmos.types import Risk

if TYPE_CHECKING:
    from llmos.kernel.syscall import Call

__all__ = ["JobType", "check_spec", "SPEC_MAX_BYTES"]

SPEC_MAX_BYTES = 256 << 10   # a spec is journaled: keep it bounded


@dataclass(frozen=True)
class JobType:
    name: str
    fn: Callable[..., Any]       # called with the spec's args as keyword arguments
    idempotent: bool = False     # safe to re-run after a crash without asking


def _json_size(spec: Any) -> None:
    try:
        text = json.dumps(spec)
        text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as e:
        raise InvalidArgument(f"spec: expected JSON data ({e})", field="spec",
                              expected="a JSON object") from None
    if len(text) > SPEC_MAX_BYTES:
        raise InvalidArgument(f"spec: {len(text)} bytes, at most {SPEC_MAX_BYTES}", field="spec",
                              expected=f"at most {SPEC_MAX_BYTES} bytes of JSON")


def check_spec(kernel: Any, call: Call, kind: str, spec: dict[str, Any], *, priority: int,
               confirmed: bool = False, in_process: bool = False) -> dict[str, Any]:
    """Validate ``spec`` for ``kind`` on behalf of ``call.agent``; return it normalized."""
    if not isinstance(spec, dict):
        raise InvalidArgument("spec: expected an object", field="spec", expected="object")
    _json_size(spec)
    if kind == "llm":
        req = request_from_spec(spec, owner=call.agent.id, priority=priority)
        if req.model is not None:
            kernel.check_model(req.model)
        return dict(spec)
    if kind == "tool":
        return _check_tool(kernel, call, spec, confirmed)
    if kind == "run":
        extra = sorted(set(spec) - {"title", "request", "plan", "workdir"})
        if extra:
            raise InvalidArgument(f"spec.{extra[0]}: unknown field for a run", field=f"spec.{extra[0]}",
                                  expected="title, request, plan, workdir")
        return dict(spec)
    if kind == "job":
        from llmos.kernel.placement import check_job_placement

        check_job_placement(spec)
        jt = spec.get("type")
        if jt == "call" and in_process:
            return dict(spec)         # Kernel.add_task: the callable is held in memory
        if not isinstance(jt, str) or jt not in kernel.job_types:
            known = ", ".join(sorted(kernel.job_types)) or "none registered"
            raise InvalidArgument(f"spec.type: unknown job type {jt!r}", field="spec.type",
                                  expected=f"one of: {known}")
        args = spec.get("args", {})
        if not isinstance(args, dict):
            raise InvalidArgument("spec.args: expected an object", field="spec.args", expected="object")
        extra = sorted(set(spec) - {"type", "args", "name", "device", "demand"})
        if extra:
            raise InvalidArgument(f"spec.{extra[0]}: unknown field for a job", field=f"spec.{extra[0]}",
                                  expected="type, args, name, device, demand")
        return {**spec, "type": jt, "args": args, "idempotent": kernel.job_types[jt].idempotent}
    raise InvalidArgument(f"kind: expected llm, tool, run or job, got {kind!r}", field="kind",
                          expected="llm | tool | run | job")


def default_workdir(kernel: Any, agent_id: str, write_roots: tuple[str, ...]) -> str:
    """An agent's workspace when a call names none: its first write root that is not
    ``/``, else ``$LLMOS_HOME/work/<agent>``."""
    for r in write_roots:
        if r != "/":
            return r
    wd = Path(kernel.config.home) / "work" / agent_id
    wd.mkdir(parents=True, exist_ok=True)
    return str(wd.resolve())


def _check_tool(kernel: Any, call: Call, spec: dict[str, Any], confirmed: bool) -> dict[str, Any]:
    from llmos.tools.registry import ToolContext

    extra = sorted(set(spec) - {"tool", "args", "workdir"})
    if extra:
        raise InvalidArgument(f"spec.{extra[0]}: unknown field for a tool call", field=f"spec.{extra[0]}",
                              expected="tool, args, workdir")
    name = spec.get("tool")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("spec.tool: expected a tool name", field="spec.tool", expected="string")
    if kernel.tools is None:
        raise NotFound("no tool registry is configured in this kernel")
    tool = kernel.tools.get(name)                       # NotFound with close matches
    args = spec.get("args") or {}
    if not isinstance(args, dict):
        raise InvalidArgument("spec.args: expected an object", field="spec.args", expected="object")
    try:
        full = kernel.tools.validate(name, args)
    except LLMOSError:
        raise
    except Exception as e:   # a schema validator's own error type
        raise InvalidArgument(f"spec.args: {e}", field="spec.args", expected="arguments fitting the tool's schema") from None
    caps = call.agent.caps
    wd_given = spec.get("workdir")
    if wd_given is not None and (not isinstance(wd_given, str) or not wd_given or "\x00" in wd_given):
        raise InvalidArgument("spec.workdir: expected a directory path", field="spec.workdir",
                              expected="a non-empty path")
    state = kernel.config.state_area()
    workdir = PathRef.of(wd_given or default_workdir(kernel, call.agent.id, caps.write_roots), mode="r",
                         state=state)
    call.check(workdir)
    why = workspace_problem(workdir.path, state)
    if why:
        raise InvalidArgument(f"spec.workdir: {why}", field="spec.workdir",
                              expected="a project folder that does not hold LLM OS's state",
                              hint="pick a folder for the work, e.g. ~/projects/notes")
    if tool.kind == "code":                         # exec tools write their workdir (the sandbox binds it)
        call.check(PathRef(workdir.path, "w", state))
    for arg, mode in tool.path_args.items():
        value = full.get(arg)
        if isinstance(value, str) and value:
            if "\x00" in value:
                raise InvalidArgument(f"spec.args.{arg}: path holds a NUL byte", field=f"spec.args.{arg}",
                                      expected="a path")
            call.check(PathRef.of(value, workdir.path, mode, state))
            _check_pattern(call, value, workdir.path, mode, state, arg)
    guard = {"state": list(state.paths()), "workspace_bytes": caps.quotas.workspace_bytes}
    ctx = ToolContext(workdir=Path(workdir.path), agent=call.agent.id, network=caps.network,
                      read_roots=tuple(Path(r) for r in caps.read_roots),
                      write_roots=tuple(Path(r) for r in caps.write_roots) or (Path(workdir.path),),
                      state=state)
    try:
        risk = Risk(tool.risk_for(full, ctx))
    except LLMOSError:
        raise
    except Exception as e:
        raise ToolError(f"{name}: could not classify the call's risk ({e})") from None
    if risk >= Risk.WRITE and not caps.write_roots:
        call.check(PathRef(workdir.path, "w"))      # denied: the agent may not write anywhere
    if risk >= Risk.NETWORK or tool.kind == "net":
        call.check(NetRef(name))
    consent.check(kernel, call, tool, risk, confirmed)   # grants, may.risky, the person's yes
    return {"tool": name, "args": full, "workdir": workdir.path, "risk": risk.name.lower(),
            "idempotent": bool(tool.idempotent), "guard": guard}


def _check_pattern(call: Call, value: str, workdir: str, mode: str, state: StateArea, arg: str) -> None:
    """A glob's fixed folder (``/a/b`` of ``/a/b/*/x``) must not hold the state area: the
    pattern could match the kernel's files there."""
    parts = Path(value).parts
    magic = [i for i, p in enumerate(parts) if any(c in p for c in "*?[")]
    if not magic:
        return
    base = PathRef.of(str(Path(*parts[:magic[0]])) if magic[0] else ".", workdir, mode, state)
    call.check(base)
    if state.inside(base.path):
        raise PermissionDenied(f"spec.args.{arg}: the pattern {value!r} reaches LLM OS's state "
                               f"directory ({state.home})", reason="a pattern over the state directory",
                               hint="name files inside the workspace")
