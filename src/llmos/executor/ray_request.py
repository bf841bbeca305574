"""What the Ray executor asks of Ray, decided without Ray: routes, resource requests, retries.

Map:
- ``RayRequest``: the options of one Ray task (``num_cpus``, ``num_gpus``, ``memory``
  in bytes, a name) — what ``RemoteFunction.options`` is given.
- ``request_for(work)``: a tool or job ``Work`` -> its ``RayRequest``, from the
  allocator's placement (``Work.device``) and the spec's demand.
- ``tool_route(tool, spec, builtin)``: None when a tool step runs as a Ray task, else
  the reason it runs in the kernel's process (see the NOTE).
- ``may_retry(spec, retries)``: whether a step whose worker died is run again.
- ``parse_address(value)``: ``--ray``'s value checked: ``auto``, or ``HOST:PORT``.

NOTE (which steps go to Ray). A tool step runs on a Ray worker when the worker runs
the very code the kernel would (a builtin tool, whose function is the registry's)
and nothing it changes must be recorded on the head: programs (kind ``code``:
``python.run``, ``shell.run``; the head keeps their workdir's versions around the
task, as the local executor does) and read-only calls. File writes stay on the head,
where undo keeps the previous bytes; the assistant's tools (timers, todo, calendar)
need the kernel's hooks and stay too; a tool from elsewhere (MCP, a test's registry)
may not exist on the nodes. Every step that runs on a worker goes through
``ToolRegistry.call`` there, so the sandbox applies on every node.

Retries follow idempotency: Ray itself never re-runs a task (``max_retries=0``); when
a worker or node dies mid-task the executor runs an idempotent step again, up to
``RAY_RETRIES`` times, and fails any other step with the reason (it may have run in part).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmos.errors import ConfigError

__all__ = ["RayRequest", "request_for", "memory_limit", "tool_route", "may_retry", "parse_address", "RAY_RETRIES",
           "LOCAL_KINDS"]

RAY_RETRIES = 2                 # re-runs of an idempotent step whose worker or node died
LOCAL_KINDS = ("assistant",)    # tool kinds that need the kernel's hooks (timers, the person's lists)
TOOL_CPUS = 1.0                 # CPUs a tool step asks of Ray (a sandboxed program is one process)


@dataclass(frozen=True)
class RayRequest:
    """Options of one Ray task (``ray.remote(...).options(**as_options())``)."""

    num_cpus: float = TOOL_CPUS     # logical CPUs held while the task runs
    num_gpus: float = 0.0           # GPUs held (Ray sets CUDA_VISIBLE_DEVICES on the worker)
    memory: int | None = None       # bytes of the node's memory resource held; None: not asked
    name: str = "llmos"             # the task's name in Ray's tools (``llmos-pid-N``)

    def as_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "name": self.name,
                               "max_retries": 0, "retry_exceptions": False}
        if self.memory is not None:
            out["memory"] = self.memory
        return out


def _demand(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    d = spec.get("demand") or {}
    return d if isinstance(d, Mapping) else {}


def _positive(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        return None
    return float(v)


def job_gpus(spec: Mapping[str, Any]) -> float:
    """GPUs a job spec asks for: ``demand.gpus`` when given, else one for ``device`` gpu / gpu:N."""
    n = _positive(_demand(spec).get("gpus"))
    if n is not None:
        return n
    device = spec.get("device")
    return 1.0 if isinstance(device, str) and device.startswith("gpu") else 0.0


def memory_limit(work: Any) -> int | None:
    """Bytes the step's program may use: the tighter of the agent's memory quota and the
    allocator's grant (None: neither set). Its CPU ids and GPU indices name this machine's
    devices, so on a node Ray's own assignment stands in for them."""
    grant = getattr(work, "grant", None)
    limits = [m for m in (work.memory_bytes, getattr(grant, "memory_bytes", None))
              if isinstance(m, int) and m > 0]
    return min(limits) if limits else None


def request_for(work: Any) -> RayRequest:
    """The Ray task options of a tool or job ``work`` (a ``Work``).

    tool: one CPU; ``memory_limit`` as the memory request when there is one.
    job:  ``demand.cores`` CPUs (default 1), ``job_gpus`` GPUs (the allocator's
          ``gpu:N`` placement or ``device: gpu`` asks one), ``demand.memory_bytes``.
    """
    name = f"llmos-pid-{work.pid}"
    memory = memory_limit(work)
    if work.kind == "tool":
        return RayRequest(num_cpus=TOOL_CPUS, memory=memory, name=name)
    if work.kind == "job":
        demand = _demand(work.spec)
        cores = _positive(demand.get("cores")) or 1.0
        gpus = job_gpus(work.spec)
        if gpus == 0.0 and isinstance(work.device, str) and "gpu" in work.device.split(":"):
            gpus = 1.0
        mem = _positive(demand.get("memory_bytes"))
        return RayRequest(num_cpus=cores, num_gpus=gpus, memory=int(mem) if mem else memory, name=name)
    raise ValueError(f"a {work.kind} process is not a Ray task")


def tool_route(tool: Any, spec: Mapping[str, Any], builtin: Any) -> str | None:
    """None: run this tool step on a Ray worker; else why it runs in the kernel's process.
    ``builtin``: the builtin tool of that name (None when there is none)."""
    if builtin is None or getattr(builtin, "fn", None) is not getattr(tool, "fn", object()):
        return "not a builtin tool: its code may not be on the nodes"
    kind = getattr(tool, "kind", "")
    if kind in LOCAL_KINDS:
        return f"{kind} tools use the kernel's hooks"
    if kind == "code":
        return None
    if spec.get("risk", "read") == "read":
        return None
    return "changes files: made on the head, where undo keeps the previous versions"


def may_retry(spec: Mapping[str, Any], retries: int) -> bool:
    """Whether a step whose worker died (after ``retries`` re-runs) is run again."""
    return bool(spec.get("idempotent")) and retries < RAY_RETRIES


def parse_address(value: str | None) -> str | None:
    """``--ray``'s value: None (off), ``auto``, or ``HOST:PORT``. ConfigError naming it."""
    if value is None:
        return None
    v = value.strip()
    if v == "auto":
        return v
    if v.startswith("ray://"):
        raise ConfigError(f"--ray: {value!r} is a Ray Client address; LLM OS joins the cluster as a "
                          "driver: give the head's GCS address HOST:PORT (port 6379 by default)",
                          hint="e.g. llmos serve --ray 10.0.0.5:6379, or --ray auto")
    host, colon, port = v.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--ray: expected auto or HOST:PORT, got {value!r}",
                          hint="e.g. llmos serve --ray auto (connect or start a local head) or "
                               "--ray 10.0.0.5:6379")
    return v
