"""The Engine interface: the LLM OS's "CPU".

Map:
- ``SamplingParams`` / ``GenerationRequest``: what a caller asks for (validated).
- ``Chunk`` / ``Usage`` / ``Completion``: what comes back (stream, then result).
- ``GenerationHandle``: async iterator of Chunks + ``await result()`` + ``cancel()``;
  thread-safe to feed, so an engine may step on its own thread.
- ``SeqView`` / ``StepBudget`` / ``StepDecision`` / ``StepPolicy``: the hook through
  which the kernel's scheduler decides, every step, which sequences advance, which
  pause (keep KV) and which are swapped out (KV snapshotted, cells freed).
- ``FifoPolicy``: the policy an engine uses until the kernel installs its own.
- ``Engine``: the abstract driver; implementations are ``llamacpp.LlamaCppEngine``
  (embedded), ``openai.OpenAIEngine`` (remote) and ``fake.FakeEngine`` (tests).

NOTE (step model): an engine repeatedly builds a ``SeqView`` of every live
sequence, asks ``policy.decide(views, budget)``, applies the decision
(pauses/swaps first, then one batch that advances each chosen sequence by one
decode token or one prefill chunk), and delivers tokens to handles. A sequence
never advances unless the policy listed it in ``run``; the policy may list at
most ``budget.max_active`` sequences. Finished sequences leave between steps,
new ones join between steps (continuous batching).
"""

from __future__ import annotations

import abc
import asyncio
import enum
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from llmos import params as P
from llmos.errors import Cancelled, EngineError, InvalidRequest, LLMOSError
from llmos.types import Message, check_priority

__all__ = [
    "SamplingParams", "GenerationRequest", "Chunk", "Usage", "Completion",
    "GenerationHandle", "SeqState", "SeqView", "StepBudget", "StepDecision",
    "StepPolicy", "FifoPolicy", "Capabilities", "EngineStats", "Engine", "FinishReason",
]

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0          # 0: greedy
    top_p: float = 1.0
    top_k: int = 0                    # 0: off
    seed: int | None = None
    max_tokens: int = P.ENGINE_MAX_TOKENS_DEFAULT
    stop: tuple[str, ...] = ()

    def validate(self) -> None:
        if not isinstance(self.temperature, (int, float)) or not 0.0 <= self.temperature <= 5.0:
            raise InvalidRequest(f"temperature: expected a number in [0, 5], got {self.temperature!r}",
                                 field="temperature", expected="number in [0, 5]")
        if not isinstance(self.top_p, (int, float)) or not 0.0 < self.top_p <= 1.0:
            raise InvalidRequest(f"top_p: expected a number in (0, 1], got {self.top_p!r}",
                                 field="top_p", expected="number in (0, 1]")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise InvalidRequest(f"top_k: expected a non-negative integer, got {self.top_k!r}",
                                 field="top_k", expected="integer >= 0")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise InvalidRequest(f"max_tokens: expected a positive integer, got {self.max_tokens!r}",
                                 field="max_tokens", expected="integer >= 1")
        if not all(isinstance(s, str) and s for s in self.stop) or len(self.stop) > 8:
            raise InvalidRequest("stop: expected at most 8 non-empty strings",
                                 field="stop", expected="list of up to 8 non-empty strings")


@dataclass(frozen=True)
class GenerationRequest:
    """One generation. Exactly one of ``messages`` (chat) or ``prompt`` (raw text)."""

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    json_schema: dict[str, Any] | None = None   # constrain output to this JSON schema
    grammar: str | None = None                  # or to this grammar (lark syntax, llguidance)
    priority: int = P.PRIORITY_DEFAULT     # nice-like hint: -20 urgent .. 19 idle
    owner: str = "root"                         # agent id, for fair share and accounting
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    model: str | None = None
    # A hint, never a change of meaning: the first ``prefix_messages`` messages (chat) or the
    # first ``prefix_chars`` characters (prompt) are a fixed prefix that many requests repeat,
    # worth keeping evaluated (the embedded engine keeps its KV and persists it to disk).
    # None or 0: no marked prefix. Engines that cannot use it ignore it.
    prefix_messages: int | None = None
    prefix_chars: int | None = None

    def validate(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise InvalidRequest("expected exactly one of 'messages' or 'prompt'",
                                 field="messages", expected="a non-empty list of messages, or a prompt")
        if self.messages is not None:
            if not self.messages:
                raise InvalidRequest("messages: expected at least one message",
                                     field="messages", expected="non-empty list")
            for i, m in enumerate(self.messages):
                if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
                    raise InvalidRequest(f"messages[{i}].role: expected system, user, assistant or tool",
                                         field=f"messages[{i}].role",
                                         expected="system | user | assistant | tool")
                if not isinstance(m.get("content", ""), str):
                    raise InvalidRequest(f"messages[{i}].content: expected a string",
                                         field=f"messages[{i}].content", expected="string")
        elif not isinstance(self.prompt, str) or not self.prompt:
            raise InvalidRequest("prompt: expected a non-empty string", field="prompt",
                                 expected="non-empty string")
        self._validate_prefix()
        if self.json_schema is not None and self.grammar is not None:
            raise InvalidRequest("expected at most one of 'json_schema' or 'grammar'",
                                 field="json_schema", expected="either a schema or a grammar")
        if self.json_schema is not None and not isinstance(self.json_schema, dict):
            raise InvalidRequest("json_schema: expected a JSON object", field="json_schema",
                                 expected="object")
        try:
            check_priority(self.priority)
        except ValueError as e:
            raise InvalidRequest(str(e), field="priority",
                                 expected=f"integer in [{P.PRIORITY_MIN}, {P.PRIORITY_MAX}]") from None
        self.params.validate()

    def _validate_prefix(self) -> None:
        for name, bound_to, n in (("prefix_messages", "messages", len(self.messages or ())),
                                  ("prefix_chars", "prompt", len(self.prompt or ""))):
            k = getattr(self, name)
            if k is None:
                continue
            if getattr(self, bound_to) is None:
                raise InvalidRequest(f"{name}: only for requests with '{bound_to}'", field=name,
                                     expected=f"omitted, or given with {bound_to}")
            if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
                raise InvalidRequest(f"{name}: expected an integer in [0, {n}] (the length of "
                                     f"{bound_to}), got {k!r}", field=name, expected=f"integer in [0, {n}]")


@dataclass(frozen=True)
class Chunk:
    text: str                # decoded text of this token (may be "" mid-UTF-8)
    token_id: int | None     # None for engines that do not expose ids (remote)
    index: int               # 0-based position among generated tokens


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0          # prompt tokens served from a shared prefix
    ttft_s: float = 0.0             # submit → first generated token
    decode_s: float = 0.0           # first token → last token
    total_s: float = 0.0            # submit → finished
    preemptions: int = 0            # times the policy paused or swapped this sequence

    def to_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Completion:
    request_id: str
    text: str
    finish_reason: FinishReason
    usage: Usage
    model: str = ""


class GenerationHandle:
    """Stream + result of one request. Engines feed it with ``push``/``finish``/``fail``,
    from any thread; consumers ``async for chunk in handle`` and ``await handle.result()``."""

    _END = object()

    def __init__(self, request: GenerationRequest, engine: Engine | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.request = request
        self.request_id = request.request_id
        self._engine = engine
        self._loop = loop or asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._done: asyncio.Future = self._loop.create_future()
        self._thread = threading.get_ident()
        self.submitted_at = time.monotonic()

    # ── producer side (engine) ─────────────────────────────────────────────
    def _call(self, fn, *args) -> None:
        if threading.get_ident() == self._thread:
            fn(*args)
        else:
            try:
                self._loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # loop closed: nobody is listening any more
                pass

    def push(self, chunk: Chunk) -> None:
        self._call(self._queue.put_nowait, chunk)

    def finish(self, completion: Completion) -> None:
        self._call(self._finish, completion)

    def fail(self, exc: BaseException) -> None:
        self._call(self._fail, exc)

    def _finish(self, completion: Completion) -> None:
        if not self._done.done():
            self._done.set_result(completion)
        self._queue.put_nowait(self._END)

    def _fail(self, exc: BaseException) -> None:
        if not self._done.done():
            self._done.set_exception(exc)
            self._done.exception()  # mark retrieved: a dropped handle must not warn
        self._queue.put_nowait(self._END)

    # ── consumer side ──────────────────────────────────────────────────────
    @property
    def done(self) -> bool:
        return self._done.done()

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Chunk]:
        while True:
            item = await self._queue.get()
            if item is self._END:
                if self._done.done() and self._done.exception() is not None:
                    exc = self._done.exception()
                    if not isinstance(exc, Cancelled):
                        raise exc
                return
            yield item

    async def result(self) -> Completion:
        return await asyncio.shield(self._done)

    def cancel(self) -> None:
        if self._engine is not None and not self.done:
            self._engine.cancel(self.request_id)


class SeqState(enum.IntEnum):
    """Lifecycle of one sequence inside an engine. Finished is anything >= DONE."""

    WAITING = 0      # admitted to the engine, no KV yet
    PREFILLING = 1   # prompt partly in KV
    DECODING = 2     # generating
    PAUSED = 3       # preempted, KV kept resident
    SWAPPED = 4      # preempted, KV snapshotted out (memory or disk), cells freed
    DONE = 5

    @property
    def finished(self) -> bool:
        return self >= SeqState.DONE


@dataclass(frozen=True)
class SeqView:
    """What a step policy sees of one live sequence (a snapshot, never mutated)."""

    request_id: str
    owner: str
    priority: int
    state: SeqState
    arrival_s: float          # monotonic seconds when submitted
    prompt_tokens: int        # tokens to prefill in total
    prefilled_tokens: int     # of which already in KV
    generated_tokens: int
    max_tokens: int
    kv_tokens: int            # KV cells this sequence holds now


@dataclass(frozen=True)
class StepBudget:
    max_active: int           # most sequences one step may advance
    max_batch_tokens: int     # most tokens in one batch
    kv_free_tokens: int       # free KV cells now
    kv_total_tokens: int


@dataclass
class StepDecision:
    run: list[str] = field(default_factory=list)       # request ids to advance, in order
    pause: list[str] = field(default_factory=list)     # stop advancing, keep KV
    swap_out: list[str] = field(default_factory=list)  # snapshot KV and free the cells
    reason: str = ""                                    # short, for `llmos explain`


class StepPolicy(Protocol):
    def decide(self, seqs: Sequence[SeqView], budget: StepBudget) -> StepDecision: ...


class FifoPolicy:
    """Advance the oldest sequences first, up to the budget; never preempt."""

    def decide(self, seqs: Sequence[SeqView], budget: StepBudget) -> StepDecision:
        order = sorted((s for s in seqs if not s.state.finished), key=lambda s: s.arrival_s)
        return StepDecision(run=[s.request_id for s in order[: budget.max_active]], reason="fifo")


@dataclass(frozen=True)
class Capabilities:
    batching: bool = False
    snapshots: bool = False
    constrained: bool = False
    embeddings: bool = False
    context_length: int = 0
    max_active: int = 1


@dataclass
class EngineStats:
    active: int = 0                 # sequences advanced in the last step
    waiting: int = 0                # live but not advanced
    tokens_generated: int = 0       # total since start
    tokens_per_s: float = 0.0       # recent decode throughput
    kv_used_tokens: int = 0
    kv_total_tokens: int = 0
    steps: int = 0
    prompt_tokens_evaluated: int = 0   # prompt tokens run through the model since start (prefill)
    prompt_tokens_loaded: int = 0      # prompt tokens whose KV was read from a prefix file instead


class Engine(abc.ABC):
    """An LLM engine. Implementations must be safe to ``submit`` from the event loop."""

    name: str = "engine"
    model: str = ""

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities: ...

    async def start(self) -> None:
        """Load / connect. Idempotent."""

    async def close(self) -> None:
        """Release everything; pending requests fail with Cancelled."""

    @abc.abstractmethod
    def submit(self, request: GenerationRequest) -> GenerationHandle:
        """Queue a request; raises InvalidRequest / ContextOverflow / EngineBusy at once."""

    @abc.abstractmethod
    def cancel(self, request_id: str) -> bool:
        """Stop a request and free its KV; its handle finishes with reason 'cancelled'."""

    async def generate(self, request: GenerationRequest) -> Completion:
        return await self.submit(request).result()

    def set_policy(self, policy: StepPolicy) -> None:
        self.policy = policy

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    def stats(self) -> EngineStats:
        return EngineStats()

    async def suspend(self, request_id: str, *, to_disk: bool = False) -> None:
        """Snapshot a live sequence's state and free its KV until ``resume``."""
        raise EngineError(f"{self.name} cannot snapshot sequences")

    async def resume(self, request_id: str) -> None:
        raise EngineError(f"{self.name} cannot snapshot sequences")

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise EngineError(f"{self.name} does not compute embeddings")

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def as_engine_error(exc: BaseException) -> LLMOSError:
    from llmos.errors import map_foreign

    return map_foreign(exc, context="engine")
