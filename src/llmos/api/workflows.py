"""Workflow routes (``/api/v1/workflows``): the daemon's standing orders over HTTP.

- ``GET /workflows`` · ``GET /workflows/{name}`` (with its last runs and their explanations)
- ``POST /workflows/compile`` {description, workdir}: the proposal to approve (trigger,
  checked plan, rights); nothing is stored.
- ``POST /workflows`` {name, proposal}: store an approved proposal (checked again).
- ``POST /workflows/save`` {name, run, when?}: a past run of the shell becomes a workflow.
- ``POST /workflows/{name}/pause|resume|run`` · ``DELETE /workflows/{name}``
- ``POST /workflows/{name}/hook``: the webhook trigger (a bearer token, like every route:
  401 without one); answers at once, the run goes on in the daemon.

The service (``workflows.Workflows``) lives in the daemon's lifespan (``start`` / ``stop``
here); a caller sees and changes only the workflows its agent owns (the admin token: all).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from llmos.api.auth import Principal
from llmos.api.deps import Services, principal, services
from llmos.api.routes import ERRORS
from llmos.errors import LLMOSError, NotFound

__all__ = ["router", "start", "stop"]

router = APIRouter(prefix="/api/v1", tags=["workflows"], responses=ERRORS)
Who = Depends(principal)
Svc = Depends(services)
NamePath = Path(min_length=1, max_length=60, description="workflow name")


class CompileRequest(BaseModel):
    description: str = Field(min_length=1, max_length=4000)
    workdir: str = Field(min_length=1, max_length=4096)


class AddRequest(BaseModel):
    name: str = Field(min_length=1, max_length=60)
    proposal: dict[str, Any]


class SaveRequest(BaseModel):
    name: str = Field(min_length=1, max_length=60)
    run: str = Field(min_length=1, max_length=64)
    when: str | None = Field(default=None, max_length=1000)


async def start(svc: Services) -> None:
    from llmos.workflows import open_workflows

    if getattr(svc.kernel, "config", None) is None or getattr(svc.kernel, "clock", None) is None:
        return                       # a stand-in kernel (tests of other routes): no workflows
    wf = open_workflows(svc.kernel)
    await wf.start()
    svc.extra["workflows"] = wf


async def stop(svc: Services) -> None:
    wf = svc.extra.pop("workflows", None)
    if wf is not None:
        await wf.close()


def _wf(svc: Services) -> Any:
    wf = svc.extra.get("workflows")
    if wf is None:
        raise LLMOSError("workflows are not running in this daemon", hint="restart it with `llmos serve`")
    return wf


def _mine(svc: Services, who: Principal, name: str) -> Any:
    w = _wf(svc).get(name)
    if not who.admin and w.owner != who.agent:
        raise NotFound(f"no workflow named {name!r}", hint="llmos workflow list shows them")
    return w


def _owner(who: Principal) -> str:
    return "root" if who.admin else who.agent


@router.get("/workflows")
async def list_workflows(who: Principal = Who, svc: Services = Svc) -> dict:
    return {"workflows": [w.to_dict() for w in _wf(svc).list() if who.admin or w.owner == who.agent]}


@router.post("/workflows/compile")
async def compile_workflow(body: CompileRequest, who: Principal = Who, svc: Services = Svc) -> dict:
    return await _wf(svc).compile(body.description, body.workdir, _owner(who))


@router.post("/workflows", status_code=201)
async def add_workflow(body: AddRequest, who: Principal = Who, svc: Services = Svc) -> dict:
    return _wf(svc).add(body.proposal, body.name, _owner(who)).to_dict()


@router.post("/workflows/save", status_code=201)
async def save_workflow(body: SaveRequest, who: Principal = Who, svc: Services = Svc) -> dict:
    store = svc.runs.store() if svc.runs is not None else None
    if store is None:
        raise LLMOSError("no run store in this daemon")
    rec = store.get_run(body.run)
    return (await _wf(svc).save_from_run(body.name, rec, body.when, _owner(who))).to_dict()


@router.get("/workflows/{name}")
async def show_workflow(name: str = NamePath, who: Principal = Who, svc: Services = Svc) -> dict:
    w = _mine(svc, who, name)
    return {**w.to_dict(), "runs": _wf(svc).store.runs(name, 20)}


@router.post("/workflows/{name}/pause")
async def pause_workflow(name: str = NamePath, who: Principal = Who, svc: Services = Svc) -> dict:
    _mine(svc, who, name)
    return _wf(svc).pause(name).to_dict()


@router.post("/workflows/{name}/resume")
async def resume_workflow(name: str = NamePath, who: Principal = Who, svc: Services = Svc) -> dict:
    _mine(svc, who, name)
    return _wf(svc).resume(name).to_dict()


@router.post("/workflows/{name}/run")
async def run_workflow(name: str = NamePath, who: Principal = Who, svc: Services = Svc) -> dict:
    """Run it now and wait for the outcome (journaled like a triggered run)."""
    _mine(svc, who, name)
    return await _wf(svc).fire(name, "run now")


@router.post("/workflows/{name}/hook", status_code=202)
async def hook_workflow(name: str = NamePath, who: Principal = Who, svc: Services = Svc) -> dict:
    w = _mine(svc, who, name)
    if w.state.name != "ACTIVE":
        return {"workflow": name, "fired": False, "reason": f"the workflow is {w.state.name.lower()}"}
    _wf(svc).fire(name, "webhook")
    return {"workflow": name, "fired": True}


@router.delete("/workflows/{name}")
async def delete_workflow(name: str = NamePath, who: Principal = Who, svc: Services = Svc) -> dict:
    _mine(svc, who, name)
    _wf(svc).delete(name)
    return {"ok": True}
