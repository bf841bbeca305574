"""Per-sequence token samplers over a whole step's logits, in numpy.

Map:
- ``Sampler``: one sequence's settings (temperature, top-k, top-p) and its own
  random generator (seeded: the same seed gives the same tokens).
- ``sample_batch(logits, samplers)``: one token per row. Greedy rows are one
  ``argmax`` over all of them together; sampled rows work on a candidate set
  (top-k, or the few thousand most likely tokens when that already holds the
  top-p mass), never a Python loop over the vocabulary.

Rows may carry ``-inf`` where a grammar mask forbade a token.
"""

from __future__ import annotations

import numpy as np

from llmos.llm.base import SamplingParams

__all__ = ["Sampler", "sample_batch"]

_NUCLEUS_CANDIDATES = 2048   # tokens: first try top-p inside this many most likely ones


class Sampler:
    __slots__ = ("temperature", "top_p", "top_k", "rng")

    def __init__(self, p: SamplingParams) -> None:
        self.temperature = float(p.temperature)      # 0: greedy
        self.top_p = float(p.top_p)
        self.top_k = int(p.top_k)                    # 0: off
        self.rng = np.random.default_rng(p.seed)     # owned by this sequence's sampler

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1

    def sample(self, row: np.ndarray) -> int:
        """One token from one row of logits (float32, length n_vocab)."""
        x = row.astype(np.float64) / self.temperature
        v = x.shape[0]
        if 0 < self.top_k < v:
            cand = np.argpartition(-x, self.top_k - 1)[: self.top_k]
        elif self.top_p < 1.0 and v > _NUCLEUS_CANDIDATES:
            cand = np.argpartition(-x, _NUCLEUS_CANDIDATES - 1)[:_NUCLEUS_CANDIDATES]
            m = x[cand].max()
            total = np.exp(x - m).sum()
            if np.exp(x[cand] - m).sum() < self.top_p * total:   # nucleus spills over: use all
                cand = np.arange(v)
        else:
            cand = np.arange(v)
        logits = x[cand]
        order = np.argsort(-logits, kind="stable")
        cand, logits = cand[order], logits[order]
        probs = np.exp(logits - logits[0])
        probs /= probs.sum()
        if self.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), self.top_p)) + 1
            probs = probs[:keep] / probs[:keep].sum()
            cand = cand[:keep]
        return int(cand[self.rng.choice(len(cand), p=probs)])


def sample_batch(logits: np.ndarray, samplers: list[Sampler]) -> np.ndarray:
    """One token id per row: logits (k, n_vocab) float32 → (k,) int64."""
    k = logits.shape[0]
    greedy = np.fromiter((s.greedy for s in samplers), dtype=bool, count=k)
    if greedy.all():
        return logits.argmax(axis=1)
    out = np.empty(k, dtype=np.int64)
    if greedy.any():
        out[greedy] = logits[greedy].argmax(axis=1)
    for i in np.flatnonzero(~greedy):
        out[i] = samplers[i].sample(logits[i])
    return out
