"""FakeEngine: deterministic, scripted, same interface and step model as the real one.

Used by the default test tier. Text is split into word-ish "tokens"; each step
asks the installed policy which sequences advance, exactly like the embedded
engine, so kernel scheduling tests exercise the real hook without a model.

Script forms:
- ``str``: every request answers it;
- ``list[str]``: answered in order (the last one repeats);
- ``callable(request) -> str``: computed per request (e.g. from the last message);
- ``None``: echo the last user message (or the prompt).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from llmos.errors import Cancelled, ContextOverflow, EngineBusy, EngineError
from llmos.llm.base import (
    Capabilities,
    Chunk,
    Completion,
    Engine,
    EngineStats,
    FifoPolicy,
    GenerationHandle,
    GenerationRequest,
    SeqState,
    SeqView,
    StepBudget,
    StepDecision,
    StepPolicy,
    Usage,
)

__all__ = ["FakeEngine", "tokenize"]

_TOKEN = re.compile(r"\s*\S+|\s+")

Script = str | list[str] | Callable[[GenerationRequest], str] | None


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _prompt_text(req: GenerationRequest) -> str:
    if req.prompt is not None:
        return req.prompt
    return "\n".join(f"{m.get('role')}: {m.get('content', '')}" for m in req.messages or ())


@dataclass
class _Seq:
    handle: GenerationHandle
    tokens: list[str]                 # the scripted answer, pre-split
    prompt_tokens: int
    arrival: float
    state: SeqState = SeqState.WAITING
    pos: int = 0                      # generated tokens so far
    prefilled: int = 0
    text: str = ""
    first_token_at: float | None = None
    preemptions: int = 0
    finish: str = "length"
    held: bool = False                # suspended by engine.suspend(): hidden from the policy until resume()
    decisions: list[str] = field(default_factory=list)


class FakeEngine(Engine):
    name = "fake"

    def __init__(self, script: Script = None, *, model: str = "fake", max_active: int = 8,
                 context_length: int = 4096, step_delay_s: float = 0.0,
                 queue_max: int = 1024, prefill_chunk: int = 64) -> None:
        self.model = model
        self._script = script
        self._answers = list(script) if isinstance(script, list) else None
        self._max_active = max_active
        self._ctx = context_length
        self._delay = step_delay_s
        self._queue_max = queue_max
        self._chunk = prefill_chunk
        self._seqs: dict[str, _Seq] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closed = False
        self.policy: StepPolicy = FifoPolicy()
        self.requests: list[GenerationRequest] = []   # every request seen, for assertions
        self.step_log: list[StepDecision] = []        # every decision applied
        self._stats = EngineStats(kv_total_tokens=context_length)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(batching=True, snapshots=True, constrained=True,
                            embeddings=False, context_length=self._ctx,
                            max_active=self._max_active)

    def count_tokens(self, text: str) -> int:
        return len(tokenize(text))

    def _answer(self, req: GenerationRequest) -> str:
        s = self._script
        if s is None:
            if req.messages:
                users = [m for m in req.messages if m.get("role") == "user"]
                return (users[-1] if users else req.messages[-1]).get("content", "")
            return req.prompt or ""
        if isinstance(s, str):
            return s
        if self._answers is not None:
            return self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]
        return s(req)

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._closed = False
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        self._closed = True
        for seq in list(self._seqs.values()):
            seq.handle.fail(Cancelled("engine closed"))
        self._seqs.clear()
        if self._task:
            self._wake.set()
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    def submit(self, request: GenerationRequest) -> GenerationHandle:
        request.validate()
        if self._closed:
            raise EngineError("engine is closed")
        if len(self._seqs) >= self._queue_max:
            raise EngineBusy(f"engine queue full ({self._queue_max} requests)", hint="retry shortly")
        n_prompt = self.count_tokens(_prompt_text(request))
        if n_prompt + request.params.max_tokens > self._ctx:
            raise ContextOverflow(
                f"prompt ({n_prompt} tokens) + max_tokens ({request.params.max_tokens}) exceed "
                f"the context ({self._ctx} tokens)", hint="shorten the prompt or lower max_tokens")
        self.requests.append(request)
        handle = GenerationHandle(request, self)
        self._seqs[request.request_id] = _Seq(handle, tokenize(self._answer(request)), n_prompt,
                                              time.monotonic())
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()
        return handle

    def cancel(self, request_id: str) -> bool:
        seq = self._seqs.pop(request_id, None)
        if seq is None:
            return False
        self._complete(seq, "cancelled")
        return True

    async def suspend(self, request_id: str, *, to_disk: bool = False) -> None:
        seq = self._seqs.get(request_id)
        if seq is None:
            raise EngineError(f"no live sequence {request_id}")
        seq.state = SeqState.SWAPPED
        seq.held = True
        seq.preemptions += 1

    async def resume(self, request_id: str) -> None:
        seq = self._seqs.get(request_id)
        if seq is None:
            raise EngineError(f"no live sequence {request_id}")
        seq.held = False
        if seq.state in (SeqState.PAUSED, SeqState.SWAPPED):
            seq.state = SeqState.DECODING if seq.prefilled >= seq.prompt_tokens else SeqState.PREFILLING
        self._wake.set()

    def stats(self) -> EngineStats:
        return self._stats

    # ── the step loop ──────────────────────────────────────────────────────
    def views(self) -> list[SeqView]:
        return [SeqView(rid, s.handle.request.owner, s.handle.request.priority, s.state,
                        s.arrival, s.prompt_tokens, s.prefilled, s.pos,
                        s.handle.request.params.max_tokens, s.prefilled + s.pos)
                for rid, s in self._seqs.items()]

    def step(self) -> StepDecision | None:
        """Run one step synchronously; returns the decision, or None when idle.

        Sequences the policy swapped out stay visible to it (cells freed); listing
        one in ``run`` restores it. Only ``suspend()``ed ones are hidden until ``resume()``.
        """
        if not any(not s.held for s in self._seqs.values()):
            return None
        # like the embedded engine: an admitted sequence reserves prompt + max_tokens cells
        used = sum(s.prompt_tokens + s.handle.request.params.max_tokens for s in self._seqs.values()
                   if s.state in (SeqState.PREFILLING, SeqState.DECODING, SeqState.PAUSED))
        budget = StepBudget(self._max_active, 512, self._ctx - used, self._ctx)
        decision = self.policy.decide([v for v in self.views() if not self._seqs[v.request_id].held],
                                      budget)
        self.step_log.append(decision)
        for rid in decision.pause:
            if rid in self._seqs:
                self._seqs[rid].state = SeqState.PAUSED
                self._seqs[rid].preemptions += 1
        for rid in decision.swap_out:
            if rid in self._seqs:
                self._seqs[rid].state = SeqState.SWAPPED
                self._seqs[rid].preemptions += 1
        ran = 0
        for rid in decision.run[: self._max_active]:
            seq = self._seqs.get(rid)
            if seq is None or seq.held:
                continue
            ran += 1
            self._advance(rid, seq)
        self._stats.active = ran
        self._stats.waiting = len(self._seqs) - ran
        self._stats.steps += 1
        return decision

    def _advance(self, rid: str, seq: _Seq) -> None:
        if seq.prefilled < seq.prompt_tokens:
            seq.state = SeqState.PREFILLING
            seq.prefilled = min(seq.prompt_tokens, seq.prefilled + self._chunk)
            return
        seq.state = SeqState.DECODING
        req = seq.handle.request
        if seq.pos >= len(seq.tokens):
            self._seqs.pop(rid, None)
            self._complete(seq, "stop")
            return
        tok = seq.tokens[seq.pos]
        seq.pos += 1
        seq.text += tok
        if seq.first_token_at is None:
            seq.first_token_at = time.monotonic()
        self._stats.tokens_generated += 1
        seq.handle.push(Chunk(tok, None, seq.pos - 1))
        for stop in req.params.stop:
            if stop in seq.text:
                seq.text = seq.text[: seq.text.index(stop)]
                self._seqs.pop(rid, None)
                self._complete(seq, "stop")
                return
        if seq.pos >= req.params.max_tokens:
            self._seqs.pop(rid, None)
            self._complete(seq, "length")
        elif seq.pos >= len(seq.tokens):
            self._seqs.pop(rid, None)
            self._complete(seq, "stop")

    def _complete(self, seq: _Seq, reason: str) -> None:
        now = time.monotonic()
        first = seq.first_token_at or now
        usage = Usage(prompt_tokens=seq.prompt_tokens, completion_tokens=seq.pos,
                      ttft_s=first - seq.handle.submitted_at, decode_s=now - first,
                      total_s=now - seq.handle.submitted_at, preemptions=seq.preemptions)
        seq.state = SeqState.DONE
        seq.handle.finish(Completion(seq.handle.request_id, seq.text, reason, usage, self.model))  # type: ignore[arg-type]

    async def _run(self) -> None:
        while not self._closed:
            if self.step() is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            await asyncio.sleep(self._delay)
