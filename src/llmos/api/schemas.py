"""Request and response bodies of the REST API (``/api/v1``), as pydantic models.

They are the OpenAPI document: every route names its body and its answer here, so
the schema a client reads is the one the server validates. Bounds come from
``params`` (priorities) or are stated next to the field. Kernel values that the
kernel itself defines (a process, an agent, a timer) are described field by field
but allow extra keys, so a kernel that grows a field does not break clients.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmos import params

__all__ = [
    "Strict", "ErrorBody", "Health", "WhoAmI", "SyscallRequest", "SyscallResponse",
    "SpawnRequest", "KillRequest", "NiceRequest", "WaitRequest", "ProcessOut", "ProcessList",
    "RunRequest", "StepDecisionRequest", "RunOut", "RunPlan", "RunList", "QuotasIn", "CapabilitiesIn",
    "AgentCreateRequest", "AgentOut", "AgentList", "AgentCreated", "TokenRequest", "TokenOut",
    "TokenInfo", "TokenList", "ToolOut", "ToolList", "TimerRequest", "TimerOut", "TimerList",
    "MemoryPutRequest", "MemoryKey", "MemorySearchRequest", "MemoryItem", "MemorySearchOut", "SystemOut",
    "Ok", "Priority", "AllocRequest", "BindingOut", "AllocOut",
]

def Priority(default: int | None = None) -> Any:  # noqa: N802 - reads like a type
    return Field(default, ge=params.PRIORITY_MIN, le=params.PRIORITY_MAX,
                 description="nice-like: -20 most urgent .. 19 least; 0 default")


class Strict(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error, not a silent no-op."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """Answers carry every documented field and may carry more."""

    model_config = ConfigDict(extra="allow")


class ErrorBody(Open):
    error: str = Field(description="machine-readable code, e.g. invalid_argument, not_found")
    message: str = Field(description="one line for a person")
    field: str | None = Field(None, description="the request field that was wrong")
    expected: str | None = Field(None, description="what that field should have been")
    hint: str | None = Field(None, description="what to do about it")
    reason: str | None = None
    retry_after: float | None = Field(None, description="seconds to wait before retrying")


class Ok(Open):
    ok: bool = True


class Health(Open):
    ok: bool
    version: str
    pid: int = Field(description="process id of the daemon")
    uptime_s: float


class WhoAmI(Open):
    agent: str
    admin: bool


# ── syscalls ────────────────────────────────────────────────────────────────
class SyscallRequest(Strict):
    name: str = Field(min_length=1, max_length=64, description="e.g. proc.list, llm.generate")
    args: dict[str, Any] = Field(default_factory=dict)
    agent: str | None = Field(default=None, min_length=1, max_length=63,
                              description="admin token only: make the call as this agent (its "
                                          "capabilities, roots and quotas) on behalf of the person")


class SyscallResponse(Open):
    ok: bool
    value: Any = None


# ── processes ───────────────────────────────────────────────────────────────
class SpawnRequest(Strict):
    kind: Literal["llm", "tool", "run", "job"]
    spec: dict[str, Any] = Field(description="what to run; for llm the llm.generate arguments, "
                                             "for tool {tool, args}")
    priority: int | None = Priority()
    parent: int | None = Field(None, ge=1, description="pid of the run this is a step of")
    idempotency_key: str | None = Field(None, min_length=1, max_length=200,
                                       description="same key, same owner: the same process")
    confirmed: bool = Field(False, description="approve a risky tool call up front")


class KillRequest(Strict):
    reason: str | None = Field(None, max_length=500)


class NiceRequest(Strict):
    priority: int = Priority(0)


class WaitRequest(Strict):
    timeout_s: float | None = Field(None, ge=0, le=3600, description="seconds; none waits up to an hour")


class ProcessOut(Open):
    pid: int
    kind: str
    owner: str
    state: str = Field(description="new, queued, running, waiting, preempted, succeeded, failed, killed")
    priority: int
    parent: int | None = None
    reason: str = ""
    created_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    joules: float | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    timed_out: bool | None = Field(None, description="wait only: the timeout passed first")
    deduplicated: bool | None = Field(None, description="spawn only: an earlier process had this key")


class ProcessList(Open):
    processes: list[ProcessOut]


# ── runs ────────────────────────────────────────────────────────────────────
class RunRequest(Strict):
    request: str = Field(min_length=1, max_length=params.REQUEST_MAX_CHARS,
                         description="what to do, in plain language")
    workdir: str | None = Field(None, max_length=4096,
                                description="the agent's workspace (default: the daemon's state dir)")
    yes: bool = Field(False, description="approve risky steps up front")
    yes_all: bool = Field(False, description="also approve what yes does not: changing paths the request "
                          "did not name, commands filled in from content read during the run")
    model: str | None = Field(None, max_length=200)
    dry_run: bool = Field(False, description="plan only")
    priority: int | None = Priority()
    ask: bool = Field(True, description="a risky step waits for POST /runs/{id}/confirm or /reject "
                                        "(default); false: the run stops before it with status "
                                        "needs_confirmation and nothing changed (a non-interactive run)")


class StepDecisionRequest(Strict):
    step: int | None = Field(None, ge=0, description="the pending step (default: whichever is pending)")
    reason: str | None = Field(None, max_length=500)


class RunOut(Open):
    id: str
    request: str
    owner: str
    status: str = Field(description="planning, running, pending, succeeded, failed, denied, "
                                    "needs_confirmation, rejected, cancelled")
    created: float
    updated: float
    plan: list[dict[str, Any]] = Field(default_factory=list, description="the planned steps")
    steps: list[dict[str, Any]] = Field(default_factory=list, description="steps with their status")
    pending: dict[str, Any] | None = Field(None, description="the step waiting for a yes or no")
    answer: str | None = None
    explanation: Any = None
    error: dict[str, Any] | None = None


class RunPlan(Open):
    id: str
    status: str
    plan: list[dict[str, Any]]
    pending: dict[str, Any] | None = None


class RunList(Open):
    runs: list[RunOut]


# ── agents and tokens ───────────────────────────────────────────────────────
class QuotasIn(Strict):
    tokens_per_min: int | None = Field(None, ge=1)
    max_procs: int | None = Field(None, ge=1)
    cpu_s: float | None = Field(None, gt=0)
    memory_bytes: int | None = Field(None, ge=1 << 20)


class CapabilitiesIn(Strict):
    syscalls: list[str] = Field(default_factory=list, max_length=64,
                                description='names, "group.*" or "*"')
    read_roots: list[str] = Field(default_factory=list, max_length=32)
    write_roots: list[str] = Field(default_factory=list, max_length=32)
    network: bool = False
    others: bool = Field(False, description="may read, kill or renice other agents' processes")
    quotas: QuotasIn = Field(default_factory=QuotasIn)
    alloc_mode: Literal["throughput", "latency", "cost", "energy"] | None = Field(
        None, description="where the allocator places this agent's work; default: the config's mode")


class AgentCreateRequest(Strict):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    capabilities: CapabilitiesIn = Field(default_factory=CapabilitiesIn)
    issue_token: bool = Field(True, description="answer with a bearer token for the new agent")


class AgentOut(Open):
    id: str
    capabilities: dict[str, Any] = Field(default_factory=dict)
    created_s: float | None = None
    creator: str | None = None
    disabled: bool = Field(False, description="disabled: no tokens, no syscalls")


class AgentList(Open):
    agents: list[AgentOut]


class AgentCreated(AgentOut):
    token: str | None = Field(None, description="shown once; keep it")


class TokenRequest(Strict):
    label: str = Field("", max_length=200)
    scope: Literal["all", "metrics"] = Field("all", description="metrics: opens /metrics only (admin)")


class DisableRequest(Strict):
    reason: str | None = Field(None, max_length=200)


class AgentDisabled(Open):
    disabled: list[str] = Field(description="the agent and the agents it made")
    killed: list[int] = Field(default_factory=list, description="live processes ended")


class TokenOut(Open):
    id: str
    agent: str
    token: str = Field(description="shown once; keep it")


class TokenInfo(Open):
    id: str
    agent: str
    label: str = ""
    created: float
    scope: str = "all"


class TokenList(Open):
    tokens: list[TokenInfo]


# ── tools, timers, memory ───────────────────────────────────────────────────
class ToolOut(Open):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    risk: str | None = None


class ToolList(Open):
    tools: list[ToolOut]


class TimerRequest(Strict):
    message: str = Field(min_length=1, max_length=1000)
    in_s: float | None = Field(None, ge=0, le=10 * 365 * 86400, description="seconds from now")
    at: float | None = Field(None, ge=0, description="epoch seconds")
    every_s: float | None = Field(None, ge=1, le=10 * 365 * 86400, strict=True,
                                 description="repeat this often (seconds, at least 1); alone, the "
                                             "first reminder is every_s from now")


class TimerOut(Open):
    id: int
    owner: str | None = None
    due_s: float | None = None
    message: str = ""
    every_s: float | None = None


class TimerList(Open):
    timers: list[TimerOut]


class MemoryPutRequest(Strict):
    key: str = Field(min_length=1, max_length=200)
    value: str = Field(max_length=64 << 10)


class MemoryKey(Open):
    key: str


class MemorySearchRequest(Strict):
    query: str = Field(min_length=1, max_length=1000)
    limit: int = Field(10, ge=1, le=100)


class MemoryItem(Open):
    key: str
    value: str | None = None


class MemorySearchOut(Open):
    results: list[MemoryItem]


# ── system and alloc ────────────────────────────────────────────────────────
class SystemOut(Open):
    cpu: dict[str, Any] = Field(default_factory=dict)
    memory: dict[str, Any] = Field(default_factory=dict)
    gpus: list[dict[str, Any]] = Field(default_factory=list)
    energy: list[dict[str, Any]] = Field(default_factory=list,
                                         description="cumulative joules per domain, labelled "
                                                     "measured or modelled")
    engines: list[dict[str, Any]] = Field(default_factory=list)
    queue_depth: int = 0
    process_counts: dict[str, int] = Field(default_factory=dict)
    uptime_s: float = 0.0
    notes: list[str] = Field(default_factory=list)


class AllocRequest(Strict):
    """A problem in the allocator's document form (the same as ``llmos alloc FILE``)."""

    tasks: list[dict[str, Any]] = Field(min_length=1, max_length=5000,
                                        description="{name, kind, work, demand, needs, allowed, "
                                                    "deadline_s, optional, cost|delay|probability|energy}")
    resources: list[dict[str, Any]] = Field(min_length=1, max_length=500,
                                            description="{name, kind, capacity, provides, lanes, speed, "
                                                        "cost_per_unit, power_w, idle_w, efficiency, "
                                                        "max_power_w, p_success}")
    objective: str | dict[str, float] | None = Field(
        None, description="cost | delay | probability | energy | makespan (or a mode: throughput, "
                          "latency), or weights; default: the daemon's alloc_mode")
    horizon_s: float | None = Field(None, gt=0)
    notes: list[str] = Field(default_factory=list, max_length=50)
    time_limit_s: float = Field(1.0, gt=0, le=30, description="solver time limit (greedy fallback after)")


class BindingOut(Open):
    resource: str
    constraint: str
    used: float | None = None
    limit: float | None = None
    unit: str = ""
    shadow_price: float | None = None
    text: str = ""


class AllocOut(Open):
    assignment: dict[str, str | None]
    objective: dict[str, float]
    value: float | None = None
    totals: dict[str, float | None] = Field(default_factory=dict)
    binding: list[BindingOut] = Field(default_factory=list)
    slack: list[BindingOut] = Field(default_factory=list)
    method: str
    optimal: bool
    bound: float | None = None
    gap: float | None = None
    solve_s: float
    explanation: str = ""
    notes: list[str] = Field(default_factory=list)
