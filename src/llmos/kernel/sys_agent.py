"""Agent syscalls: ``agent.create`` / ``agent.list`` / ``agent.disable`` (thin decoders).

A creator can only hand out what it holds (``access.Capabilities.within``); the
new agent's token comes from the one token store (``kernel.tokens``) and is returned
once. ``agent.disable`` is for root or the agent's creator (or theirs): it disables the
agent and every agent it made, revokes their tokens and kills their live processes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmos.errors import InvalidArgument, PermissionDenied
from llmos.kernel import syscall, tokens
from llmos.kernel.access import ROOT_ID, Capabilities, CapsRef, Quotas, resolve_path
from llmos.kernel.argtypes import Args, text
from llmos.kernel.process import ProcState
from llmos.kernel.syscall import Call, KernelView, Syscall

__all__ = ["ROWS"]


class QuotasArgs(Args):
    tokens_per_min: int | None = Field(default=None, ge=1)
    max_procs: int | None = Field(default=None, ge=1)
    cpu_s: float | None = Field(default=None, gt=0)
    memory_bytes: int | None = Field(default=None, ge=1 << 20)
    workspace_bytes: int | None = Field(default=None, ge=0)   # bytes its write roots may hold


class CapsArgs(Args):
    syscalls: list[text(64, 1)] = Field(default_factory=list, max_length=100)   # type: ignore[valid-type]
    read_roots: list[text(4096, 1)] = Field(default_factory=list, max_length=64)  # type: ignore[valid-type]
    write_roots: list[text(4096, 1)] = Field(default_factory=list, max_length=64)  # type: ignore[valid-type]
    network: bool = False
    others: bool = False
    quotas: QuotasArgs = Field(default_factory=QuotasArgs)
    alloc_mode: Literal["throughput", "latency", "cost", "energy"] | None = None


class CreateArgs(Args):
    name: text(63, 1)                  # type: ignore[valid-type]
    capabilities: CapsArgs = Field(default_factory=CapsArgs)
    token: bool = True                 # issue its first bearer token


class ListArgs(Args):
    pass


class DisableArgs(Args):
    name: text(63, 1)                  # type: ignore[valid-type]
    reason: text(200) | None = None    # type: ignore[valid-type]


def _caps(k: KernelView, a: CapsArgs) -> Capabilities:
    table = k.syscalls
    groups = {n.split(".", 1)[0] for n in table} | {syscall.CAP_GROUP, syscall.MCP_CAP_GROUP}
    for s in a.syscalls:
        if s != "*" and s not in table and not syscall.is_capability(s) \
                and not (s.endswith(".*") and s[:-2] in groups):
            raise InvalidArgument(f"capabilities.syscalls: unknown syscall {s!r}",
                                  field="capabilities.syscalls",
                                  expected="'*', a syscall name, 'group.*', or a capability: "
                                           + ", ".join(sorted(syscall.CAPABILITIES)) + ", mcp.<tool>")
    for field in ("read_roots", "write_roots"):
        for r in getattr(a, field):
            if "\x00" in r:
                raise InvalidArgument(f"capabilities.{field}: path holds a NUL byte",
                                      field=f"capabilities.{field}", expected="a path")
    return Capabilities(syscalls=frozenset(a.syscalls),
                        read_roots=tuple(resolve_path(r) for r in a.read_roots),
                        write_roots=tuple(resolve_path(r) for r in a.write_roots),
                        network=a.network, others=a.others,
                        quotas=Quotas(**a.quotas.model_dump()), alloc_mode=a.alloc_mode)


async def create(k: KernelView, call: Call, a: CreateArgs) -> dict:
    caps = _caps(k, a.capabilities)
    call.check(CapsRef(caps))
    agent = k.agents.create(a.name, caps, call.agent.id)
    await k.journal.durable()
    token = tokens.shared(k.config.home).issue(agent.id, label=f"agent.create by {call.agent.id}")[0] \
        if a.token else None
    return {"agent": agent.to_dict(), "token": token}


async def list_(k: KernelView, call: Call, a: ListArgs) -> dict:
    agents = k.agents.list() if call.agent.caps.others else [call.agent]
    off = tokens.shared(k.config.home).disabled()
    return {"agents": [{**ag.to_dict(), **k.usage_of(ag.id), "disabled": ag.id in off} for ag in agents]}


async def disable(k: KernelView, call: Call, a: DisableArgs) -> dict:
    target = k.agents.get(a.name)
    if target.id == ROOT_ID:
        raise InvalidArgument("name: root cannot be disabled", field="name", expected="another agent")
    me = call.agent.id
    if me != ROOT_ID and me not in _creators(k, target.id):
        raise PermissionDenied(f"agent {me!r} did not create {target.id!r} and may not disable it",
                               reason="only root or the agent's creator disables an agent")
    names = k.agents.descendants(target.id)
    tokens.shared(k.config.home).disable(names, by=me, reason=a.reason or "")
    killed = []
    for p in list(k.procs):
        if p.owner in names and not p.state.finished:
            k._end(p, ProcState.KILLED, f"agent {p.owner} disabled by {me}")
            killed.append(p.pid)
    await k.journal.durable()
    return {"disabled": names, "killed": killed}


def _creators(k: KernelView, agent_id: str) -> list[str]:
    """The chain of creators above ``agent_id`` (its creator first)."""
    out: list[str] = []
    ag = k.agents.find(agent_id)
    while ag is not None and ag.creator and ag.creator not in out:
        out.append(ag.creator)
        ag = k.agents.find(ag.creator)
    return out


ROWS = [
    Syscall("agent.create", CreateArgs, "agent.create", create,
            "a new agent with at most the creator's capabilities; returns its token once"),
    Syscall("agent.list", ListArgs, "agent.list", list_, "agents with capabilities and usage"),
    Syscall("agent.disable", DisableArgs, "agent.disable", disable,
            "disable an agent one made (and those it made): tokens revoked, processes killed"),
]
