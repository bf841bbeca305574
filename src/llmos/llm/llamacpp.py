"""LlamaCppEngine: the embedded engine. One model, one context, continuous batching.

Map:
- ``LlamaCppEngine(model, config)``: loads the GGUF (``_llama.Model``) and one
  context whose unified KV cache holds ``n_seq_max`` live sequences plus the
  cached shared prefixes (``kv.KvLedger``); steps on its own thread.
- event-loop side: ``submit`` (render, tokenize, check, queue), ``cancel``,
  ``suspend`` / ``resume``, ``count_tokens``, ``stats``, ``close``.
- engine-thread side: ``_drain`` (apply queued commands), ``_step`` (policy →
  batch → decode → sample → deliver), ``_finish``.

NOTE (one step, on the engine thread). Build a ``SeqView`` of every live
sequence not held by ``suspend``; ask ``policy.decide(views, budget)``. Apply
``pause`` (keep KV) and ``swap_out`` (snapshot with llama_state_seq_get_data,
free the slot and cells). Then walk ``run`` in order, at most ``max_active``:
a WAITING sequence is admitted (a slot, a reservation of prompt + max_tokens
cells, and the longest cached prefix shared with llama_memory_seq_cp, so only
the suffix is prefilled); a SWAPPED one is restored (llama_state_seq_set_data);
a waiting sequence that does not fit stops further admissions this step (FIFO
order, no bypass) and simply waits. One ``llama_batch`` gets every decoding
sequence's pending token first, then prefill chunks (``prefill_chunk`` each)
in the room left, so a long prompt never stalls running sequences. After the
decode, rows that ask for a token are masked (grammar), sampled together, and
delivered; finished sequences leave, their KV kept as a prefix entry (LRU).
A sequence never advances unless the policy listed it.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from llmos import params
from llmos.config import Config, EngineConfig
from llmos.errors import Cancelled, ContextOverflow, EngineBusy, EngineError, LLMOSError, ModelError
from llmos.llm import _llama
from llmos.llm.base import (
    Capabilities,
    Chunk,
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
    as_engine_error,
)
from llmos.llm.constrain import Constrainer, compile_grammar
from llmos.llm.kv import KvLedger
from llmos.llm.models import ModelInfo, embedded_model_path, resolve
from llmos.llm.sampling import sample_batch
from llmos.llm.sequence import Seq

__all__ = ["LlamaCppEngine"]

log = logging.getLogger("llmos.llm.llamacpp")

_IDLE_WAIT_S = 0.005        # nothing could run this step: re-ask the policy after this
_RATE_WINDOW_S = 5.0        # tokens_per_s is measured over this recent window
_MIN_PREFIX_TOKENS = 16     # shorter shared prefixes are not worth an entry
_INVARIANT_UBATCH = 32      # tokens per llama.cpp ubatch in batch-invariant mode (< 64, see __init__)


class LlamaCppEngine(Engine):
    name = "llama.cpp"

    def __init__(self, model: ModelInfo | str | Path | None = None, config: EngineConfig | None = None,
                 *, prefix_cache: bool = True, prefix_slots: int | None = None,
                 snapshot_dir: str | Path | None = None, queue_max: int = params.ENGINE_QUEUE_MAX,
                 policy: StepPolicy | None = None, extra_buffers: bool = False,
                 batch_invariant: bool = True) -> None:
        cfg = config or EngineConfig()
        if isinstance(model, ModelInfo):
            if model.kind == "remote":
                raise ModelError(f"model {model.name} is remote; the embedded engine needs a GGUF file")
            path, self.model = model.path, model.name
        else:
            path = Path(model) if model is not None else embedded_model_path()
            self.model = params.DEFAULT_MODEL if model is None else Path(path).stem
        self.config = cfg
        self._model = _llama.Model(path, n_gpu_layers=cfg.n_gpu_layers, extra_buffers=extra_buffers)
        self.max_active = cfg.n_seq_max                                  # live sequences with a slot
        n_entries = (cfg.n_seq_max if prefix_slots is None else prefix_slots) if prefix_cache else 0
        n_entries = min(n_entries, _llama.max_parallel_sequences() - self.max_active)
        # 0: all cores but one. llama.cpp threads meet at a spin barrier after every op, so a
        # thread that loses its core to another process stalls the others (measured on 2
        # shared cores: 2 threads 1.3 tok/s, 1 thread 29 tok/s); the spare core also runs
        # this engine's Python and the event loop.
        threads = cfg.threads or max(1, (os.cpu_count() or 2) - 1)
        # batch_invariant: a sequence's greedy text must not depend on who shares its steps.
        # On CPU, attention without flash-attention sums over interleaved cells in SIMD lanes
        # (two sequences decoded together drift from solo runs); flash attention visits a
        # sequence's own cells in order, but switches to a tiled kernel with other rounding
        # once a ubatch holds 64 tokens. So: flash attention on, ubatches of 32. Cost on
        # 1 core (CPU time): none for short prompts; 2x on a 600-token prefill and 2.3x on
        # 8 sequences decoding at 600 tokens of context. False: the fast, drifting setting.
        try:
            self._ctx = _llama.Context(self._model, n_ctx=cfg.n_ctx, n_batch=cfg.n_batch,
                                       n_seq_max=self.max_active + n_entries, threads=threads,
                                       flash_attn=1 if batch_invariant else 0,
                                       n_ubatch=_INVARIANT_UBATCH if batch_invariant else None)
        except BaseException:
            self._model.close()
            raise
        self.n_ctx = self._ctx.n_ctx                                     # KV cells, all sequences
        self.seq_limit = min(self.n_ctx, self._model.n_ctx_train)        # tokens, one sequence
        self.prefill_chunk = max(1, min(cfg.prefill_chunk, self._ctx.n_batch))
        self._ledger = KvLedger(self._ctx, n_cells=self.n_ctx, max_live=self.max_active,
                                max_entries=n_entries, min_prefix=_MIN_PREFIX_TOKENS)
        self._batch = _llama.Batch(self._ctx.n_batch)
        self._constrainer = Constrainer(self._model, threads=threads)
        self.policy: StepPolicy = policy or FifoPolicy()
        self._queue_max = queue_max
        self._snap_dir = Path(snapshot_dir) if snapshot_dir else None
        self._own_snap_dir = snapshot_dir is None                        # we made it: we delete it
        # shared between threads (guarded by _lock): ids of live requests
        self._lock = threading.Lock()
        self._live: set[str] = set()
        self._inbox: collections.deque[tuple] = collections.deque()      # commands for the engine thread
        self._wake = threading.Event()
        # engine-thread state
        self._seqs: dict[str, Seq] = {}                                  # live requests, arrival order
        self._rate: collections.deque[tuple[float, int]] = collections.deque()   # (t, tokens) per step
        self._stats = EngineStats(kv_total_tokens=self.n_ctx)
        self.last_decision: StepDecision | None = None
        # seconds spent on the engine thread: whole steps that ran a batch, and llama_decode
        # within them; 1 - decode_s / step_s is the engine's own per-step overhead
        self.timing = {"step_s": 0.0, "decode_s": 0.0}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False

    @classmethod
    def from_config(cls, config: Config, model: str | None = None, **kw: Any) -> LlamaCppEngine:
        """The engine for ``model`` (a registry name or GGUF path; config's default if None)."""
        return cls(resolve(model, config), config.engine, **kw)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(batching=True, snapshots=True, constrained=True, embeddings=False,
                            context_length=self.seq_limit, max_active=self.max_active)

    # ── event-loop side ─────────────────────────────────────────────────────
    async def start(self) -> None:
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._closed:
            raise EngineError("engine is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="llmos-llamacpp", daemon=True)
            self._thread.start()

    def count_tokens(self, text: str) -> int:
        return len(self._model.tokenize(text, add_special=False))

    def render(self, request: GenerationRequest) -> str:
        """The prompt text a request decodes from (the chat template applied to messages)."""
        if request.messages is not None:
            return self._model.apply_template(request.messages, add_assistant=True)
        return request.prompt or ""

    def submit(self, request: GenerationRequest) -> GenerationHandle:
        request.validate()
        if self._closed:
            raise EngineError("engine is closed")
        with self._lock:
            if len(self._live) >= self._queue_max:
                raise EngineBusy(f"engine queue full ({self._queue_max} requests)", hint="retry shortly")
        tokens = self._model.tokenize(self.render(request))
        n_prompt, max_tokens = len(tokens), request.params.max_tokens
        if n_prompt >= self.seq_limit:
            raise ContextOverflow(f"prompt ({n_prompt} tokens) is longer than the context "
                                  f"({self.seq_limit} tokens)", hint="shorten the prompt")
        if n_prompt + max_tokens > self.seq_limit:
            raise ContextOverflow(f"prompt ({n_prompt} tokens) + max_tokens ({max_tokens}) exceed the "
                                  f"context ({self.seq_limit} tokens)",
                                  hint=f"lower max_tokens to at most {self.seq_limit - n_prompt}")
        matcher = None
        if request.json_schema is not None or request.grammar is not None:
            field = "json_schema" if request.json_schema is not None else "grammar"
            matcher = self._constrainer.matcher(compile_grammar(request.json_schema, request.grammar),
                                                field=field)
        self._ensure_thread()
        handle = GenerationHandle(request, self)
        with self._lock:
            if request.request_id in self._live:
                raise EngineError(f"request id {request.request_id} is already live")
            self._live.add(request.request_id)
        self._post(("submit", Seq(handle, tokens, matcher)))
        return handle

    def cancel(self, request_id: str) -> bool:
        with self._lock:
            if request_id not in self._live:
                return False
        self._post(("cancel", request_id))
        return True

    async def suspend(self, request_id: str, *, to_disk: bool = False) -> None:
        await self._command("suspend", request_id, to_disk)

    async def resume(self, request_id: str) -> None:
        await self._command("resume", request_id)

    def clear_prefix_cache(self) -> None:
        """Drop every cached prefix (applied between steps)."""
        self._post(("clear", None))

    async def sync(self) -> None:
        """Wait until every command posted so far has been applied by the engine thread."""
        await self._command("noop", "")

    def reset(self, timeout_s: float = 10.0) -> None:
        """Blocking: cancel every live request, drop cached prefixes, go back to FIFO.
        For tests and benches that share one engine."""
        for rid in self.live_ids():
            self.cancel(rid)
        self.set_policy(FifoPolicy())
        self.clear_prefix_cache()
        self._ensure_thread()
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._post(("noop", "", (), fut))
        fut.result(timeout_s)

    def set_policy(self, policy: StepPolicy) -> None:
        self.policy = policy
        self._wake.set()

    def stats(self) -> EngineStats:
        return self._stats

    def live_ids(self) -> list[str]:
        """Ids of requests submitted and not yet finished."""
        with self._lock:
            return list(self._live)

    def kv_used_tokens(self) -> int:
        """KV cells in use now (live sequences' own cells + cached prefixes)."""
        return self._stats.kv_used_tokens

    async def close(self) -> None:
        await asyncio.to_thread(self.shutdown)

    def shutdown(self) -> None:
        """Stop the engine thread, fail pending requests with Cancelled, free the model."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._shutdown()

    def _shutdown(self) -> None:
        for seq in list(self._seqs.values()):
            seq.handle.fail(Cancelled("engine closed"))
        while self._inbox:
            cmd = self._inbox.popleft()
            if cmd[0] == "submit":
                cmd[1].handle.fail(Cancelled("engine closed"))
            elif len(cmd) > 3 and not cmd[3].done():
                cmd[3].set_exception(Cancelled("engine closed"))
        self._seqs.clear()
        with self._lock:
            self._live.clear()
        self._ctx.close()
        self._model.close()
        if self._own_snap_dir and self._snap_dir is not None:
            shutil.rmtree(self._snap_dir, ignore_errors=True)

    def _post(self, cmd: tuple) -> None:
        self._inbox.append(cmd)
        self._wake.set()

    async def _command(self, kind: str, rid: str, *args: Any) -> Any:
        if self._closed:
            raise EngineError("engine is closed")
        self._ensure_thread()
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._post((kind, rid, args, fut))
        return await asyncio.wrap_future(fut)

    # ── engine thread ───────────────────────────────────────────────────────
    def _run(self) -> None:
        while not self._stopping:
            try:
                self._drain()
                ran = self._step()
            except Exception as e:   # never let the engine thread die: fail what was running
                log.exception("engine step failed")
                self._fail_all(as_engine_error(e))
                ran = False
            if not ran and not self._stopping:
                busy = any(not s.held for s in self._seqs.values())
                self._wake.wait(_IDLE_WAIT_S if busy else None)
                self._wake.clear()

    def _drain(self) -> None:
        while self._inbox:
            cmd = self._inbox.popleft()
            kind = cmd[0]
            if kind == "submit":
                seq: Seq = cmd[1]
                self._seqs[seq.rid] = seq
            elif kind == "cancel":
                seq = self._seqs.get(cmd[1])
                if seq is not None:
                    self._finish(seq, "cancelled")
            elif kind == "clear":
                self._ledger.clear()
            else:
                _, rid, args, fut = cmd
                try:
                    fut.set_result(self._apply_command(kind, rid, *args))
                except Exception as e:
                    fut.set_exception(e if isinstance(e, LLMOSError) else as_engine_error(e))

    def _apply_command(self, kind: str, rid: str, *args: Any) -> None:
        if kind == "noop":
            return
        seq = self._seqs.get(rid)
        if seq is None:
            raise EngineError(f"no live sequence {rid}", hint="it finished, was cancelled, or never existed")
        if kind == "suspend":
            if seq.resident:
                self._swap_out(seq, to_disk=bool(args and args[0]))
            seq.held = True
        elif kind == "resume":
            seq.held = False

    def _budget(self) -> StepBudget:
        return StepBudget(max_active=self.max_active, max_batch_tokens=self._batch.capacity,
                          kv_free_tokens=max(0, self._ledger.free_cells), kv_total_tokens=self.n_ctx)

    def _decide(self, views: list[SeqView]) -> StepDecision:
        try:
            return self.policy.decide(views, self._budget())
        except Exception:
            log.exception("step policy failed; using FIFO for this step")
            return FifoPolicy().decide(views, self._budget())

    def _step(self) -> bool:
        """One step (see NOTE). True when a batch ran."""
        t0 = time.perf_counter()
        ran = self._step_inner()
        if ran:
            self.timing["step_s"] += time.perf_counter() - t0
        return ran

    def _step_inner(self) -> bool:
        views = [s.view() for s in self._seqs.values() if not s.held]
        if not views:
            return False
        decision = self._decide(views)
        self.last_decision = decision
        seqs = self._seqs
        for rid in decision.pause:
            s = seqs.get(rid)
            if s is not None and not s.held and s.state in (SeqState.PREFILLING, SeqState.DECODING):
                s.state = SeqState.PAUSED
                s.preemptions += 1
        for rid in decision.swap_out:
            s = seqs.get(rid)
            if s is not None and not s.held and s.resident:
                self._swap_out(s)
        decode: list[Seq] = []
        prefill: list[Seq] = []
        admitting = True
        skip = set(decision.swap_out)
        for rid in decision.run:
            if len(decode) + len(prefill) >= self.max_active:
                break
            s = seqs.get(rid)
            if s is None or s.held or rid in skip:
                continue
            if s.state == SeqState.WAITING:
                if not admitting or not self._admit(s):
                    admitting = False
                    continue
            elif s.state == SeqState.SWAPPED and not self._restore(s):
                continue
            elif s.state == SeqState.PAUSED:
                s.state = SeqState.DECODING if s.pending is not None else SeqState.PREFILLING
            (decode if s.state == SeqState.DECODING else prefill).append(s)
        if not decode and not prefill:
            return False
        return self._run_batch(decode, prefill)

    def _run_batch(self, decode: list[Seq], prefill: list[Seq]) -> bool:
        batch = self._batch
        batch.clear()
        rows: list[tuple[Seq, int]] = []     # sequences that get a token this step, with their row
        for s in decode:
            rows.append((s, batch.add((s.pending,), s.kv_len, s.slot, True)))  # type: ignore[arg-type]
        chunks: list[tuple[Seq, int]] = []
        for s in prefill:
            n = min(self.prefill_chunk, s.n_prompt - s.prefilled, batch.room)
            if n <= 0:
                continue
            last = s.prefilled + n == s.n_prompt
            row = batch.add(s.prompt[s.prefilled:s.prefilled + n], s.prefilled, s.slot, last)  # type: ignore[arg-type]
            chunks.append((s, n))
            if last:
                rows.append((s, row))
        if batch.n_tokens == 0:
            return False
        t0 = time.perf_counter()
        rc = self._ctx.decode(batch)
        self.timing["decode_s"] += time.perf_counter() - t0
        if rc == _llama.DECODE_NO_SLOT:
            # The ledger says the cells exist, so this is fragmentation: drop unshared
            # prefixes and try once more; if that fails the batch's sequences wait.
            log.warning("no KV slot for a %d-token batch; evicting cached prefixes", batch.n_tokens)
            self._ledger.make_room(self.n_ctx)
            if self._ctx.decode(batch) == _llama.DECODE_NO_SLOT:
                return False
        for s in decode:
            s.kv_len += 1
            s.pending = None
        for s, n in chunks:
            s.prefilled += n
            s.kv_len = s.prefilled
            s.state = SeqState.PREFILLING
        produced = self._sample_and_deliver(rows, batch.n_outputs) if rows else 0
        self._account(len(decode) + len(prefill), produced)
        return True

    def _sample_and_deliver(self, rows: list[tuple[Seq, int]], n_outputs: int) -> int:
        logits = self._ctx.logits(n_outputs)
        idx = [r for _, r in rows]
        if len(idx) != n_outputs or idx != list(range(n_outputs)):
            logits = logits[idx]
        con = [(i, s.matcher) for i, (s, _) in enumerate(rows) if s.matcher is not None]
        if con:
            self._constrainer.apply(logits, [i for i, _ in con], [m for _, m in con])
        tokens = sample_batch(logits, [s.sampler for s, _ in rows])
        model, eog = self._model, self._model.eog
        for (s, _), tok in zip(rows, tokens.tolist(), strict=True):
            s.state = SeqState.DECODING
            if s.matcher is not None:
                try:
                    self._constrainer.commit(s.matcher, tok)
                except EngineError as e:
                    self._finish(s, "error", e)
                    continue
            text, reason = s.accept(tok, model.piece(tok), bool(eog[tok]))
            if text:
                s.handle.push(Chunk(text, tok, len(s.ids) - 1))
            if reason is None and s.matcher is not None and self._constrainer.finished(s.matcher):
                reason = "stop"
            if reason is not None:
                self._finish(s, reason)
        return len(rows)

    def _account(self, active: int, produced: int) -> None:
        now = time.monotonic()
        st = self._stats
        st.steps += 1
        st.active = active
        st.waiting = len(self._seqs) - sum(1 for s in self._seqs.values() if s.state in (
            SeqState.PREFILLING, SeqState.DECODING))
        st.tokens_generated += produced
        self._rate.append((now, produced))
        while self._rate and now - self._rate[0][0] > _RATE_WINDOW_S:
            self._rate.popleft()
        span = now - self._rate[0][0] if len(self._rate) > 1 else 0.0
        st.tokens_per_s = sum(n for _, n in self._rate) / span if span > 0 else 0.0
        st.kv_used_tokens = self._kv_used()

    def _kv_used(self) -> int:
        return self._ledger.entry_cells + sum(s.kv_len - s.base for s in self._seqs.values() if s.resident)

    # ── admission, swap, finish ─────────────────────────────────────────────
    def _admit(self, s: Seq) -> bool:
        """Give a waiting sequence a slot, its reservation and a shared prefix. False: it waits."""
        entry, n = self._ledger.lookup(s.prompt, s.n_prompt - 1)
        need = s.n_prompt + s.max_tokens - n
        if self._ledger.live >= self.max_active or not self._ledger.make_room(need, keep=entry):
            return False
        s.slot = self._ledger.admit(need)
        s.reserved = need
        if entry is not None:
            self._ledger.attach(s, entry, n, s.slot)
            s.cached_tokens = n
        s.prefilled = s.kv_len = n
        s.state = SeqState.PREFILLING
        return True

    def _swap_out(self, s: Seq, *, to_disk: bool = False) -> None:
        assert s.slot is not None
        data = self._ctx.state_get(s.slot)
        if to_disk:
            if self._snap_dir is None:
                self._snap_dir = Path(tempfile.mkdtemp(prefix="llmos-kv-"))
            self._snap_dir.mkdir(parents=True, exist_ok=True)
            path = self._snap_dir / f"{s.rid}.kv"
            data.tofile(path)
            s.snapshot_path = path
        else:
            s.snapshot = data
        self._ledger.release(s.slot, s)
        s.slot, s.reserved = None, 0
        s.state = SeqState.SWAPPED
        s.preemptions += 1

    def _restore(self, s: Seq) -> bool:
        need = s.n_prompt + s.max_tokens
        if self._ledger.live >= self.max_active or not self._ledger.make_room(need):
            return False
        slot = self._ledger.admit(need)
        data = s.snapshot if s.snapshot is not None else np.fromfile(s.snapshot_path, dtype=np.uint8)
        try:
            self._ctx.state_set(slot, data)
        except EngineError:
            self._ledger.release(slot)
            raise
        s.slot, s.reserved = slot, need
        self._drop_snapshot(s)
        s.state = SeqState.DECODING if s.pending is not None else SeqState.PREFILLING
        return True

    def _drop_snapshot(self, s: Seq) -> None:
        s.snapshot = None
        if s.snapshot_path is not None:
            s.snapshot_path.unlink(missing_ok=True)
            s.snapshot_path = None

    def _finish(self, s: Seq, reason: str, error: LLMOSError | None = None) -> None:
        self._seqs.pop(s.rid, None)
        if s.slot is not None:
            if reason in ("stop", "length"):
                self._ledger.retire(s, s.slot, s.kv_tokens())
            else:
                self._ledger.release(s.slot, s)
            s.slot = None
        self._drop_snapshot(s)
        s.state = SeqState.DONE
        with self._lock:
            self._live.discard(s.rid)
        if error is not None:
            s.handle.fail(error)
        else:
            s.handle.finish(s.completion(reason, self.model))  # type: ignore[arg-type]

    def _fail_all(self, error: LLMOSError) -> None:
        for s in list(self._seqs.values()):
            self._finish(s, "error", error)

    # ── introspection for tests and benches ─────────────────────────────────
    def ledger_snapshot(self) -> dict[str, Any]:
        """KV accounting facts (read between steps, e.g. after ``await sync()``)."""
        lg = self._ledger
        return {"entries": len(lg.entries), "entry_cells": lg.entry_cells, "reserved": lg.reserved_cells,
                "free": lg.free_cells, "live": lg.live, "evictions": lg.evictions,
                "cells_held": self._cells_held()}

    def _cells_held(self) -> int:
        """Positions llama.cpp holds over every seq id (pos_max + 1 summed); 0 when empty."""
        return sum(self._ctx.seq_pos_max(i) + 1 for i in range(self._ctx.n_seq_max))

