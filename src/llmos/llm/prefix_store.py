"""Prompt-prefix KV files: a marked fixed prefix's KV state kept on disk, so a fresh
process (a restarted daemon, an in-process ``llmos run``) loads it instead of
evaluating its tokens again.

Map:
- ``model_digest(path, variant)``: what a file's KV depends on besides its tokens (the
  GGUF by path, size and mtime; the context's layout and numerics) as 16 hex digits.
- ``PrefixStore(directory, model_digest, n_ctx)``: ``path_for(tokens)``, ``load(tokens)``
  (bytes for ``llama_state_seq_set_data``, or None), ``save(tokens, data)`` (on a writer
  thread), ``flush``, ``close``, ``prune``; ``counts`` for tests and benches.
- ``encode`` / ``decode``: the file format (below), pure functions.

File name: ``<model digest>-<n_ctx>-<sha256 of the int32 token ids, 32 hex>.bin``.
File format (little-endian)::

    magic "LLMOSKV1" | u32 n_tokens | u32 crc32(payload) | u64 payload bytes
    | n_tokens × i32 token ids | payload (one sequence's llama_state_seq_get_data)

NOTE (durability). A file is written to a temporary name in the same directory and
renamed over the final name, so a reader sees a whole file or none; nothing is fsynced
(it is a cache), so a power cut may leave a torn file, which the length and CRC checks
reject. A rejected file is deleted and counted; the engine then evaluates the prefix
and writes it again. Several processes may share the directory: renames are atomic,
and a file pruned under a reader is a miss. The directory is bounded by ``max_files``
and ``max_bytes`` (least recently used first: a hit refreshes a file's mtime).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import logging
import os
import struct
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from llmos import params

__all__ = ["PrefixStore", "model_digest", "encode", "decode", "MAGIC"]

log = logging.getLogger("llmos.llm.prefix_store")

MAGIC = b"LLMOSKV1"
_HEAD = struct.Struct("<8sIIQ")      # magic, n_tokens, crc32 of payload, payload bytes
_TMP_PREFIX = ".tmp-"
_TMP_STALE_S = 600.0                  # a temp file this old belongs to a writer that died


def model_digest(path: str | Path, variant: str = "") -> str:
    """16 hex digits naming the model file (resolved path, size, mtime) and ``variant``
    (the context settings that change the KV's layout or numbers)."""
    p = Path(path).resolve()
    st = p.stat()
    h = hashlib.sha256(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0{variant}".encode())
    return h.hexdigest()[:16]


def tokens_digest(tokens: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(tokens, dtype="<i4").tobytes()).hexdigest()[:32]


def encode(tokens: np.ndarray, payload: np.ndarray) -> list[bytes | memoryview]:
    """The file's bytes, as parts to write one after another."""
    toks = np.ascontiguousarray(tokens, dtype="<i4")
    data = np.ascontiguousarray(payload, dtype=np.uint8)
    head = _HEAD.pack(MAGIC, len(toks), zlib.crc32(data), data.size)
    return [head, toks.tobytes(), memoryview(data)]


def decode(raw: np.ndarray | bytes, tokens: np.ndarray) -> np.ndarray:
    """The payload of a file read whole, checked against the ``tokens`` it must hold.
    Raises ValueError saying what does not match."""
    buf = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, bytes) else raw
    if buf.size < _HEAD.size:
        raise ValueError(f"{buf.size} bytes: shorter than the header")
    magic, n_tokens, crc, n_payload = _HEAD.unpack(buf[:_HEAD.size].tobytes())
    if magic != MAGIC:
        raise ValueError(f"bad magic {magic!r}")
    want = np.ascontiguousarray(tokens, dtype="<i4")
    if n_tokens != len(want):
        raise ValueError(f"holds {n_tokens} tokens, expected {len(want)}")
    t0 = _HEAD.size
    p0 = t0 + 4 * n_tokens
    if buf.size != p0 + n_payload:
        raise ValueError(f"{buf.size} bytes, expected {p0 + n_payload}")
    if not np.array_equal(buf[t0:p0].view("<i4"), want):
        raise ValueError("token ids differ")
    payload = buf[p0:]
    if n_payload == 0 or zlib.crc32(payload) != crc:
        raise ValueError("payload checksum differs")
    return payload


class PrefixStore:
    """One directory of prefix files for one model and context size.

    ``load`` runs on the caller's thread (the engine thread); ``save`` hands the write
    to one writer thread, so the engine never waits for the disk; ``flush`` / ``close``
    wait for pending writes (an in-process run exits only after its file is down).
    """

    def __init__(self, directory: str | Path, model_digest: str, n_ctx: int, *,
                 max_files: int = params.ENGINE_PREFIX_FILES_MAX,
                 max_bytes: int = params.ENGINE_PREFIX_BYTES_MAX) -> None:
        self.dir = Path(directory)
        self.model_digest = model_digest
        self.n_ctx = n_ctx                     # tokens: part of the name (brief's key)
        self.max_files = max_files             # files kept after a save
        self.max_bytes = max_bytes             # bytes kept after a save, all files together
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None   # made on first save
        self._pending: list[concurrent.futures.Future] = []
        # counters (written by the engine thread and the writer thread; read by tests)
        self.counts = {"loaded": 0, "missed": 0, "rejected": 0, "saved": 0, "save_failed": 0}

    def path_for(self, tokens: np.ndarray) -> Path:
        return self.dir / f"{self.model_digest}-{self.n_ctx}-{tokens_digest(tokens)}.bin"

    # ── read ────────────────────────────────────────────────────────────────
    def load(self, tokens: np.ndarray) -> np.ndarray | None:
        """The saved KV state of ``tokens``, or None (no file, or a bad one, deleted)."""
        path = self.path_for(tokens)
        try:
            raw = np.fromfile(path, dtype=np.uint8)
        except FileNotFoundError:
            self.counts["missed"] += 1
            return None
        except OSError as e:
            log.warning("prefix file %s unreadable (%s); evaluating the prefix", path, e)
            self.counts["missed"] += 1
            return None
        try:
            payload = decode(raw, tokens)
        except ValueError as e:
            self.reject(path, str(e))
            return None
        with contextlib.suppress(OSError):
            os.utime(path)                     # recently used: pruned last
        self.counts["loaded"] += 1
        return payload

    def reject(self, path: Path, why: str) -> None:
        """A file that does not hold what its name says: delete it (it is written again)."""
        log.warning("ignoring prefix file %s: %s", path.name, why)
        self.counts["rejected"] += 1
        with contextlib.suppress(OSError):
            path.unlink()

    # ── write ───────────────────────────────────────────────────────────────
    def save(self, tokens: np.ndarray, payload: np.ndarray) -> concurrent.futures.Future:
        """Write ``tokens``' KV state on the writer thread (``payload`` must not change)."""
        if self._writer is None:
            self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="llmos-kv-prefix")
        self._pending = [f for f in self._pending if not f.done()]
        fut = self._writer.submit(self._write, tokens.copy(), payload)
        self._pending.append(fut)
        return fut

    def save_now(self, tokens: np.ndarray, payload: np.ndarray) -> Path | None:
        """Write on this thread; the path written, or None when the write failed (logged)."""
        return self._write(tokens, payload)

    def _write(self, tokens: np.ndarray, payload: np.ndarray) -> Path | None:
        path = self.path_for(tokens)
        tmp: str | None = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".bin", dir=self.dir)
            with os.fdopen(fd, "wb") as f:
                for part in encode(tokens, payload):
                    f.write(part)
            os.replace(tmp, path)
            tmp = None
        except OSError as e:
            log.warning("could not save prefix file %s: %s", path, e)
            self.counts["save_failed"] += 1
            return None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        self.counts["saved"] += 1
        self.prune()
        return path

    def prune(self) -> list[Path]:
        """Delete the least recently used files past ``max_files`` / ``max_bytes`` (and temp
        files a dead writer left); returns what was deleted."""
        files: list[tuple[float, int, Path]] = []
        gone: list[Path] = []
        now = time.time()
        try:
            entries = list(os.scandir(self.dir))
        except OSError:
            return gone
        for e in entries:
            try:
                st = e.stat()
            except OSError:
                continue
            if e.name.startswith(_TMP_PREFIX):
                if now - st.st_mtime > _TMP_STALE_S:
                    gone.append(Path(e.path))
            elif e.name.endswith(".bin") and e.is_file():
                files.append((st.st_mtime, st.st_size, Path(e.path)))
        files.sort(key=lambda t: t[0], reverse=True)          # newest first
        kept_n, kept_bytes = 0, 0
        for _, size, path in files:
            if kept_n < self.max_files and kept_bytes + size <= self.max_bytes:
                kept_n += 1
                kept_bytes += size
            else:
                gone.append(path)
        for path in gone:
            with contextlib.suppress(OSError):
                path.unlink()
        return gone

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait for every pending write."""
        pending, self._pending = self._pending, []
        concurrent.futures.wait(pending, timeout=timeout_s)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        self._pending = []
