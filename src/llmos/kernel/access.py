"""Agents, capabilities and the access decision.

Map:
- ``Quotas`` / ``Capabilities``: what an agent may do (frozen; only ``agent.create``
  by a holder of a superset makes new ones — text from a model or a tool is data and
  has no path to them).
- ``Agent``: a principal (id, capabilities, who created it). ``ROOT`` holds everything.
- Resources a call touches: ``ProcRef`` (another process), ``PathRef`` (a resolved
  path + mode), ``NetRef``, ``UsageRef`` (live usage against quotas), ``CapsRef`` (the
  capabilities a new agent would get), ``MemoryRef`` (a collection of an agent's long-term
  memory, with the share its owner gave the caller).
- ``may(agent, call, resource) -> Decision``: pure; the kernel audits every answer.
- ``resolve_path(path, workdir)``: absolute, ``~`` expanded, symlinks and ``..``
  resolved — always resolve before asking ``may`` about a path.
- ``StateArea``: the kernel's own files (the state directory, the config file). ``may``
  refuses every path in it to every agent, root included; only the kernel's own code
  (storage, config loading) touches them, never through a tool. Agents' default
  workspaces (``$LLMOS_HOME/work/<agent>``) are the one subtree left open.
- ``workspace_problem(path, state)``: why a folder cannot be a workspace (``/``, the
  home directory itself, or a folder holding the state directory), else None.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["Quotas", "Capabilities", "Agent", "Decision", "ProcRef", "PathRef", "NetRef",
           "UsageRef", "CapsRef", "MemoryRef", "Resource", "may", "resolve_path", "is_under",
           "syscall_allowed", "ROOT", "ROOT_ID", "StateArea", "workspace_problem"]

ROOT_ID = "root"


@dataclass(frozen=True)
class Quotas:
    """Limits; None means unlimited."""

    tokens_per_min: int | None = None    # prompt + generated tokens in any rolling 60 s: refused at
    #                                      admission once reached; a running generation stops at the
    #                                      token that would pass it (kernel.stepping._token_guard)
    max_procs: int | None = None         # live (unfinished) processes at once
    cpu_s: float | None = None           # CPU seconds over the agent's lifetime
    memory_bytes: int | None = None      # address-space limit of each tool process
    workspace_bytes: int | None = None   # bytes the agent's write roots may hold in all: a file
    #                                      write that would pass it is refused (QuotaExceeded)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Quotas:
        return cls(**(d or {}))

    def within(self, other: Quotas) -> str | None:
        """None when every limit is at least as tight as ``other``'s, else why not."""
        for name in ("tokens_per_min", "max_procs", "cpu_s", "memory_bytes", "workspace_bytes"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs is not None and (mine is None or mine > theirs):
                return f"quota {name}={mine if mine is not None else 'unlimited'} exceeds the creator's {theirs}"
        return None


@dataclass(frozen=True)
class Capabilities:
    """What an agent may do. Paths are stored resolved (absolute, no symlinks)."""

    syscalls: frozenset[str] = frozenset()   # names, "group.*" or "*"
    read_roots: tuple[str, ...] = ()         # may read under these (write roots imply read)
    write_roots: tuple[str, ...] = ()        # may create/modify under these
    network: bool = False                    # may run network tools
    others: bool = False                     # may read/kill/renice other agents' processes
    quotas: Quotas = field(default_factory=Quotas)
    alloc_mode: str | None = None            # placement rule for its work (throughput | latency |
    #                                          cost | energy); None: config.alloc_mode. A preference,
    #                                          not a privilege: any creator may set any mode.

    def to_dict(self) -> dict[str, Any]:
        return {"syscalls": sorted(self.syscalls), "read_roots": list(self.read_roots),
                "write_roots": list(self.write_roots), "network": self.network,
                "others": self.others, "quotas": self.quotas.to_dict(), "alloc_mode": self.alloc_mode}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Capabilities:
        return cls(syscalls=frozenset(d.get("syscalls", ())),
                   read_roots=tuple(resolve_path(p) for p in d.get("read_roots", ())),
                   write_roots=tuple(resolve_path(p) for p in d.get("write_roots", ())),
                   network=bool(d.get("network", False)), others=bool(d.get("others", False)),
                   quotas=Quotas.from_dict(d.get("quotas")), alloc_mode=d.get("alloc_mode"))

    def within(self, other: Capabilities) -> str | None:
        """None when these capabilities are a subset of ``other``'s, else the first reason."""
        for s in sorted(self.syscalls):
            if not _pattern_within(s, other.syscalls):
                return f"syscall {s!r} is not allowed to the creator"
        for root in self.read_roots:
            if not any(is_under(root, r) for r in other.read_roots + other.write_roots):
                return f"read root {root} is outside the creator's read roots"
        for root in self.write_roots:
            if not any(is_under(root, r) for r in other.write_roots):
                return f"write root {root} is outside the creator's write roots"
        if self.network and not other.network:
            return "network is not allowed to the creator"
        if self.others and not other.others:
            return "'others' is not allowed to the creator"
        return self.quotas.within(other.quotas)


@dataclass(frozen=True)
class Agent:
    id: str
    caps: Capabilities
    created_s: float = 0.0        # wall-clock seconds
    creator: str | None = None    # agent id that made it; None for root

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "capabilities": self.caps.to_dict(), "created_s": self.created_s,
                "creator": self.creator}


ROOT = Agent(ROOT_ID, Capabilities(syscalls=frozenset({"*"}), read_roots=("/",),
                                   write_roots=("/",), network=True, others=True))


# ── resources ───────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class ProcRef:
    pid: int
    owner: str


@dataclass(frozen=True)
class StateArea:
    """The kernel's own files: no agent reaches them through a path (tools, workspaces)."""

    home: str                          # the state directory ($LLMOS_HOME), resolved
    config_file: str | None = None     # the config file (it may live outside home), resolved

    WORK = "work"                      # home/work/<agent>: default workspaces, open to their agents

    @classmethod
    def of(cls, home: str | os.PathLike, config_file: str | os.PathLike | None = None) -> StateArea:
        return cls(resolve_path(home), resolve_path(config_file) if config_file else None)

    def holds(self, path: str) -> bool:
        """True when resolved ``path`` is one of the kernel's files (or a folder of them)."""
        if self.config_file and path == self.config_file:
            return True
        return is_under(path, self.home) and not is_under(path, os.path.join(self.home, self.WORK))

    def inside(self, folder: str) -> bool:
        """True when resolved ``folder`` holds the state directory or the config file."""
        return any(p and is_under(p, folder) for p in (self.home, self.config_file))

    def paths(self) -> tuple[str, ...]:
        return tuple(p for p in (self.home, self.config_file) if p)


def workspace_problem(path: str, state: StateArea | None = None) -> str | None:
    """Why resolved folder ``path`` cannot be an agent's workspace, else None."""
    home = resolve_path(os.path.expanduser("~"))
    if path == "/":
        return "the workspace is / (the whole file system)"
    if path == home:
        return f"the workspace is the home directory itself ({home})"
    if state is not None and state.inside(path):
        return f"the workspace {path} holds LLM OS's state directory ({state.home})"
    if state is not None and state.holds(path):
        return f"the workspace {path} is inside LLM OS's state directory ({state.home})"
    return None


@dataclass(frozen=True)
class PathRef:
    path: str                      # resolved; build with PathRef.of
    mode: Literal["r", "w"] = "r"
    state: StateArea | None = None  # the kernel's files: refused to every agent

    @classmethod
    def of(cls, path: str, workdir: str | None = None, mode: Literal["r", "w"] = "r",
           state: StateArea | None = None) -> PathRef:
        return cls(resolve_path(path, workdir), mode, state)


@dataclass(frozen=True)
class NetRef:
    what: str = ""                 # tool or host, for the reason text


@dataclass(frozen=True)
class UsageRef:
    live_procs: int = 0            # the agent's unfinished processes, before this call
    tokens_last_min: int = 0       # tokens used in the last 60 s
    cpu_s: float = 0.0             # CPU seconds used so far
    new_procs: int = 0             # processes this call would add


@dataclass(frozen=True)
class CapsRef:
    caps: Capabilities


@dataclass(frozen=True)
class MemoryRef:
    owner: str | None                  # whose long-term memory; None: every agent's (the person's view)
    collection: str | None = None      # one named collection; None: all of the owner's
    mode: Literal["r", "rw"] = "r"     # what the call does: read, or also write / forget
    granted: Literal["r", "rw"] | None = None   # the owner's share of this collection with the caller


Resource = ProcRef | PathRef | NetRef | UsageRef | CapsRef | MemoryRef | None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    quota: bool = False            # denied by a quota (QuotaExceeded), not a capability

    def __bool__(self) -> bool:
        return self.allowed


def _pattern_within(pattern: str, allowed: frozenset[str]) -> bool:
    if "*" in allowed or pattern in allowed:
        return True
    if pattern.endswith(".*"):
        return False
    return syscall_allowed(allowed, pattern)


def syscall_allowed(allowed: frozenset[str], call: str) -> bool:
    if "*" in allowed or call in allowed:
        return True
    group = call.split(".", 1)[0]
    return f"{group}.*" in allowed


def resolve_path(path: str | os.PathLike, workdir: str | os.PathLike | None = None) -> str:
    """Absolute path with ``~``, ``..`` and every symlink resolved (also for a file that
    does not exist yet: its existing ancestors are resolved)."""
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.is_absolute():
        p = Path(os.path.expanduser(os.fspath(workdir))) / p if workdir else Path.cwd() / p
    return os.path.realpath(p)


def is_under(path: str, root: str) -> bool:
    """True when resolved ``path`` is ``root`` or inside it (both resolved)."""
    if root == "/":
        return path.startswith("/")
    return path == root or path.startswith(root.rstrip("/") + "/")


def may(agent: Agent, call: str, resource: Resource = None) -> Decision:
    """May ``agent`` make syscall ``call`` touching ``resource``? Pure: no I/O, no state."""
    caps = agent.caps
    if not syscall_allowed(caps.syscalls, call):
        return Decision(False, f"agent {agent.id!r} may not call {call}")
    if resource is None:
        return Decision(True, "allowed")
    if isinstance(resource, ProcRef):
        if resource.owner != agent.id and not caps.others:
            return Decision(False, f"process {resource.pid} belongs to agent {resource.owner!r}; "
                                   f"agent {agent.id!r} lacks the 'others' capability")
        return Decision(True, "own process" if resource.owner == agent.id else "others capability")
    if isinstance(resource, PathRef):
        if resource.state is not None and resource.state.holds(resource.path):
            return Decision(False, f"{resource.path} is LLM OS's own state (state directory "
                                   f"{resource.state.home}); no agent may read or write it")
        roots = caps.write_roots if resource.mode == "w" else caps.read_roots + caps.write_roots
        if any(is_under(resource.path, r) for r in roots):
            return Decision(True, f"{resource.path} is inside the agent's "
                                  f"{'write' if resource.mode == 'w' else 'read'} roots")
        kind = "write" if resource.mode == "w" else "read"
        shown = ", ".join(dict.fromkeys(roots)) or "none"   # a root both readable and writable once
        return Decision(False, f"{resource.path} is outside agent {agent.id!r}'s {kind} roots ({shown})")
    if isinstance(resource, NetRef):
        if caps.network:
            return Decision(True, "network capability")
        return Decision(False, f"agent {agent.id!r} lacks the network capability"
                               + (f" needed by {resource.what}" if resource.what else ""))
    if isinstance(resource, UsageRef):
        q = caps.quotas
        if q.max_procs is not None and resource.live_procs + resource.new_procs > q.max_procs:
            return Decision(False, f"agent {agent.id!r} has {resource.live_procs} live processes; "
                                   f"quota max_procs={q.max_procs}", quota=True)
        if q.tokens_per_min is not None and resource.tokens_last_min >= q.tokens_per_min:
            return Decision(False, f"agent {agent.id!r} used {resource.tokens_last_min} tokens in "
                                   f"the last minute; quota tokens_per_min={q.tokens_per_min}",
                            quota=True)
        if q.cpu_s is not None and resource.cpu_s >= q.cpu_s:
            return Decision(False, f"agent {agent.id!r} used {resource.cpu_s:.1f} CPU s; "
                                   f"quota cpu_s={q.cpu_s:g}", quota=True)
        return Decision(True, "within quotas")
    if isinstance(resource, CapsRef):
        why = resource.caps.within(caps)
        if why:
            return Decision(False, f"cannot grant more than agent {agent.id!r} holds: {why}")
        return Decision(True, "requested capabilities are within the creator's")
    if isinstance(resource, MemoryRef):
        if resource.owner == agent.id:
            return Decision(True, "own memory")
        if caps.others:
            return Decision(True, "others capability")
        what = ("every agent's memory" if resource.owner is None else f"the memory of agent {resource.owner!r}"
                + (f" (collection {resource.collection!r})" if resource.collection else ""))
        if resource.owner is None or resource.collection is None or resource.granted is None:
            return Decision(False, f"{what} is not shared with agent {agent.id!r}")
        if resource.mode == "rw" and resource.granted != "rw":
            return Decision(False, f"{what} is shared read-only with agent {agent.id!r}")
        return Decision(True, f"{what} is shared {'read-write' if resource.granted == 'rw' else 'read-only'} "
                              f"with agent {agent.id!r}")
    return Decision(False, f"unknown resource type {type(resource).__name__}")
