"""REST routes under ``/api/v1``: decode the request, make the syscall, encode the answer.

Map (each route is one syscall as the calling agent unless noted):
- ``GET /health`` (no token; used by ``sdk.discover``), ``GET /whoami``.
- ``POST /syscall``: any syscall by name (the SDK's escape hatch); with ``agent``, the admin
  token's call made as that agent (its rights, the person's yes).
- processes: ``POST /processes`` (proc.spawn), ``GET /processes`` (proc.list),
  ``GET /processes/{pid}`` (proc.get), ``POST /processes/{pid}/kill`` and
  ``DELETE /processes/{pid}`` (proc.kill), ``POST /processes/{pid}/nice`` (proc.nice),
  ``POST /processes/{pid}/wait`` (proc.wait).
- agents: ``POST /agents`` (agent.create), ``GET /agents`` (agent.list); tokens are an
  API matter (``auth.TokenStore``): ``POST|GET /agents/{agent}/tokens``,
  ``DELETE /agents/{agent}/tokens/{id}`` — the admin, or the agent itself (one store:
  the token ``agent.create`` returned is listed and revoked the same way);
  ``POST /agents/{agent}/disable`` (agent.disable).
- ``GET /tools`` (tool.list); timers: ``GET|POST /timers``, ``DELETE /timers/{id}``;
  memory: ``POST /memory``, ``GET /memory/{key}``, ``POST /memory/search``.
- ``POST /alloc`` (alloc.solve): solve a placement problem on the kernel's allocator
  models (HiGHS), within the syscall's time budget.
- ``GET /system``: hardware, energy, engines, queue (``observe.snapshot``).
- ``GET /events``: server-sent events (``events.EventHub``); ``?types=proc,run``.

Capability checks are the kernel's: a route never decides what an agent may do,
except for tokens, which the kernel does not know about.
"""

from __future__ import annotations

import os
import time
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from llmos import __version__
from llmos.api import schemas as S
from llmos.api.auth import Principal
from llmos.api.deps import Services, call, principal, services
from llmos.api.errors import ApiError
from llmos.api.events import sse_stream
from llmos.api.observe import system_snapshot
from llmos.errors import NotFound, PermissionDenied

__all__ = ["router", "ERRORS"]

# documented error answers shared by every authenticated route
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": S.ErrorBody, "description": "bad argument (names the field and the expectation)"},
    401: {"model": S.ErrorBody, "description": "missing or unknown bearer token"},
    403: {"model": S.ErrorBody, "description": "the agent lacks the capability"},
    404: {"model": S.ErrorBody, "description": "no such process, agent, timer or run"},
    413: {"model": S.ErrorBody, "description": "request body too large"},
    422: {"model": S.ErrorBody, "description": "body does not match the schema"},
    429: {"model": S.ErrorBody, "description": "busy or over quota; see retry_after"},
}

router = APIRouter(prefix="/api/v1", responses=ERRORS)
Who = Depends(principal)
Svc = Depends(services)
PidPath = Path(ge=1, le=2**62, description="process id")
WAIT_MAX_S = 3600.0     # seconds a wait may block when the caller names no timeout
ProcStateQ = Literal["new", "queued", "running", "waiting", "preempted", "succeeded", "failed",
                     "killed", "live", "finished"]


def _rows(value: Any, key: str) -> list:
    """A syscall's list answer, whether it came bare or wrapped in ``{key: [...]}``."""
    if isinstance(value, dict) and key in value:
        value = value[key]
    return list(value or [])


def _proc(value: Any) -> dict:
    if isinstance(value, dict) and "process" in value and isinstance(value["process"], dict):
        return value["process"]
    return value


# ── daemon ──────────────────────────────────────────────────────────────────
@router.get("/health", response_model=S.Health, tags=["daemon"], responses={})
async def health(svc: Services = Svc) -> dict:
    """Liveness, with the daemon's pid (no token needed)."""
    return {"ok": True, "version": __version__, "pid": os.getpid(),
            "uptime_s": time.time() - svc.started}


@router.get("/whoami", response_model=S.WhoAmI, tags=["daemon"])
async def whoami(who: Principal = Who) -> dict:
    return {"agent": who.agent, "admin": who.admin}


@router.post("/syscall", response_model=S.SyscallResponse, tags=["daemon"])
async def syscall(body: S.SyscallRequest, who: Principal = Who, svc: Services = Svc) -> Response:
    """Make any syscall as the calling agent; errors come back as error bodies."""
    # the hot path: answered as JSON directly (the value is the kernel's JSON already)
    return JSONResponse({"ok": True, "value": await call(svc, who, body.name, body.args, as_agent=body.agent)})


@router.get("/system", response_model=S.SystemOut, tags=["daemon"])
async def system(who: Principal = Who, svc: Services = Svc) -> dict:
    """CPU, memory, GPUs, energy (measured or modelled), engine throughput, queue depth."""
    return await system_snapshot(svc, who)


# ── processes ───────────────────────────────────────────────────────────────
@router.post("/processes", response_model=S.ProcessOut, status_code=201, tags=["processes"])
async def spawn(body: S.SpawnRequest, who: Principal = Who, svc: Services = Svc) -> dict:
    """Start a process; answered once its row is journaled (it survives a crash)."""
    args = body.model_dump(exclude_none=True)
    res = await call(svc, who, "proc.spawn", args)
    proc = await call(svc, who, "proc.get", {"pid": res["pid"]})
    return {**proc, "deduplicated": bool(res.get("deduplicated"))}


@router.get("/processes", response_model=S.ProcessList, tags=["processes"])
async def list_processes(
    state: ProcStateQ | None = Query(None, description="only processes in this state"),
    owner: str | None = Query(None, max_length=63, description="only this agent's processes"),
    limit: int = Query(200, ge=1, le=10_000),
    who: Principal = Who, svc: Services = Svc,
) -> dict:
    args: dict[str, Any] = {"limit": limit}
    if state:
        args["state"] = state
    if owner:
        args["owner"] = owner
    return {"processes": _rows(await call(svc, who, "proc.list", args), "processes")}


@router.get("/processes/{pid}", response_model=S.ProcessOut, tags=["processes"])
async def get_process(pid: int = PidPath, who: Principal = Who, svc: Services = Svc) -> dict:
    return _proc(await call(svc, who, "proc.get", {"pid": pid}))


@router.post("/processes/{pid}/kill", response_model=S.ProcessOut, tags=["processes"])
async def kill(body: S.KillRequest | None = None, pid: int = PidPath, who: Principal = Who,
               svc: Services = Svc) -> dict:
    args: dict[str, Any] = {"pid": pid}
    if body is not None and body.reason:
        args["reason"] = body.reason
    await call(svc, who, "proc.kill", args)
    return _proc(await call(svc, who, "proc.get", {"pid": pid}))


@router.delete("/processes/{pid}", response_model=S.ProcessOut, tags=["processes"])
async def delete_process(pid: int = PidPath, who: Principal = Who, svc: Services = Svc) -> dict:
    await call(svc, who, "proc.kill", {"pid": pid})
    return _proc(await call(svc, who, "proc.get", {"pid": pid}))


@router.post("/processes/{pid}/nice", response_model=S.ProcessOut, tags=["processes"])
async def nice(body: S.NiceRequest, pid: int = PidPath, who: Principal = Who,
               svc: Services = Svc) -> dict:
    await call(svc, who, "proc.nice", {"pid": pid, "priority": body.priority})
    return _proc(await call(svc, who, "proc.get", {"pid": pid}))


@router.post("/processes/{pid}/wait", response_model=S.ProcessOut, tags=["processes"])
async def wait(body: S.WaitRequest | None = None, pid: int = PidPath, who: Principal = Who,
               svc: Services = Svc) -> dict:
    """Block until the process finishes (or the timeout passes); answer its state."""
    limit = body.timeout_s if body is not None and body.timeout_s is not None else WAIT_MAX_S
    args: dict[str, Any] = {"pid": pid, "timeout_s": limit}
    return _proc(await call(svc, who, "proc.wait", args))


@router.post("/processes/{pid}/confirm", response_model=S.ProcessOut, tags=["processes"])
async def confirm_process(pid: int = PidPath, who: Principal = Who, svc: Services = Svc) -> dict:
    """Approve a process that waits for the person's yes (it is queued again)."""
    await call(svc, who, "proc.confirm", {"pid": pid})
    return _proc(await call(svc, who, "proc.get", {"pid": pid}))


# ── agents and tokens ───────────────────────────────────────────────────────
def _agent(a: Any) -> dict:
    if isinstance(a, dict):
        return a if "id" in a else {**a, "id": a.get("name", "?")}
    return {"id": str(a)}


@router.post("/agents", response_model=S.AgentCreated, status_code=201, tags=["agents"])
async def create_agent(body: S.AgentCreateRequest, who: Principal = Who, svc: Services = Svc) -> dict:
    """Create an agent whose capabilities lie within the caller's (the kernel checks)."""
    caps = body.capabilities.model_dump()
    caps["quotas"] = {k: v for k, v in caps["quotas"].items() if v is not None}
    if caps.get("alloc_mode") is None:
        caps.pop("alloc_mode", None)
    res = await call(svc, who, "agent.create", {"name": body.name, "capabilities": caps,
                                                "token": body.issue_token})
    out = _agent(res.get("agent", res) if isinstance(res, dict) else res)
    out["token"] = res.get("token") if isinstance(res, dict) and body.issue_token else None
    return out


@router.get("/agents", response_model=S.AgentList, tags=["agents"])
async def list_agents(who: Principal = Who, svc: Services = Svc) -> dict:
    return {"agents": [_agent(a) for a in _rows(await call(svc, who, "agent.list", {}), "agents")]}


async def _token_owner_check(svc: Services, who: Principal, agent: str) -> None:
    if not (who.admin or who.agent == agent):
        raise PermissionDenied(f"agent {who.agent!r} may not manage the tokens of {agent!r}",
                               reason="only the admin or the agent itself manages its tokens")
    known = {a["id"] for a in (_agent(x) for x in _rows(await call(svc, who, "agent.list", {}), "agents"))}
    if agent not in known:
        raise NotFound(f"no agent named {agent!r}", hint="list them with GET /api/v1/agents")


AgentPath = Path(min_length=1, max_length=63, pattern=r"^[a-z][a-z0-9_-]{0,62}$")


@router.post("/agents/{agent}/tokens", response_model=S.TokenOut, status_code=201, tags=["agents"])
async def create_token(body: S.TokenRequest | None = None, agent: str = AgentPath,
                       who: Principal = Who, svc: Services = Svc) -> dict:
    """A new bearer token for ``agent`` (shown once). Admin, or the agent itself."""
    await _token_owner_check(svc, who, agent)
    scope = body.scope if body else "all"
    if scope != "all" and not who.admin:
        raise PermissionDenied("a metrics-only token shows every agent's usage: the admin makes it",
                               reason="only the admin issues metrics tokens")
    token, tid = svc.tokens.issue(agent, label=body.label if body else "", scope=scope)
    return {"id": tid, "agent": agent, "token": token}


@router.get("/agents/{agent}/tokens", response_model=S.TokenList, tags=["agents"])
async def list_tokens(agent: str = AgentPath, who: Principal = Who, svc: Services = Svc) -> dict:
    await _token_owner_check(svc, who, agent)
    return {"tokens": svc.tokens.list(agent)}


@router.post("/agents/{agent}/disable", response_model=S.AgentDisabled, tags=["agents"])
async def disable_agent(body: S.DisableRequest | None = None, agent: str = AgentPath,
                        who: Principal = Who, svc: Services = Svc) -> dict:
    """Disable an agent (root, or the agent's creator): it and the agents it made lose
    their tokens, get no new ones, may make no syscall, and their live processes end."""
    args: dict[str, Any] = {"name": agent}
    if body is not None and body.reason:
        args["reason"] = body.reason
    return await call(svc, who, "agent.disable", args)


@router.delete("/agents/{agent}/tokens/{token_id}", response_model=S.Ok, tags=["agents"])
async def revoke_token(agent: str = AgentPath,
                       token_id: str = Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$"),
                       who: Principal = Who, svc: Services = Svc) -> dict:
    await _token_owner_check(svc, who, agent)
    if not any(t["id"] == token_id for t in svc.tokens.list(agent)):
        raise NotFound(f"agent {agent!r} has no token with id {token_id!r}")
    svc.tokens.revoke(token_id)
    return {"ok": True}


# ── tools, timers, memory ───────────────────────────────────────────────────
def _tool(t: Any) -> dict:
    if not isinstance(t, dict):
        return {"name": str(t)}
    out = dict(t)
    if "risk" in out and not isinstance(out["risk"], str) and out["risk"] is not None:
        r = out["risk"]
        out["risk"] = getattr(r, "name", str(r)).lower()
    return out


@router.get("/tools", response_model=S.ToolList, tags=["tools"])
async def list_tools(who: Principal = Who, svc: Services = Svc) -> dict:
    return {"tools": [_tool(t) for t in _rows(await call(svc, who, "tool.list", {}), "tools")]}


@router.get("/timers", response_model=S.TimerList, tags=["timers"])
async def list_timers(all: bool = Query(False, description="include fired and cancelled ones"),
                      who: Principal = Who, svc: Services = Svc) -> dict:
    return {"timers": _rows(await call(svc, who, "timer.list", {"all": all}), "timers")}


@router.post("/timers", response_model=S.TimerOut, status_code=201, tags=["timers"])
async def set_timer(body: S.TimerRequest, who: Principal = Who, svc: Services = Svc) -> dict:
    """A durable reminder: in_s from now or at; every_s repeats it (alone: first in every_s)."""
    args = body.model_dump(exclude_none=True)
    if body.in_s is None and body.at is None and body.every_s is not None:
        args["in_s"] = body.every_s
    elif (body.in_s is None) == (body.at is None):
        raise ApiError(400, "invalid_argument", "expected exactly one of 'in_s' or 'at'",
                       field="in_s", expected="seconds from now, or 'at' in epoch seconds")
    res = await call(svc, who, "timer.set", args)
    return res


@router.delete("/timers/{timer_id}", response_model=S.Ok, tags=["timers"])
async def cancel_timer(timer_id: int = Path(ge=1, le=2**62), who: Principal = Who,
                       svc: Services = Svc) -> dict:
    await call(svc, who, "timer.cancel", {"id": timer_id})
    return {"ok": True}


@router.post("/memory", response_model=S.MemoryKey, status_code=201, tags=["memory"])
async def memory_put(body: S.MemoryPutRequest, who: Principal = Who, svc: Services = Svc) -> dict:
    """Store a note under a key, in the calling agent's own memory."""
    return await call(svc, who, "memory.put", body.model_dump())


@router.delete("/memory/{key:path}", response_model=S.MemoryKey, tags=["memory"])
async def memory_delete(key: str = Path(min_length=1, max_length=200), who: Principal = Who,
                        svc: Services = Svc) -> dict:
    return await call(svc, who, "memory.delete", {"key": key})


@router.get("/memory/{key:path}", response_model=S.MemoryItem, tags=["memory"])
async def memory_get(key: str = Path(min_length=1, max_length=200), who: Principal = Who,
                     svc: Services = Svc) -> dict:
    res = await call(svc, who, "memory.get", {"key": key})
    return res if isinstance(res, dict) else {"key": key, "value": res}


@router.post("/memory/search", response_model=S.MemorySearchOut, tags=["memory"])
async def memory_search(body: S.MemorySearchRequest, who: Principal = Who, svc: Services = Svc) -> dict:
    res = await call(svc, who, "memory.search", {"query": body.query, "limit": body.limit})
    return {"results": _rows(res, "results")}


# ── alloc ───────────────────────────────────────────────────────────────────
@router.post("/alloc", response_model=S.AllocOut, tags=["alloc"],
             responses={422: {"model": S.ErrorBody, "description": "malformed or infeasible problem "
                                                                  "(names the binding resource)"}})
async def alloc(body: S.AllocRequest, who: Principal = Who, svc: Services = Svc) -> dict:
    """Solve an assignment of tasks to resources (cost, delay, probability, energy, makespan or
    a weighted mix) on HiGHS; the answer says which constraints bind, and why, in words."""
    doc = body.model_dump(exclude_none=True, exclude={"time_limit_s"})
    if not doc.get("notes"):
        doc.pop("notes", None)
    return await call(svc, who, "alloc.solve", {"problem": doc, "time_limit_s": body.time_limit_s})


# ── events ──────────────────────────────────────────────────────────────────
@router.get("/events", tags=["events"], response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "server-sent events: proc.*, run.*, timer.*, system.stats"}})
async def events(
    request: Request,
    types: str | None = Query(None, max_length=500,
                              description="comma-separated type prefixes, e.g. proc,run"),
    who: Principal = Who, svc: Services = Svc,
) -> Response:
    """Live process, run and system events. ``Last-Event-ID`` resumes after a reconnect."""
    last = request.headers.get("last-event-id")
    last_id = int(last) if last and last.isdigit() else None
    wanted = [t.strip() for t in (types or "").split(",") if t.strip()]
    sub = svc.hub.subscribe(wanted, last_id=last_id, agent=None if who.admin else who.agent)
    return StreamingResponse(sse_stream(sub), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
