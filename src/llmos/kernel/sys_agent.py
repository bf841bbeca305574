"""Agent syscalls: ``agent.create`` / ``agent.list`` (thin decoders).

A creator can only hand out what it holds (``access.Capabilities.within``); the
new agent's token is returned once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from llmos.errors import InvalidArgument
from llmos.kernel import syscall
from llmos.kernel.access import Capabilities, CapsRef, Quotas, resolve_path
from llmos.kernel.argtypes import Args, text
from llmos.kernel.syscall import Call, Syscall

if TYPE_CHECKING:
    from llmos.kernel.core import Kernel

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


class ListArgs(Args):
    pass


def _caps(a: CapsArgs) -> Capabilities:
    table = syscall.TABLE     # read at call time: this module is imported while TABLE is built
    groups = {n.split(".", 1)[0] for n in table} | {syscall.MCP_CAP_GROUP}
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


async def create(k: Kernel, call: Call, a: CreateArgs) -> dict:
    caps = _caps(a.capabilities)
    call.check(CapsRef(caps))
    agent, token = k.agents.create(a.name, caps, call.agent.id)
    await k.journal.durable()
    return {"agent": agent.to_dict(), "token": token}


async def list_(k: Kernel, call: Call, a: ListArgs) -> dict:
    agents = k.agents.list() if call.agent.caps.others else [call.agent]
    return {"agents": [{**ag.to_dict(), **k.usage_of(ag.id)} for ag in agents]}


ROWS = [
    Syscall("agent.create", CreateArgs, "agent.create", create,
            "a new agent with at most the creator's capabilities; returns its token once"),
    Syscall("agent.list", ListArgs, "agent.list", list_, "agents with capabilities and usage"),
]
