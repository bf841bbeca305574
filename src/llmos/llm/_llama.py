"""Every ctypes call into llama.cpp's low-level API (llama-cpp-python 0.3.36, pinned).

The low-level API changes between releases; nothing else in LLM OS touches
``llama_cpp`` directly, so an upgrade is fixed here alone.

Map:
- ``Model``: load a GGUF; vocab facts (size, end-of-generation ids); ``tokenize``,
  ``piece`` (token → bytes), ``detokenize``; the chat template from the GGUF
  metadata and ``apply_template`` (llama.cpp's built-in renderer, Jinja as the
  fallback); ``token_table`` (every token's bytes, for llguidance's tokenizer).
- ``Context``: one context with ``n_seq_max`` sequences sharing a unified KV
  cache; ``decode(batch)``; ``logits(n)`` as a numpy view; memory ops on one
  sequence (``seq_rm``, ``seq_cp``, ``seq_pos_max``, ``clear``); one sequence's
  state out and in (``state_get`` / ``state_set``, numpy ``uint8`` buffers) and the
  ``layout`` that state depends on.
- ``Batch``: a ``llama_batch`` laid over numpy arrays, one seq id per token, so
  a whole step's tokens are written with vectorized slices.

Foreign failures become ``ModelError`` / ``EngineError`` here.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import llama_cpp as L
import numpy as np

from llmos.errors import EngineError, ModelError

__all__ = ["Model", "Context", "Batch", "DECODE_OK", "DECODE_NO_SLOT", "DECODE_ABORTED",
           "max_parallel_sequences"]

log = logging.getLogger("llmos.llm.llama")

DECODE_OK = 0
DECODE_NO_SLOT = 1          # llama_decode: no KV slot for this batch (slots for every ubatch
                            # are found before any is computed, so nothing was applied)
DECODE_ABORTED = 2          # llama_decode: stopped at the context's deadline (set_deadline); the
                            # batch's sequences lose their cells from the aborted ubatch on

_I32P = ctypes.POINTER(ctypes.c_int32)
_U8P = ctypes.POINTER(ctypes.c_uint8)
_LEVELS = {3: logging.WARNING, 4: logging.ERROR}   # ggml_log_level: 2 info, 3 warn, 4 error


_aborting = False           # a decode is being aborted at its deadline: its error lines are expected


@L.llama_log_callback
def _log_callback(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    # llama.cpp logs every tensor at load time; keep warnings and errors only.
    if _aborting:
        return
    lvl = _LEVELS.get(level)
    if lvl is not None and text:
        log.log(lvl, "%s", text.decode("utf-8", "replace").rstrip())


L.llama_log_set(_log_callback, ctypes.c_void_p(0))
L.llama_backend_init()


def max_parallel_sequences() -> int:
    """Most seq ids one context may have (a build constant of llama.cpp)."""
    return int(L.llama_max_parallel_sequences())


class Model:
    """A loaded GGUF and its vocabulary. Read-only after load, so safe to share
    between the event-loop thread (tokenize) and the engine thread (decode)."""

    def __init__(self, path: str | Path, *, n_gpu_layers: int = 0, extra_buffers: bool = False) -> None:
        p = Path(path)
        if not p.is_file():
            raise ModelError(f"model file {p} does not exist", hint="give the path of a .gguf file")
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = n_gpu_layers
        # The CPU "extra buffer" (AMX / repacked weights) path segfaults in decode
        # on the Sapphire Rapids machines this was built on; plain buffers are safe.
        mp.use_extra_bufts = extra_buffers
        ptr = L.llama_model_load_from_file(str(p).encode(), mp)
        if not ptr:
            raise ModelError(f"llama.cpp could not load {p}", hint="is it a valid GGUF file?")
        self.ptr = ptr                                       # llama_model*, freed by close()
        self.path = p
        self.n_gpu_layers = n_gpu_layers
        self.vocab = L.llama_model_get_vocab(ptr)            # owned by the model
        self.n_vocab: int = L.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train: int = L.llama_model_n_ctx_train(ptr)
        self.add_bos: bool = bool(L.llama_vocab_get_add_bos(self.vocab))
        self.eos: int = L.llama_vocab_eos(self.vocab)
        self.eog = np.zeros(self.n_vocab, dtype=bool)        # end-of-generation token ids
        for t in range(self.n_vocab):
            if L.llama_vocab_is_eog(self.vocab, t):
                self.eog[t] = True
        tmpl = L.llama_model_chat_template(ptr, None)
        self.chat_template: str | None = tmpl.decode("utf-8", "replace") if tmpl else None
        self._piece_buf = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}                  # token id → bytes, filled on use
        self._jinja = None

    def close(self) -> None:
        if self.ptr:
            L.llama_model_free(self.ptr)
            self.ptr = None

    # ── tokens ──────────────────────────────────────────────────────────────
    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> np.ndarray:
        data = text.encode("utf-8")
        cap = len(data) + 16
        while True:
            buf = (ctypes.c_int32 * cap)()
            n = L.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
            if n >= 0:
                return np.frombuffer(buf, dtype=np.int32, count=n).copy()
            if n == np.iinfo(np.int32).min:
                raise EngineError("tokenizer overflow: text too long")
            cap = -n

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (control tokens render as b'')."""
        out = self._pieces.get(token)
        if out is None:
            n = L.llama_token_to_piece(self.vocab, token, self._piece_buf, 256, 0, False)
            out = self._piece_buf.raw[:max(n, 0)]
            self._pieces[token] = out
        return out

    def detokenize(self, tokens: Sequence[int]) -> str:
        arr = (ctypes.c_int32 * len(tokens))(*tokens)
        cap = 8 * len(tokens) + 16
        while True:
            buf = ctypes.create_string_buffer(cap)
            n = L.llama_detokenize(self.vocab, arr, len(tokens), buf, cap, False, False)
            if n >= 0:
                return buf.raw[:n].decode("utf-8", "replace")
            cap = -n

    def token_table(self) -> list[bytes]:
        """Every token's bytes as llguidance wants them: control tokens (and
        ``<...>`` user-defined ones) rendered and prefixed with 0xFF."""
        buf = ctypes.create_string_buffer(16 * 1024)
        out: list[bytes] = []
        for t in range(self.n_vocab):
            n = L.llama_token_to_piece(self.vocab, t, buf, 16 * 1024, 0, True)
            if n < 0:
                raise EngineError(f"token {t} does not fit a 16 KiB piece buffer")
            tok = buf.raw[:n]
            attr = L.llama_vocab_get_attr(self.vocab, t)
            if attr & L.LLAMA_TOKEN_ATTR_CONTROL or (
                    attr & L.LLAMA_TOKEN_ATTR_USER_DEFINED and tok.startswith(b"<") and tok.endswith(b">")):
                tok = b"\xff" + tok
            out.append(tok)
        return out

    def tokenize_fn_ptr(self) -> int:
        """Address of the C ``llama_tokenize`` (llguidance calls it directly): the public
        binding is the library's own ctypes function, so its address is the C symbol's."""
        return int(ctypes.cast(L.llama_tokenize, ctypes.c_void_p).value or 0)

    # ── chat template ───────────────────────────────────────────────────────
    def apply_template(self, messages: Sequence[dict], *, add_assistant: bool = True) -> str:
        """Render chat messages with the GGUF's template (ChatML when it has none)."""
        tmpl = (self.chat_template or "chatml").encode("utf-8")
        keep = [(str(m.get("role", "")).encode(), str(m.get("content", "")).encode()) for m in messages]
        arr = (L.llama_chat_message * len(keep))(*[L.llama_chat_message(r, c) for r, c in keep])
        cap = sum(len(r) + len(c) for r, c in keep) * 2 + 256
        n = -1
        for _ in range(2):
            buf = ctypes.create_string_buffer(cap)
            n = L.llama_chat_apply_template(tmpl, arr, len(keep), add_assistant, buf, cap)
            if n < 0:
                break
            if n <= cap:
                return buf.raw[:n].decode("utf-8", "replace")
            cap = n + 1
        return self._apply_jinja(messages, add_assistant)

    def _apply_jinja(self, messages: Sequence[dict], add_assistant: bool) -> str:
        # llama.cpp does not recognise this template: render the GGUF's Jinja source.
        if not self.chat_template:
            raise EngineError("the model's chat template could not be rendered")
        if self._jinja is None:
            import jinja2.sandbox

            env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            self._jinja = env.from_string(self.chat_template)
        return self._jinja.render(messages=list(messages), add_generation_prompt=add_assistant,
                                  bos_token="", eos_token=self.piece(self.eos).decode("utf-8", "replace"))


class Context:
    """One llama.cpp context: ``n_seq_max`` sequences in one unified KV cache of ``n_ctx`` cells."""

    def __init__(self, model: Model, *, n_ctx: int, n_batch: int, n_seq_max: int, threads: int,
                 flash_attn: int = -1, n_ubatch: int | None = None) -> None:
        cp = L.llama_context_default_params()
        cp.flash_attn_type = flash_attn   # -1 auto, 0 off, 1 on
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_ubatch or n_batch
        cp.n_seq_max = n_seq_max
        cp.n_outputs_max = max(n_batch, n_seq_max)   # llama.cpp asserts outputs >= seq ids
        cp.kv_unified = True             # every sequence may use every cell (shared prefixes too)
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.no_perf = True
        ptr = L.llama_init_from_model(model.ptr, cp)
        if not ptr:
            raise EngineError(f"llama.cpp could not create a context of {n_ctx} tokens "
                              f"for {n_seq_max} sequences", hint="lower engine.n_ctx or engine.n_seq_max")
        self.ptr = ptr                                   # llama_context*, freed by close()
        self.model = model
        self.mem = L.llama_get_memory(ptr)               # owned by the context
        self.n_ctx: int = L.llama_n_ctx(ptr)
        self.n_seq_max: int = L.llama_n_seq_max(ptr)
        self.n_batch: int = L.llama_n_batch(ptr)
        # what a sequence's saved state depends on besides the model file and its tokens
        # (the library's state format, the V layout, the kernels' rounding): prefix files
        # made under another layout are never offered to this context
        self.layout = (f"llama-cpp-python {L.__version__}; flash_attn {flash_attn}; "
                       f"n_ubatch {cp.n_ubatch}; n_gpu_layers {model.n_gpu_layers}")
        self.threads = threads                          # llama.cpp threads (set_threads changes it)
        self._deadline: float | None = None             # perf_counter s; None: decode runs to the end
        self._abort_cb = L.ggml_abort_callback(self._should_abort)   # kept alive with the context

    def set_threads(self, threads: int) -> None:
        """Threads for the next decodes (generation and batch alike)."""
        L.llama_set_n_threads(self.ptr, threads, threads)
        self.threads = threads

    def set_deadline(self, deadline: float | None) -> None:
        """Abort any decode still running at ``deadline`` (``time.perf_counter`` seconds):
        it returns DECODE_ABORTED. None: no deadline (and no callback on the hot path).
        llama.cpp asks between graph nodes, so the overshoot is one op."""
        self._deadline = deadline
        cb = self._abort_cb if deadline is not None else ctypes.cast(None, L.ggml_abort_callback)
        L.llama_set_abort_callback(self.ptr, cb, None)

    def _should_abort(self, _data: ctypes.c_void_p) -> bool:
        global _aborting
        if self._deadline is not None and time.perf_counter() > self._deadline:
            _aborting = True
            return True
        return False

    def close(self) -> None:
        if self.ptr:
            L.llama_free(self.ptr)
            self.ptr = None

    def decode(self, batch: Batch) -> int:
        """Run one batch. Returns DECODE_OK, DECODE_NO_SLOT or (past a deadline)
        DECODE_ABORTED; raises on real failures."""
        global _aborting
        try:
            rc = L.llama_decode(self.ptr, batch.struct)
        finally:
            _aborting = False
        if rc in (DECODE_OK, DECODE_NO_SLOT) or (rc == DECODE_ABORTED and self._deadline is not None):
            return rc
        raise EngineError(f"llama_decode failed (code {rc}) on a batch of {batch.n_tokens} tokens")

    def logits(self, n_rows: int) -> np.ndarray:
        """The last decode's logits: (n_rows, n_vocab) float32, in batch order of the
        tokens that asked for them. A view, valid until the next decode."""
        ptr = L.llama_get_logits(self.ptr)
        return np.ctypeslib.as_array(ptr, shape=(n_rows, self.model.n_vocab))

    # ── memory ──────────────────────────────────────────────────────────────
    def seq_rm(self, seq_id: int, p0: int = -1, p1: int = -1) -> bool:
        return bool(L.llama_memory_seq_rm(self.mem, seq_id, p0, p1))

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        """Share ``src``'s cells at positions [p0, p1) with ``dst`` (no copy in a unified cache)."""
        L.llama_memory_seq_cp(self.mem, src, dst, p0, p1)

    def seq_pos_max(self, seq_id: int) -> int:
        """Largest position held by ``seq_id``; -1 when it holds none."""
        return int(L.llama_memory_seq_pos_max(self.mem, seq_id))

    def clear(self) -> None:
        L.llama_memory_clear(self.mem, True)

    def state_get(self, seq_id: int) -> np.ndarray:
        """Snapshot one sequence's KV into a new uint8 buffer."""
        size = L.llama_state_seq_get_size(self.ptr, seq_id)
        buf = np.empty(size, dtype=np.uint8)
        n = L.llama_state_seq_get_data(self.ptr, buf.ctypes.data_as(_U8P), size, seq_id)
        if n != size:
            raise EngineError(f"snapshot of sequence {seq_id} wrote {n} of {size} bytes")
        return buf

    def state_set(self, seq_id: int, data: np.ndarray) -> None:
        """Restore a snapshot into ``seq_id`` (which must hold nothing)."""
        data = np.ascontiguousarray(data, dtype=np.uint8)
        n = L.llama_state_seq_set_data(self.ptr, data.ctypes.data_as(_U8P), data.size, seq_id)
        if n == 0:
            raise EngineError(f"restoring a {data.size}-byte snapshot into sequence {seq_id} failed",
                              hint="the KV cache may be full, or the snapshot is from another model")


class Batch:
    """A ``llama_batch`` over numpy arrays: one seq id per token, logits where asked.

    ``add`` writes a run of tokens of one sequence with vectorized slices and
    returns the output row of its last token (or -1)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.seq = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.want = np.zeros(capacity, dtype=np.int8)
        base = self.seq.ctypes.data
        self._seq_ptrs = (_I32P * capacity)(*[ctypes.cast(base + 4 * i, _I32P) for i in range(capacity)])
        s = L.llama_batch()
        s.token = self.token.ctypes.data_as(_I32P)
        s.embd = None
        s.pos = self.pos.ctypes.data_as(_I32P)
        s.n_seq_id = self.n_seq_id.ctypes.data_as(_I32P)
        s.seq_id = self._seq_ptrs
        s.logits = self.want.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self.struct = s
        self.n_tokens = 0      # tokens written since clear()
        self.n_outputs = 0     # of which ask for logits

    def clear(self) -> None:
        self.n_tokens = 0
        self.n_outputs = 0

    @property
    def room(self) -> int:
        return self.capacity - self.n_tokens

    def add(self, tokens: np.ndarray | Sequence[int], pos0: int, seq_id: int, logits_last: bool) -> int:
        k = len(tokens)
        a, b = self.n_tokens, self.n_tokens + k
        if k == 0 or b > self.capacity:
            raise EngineError(f"batch overflow: {b} > {self.capacity} tokens")
        self.token[a:b] = tokens
        self.pos[a:b] = np.arange(pos0, pos0 + k, dtype=np.int32)
        self.seq[a:b] = seq_id
        self.want[a:b] = 0
        self.n_tokens = b
        self.struct.n_tokens = b
        if not logits_last:
            return -1
        self.want[b - 1] = 1
        self.n_outputs += 1
        return self.n_outputs - 1
