"""The executor interface: runs what a scheduler's Plan says, returns an Outcome.

Map:
- ``Work``: everything needed to run one process (what the kernel hands over when a
  pid is claimed); the executor never sees the process table or the kernel.
- ``Grant``: what the allocator gave a process (CPU ids, memory, GPUs); the executor
  enforces it on the child a tool starts (affinity, cgroup v2 or RLIMIT_AS,
  ``CUDA_VISIBLE_DEVICES``) and hands it to a job that takes ``grant=``.
- ``Result``: how one process ended (value or error, usage).
- ``Outcome``: what happened during one ``run(plan)`` — ``finished`` and ``usage`` (the
  fields a scheduler's ``update`` reads), plus ``results`` and ``preempted``.
- ``Executor``: ``run(plan)`` starts ``plan.run`` (claiming each pid first), pauses
  ``plan.preempt``, then returns once something finished or ``wake()`` was called.
- ``request_from_spec``: an llm process spec -> a validated ``GenerationRequest``
  (the kernel uses it at admission, so a bad spec is refused before it is queued).
- ``request_id_for(pid, attempt)`` / ``pid_of_request(request_id)``: the engine
  request id of one attempt of an llm process, and back (the kernel's step-policy
  wrapper uses it to renice a running generation).

Implementations: ``local.LocalExecutor`` (this process: engines + a tool thread pool);
``ray.RayExecutor`` (the same, with programs, read-only tool steps and jobs as Ray tasks;
imported only when ``config.ray`` names a cluster).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from llmos.errors import InvalidArgument, InvalidRequest, LLMOSError
from llmos.llm.base import Chunk, GenerationRequest, SamplingParams

__all__ = ["Work", "Grant", "Result", "Outcome", "Executor", "PlanLike", "Claim", "TokenGuard", "request_from_spec",
           "request_id_for", "pid_of_request"]

# Called by the executor before it delivers each generated token of an llm process, with
# the number of tokens (1). None: deliver it (the kernel has counted it); a reason: stop
# the generation there (the token is dropped) and fail the process with QuotaExceeded.
TokenGuard = Callable[[int], "str | None"]


def request_id_for(pid: int, attempt: int) -> str:
    """The engine request id of attempt ``attempt`` of llm process ``pid``."""
    return f"pid{pid}.{attempt}"


def pid_of_request(request_id: str) -> int | None:
    """The pid a ``request_id_for`` id belongs to; None for any other request id."""
    head, dot, attempt = request_id.partition(".")
    if not (dot and head.startswith("pid") and head[3:].isdigit() and attempt.isdigit()):
        return None
    return int(head[3:])


class PlanLike(Protocol):
    run: list[int]          # pids to start or resume, in order
    preempt: list[int]      # running pids to pause


@dataclass(frozen=True)
class Grant:
    """What a placed process was given. Built by the kernel's Placer; enforced by the executor."""

    cores: tuple[int, ...] | None = None    # CPU ids its child may run on (sched_setaffinity); None: any
    memory_bytes: int | None = None         # memory limit of its child; None: the sandbox's own
    gpus: tuple[str, ...] | None = None     # GPU indices for CUDA_VISIBLE_DEVICES; (): none; None: unset

    def env(self) -> dict[str, str]:
        """Environment a child started for it should get."""
        return {} if self.gpus is None else {"CUDA_VISIBLE_DEVICES": ",".join(self.gpus)}

    def describe(self) -> str:
        parts = []
        if self.cores is not None:
            parts.append(f"cores {_ranges(self.cores)}")
        if self.memory_bytes is not None:
            parts.append(f"memory {self.memory_bytes / (1 << 20):.0f} MiB")
        if self.gpus is not None:
            parts.append(f"GPUs {','.join(self.gpus)}" if self.gpus else "no GPUs")
        return ", ".join(parts) or "nothing"


def _ranges(ids: tuple[int, ...]) -> str:
    """(0, 1, 2, 5) -> "0-2,5"."""
    out: list[str] = []
    for i in sorted(ids):
        if out and out[-1].split("-")[-1] == str(i - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{i}"
        else:
            out.append(str(i))
    return ",".join(out)


@dataclass
class Work:
    """One claimed process. Built by the kernel; read-only for the executor."""

    pid: int
    kind: str                               # llm | tool | job
    owner: str                              # agent id
    priority: int                           # nice-like -20..19
    spec: dict[str, Any]                    # the process spec (see the kernel's admission)
    attempt: int = 1                        # 1 on the first run, more after recovery/preemption
    idempotency_key: str | None = None      # carried into the tool context
    workdir: str | None = None              # tool working directory (resolved)
    read_roots: tuple[str, ...] = ()        # the agent's capabilities, for the tool context
    write_roots: tuple[str, ...] = ()
    network: bool = False
    memory_bytes: int | None = None         # per-process memory limit (agent quota)
    sink: Callable[[Chunk], None] | None = None          # streamed tokens go here
    set_timer: Callable[[float, str], Any] | None = None  # for the timer tool
    call: Callable[[], Any] | None = None   # job: the callable to run, arguments bound
    engine: str | None = None               # llm: the engine key the allocator chose (None: by model)
    device: str | None = None               # job whose spec named a device: the one it was placed on
    #                                         ("gpu:0"); given to the callable as ``device=`` when it
    #                                         takes that parameter
    on_tokens: TokenGuard | None = None     # llm: the agent's tokens_per_min guard
    began: Callable[[], None] | None = None  # tool/job: call (blocking) right before the work
    #                                         itself starts; journals that this attempt began
    grant: Grant | None = None              # tool/job: what the allocator gave it (enforced on its
    #                                         sandboxed child; passed to a job taking ``grant=``)
    node: str | None = None                 # tool/job: the Ray node id the allocator placed it on
    #                                         (the Ray executor asks Ray for it; None: Ray chooses)


@dataclass
class Result:
    pid: int
    ok: bool
    value: Any = None                       # JSON-able on success
    error: LLMOSError | None = None         # on failure
    exc: BaseException | None = None        # the raw exception a job raised (in-process API)
    tokens_in: int = 0                      # prompt tokens
    tokens_out: int = 0                     # generated tokens
    cpu_s: float = 0.0                      # CPU seconds of tool/job code (its thread)
    wall_s: float = 0.0                     # seconds from start to end of this attempt
    setup_s: float = 0.0                    # of which before the work itself began (an engine loading)
    note: str = ""                          # where it ran, when not where it was placed (the end reason)


@dataclass
class Outcome:
    finished: set[int] = field(default_factory=set)       # pids that ended this run
    usage: dict[int, tuple[int, float]] = field(default_factory=dict)  # pid -> (tokens, s) this run
    results: dict[int, Result] = field(default_factory=dict)            # pid -> how it ended
    preempted: set[int] = field(default_factory=set)      # pids paused this run (state kept)


# The kernel's claim: given pids to start, mark them running (durably) and return their
# Work; a pid missing from the answer was killed meanwhile and must not run.
Claim = Callable[[Sequence[int]], Awaitable[dict[int, Work]]]


class Executor(abc.ABC):
    @abc.abstractmethod
    async def run(self, plan: PlanLike) -> Outcome:
        """Start/resume ``plan.run``, pause ``plan.preempt``; return what happened."""

    @abc.abstractmethod
    def cancel(self, pid: int) -> bool:
        """Stop a running process now; its result is discarded. False if not running."""

    @abc.abstractmethod
    def running(self) -> set[int]:
        """Pids started and not yet reported finished (paused ones included)."""

    def generated(self, pid: int) -> int:
        """Tokens generated so far by a running llm process's current attempt (0 if none):
        what a kill must still charge, since a cancelled attempt reports no result."""
        return 0

    @abc.abstractmethod
    def wake(self) -> None:
        """Make a pending ``run`` return early (new work arrived)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Cancel everything still running."""


def _num(spec: dict, key: str, default: Any) -> Any:
    v = spec.get(key, default)
    return default if v is None else v


def request_from_spec(spec: dict[str, Any], *, owner: str, priority: int,
                      request_id: str | None = None) -> GenerationRequest:
    """Build and validate the engine request for an llm process spec.

    Spec keys: messages | prompt, max_tokens, temperature, top_p, top_k, seed, stop,
    json_schema, grammar, model, prefix_messages | prefix_chars. Raises InvalidArgument
    naming the field.
    """
    if not isinstance(spec, dict):
        raise InvalidArgument("spec: expected an object", field="spec", expected="object")
    known = {"messages", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed",
             "stop", "json_schema", "grammar", "model", "prefix_messages", "prefix_chars"}
    extra = sorted(set(spec) - known)
    if extra:
        raise InvalidArgument(f"spec.{extra[0]}: unknown field for an llm process",
                              field=f"spec.{extra[0]}", expected=", ".join(sorted(known)))
    stop = spec.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    messages = spec.get("messages")
    try:
        params = SamplingParams(
            temperature=_num(spec, "temperature", 0.0), top_p=_num(spec, "top_p", 1.0),
            top_k=_num(spec, "top_k", 0), seed=spec.get("seed"),
            max_tokens=_num(spec, "max_tokens", SamplingParams.max_tokens),
            stop=tuple(stop) if isinstance(stop, (list, tuple)) else stop)
        kw: dict[str, Any] = {}
        if request_id:
            kw["request_id"] = request_id
        req = GenerationRequest(
            messages=tuple(messages) if isinstance(messages, list) else messages,
            prompt=spec.get("prompt"), params=params, json_schema=spec.get("json_schema"),
            grammar=spec.get("grammar"), priority=priority, owner=owner,
            model=spec.get("model"), prefix_messages=spec.get("prefix_messages"),
            prefix_chars=spec.get("prefix_chars"), **kw)
        req.validate()
    except InvalidRequest as e:
        msg = f"spec.{e.message}" if e.field and e.message.startswith(e.field) else f"spec: {e.message}"
        raise InvalidArgument(msg,
                              field=f"spec.{e.field}" if e.field else "spec",
                              expected=e.expected) from None
    except TypeError as e:
        raise InvalidArgument(f"spec: {e}", field="spec", expected="valid generation fields") from None
    if req.model is not None and not isinstance(req.model, str):
        raise InvalidArgument("spec.model: expected a model name", field="spec.model",
                              expected="string")
    if req.params.seed is not None and (isinstance(req.params.seed, bool) or
                                        not isinstance(req.params.seed, int)):
        raise InvalidArgument("spec.seed: expected an integer", field="spec.seed", expected="integer")
    return req
