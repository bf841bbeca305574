"""Sign-bit signatures of one agent's memory chunks, in RAM: the candidate scan of a recall.

``Signatures.nearest(sig, count, allowed)`` returns the chunk ids with the fewest differing
sign bits. Built with ``codes=True`` it also keeps each chunk's vector as int8 codes, and
``ranked(vec, count, depth, allowed)`` orders those candidates by the codes' cosine and
keeps the best ``depth``; ``kernel.longterm`` ranks what it hands over exactly with the
float vectors it stores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["Signatures", "sign_bits"]


class Signatures:
    """One agent's chunk ids and sign bits in RAM: the candidate scan of a recall.

    Bits are stored word-major (``[words, n]``): the scan is ``words`` passes of xor and
    popcount over contiguous arrays (1.4 ms for 100k chunks here, 5x a row-major sum).
    Owned by ``LongTermMemory`` (changed only under its lock, after a commit)."""

    def __init__(self, words: int, codes: bool = False) -> None:
        self.words = words                                   # uint64 words per signature
        self.n = 0                                           # rows in use
        self._ids = np.zeros(0, np.int64)                    # [cap] chunk ids
        self._bits = np.zeros((words, 0), np.uint64)         # [words, cap] sign bits
        # int8 codes of the vectors (codes=True): component = code * scale; [cap, 64 words]
        self._codes = np.zeros((0, 64 * words), np.int8) if codes else None
        self._scale = np.zeros(0, np.float32)                # [cap] per row

    def add(self, ids: Sequence[int], sigs: Sequence[bytes], vecs: np.ndarray | None = None) -> None:
        """Rows for chunk ``ids``: their packed sign bits and, with codes, vectors [m, dim]."""
        m = len(ids)
        if (vecs is None) != (self._codes is None):
            raise ValueError("vecs: expected exactly when the signatures keep codes")
        if self.n + m > len(self._ids):
            cap = max(1024, 2 * (self.n + m))
            self._ids = np.resize(self._ids, cap)
            bits = np.zeros((self.words, cap), np.uint64)
            bits[:, :self.n] = self._bits[:, :self.n]
            self._bits = bits
            if self._codes is not None:
                codes = np.zeros((cap, self._codes.shape[1]), np.int8)
                codes[:self.n] = self._codes[:self.n]
                self._codes, self._scale = codes, np.resize(self._scale, cap)
        self._ids[self.n:self.n + m] = ids
        if m:
            self._bits[:, self.n:self.n + m] = np.frombuffer(b"".join(sigs), np.uint64).reshape(m, self.words).T
        if m and self._codes is not None:
            v = np.asarray(vecs, np.float32).reshape(m, self._codes.shape[1])
            scale = np.abs(v).max(1) / 127.0
            scale[scale == 0] = 1.0
            self._codes[self.n:self.n + m] = np.rint(v / scale[:, None])
            self._scale[self.n:self.n + m] = scale
        self.n += m

    def remove(self, ids: Sequence[int]) -> None:
        keep = ~np.isin(self._ids[:self.n], np.asarray(ids, np.int64))
        k = int(keep.sum())
        self._ids[:k] = self._ids[:self.n][keep]
        self._bits[:, :k] = self._bits[:, :self.n][:, keep]
        if self._codes is not None:
            self._codes[:k] = self._codes[:self.n][keep]
            self._scale[:k] = self._scale[:self.n][keep]
        self.n = k

    def nearest(self, sig: bytes, count: int, allowed: np.ndarray | None = None) -> np.ndarray:
        """Ids of the ``count`` chunks with the fewest differing sign bits (among ``allowed``)."""
        return self._ids[self._near(sig, count, allowed)]

    def ranked(self, vec: np.ndarray, count: int, depth: int, allowed: np.ndarray | None = None) -> np.ndarray:
        """Ids of the ``depth`` chunks nearest unit ``vec`` by the cosine of their codes (within
        0.002 of the float one) among the ``count`` that ``nearest`` finds, best first. Reads
        ``count`` x dim bytes of codes, where the float vectors in SQLite were 4x that,
        scattered over the database's pages (5 ms at 100k chunks under load)."""
        if self._codes is None:
            raise ValueError("ranked: these signatures keep no codes (Signatures(words, codes=True))")
        vec = np.asarray(vec, np.float32)
        pos = self._near(sign_bits(vec), count, allowed)
        sim = (self._codes[pos].astype(np.float32) @ vec) * self._scale[pos]   # [count] cosine, approx.
        if len(pos) > depth:
            top = np.argpartition(-sim, depth)[:depth]
            pos, sim = pos[top], sim[top]
        return self._ids[pos[np.argsort(-sim, kind="stable")]]

    def _near(self, sig: bytes, count: int, allowed: np.ndarray | None) -> np.ndarray:
        """Rows (positions) of the ``count`` chunks with the fewest differing sign bits."""
        rows, bits = None, self._bits[:, :self.n]           # rows None: every row, in order
        if allowed is not None:
            rows = np.flatnonzero(np.isin(self._ids[:self.n], allowed))
            bits = bits[:, rows]
        n = self.n if rows is None else len(rows)
        if n <= count:
            return np.arange(n) if rows is None else rows
        q = np.frombuffer(sig, np.uint64)
        dist = np.zeros(n, np.uint16)                        # [n] Hamming distance
        for w in range(self.words):
            dist += np.bitwise_count(bits[w] ^ q[w])
        # the smallest distance t with at least `count` chunks within it (a histogram: 5x
        # faster than argpartition here); ties at t come along, a few at most
        t = int(np.searchsorted(np.cumsum(np.bincount(dist, minlength=64 * self.words + 1)), count))
        near = np.flatnonzero(dist <= t)
        if len(near) > 2 * count:
            near = near[np.argpartition(dist[near], count)[:count]]
        return near if rows is None else rows[near]


def sign_bits(v: np.ndarray) -> bytes:
    """Sign bits of a vector, packed (dim / 8 bytes): what the table stores and scans."""
    return np.packbits(v > 0).tobytes()
