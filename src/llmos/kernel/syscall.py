"""Syscall rows and ``dispatch``: the only door into the kernel.

Map:
- ``Syscall``: one row — name, argument schema (a pydantic model), the capability it
  needs, the handler (a thin decoder in ``sys_*.py``), and a one-line doc. The table of
  every row is ``table.TABLE``; a kernel holds it as ``kernel.syscalls``.
- ``KernelView``: the kernel as ``dispatch`` and the decoders use it (``core.Kernel`` is
  one); named here so that nothing below the facade imports ``core``.
- ``Call``: one call in flight — the agent, the syscall, the resources it touched, and
  whether it is made on behalf of the person (``person``); ``call.check(resource)`` asks
  ``access.may`` and raises the denial; ``call.require(capability)`` asks for one of
  ``CAPABILITIES`` (rights that are not syscalls) the same way.
- ``CAPABILITIES``: capability names an agent may hold besides syscalls (``may.risky``,
  ``may.urgent``, ``mcp.<tool>``); ``agent.create`` accepts them like syscall names, and
  only ``*``, ``may.*`` / ``mcp.*`` or the name itself grants them.
- ``dispatch(kernel, agent_id, name, args, sink=None, started=None, person=True) -> SyscallResult``: look up
  in ``kernel.syscalls`` -> capability -> validate -> handler -> audit. Never raises (except cancellation):
  any failure becomes ``SyscallResult(ok=False, error=...)``, and every call — allowed
  or denied, with the reason — is written to the audit log.

``person``: the API passes ``person=True`` only for the admin token (the person at the
CLI or the dashboard); an agent's token is never the person. In-process callers (the
CLI's own kernel, the daemon's runner after the person's yes) are the person.

Adding a syscall touches three places: its args model and handler in a ``sys_*``
module, and one ``Syscall`` row in that module's ``ROWS`` (``table.py`` lists the modules).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pydantic

from llmos.errors import (
    InvalidArgument,
    KernelError,
    LLMOSError,
    NeedsConfirmation,
    PermissionDenied,
    QuotaExceeded,
    UnknownSyscall,
    map_foreign,
)
from llmos.kernel.access import (
    Agent,
    CapsRef,
    MemoryRef,
    NetRef,
    PathRef,
    ProcRef,
    Resource,
    UsageRef,
    may,
)
from llmos.kernel.result import SyscallResult

if TYPE_CHECKING:
    from llmos.clock import Clock
    from llmos.config import Config
    from llmos.kernel.agents import AgentRegistry
    from llmos.kernel.engines import EngineSet
    from llmos.kernel.memory import Memory
    from llmos.kernel.process import Process, ProcessTable
    from llmos.kernel.storage import Journal
    from llmos.kernel.timers import Timers

__all__ = ["Syscall", "Call", "KernelView", "CAPABILITIES", "CAP_GROUP", "MCP_CAP_GROUP", "dispatch", "describe",
           "is_capability"]

log = logging.getLogger(__name__)

Handler = Callable[["KernelView", "Call", Any], Awaitable[Any]]

# Rights that are not syscalls, held in the same ``syscalls`` set (so ``*`` and
# ``group.*`` grant them, and ``agent.create`` hands out only what the creator holds).
# Their group ``may`` is no syscall group, so ``tool.*`` or ``proc.*`` never grants them.
CAPABILITIES: dict[str, str] = {
    "may.risky": "run destructive, exec and network tool steps (each still needs the person's yes)",
    "may.urgent": "take a priority below 0 (more urgent than the default), like a negative Unix nice",
}
CAP_GROUP = "may"
MCP_CAP_GROUP = "mcp"   # ``mcp.<server>.<tool>`` or ``mcp.*``: call a mounted MCP tool without path arguments


def is_capability(name: str) -> bool:
    """A capability name that is not a syscall: one of ``CAPABILITIES`` or ``mcp.<tool>``."""
    return name in CAPABILITIES or (name.startswith(MCP_CAP_GROUP + ".") and len(name) > 4)


class KernelView(Protocol):
    """The kernel as ``dispatch`` and the ``sys_*`` decoders use it; ``core.Kernel`` is one.
    The process calls are ``procops.ProcessManager``'s, under the same names (``_end`` is
    its ``end``); besides these the decoders read only ``versions`` (with ``getattr``: a
    kernel may keep no file versions)."""

    closed: bool
    syscalls: Mapping[str, Syscall]                     # name -> row (table.TABLE)
    config: Config
    clock: Clock
    journal: Journal
    agents: AgentRegistry
    procs: ProcessTable
    memory: Memory
    timers: Timers
    engine_set: EngineSet
    tools: Any                                          # ToolRegistry, or None
    spawn: Callable[..., Awaitable[tuple[Process, Any]]]
    result: Callable[..., Awaitable[Any]]
    wait: Callable[..., Awaitable[tuple[Process, bool]]]
    kill: Callable[..., Awaitable[Process]]
    nice: Callable[..., Awaitable[Process]]
    confirm: Callable[..., Awaitable[Process]]
    exit: Callable[..., Awaitable[Process]]
    process: Callable[..., Process]
    view: Callable[..., dict[str, Any]]
    _end: Callable[..., None]
    usage_of: Callable[[str], dict[str, Any]]
    check_model: Callable[[str], None]


@dataclass(frozen=True)
class Syscall:
    name: str                          # "group.verb"
    args: type[pydantic.BaseModel]     # argument schema (extra fields forbidden)
    capability: str                    # what the agent's syscall set must allow
    handler: Handler                   # thin decoder: (kernel, call, args) -> JSON value
    doc: str = ""                      # one line for `llmos help` / the API schema


class Call:
    """One syscall in flight. ``resources`` and ``reason`` end up in the audit row."""

    __slots__ = ("agent", "name", "sink", "started", "resources", "reason", "person")

    def __init__(self, agent: Agent, name: str, sink: Callable[[Any], None] | None = None,
                 started: Callable[[int], None] | None = None, *, person: bool = True) -> None:
        self.agent = agent
        self.name = name
        self.person = person                   # made on behalf of the person: may approve
        self.sink = sink                       # token stream for llm.generate(stream=True)
        self.started = started                 # told the pid once the call's process exists
        self.resources: list[str] = []         # what was checked, in order
        self.reason = "allowed"                # the last access decision's reason

    def check(self, resource: Resource) -> None:
        """Ask ``may``; raise PermissionDenied / QuotaExceeded with its reason if refused."""
        d = may(self.agent, self.name, resource)
        if resource is not None:
            self.resources.append(describe(resource))
        self.reason = d.reason
        if not d.allowed:
            if d.quota:
                raise QuotaExceeded(d.reason, hint="wait, or ask for a larger quota")
            raise PermissionDenied(d.reason, reason=d.reason)

    def require(self, capability: str, why: str = "") -> None:
        """Refuse unless the agent holds ``capability`` (a name in its syscall set)."""
        d = may(self.agent, capability)
        self.resources.append(f"capability {capability}")
        if not d.allowed:
            reason = (f"agent {self.agent.id!r} lacks the {capability!r} capability"
                      + (f" ({why})" if why else ""))
            self.reason = reason
            raise PermissionDenied(reason, reason=reason,
                                   hint=f"an agent holding {capability!r} (the admin) may grant it "
                                        "at agent.create")
        self.reason = f"{capability} capability"


def describe(resource: Resource) -> str:
    if isinstance(resource, ProcRef):
        return f"pid {resource.pid} (owner {resource.owner})"
    if isinstance(resource, PathRef):
        return f"{resource.path} ({resource.mode})"
    if isinstance(resource, NetRef):
        return f"network {resource.what}".strip()
    if isinstance(resource, UsageRef):
        return f"usage procs={resource.live_procs} tokens/min={resource.tokens_last_min}"
    if isinstance(resource, CapsRef):
        return "capabilities"
    if isinstance(resource, MemoryRef):
        return f"memory {resource.owner or '*'}/{resource.collection or '*'} ({resource.mode})"
    return ""


def _pydantic_error(name: str, exc: pydantic.ValidationError) -> InvalidArgument:
    err = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in err.get("loc", ())) or "args"
    msg = str(err.get("msg", "invalid value"))
    expected = msg[len("Input should be "):] if msg.startswith("Input should be ") else msg
    got = err.get("input")
    shown = repr(got)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    if err.get("type") == "missing":
        return InvalidArgument(f"{name}: {field}: required field is missing", field=field,
                               expected="a value")
    if err.get("type") == "extra_forbidden":
        return InvalidArgument(f"{name}: {field}: unknown field", field=field,
                               expected="one of the syscall's fields")
    return InvalidArgument(f"{name}: {field}: expected {expected}, got {shown}", field=field,
                           expected=expected)


_DENIALS = (PermissionDenied, QuotaExceeded, UnknownSyscall, NeedsConfirmation)


async def dispatch(kernel: KernelView, agent_id: str, name: str, args: Any, *,
                   sink: Callable[[Any], None] | None = None,
                   started: Callable[[int], None] | None = None,
                   person: bool = True) -> SyscallResult:
    call: Call | None = None
    error: LLMOSError | None = None
    value: Any = None
    try:
        if kernel.closed:
            raise KernelError("the kernel is shut down", hint="boot it again")
        row = kernel.syscalls.get(name) if isinstance(name, str) else None
        if row is None:
            raise UnknownSyscall(f"unknown syscall {name!r}",
                                 hint="known: " + ", ".join(sorted(kernel.syscalls)))
        agent = kernel.agents.find(agent_id)
        if agent is None:
            raise PermissionDenied(f"unknown agent {agent_id!r}", reason="no such agent")
        if agent.id != "root" and _disabled(kernel, agent.id):
            raise PermissionDenied(f"agent {agent.id!r} is disabled", reason="agent disabled")
        call = Call(agent, name, sink, started, person=bool(person))
        _check_cap(call, row.capability)
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise InvalidArgument(f"{name}: args: expected an object, got {type(args).__name__}",
                                  field="args", expected="object")
        try:
            parsed = row.args.model_validate(args)
        except pydantic.ValidationError as e:
            raise _pydantic_error(name, e) from None
        value = await row.handler(kernel, call, parsed)
    except asyncio.CancelledError:
        raise
    except LLMOSError as e:
        error = e
    except Exception as e:   # a bug in a handler: reported as a value, logged in full
        log.exception("syscall %s failed", name)
        error = map_foreign(e, context=str(name)[:80])
    reason = call.reason if call is not None else ""
    if error is not None:
        reason = getattr(error, "reason", None) or error.message
    try:
        kernel.journal.audit(kernel.clock.time(), agent_id if isinstance(agent_id, str) else repr(agent_id),
                             name if isinstance(name, str) else repr(name),
                             "; ".join(call.resources) if call is not None else None,
                             error is None or not isinstance(error, _DENIALS), reason,
                             None if error is None else error.code)
    except LLMOSError:   # journal closed during shutdown: the result still goes back
        pass
    if error is not None:
        return SyscallResult.failure(error, name if isinstance(name, str) else "")
    return SyscallResult.success(value, name)


def _disabled(kernel: KernelView, agent_id: str) -> bool:
    """Whether the token store marks ``agent_id`` disabled (as last read: no disk access)."""
    from llmos.kernel.tokens import shared

    home = getattr(getattr(kernel, "config", None), "home", None)
    return home is not None and shared(home).is_disabled(agent_id, fresh=False)


def _check_cap(call: Call, capability: str) -> None:
    d = may(call.agent, capability)
    call.reason = d.reason
    if not d.allowed:
        raise PermissionDenied(d.reason, reason=d.reason)

