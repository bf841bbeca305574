"""LlamaCppEngine: the embedded engine. One model, one context, continuous batching.

Map:
- ``LlamaCppEngine(model, config)``: loads the GGUF (``_llama.Model``) and one
  context whose unified KV cache holds ``n_seq_max`` live sequences plus the
  cached shared prefixes; steps on its own thread (``stepper.Stepper``, whose
  docstring explains one step).
- threads: ``engine.threads`` when set, else measured once per model and machine
  (``tune.engine_threads``; ``tune_dir``: where the choice is kept, ``from_config`` uses
  ``$LLMOS_HOME/cache``; None: kept in this process only); ``tuning`` says why.
- ``prefix_dir``: where marked fixed prompt prefixes (``GenerationRequest.prefix_messages``
  / ``prefix_chars``) keep their KV between processes (``prefix_store``; ``from_config``
  uses ``$LLMOS_HOME/cache/kv-prefix``; None: only in memory).
- event-loop side: ``submit`` (render, tokenize, find the marked prefix, check, queue), ``cancel``,
  ``suspend`` / ``resume``, ``set_policy``, ``count_tokens``, ``stats``, ``close``;
  for tests and benches ``sync``, ``reset``, ``clear_prefix_cache``, ``ledger_snapshot``.
- engine-thread side: ``_run`` (drain the command inbox, step, idle-wait).

Threads: the event loop only reads the model (tokenize, templates) and posts
commands; the engine thread alone touches the context, the ledger and sequences.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np

from llmos import params
from llmos.config import Config, EngineConfig
from llmos.errors import Cancelled, ContextOverflow, EngineBusy, EngineError, LLMOSError, ModelError
from llmos.llm import _llama, tune
from llmos.llm.base import (
    Capabilities,
    Engine,
    EngineStats,
    FifoPolicy,
    GenerationHandle,
    GenerationRequest,
    StepDecision,
    StepPolicy,
    as_engine_error,
)
from llmos.llm.constrain import Constrainer, compile_grammar
from llmos.llm.models import ModelInfo, embedded_model_path, resolve
from llmos.llm.prefix_store import PrefixStore, model_digest
from llmos.llm.sequence import Seq
from llmos.llm.stepper import MIN_PREFIX_TOKENS, Stepper

__all__ = ["LlamaCppEngine", "prefix_dir_for"]

log = logging.getLogger("llmos.llm.llamacpp")

_IDLE_WAIT_S = 0.005        # nothing could run this step: re-ask the policy after this
_INVARIANT_UBATCH = 32      # tokens per llama.cpp ubatch in batch-invariant mode (< 64, see __init__)


def prefix_dir_for(config: Config) -> Path:
    """Where an engine built from ``config`` keeps marked prompt prefixes' KV files."""
    return config.home / "cache" / "kv-prefix"


class LlamaCppEngine(Engine):
    name = "llama.cpp"

    def __init__(self, model: ModelInfo | str | Path | None = None, config: EngineConfig | None = None,
                 *, prefix_cache: bool = True, prefix_slots: int | None = None,
                 snapshot_dir: str | Path | None = None, prefix_dir: str | Path | None = None,
                 queue_max: int = params.ENGINE_QUEUE_MAX,
                 policy: StepPolicy | None = None, extra_buffers: bool = False,
                 batch_invariant: bool | None = None, tune_dir: str | Path | None = None) -> None:
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
        if batch_invariant is None:
            batch_invariant = cfg.batch_invariant
        self.batch_invariant = batch_invariant
        # batch_invariant: a sequence's greedy text must not depend on who shares its steps.
        # On CPU, attention without flash-attention sums over interleaved cells in SIMD lanes
        # (two sequences decoded together drift from solo runs); flash attention visits a
        # sequence's own cells in order, but switches to a tiled kernel with other rounding
        # once a ubatch holds 64 tokens. So: flash attention on, ubatches of 32. The result
        # does not depend on the thread count either (checked at 1 and 2 threads), so prefix
        # files stay valid when the tuned count changes. Cost: none on decoding (bench/engine.py
        # measures it beside the fast setting); prefill of long prompts ~2x, which the prefix
        # cache and prefix files mostly avoid. Default from config engine.batch_invariant (on).
        try:
            self._ctx = _llama.Context(self._model, n_ctx=cfg.n_ctx, n_batch=cfg.n_batch,
                                       n_seq_max=self.max_active + n_entries, threads=1,
                                       flash_attn=1 if batch_invariant else 0,
                                       n_ubatch=_INVARIANT_UBATCH if batch_invariant else None)
            # threads: engine.threads (LLMOS_THREADS) when set, else the count measured fastest
            # and steady for this model on this machine, kept in tune_dir (tune.py explains why)
            store = tune.TuneStore(Path(tune_dir) / tune.STORE_NAME) if tune_dir is not None else None
            self.tuning = tune.engine_threads(cfg.threads, self._ctx, self._model, store)
            threads = self.tuning.threads
            self._ctx.set_threads(threads)
        except BaseException:
            if getattr(self, "_ctx", None) is not None:
                self._ctx.close()
            self._model.close()
            raise
        self.n_ctx = self._ctx.n_ctx                                     # KV cells, all sequences
        self.seq_limit = min(self.n_ctx, self._model.n_ctx_train)        # tokens, one sequence
        self._constrainer = Constrainer(self._model, threads=threads)
        self._queue_max = queue_max
        self._own_snap_dir = snapshot_dir is None                        # we made it: we delete it
        store = None
        if prefix_dir is not None and n_entries > 0:
            store = PrefixStore(prefix_dir, model_digest(path, self._ctx.layout), self.n_ctx)
        # shared between threads (guarded by _lock): ids of live requests
        self._lock = threading.Lock()
        self._live: set[str] = set()
        self._inbox: collections.deque[tuple] = collections.deque()      # commands for the engine thread
        self._wake = threading.Event()
        self._stepper = Stepper(self._model, self._ctx, self._constrainer, model_name=self.model,
                                max_active=self.max_active,
                                prefill_chunk=max(1, min(cfg.prefill_chunk, self._ctx.n_batch)),
                                n_entries=n_entries, on_done=self._done,
                                snapshot_dir=Path(snapshot_dir) if snapshot_dir else None,
                                prefix_store=store)
        self.policy: StepPolicy = policy or FifoPolicy()
        self._stepper.policy = self.policy
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False

    @classmethod
    def from_config(cls, config: Config, model: str | None = None, **kw: Any) -> LlamaCppEngine:
        """The engine for ``model`` (a registry name or GGUF path; config's default if None);
        marked prompt prefixes persist under ``prefix_dir_for(config)``, the measured thread
        count under ``$LLMOS_HOME/cache`` (``tune.STORE_NAME``)."""
        kw.setdefault("prefix_dir", prefix_dir_for(config))
        kw.setdefault("tune_dir", config.home / "cache")
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
        pin = self._marked_prefix(request, tokens)
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
        self._post(("submit", Seq(handle, tokens, matcher, pin)))
        return handle

    def _marked_prefix(self, request: GenerationRequest, tokens: np.ndarray) -> int:
        """Tokens of the request's marked fixed prefix (0: none, or not worth keeping): the
        chat template over the first ``prefix_messages`` messages without the generation
        prompt, or the first ``prefix_chars`` characters, tokenized on their own. Kept only
        when those ids are a true prefix of the whole prompt's (a tokenizer may merge
        across the cut); at most all prompt tokens but the last (which must be evaluated)."""
        if self._stepper.ledger.max_entries == 0:
            return 0
        if request.prefix_messages and request.messages is not None:
            text = self._model.apply_template(request.messages[:request.prefix_messages], add_assistant=False)
        elif request.prefix_chars and request.prompt is not None:
            text = request.prompt[:request.prefix_chars]
        else:
            return 0
        head = self._model.tokenize(text)
        n = len(head)
        if n > len(tokens) or not np.array_equal(tokens[:n], head):
            log.debug("request %s: its marked prefix (%d tokens) is not a token prefix of its prompt; "
                      "not keeping it", request.request_id, n)
            return 0
        n = min(n, len(tokens) - 1)
        return n if n >= MIN_PREFIX_TOKENS else 0

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
        self._stepper.policy = policy      # read once per step by the engine thread
        self._wake.set()

    def stats(self) -> EngineStats:
        return self._stepper.stats

    def live_ids(self) -> list[str]:
        """Ids of requests submitted and not yet finished."""
        with self._lock:
            return list(self._live)

    def kv_used_tokens(self) -> int:
        """KV cells in use now (live sequences' own cells + cached prefixes)."""
        return self._stepper.stats.kv_used_tokens

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
        for seq in list(self._stepper.seqs.values()):
            seq.handle.fail(Cancelled("engine closed"))
        while self._inbox:
            cmd = self._inbox.popleft()
            if cmd[0] == "submit":
                cmd[1].handle.fail(Cancelled("engine closed"))
            elif len(cmd) > 3 and not cmd[3].done():
                cmd[3].set_exception(Cancelled("engine closed"))
        self._stepper.seqs.clear()
        with self._lock:
            self._live.clear()
        self._constrainer.close()
        if self._stepper.prefix_store is not None:
            self._stepper.prefix_store.close()        # pending prefix files are written first
        self._ctx.close()
        self._model.close()
        if self._own_snap_dir and self._stepper.snap_dir is not None:
            shutil.rmtree(self._stepper.snap_dir, ignore_errors=True)

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
    def _done(self, rid: str) -> None:
        with self._lock:
            self._live.discard(rid)

    def _run(self) -> None:
        st = self._stepper
        while not self._stopping:
            try:
                self._drain()
                ran = st.step()
            except Exception as e:   # never let the engine thread die: fail what was running
                log.exception("engine step failed")
                st.fail_all(as_engine_error(e))
                ran = False
            if not ran and not self._stopping:
                busy = any(not s.held for s in st.seqs.values())
                self._wake.wait(_IDLE_WAIT_S if busy else None)
                self._wake.clear()

    def _drain(self) -> None:
        st = self._stepper
        while self._inbox:
            cmd = self._inbox.popleft()
            kind = cmd[0]
            if kind == "submit":
                seq: Seq = cmd[1]
                st.seqs[seq.rid] = seq
            elif kind == "cancel":
                seq = st.seqs.get(cmd[1])
                if seq is not None:
                    st.finish(seq, "cancelled")
            elif kind == "clear":
                st.ledger.clear()
            else:
                _, rid, args, fut = cmd
                try:
                    fut.set_result(self._apply_command(kind, rid, *args))
                except Exception as e:
                    fut.set_exception(e if isinstance(e, LLMOSError) else as_engine_error(e))

    def _apply_command(self, kind: str, rid: str, *args: Any) -> None:
        if kind == "noop":
            return
        seq = self._stepper.seqs.get(rid)
        if seq is None:
            raise EngineError(f"no live sequence {rid}", hint="it finished, was cancelled, or never existed")
        if kind == "suspend":
            if seq.resident:
                self._stepper.swap_out(seq, to_disk=bool(args and args[0]))
            seq.held = True
        elif kind == "resume":
            seq.held = False

    # ── introspection for tests and benches ─────────────────────────────────
    def ledger_snapshot(self) -> dict[str, Any]:
        """KV accounting facts (read between steps, e.g. after ``await sync()``)."""
        return self._stepper.facts()

    @property
    def prefix_store(self) -> PrefixStore | None:
        """Where marked prefixes persist (None: not persisted)."""
        return self._stepper.prefix_store

    @property
    def snapshot_dir(self) -> Path | None:
        """Where ``suspend(..., to_disk=True)`` writes KV snapshots (made on first use)."""
        return self._stepper.snap_dir

    @property
    def timing(self) -> dict[str, float]:
        """Engine-thread seconds: ``step_s`` (steps that ran a batch), ``decode_s`` (llama_decode)."""
        return self._stepper.timing

    @property
    def last_decision(self) -> StepDecision | None:
        return self._stepper.last_decision
