"""Constrained decoding: JSON-schema and grammar output with llguidance.

Map:
- ``compile_grammar(json_schema=, grammar=)``: the llguidance grammar text for a
  request; a bad schema or grammar raises ``InvalidRequest`` naming the field.
- ``Constrainer``: per model. Owns the ``LLTokenizer`` built from the llama.cpp
  vocabulary (built once, on first use), an ``LLExecutor`` (mask threads) and a
  mask thread. ``matcher(grammar)`` makes one ``LLMatcher`` per sequence;
  ``start(matchers)`` fills the masks of every constrained row of a step in one
  parallel call on the mask thread, so it overlaps the step's ``llama_decode``;
  ``apply(logits, rows, masks)`` writes -inf where they forbid, with numpy;
  ``commit(matcher, token)`` advances one matcher.

Traps seen with small models: JSON objects are open unless
``additionalProperties: false`` (the model invents keys); integers want a
``maximum``, strings and arrays want bounds, or the model may loop until
``max_tokens``. Output is compact JSON (no free whitespace) unless the schema's
``x-guidance`` says otherwise.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
from typing import Any

import llguidance
import numpy as np

from llmos.errors import EngineError, InvalidRequest
from llmos.llm._llama import Model

__all__ = ["compile_grammar", "Constrainer"]

_JSON_DEFAULTS = {"whitespace_flexible": False}


def compile_grammar(json_schema: dict[str, Any] | None = None, grammar: str | None = None) -> str:
    """The llguidance grammar for a JSON schema or a Lark grammar (syntax checked later
    against the tokenizer by ``Constrainer.matcher``)."""
    if json_schema is not None:
        if not isinstance(json_schema, dict):
            raise InvalidRequest("json_schema: expected a JSON object", field="json_schema",
                                 expected="a JSON Schema object")
        try:
            return llguidance.LLMatcher.grammar_from_json_schema(json.dumps(json_schema),
                                                                 defaults=_JSON_DEFAULTS)  # type: ignore[arg-type]
        except (ValueError, TypeError) as e:
            raise InvalidRequest(f"json_schema: {_first_line(e)}", field="json_schema",
                                 expected="a valid JSON Schema") from None
    if grammar is not None:
        if not isinstance(grammar, str) or not grammar.strip():
            raise InvalidRequest("grammar: expected a non-empty Lark grammar", field="grammar",
                                 expected="Lark grammar text")
        return llguidance.LLMatcher.grammar_from_lark(grammar)
    raise InvalidRequest("expected a json_schema or a grammar", field="json_schema",
                         expected="a JSON Schema object")


def _first_line(e: BaseException | str) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:300] if s else type(e).__name__


class Constrainer:
    """Grammar masks for one model. ``matcher`` may be called from any thread;
    ``apply`` and ``commit`` run on the engine thread."""

    def __init__(self, model: Model, *, threads: int | None = None) -> None:
        self.model = model
        self.n_vocab = model.n_vocab
        self._tokenizer: llguidance.LLTokenizer | None = None   # built on first use
        self._lock = threading.Lock()
        self._executor = llguidance.LLExecutor(num_threads=threads)
        self._words = (self.n_vocab + 31) // 32                   # int32 words per mask row
        # masks are computed here while llama_decode runs on the engine thread
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="llmos-masks")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    @property
    def tokenizer(self) -> llguidance.LLTokenizer:
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = llguidance.LLTokenizer.from_llamacpp(  # type: ignore[attr-defined]
                    tokens=self.model.token_table(), vocab_ptr=self.model.vocab,
                    tokenize_fptr=self.model.tokenize_fn_ptr(), eos_token=self.model.eos, slices=None)
            return self._tokenizer

    def matcher(self, grammar: str, *, field: str = "json_schema") -> llguidance.LLMatcher:
        """A fresh matcher for one sequence; InvalidRequest when the grammar is bad."""
        tok = self.tokenizer
        is_err, msgs = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, tok)
        if is_err:
            raise InvalidRequest(f"{field}: {_first_line(msgs[0] if msgs else 'invalid')}",
                                 field=field, expected="a valid JSON Schema" if field == "json_schema"
                                 else "a valid Lark grammar")
        m = llguidance.LLMatcher(tok, grammar, log_level=0)
        if m.is_error():
            raise InvalidRequest(f"{field}: {_first_line(m.get_error())}", field=field,
                                 expected="a valid JSON Schema" if field == "json_schema"
                                 else "a valid Lark grammar")
        return m

    def start(self, matchers: list[llguidance.LLMatcher]) -> concurrent.futures.Future:
        """Begin filling one bitmask row per matcher (k, n_words) int32 on the mask thread.
        The matchers must not change until the future is done."""
        return self._pool.submit(self._fill, list(matchers))

    def _fill(self, matchers: list[llguidance.LLMatcher]) -> np.ndarray:
        k = len(matchers)
        mask = np.empty((k, self._words), dtype=np.int32)
        self._executor.unsafe_compute_mask_ptr([(m, i) for i, m in enumerate(matchers)],
                                               mask.ctypes.data, self._words * 4, k)
        return mask

    def apply(self, logits: np.ndarray, rows: list[int], mask: np.ndarray) -> None:
        """Forbid, in place, every token the masks reject: ``mask`` row j belongs to
        ``logits`` row ``rows[j]`` (logits: (n, n_vocab) float32)."""
        if not rows:
            return
        forbidden = np.unpackbits((~mask).view(np.uint8), axis=1, count=self.n_vocab,
                                  bitorder="little").view(bool)        # (k, n_vocab)
        if len(rows) == logits.shape[0] and rows == list(range(len(rows))):
            np.copyto(logits, -np.inf, where=forbidden)
        else:
            for j, r in enumerate(rows):
                np.copyto(logits[r], -np.inf, where=forbidden[j])

    def commit(self, matcher: llguidance.LLMatcher, token: int) -> None:
        """Advance a matcher by the sampled token; EngineError if it rejects it."""
        if not matcher.consume_token(token) or matcher.is_error():
            raise EngineError(f"constrained decoding failed: {_first_line(matcher.get_error())}")

    @staticmethod
    def finished(matcher: llguidance.LLMatcher) -> bool:
        """The grammar is complete and allows nothing more (only end-of-text)."""
        return matcher.is_stopped()
