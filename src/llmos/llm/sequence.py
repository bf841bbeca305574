"""One request inside the embedded engine: tokens, KV position, text and stops.

Map:
- ``Seq``: everything the engine thread knows about one live request: prompt
  tokens, how much of it is in KV, generated ids, the token sampled but not yet
  decoded, its slot (seq id) and reservation, sampler and grammar matcher, the
  text assembled so far, its snapshot while swapped out, and its marked prefix.
- ``Seq.accept(token)``: fold a sampled token in; returns a finish reason
  ("stop" / "length") or None, and the text to stream.
- ``Seq.view()``: the ``SeqView`` a step policy sees.

Owned by the engine thread: nothing here is touched from another thread.
"""

from __future__ import annotations

import codecs
import time
from pathlib import Path

import numpy as np

from llmos.llm.base import Completion, FinishReason, GenerationHandle, SeqState, SeqView, Usage
from llmos.llm.kv import Holder
from llmos.llm.sampling import Sampler

__all__ = ["Seq"]


class Seq(Holder):
    """A live request (identity-hashed: it is a key in its prefix entry's refs)."""

    def __init__(self, handle: GenerationHandle, prompt: np.ndarray, matcher: object | None,
                 pin: int = 0) -> None:
        req = handle.request
        self.handle = handle
        self.rid = req.request_id
        self.owner = req.owner
        self.priority = req.priority
        self.max_tokens = req.params.max_tokens           # tokens
        self.stops = req.params.stop
        self.prompt = prompt                              # int32 token ids; immutable
        self.n_prompt = len(prompt)                       # tokens
        self.arrival = handle.submitted_at                # monotonic s
        self.state = SeqState.WAITING
        self.held = False             # suspended by the caller: invisible to the policy until resume
        self.slot: int | None = None  # seq id while resident
        self.reserved = 0             # KV cells reserved while resident (tokens)
        self.prefilled = 0            # prompt tokens in KV (shared prefix included)
        self.kv_len = 0               # tokens in KV: positions [0, kv_len)
        self.ids: list[int] = []      # generated token ids (the last may not be in KV yet)
        self.pending: int | None = None   # sampled, to be decoded next step
        self.sampler = Sampler(req.params)
        self.matcher = matcher        # llguidance matcher, or None
        self.snapshot: np.ndarray | None = None   # KV bytes while swapped out in memory
        self.snapshot_path: Path | None = None    # ... or on disk
        self.cached_tokens = 0        # prompt tokens reused from a shared prefix (first admission)
        # the marked fixed prefix (GenerationRequest.prefix_*): its first ``pin`` prompt tokens
        # (0: none) become a pinned prefix entry, loaded from or saved to a prefix file
        self.pin = pin                # tokens, < n_prompt
        self.pin_due = False          # evaluating it: promote + save once prefilled >= pin
        self.preemptions = 0
        self.advanced_at = -1         # engine step number that last advanced it
        self.first_token_at: float | None = None  # monotonic s
        self.text = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._stop_tail = max((len(s) for s in self.stops), default=0)

    # ── KV facts ────────────────────────────────────────────────────────────
    @property
    def resident(self) -> bool:
        return self.slot is not None

    def kv_tokens(self) -> np.ndarray:
        """Token ids at positions [0, kv_len)."""
        gen = self.kv_len - self.n_prompt
        if gen <= 0:
            return self.prompt[: self.kv_len]
        return np.concatenate([self.prompt, np.asarray(self.ids[:gen], dtype=np.int32)])

    def need_cells(self) -> int:
        """Cells this sequence may ever own past its shared base (its reservation)."""
        return self.n_prompt + self.max_tokens - self.base

    def view(self) -> SeqView:
        return SeqView(self.rid, self.owner, self.priority, self.state, self.arrival, self.n_prompt,
                       self.prefilled, len(self.ids), self.max_tokens,
                       self.kv_len if self.resident else 0)

    # ── tokens → text ───────────────────────────────────────────────────────
    def accept(self, token: int, piece: bytes, eog: bool) -> tuple[str, FinishReason | None]:
        """Fold in a sampled token. Returns (text to stream, finish reason or None)."""
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        self.ids.append(token)
        if eog:
            return "", "stop"
        delta = self._decoder.decode(piece)
        if delta:
            start = max(0, len(self.text) - self._stop_tail)
            self.text += delta
            for s in self.stops:
                i = self.text.find(s, start)
                if i >= 0:
                    self.text = self.text[:i]
                    return delta, "stop"
        if len(self.ids) >= self.max_tokens:
            return delta, "length"
        self.pending = token
        return delta, None

    def completion(self, reason: FinishReason, model: str) -> Completion:
        now = time.monotonic()
        first = self.first_token_at or now
        usage = Usage(prompt_tokens=self.n_prompt, completion_tokens=len(self.ids),
                      cached_tokens=self.cached_tokens, ttft_s=first - self.arrival,
                      decode_s=now - first, total_s=now - self.arrival, preemptions=self.preemptions)
        return Completion(self.rid, self.text, reason, usage, model)
