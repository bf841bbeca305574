"""Long-term memory by meaning: ``remember`` / ``recall`` / ``forget`` / ``list``, per agent,
in named collections an agent may share with another (``share`` / ``unshare``).

Map:
- ``LongTermMemory(path, embedder, clock_time)``: one SQLite database (``memory.db`` beside
  the journal) opened with apsw, because the stdlib ``sqlite3`` here cannot load
  extensions, with sqlite-vec loaded for its vector functions.
- Tables: ``memories`` (one row per remembered text: agent, collection, text, tags, time,
  bytes), ``shares`` (``memshare.MemoryShares``: owner, collection, grantee, mode),
  ``memory_tags``, ``chunks`` (the pieces the model reads whole), ``chunks_fts`` (FTS5 over
  the chunks), ``usage`` (bytes and count per agent, for the quota) and ``vectors`` (per
  chunk: the float32 embedding and its sign bits). ``vectors`` is derived data: when it is
  found wrong (missing, short, rows of the wrong size, another model) it is rebuilt from
  the chunks' texts and the log says so.
- ``remember``: check, cut into chunks (``memtext``: the limits, ``chunk``, and
  ``context_block`` for recalled memory in a prompt), embed outside the lock, then one
  transaction that checks the quota first: a refused or failed write leaves nothing.
- ``recall``: hybrid. Vector side: ``Signatures`` (the agent's sign bits and int8 codes in
  RAM) gives ``SCAN_CANDIDATES`` chunks by Hamming distance, their codes keep the nearest
  ``FUSE_DEPTH``, and sqlite-vec's ``vec_distance_cosine`` ranks those exactly. Word side: FTS5 bm25 over the chunks holding every word of the
  query (names, codes, numbers: where embeddings are weak). The two chunk rankings are
  fused by reciprocal rank (``RRF_K``); a memory scores as its best chunk. A query asked
  again takes its vector from an LRU of recent ones (``QUERY_CACHE``).

NOTE (how the ranking was chosen): on bench/data/recall_set.jsonl (written first),
recall@5 was FTS5 alone (any word, bm25) 0.38, vectors alone 0.98, both fused with the
any-word FTS5 list 0.68 (common words bring noise that outranks meaning), and fused with
the every-word list 0.98. Every-word matching is also what keeps the word side fast at
100k memories (posting lists intersect; any-word over common words took ~50 ms).
- Every statement names the agent: no argument reaches another agent's rows. ``agent=None``
  (``recall`` / ``list`` / ``forget``) is every agent's: the person's view, which the
  syscalls allow only with the ``others`` capability. Whether a caller may reach another
  agent's collection is decided in the access layer (``access.MemoryRef``) from ``grant``.
- Collection names are checked here (``check_collection``): letters, digits, ``.``, ``_``,
  ``-``, no ``..``; never a pattern or a path.

Errors from apsw are mapped here (``JournalError``); bad input is ``InvalidArgument`` with
the field, a full quota ``QuotaExceeded``, an unknown id ``NotFound``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from llmos.errors import InvalidArgument, JournalError, NotFound, QuotaExceeded
from llmos.kernel.memshare import (
    COLLECTION_MAX,
    DEFAULT_COLLECTION,
    SHARE_MODES,
    SHARES_SCHEMA,
    MemoryShares,
    check_collection,
    scope_sql,
)
from llmos.kernel.memtext import (
    CHUNK_WORDS,
    CONTEXT_LABEL,
    TAG_MAX,
    TAGS_MAX,
    TEXT_MAX_BYTES,
    check_tags,
    check_text,
    chunk,
    context_block,
)
from llmos.kernel.signatures import Signatures, sign_bits
from llmos.llm.embed import Embedder

__all__ = ["LongTermMemory", "RecallFilter", "Signatures", "TEXT_MAX_BYTES", "CHUNK_WORDS",
           "QUOTA_BYTES", "TAGS_MAX", "TAG_MAX", "RRF_K", "DEFAULT_COLLECTION", "COLLECTION_MAX",
           "SHARE_MODES", "check_collection", "MemoryShares", "context_block", "CONTEXT_LABEL", "chunk"]

log = logging.getLogger(__name__)

QUOTA_BYTES = 64 << 20        # bytes of text one agent may keep remembered
RRF_K = 60                    # reciprocal rank fusion: score = sum 1 / (RRF_K + rank)
FUSE_DEPTH = 50               # chunks each ranking contributes to the fusion
SCAN_CANDIDATES = 256         # chunks the sign-bit scan hands to the exact cosine
QUERY_WORDS = 32              # words of a query given to FTS5
QUERY_CACHE = 256             # recent queries whose embedding recall keeps (LRU; 1.5 KB each)
MMAP_BYTES = 1 << 30          # SQLite reads the database through mmap, up to this many bytes
MODES = ("hybrid", "vector", "words")   # recall's rankings: both fused, vectors alone, FTS5 alone
_WORD = re.compile(r"\w+", re.UNICODE)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS memories (
    id INTEGER PRIMARY KEY, agent TEXT NOT NULL, text TEXT NOT NULL, tags TEXT NOT NULL,
    created_s REAL NOT NULL, bytes INTEGER NOT NULL, collection TEXT NOT NULL DEFAULT 'default');
CREATE INDEX IF NOT EXISTS memories_agent ON memories(agent, id);
CREATE TABLE IF NOT EXISTS memory_tags (
    agent TEXT NOT NULL, tag TEXT NOT NULL, memory INTEGER NOT NULL,
    PRIMARY KEY (agent, tag, memory)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, memory INTEGER NOT NULL, agent TEXT NOT NULL, seq INTEGER NOT NULL,
    text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_memory ON chunks(memory);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
CREATE TABLE IF NOT EXISTS usage (
    agent TEXT PRIMARY KEY, bytes INTEGER NOT NULL, memories INTEGER NOT NULL);
"""
_COLLECTIONS = "CREATE INDEX IF NOT EXISTS memories_collection ON memories(agent, collection, id);"
_VECTORS = """
CREATE TABLE IF NOT EXISTS vectors (
    chunk INTEGER PRIMARY KEY, agent TEXT NOT NULL, sig BLOB NOT NULL, vec BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS vectors_agent ON vectors(agent, chunk);
"""


@dataclass(frozen=True)
class RecallFilter:
    """Which memories a recall may return (all conditions hold)."""

    tags: tuple[str, ...] = ()          # the memory carries every one of these
    after_s: float | None = None        # created at or after (wall-clock seconds)
    before_s: float | None = None       # created before
    collection: str | None = None       # in this collection (None: any)

    @property
    def empty(self) -> bool:
        return not self.tags and self.after_s is None and self.before_s is None and self.collection is None


@dataclass
class _Hit:
    memory: int
    chunk: int
    score: float = 0.0                  # fused reciprocal-rank score
    similarity: float | None = None     # cosine of the query and this chunk
    ranks: dict[str, int] = field(default_factory=dict)   # ranking ("vector" | "words") -> rank, from 1


class LongTermMemory:
    """Build with the database path, an embedder (or a callable that makes one on first
    use) and the kernel clock. Thread-safe: handlers call it from worker threads."""

    def __init__(self, path: str | os.PathLike, embedder: Embedder | Callable[[], Embedder],
                 clock_time: Callable[[], float], *, quota_bytes: int = QUOTA_BYTES,
                 query_cache: int = QUERY_CACHE) -> None:
        self.path = Path(path)
        self.quota_bytes = quota_bytes           # bytes of text per agent; set by the owner
        self._embedder_src = embedder
        self._embedder: Embedder | None = None
        self._now = clock_time
        self._lock = threading.RLock()           # one transaction or index change at a time
        self._sigs: dict[str, Signatures] = {}   # agent -> sign bits and codes, loaded on first recall
        self._conn = self._open()
        self.shares = MemoryShares(self._db, clock_time)   # who may reach which collection
        self.rebuilds = 0                        # times the vector table was rebuilt (tests, logs)
        self.last_ms = (0.0, 0.0)                # last recall's (embedding, search) milliseconds
        self.query_cache = query_cache           # queries whose vector is kept (0: none); set by the owner
        self._qvecs: OrderedDict[str, np.ndarray] = OrderedDict()   # query -> vector, oldest first
        self.cache_hits = 0                      # recalls whose query vector came from _qvecs

    # ── opening ─────────────────────────────────────────────────────────────
    def _open(self) -> Any:
        import apsw
        import sqlite_vec

        from llmos.kernel.storage import PRIVATE_FILE_MODE

        try:
            if str(self.path) != ":memory:":
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
                os.close(fd)
            conn = apsw.Connection(str(self.path))
            conn.enable_load_extension(True)
            conn.load_extension(sqlite_vec.loadable_path())
            conn.enable_load_extension(False)
            conn.set_busy_timeout(5000)
            # one a call (apsw runs what follows a row-returning statement only as it is read);
            # mmap: the exact ranking's 256 vectors by rowid, 2.2 ms at 100k through read(), 0.9 mapped
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", f"mmap_size={MMAP_BYTES}"):
                conn.execute(f"PRAGMA {pragma}").fetchall()
            with conn:
                conn.execute(_SCHEMA + _VECTORS + SHARES_SCHEMA)
                cols = [r[1] for r in conn.execute("PRAGMA table_info(memories)")]
                if "collection" not in cols:     # a database from before collections
                    conn.execute("ALTER TABLE memories ADD COLUMN collection TEXT NOT NULL DEFAULT 'default'")
                conn.execute(_COLLECTIONS)
        except (OSError, apsw.Error) as e:
            raise JournalError(f"memory database {self.path}: {e}",
                               hint="check disk space and $LLMOS_HOME permissions") from e
        return conn

    @property
    def embedder(self) -> Embedder:
        """The model, made on first use; the vector table is checked against it then."""
        with self._lock:
            if self._embedder is None:
                src = self._embedder_src
                self._embedder = src if hasattr(src, "embed") else src()  # type: ignore[operator,assignment]
                self._check_vectors()
            return self._embedder  # type: ignore[return-value]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _db(self, what: str) -> Iterator[Any]:
        """The connection under the lock, apsw errors mapped to JournalError."""
        import apsw

        with self._lock:
            try:
                yield self._conn
            except apsw.Error as e:
                raise JournalError(f"memory database: {what}: {e}",
                                   hint="check disk space and $LLMOS_HOME permissions") from e

    # ── the vector table: checked on first use, rebuilt from texts when wrong ──
    def _check_vectors(self) -> None:
        import apsw

        emb = self._embedder
        assert emb is not None
        c = self._conn
        model = f"{emb.name}/{emb.dim}"
        try:
            c.execute(_VECTORS)
            stored = c.execute("SELECT value FROM meta WHERE key = 'model'").fetchall()
            n_chunks = c.execute("SELECT count(*) FROM chunks").fetchall()[0][0]
            n_vec, bad = c.execute(
                "SELECT count(*), coalesce(sum(length(vec) != ? OR length(sig) != ?), 0) FROM vectors",
                (emb.dim * 4, emb.dim // 8)).fetchall()[0]
            orphans = c.execute("SELECT count(*) FROM chunks WHERE id NOT IN (SELECT chunk FROM vectors)"
                                ).fetchall()[0][0]
        except apsw.Error as e:
            return self._rebuild(f"unreadable ({e})")
        if stored and stored[0][0] != model:
            return self._rebuild(f"made by {stored[0][0]}, not {model}")
        if bad or orphans or n_vec != n_chunks:
            return self._rebuild(f"inconsistent ({n_chunks} chunks, {n_vec} vectors, {bad} of the "
                                 f"wrong size, {orphans} chunks without one)")
        if not stored:
            with c:
                c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('model', ?)", (model,))

    def _rebuild(self, why: str) -> None:
        """Drop the vector table and embed every stored chunk again (under the lock)."""
        emb = self._embedder
        assert emb is not None
        c = self._conn
        rows = c.execute("SELECT id, agent, text FROM chunks ORDER BY id").fetchall()
        log.warning("memory: the vector table in %s was %s; rebuilding it from %d stored chunks",
                    self.path, why, len(rows))
        vecs = emb.embed([t for _, _, t in rows]) if rows else np.zeros((0, emb.dim), np.float32)
        with c:
            c.execute("DROP TABLE IF EXISTS vectors")
            c.execute(_VECTORS)
            c.executemany("INSERT INTO vectors(chunk, agent, sig, vec) VALUES (?,?,?,?)",
                          ((cid, agent, sign_bits(v), v.tobytes()) for (cid, agent, _), v in zip(rows, vecs, strict=True)))
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('model', ?)", (f"{emb.name}/{emb.dim}",))
        self._sigs.clear()
        self.rebuilds += 1
        log.warning("memory: vector table rebuilt (%d vectors of %d dimensions, model %s)",
                    len(rows), emb.dim, emb.name)

    # ── remember ───────────────────────────────────────────────────────────
    def remember(self, agent: str, text: str, tags: Sequence[str] = (),
                 collection: str = DEFAULT_COLLECTION) -> dict[str, Any]:
        size = check_text(text)
        tags = check_tags(tags)
        collection = check_collection(collection)
        pieces = chunk(text)
        vecs = self.embedder.embed(pieces)                   # [chunks, dim], outside the lock
        return self.insert(agent, text, tags, pieces, vecs, size, collection=collection)

    def insert(self, agent: str, text: str, tags: Sequence[str], pieces: Sequence[str],
               vecs: np.ndarray, size: int | None = None, *,
               collection: str = DEFAULT_COLLECTION) -> dict[str, Any]:
        """One memory with its chunks' vectors (``remember`` computes them)."""
        return self.insert_many(agent, [(text, tags, pieces, vecs)], collection=collection)[0]

    def insert_many(self, agent: str, items: Sequence[tuple[str, Sequence[str], Sequence[str], np.ndarray]],
                    *, collection: str = DEFAULT_COLLECTION) -> list[dict[str, Any]]:
        """Memories ``(text, tags, chunks, vectors [chunks, dim])`` in one transaction, the
        quota checked first: all of them are stored or none. A bench brings its own vectors."""
        collection = check_collection(collection)
        emb = self.embedder
        sizes = [len(text.encode("utf-8")) for text, *_ in items]
        for _, _, pieces, vecs in items:
            if vecs.shape != (len(pieces), emb.dim):
                raise InvalidArgument(f"vectors: expected {len(pieces)} x {emb.dim}, got {vecs.shape}",
                                      field="vectors", expected=f"float32 [{len(pieces)}, {emb.dim}]")
        out: list[dict[str, Any]] = []
        ids: list[int] = []
        sigs: list[bytes] = []
        added: list[np.ndarray] = []              # the chunks' vectors, for the RAM index
        with self._db("remember") as c:
            with c:     # one transaction: all of it or nothing
                used = c.execute("SELECT bytes FROM usage WHERE agent = ?", (agent,)).fetchall()
                used_b = used[0][0] if used else 0
                if used_b + sum(sizes) > self.quota_bytes:
                    raise QuotaExceeded(f"memory quota: {used_b} of {self.quota_bytes} bytes used, this "
                                        f"needs {sum(sizes)} more; nothing was stored",
                                        hint="forget memories you no longer need (memory.list shows them)")
                for (text, tags, pieces, vecs), size in zip(items, sizes, strict=True):
                    mid = c.execute("INSERT INTO memories(agent, collection, text, tags, created_s, bytes) "
                                    "VALUES (?,?,?,?,?,?) RETURNING id",
                                    (agent, collection, text, json.dumps(list(tags)), self._now(), size)
                                    ).fetchall()[0][0]
                    c.executemany("INSERT INTO memory_tags(agent, tag, memory) VALUES (?,?,?)",
                                  [(agent, t, mid) for t in tags])
                    for seq, (piece, v) in enumerate(zip(pieces, np.asarray(vecs, np.float32), strict=True)):
                        cid = c.execute("INSERT INTO chunks(memory, agent, seq, text) VALUES (?,?,?,?) "
                                        "RETURNING id", (mid, agent, seq, piece)).fetchall()[0][0]
                        sig = sign_bits(v)
                        c.execute("INSERT INTO vectors(chunk, agent, sig, vec) VALUES (?,?,?,?)",
                                  (cid, agent, sig, np.ascontiguousarray(v).tobytes()))
                        ids.append(cid)
                        sigs.append(sig)
                        added.append(v)
                    out.append({"id": mid, "chunks": len(pieces), "bytes": size, "tags": list(tags),
                                "collection": collection})
                c.execute("INSERT INTO usage(agent, bytes, memories) VALUES (?, ?, ?) ON CONFLICT(agent) DO "
                          "UPDATE SET bytes = bytes + excluded.bytes, memories = memories + excluded.memories",
                          (agent, sum(sizes), len(items)))
            if agent in self._sigs:      # committed: the RAM index follows
                self._sigs[agent].add(ids, sigs, np.asarray(added, np.float32).reshape(len(ids), emb.dim))
        return out

    # ── recall ─────────────────────────────────────────────────────────────
    def recall(self, agent: str | None, query: str, k: int = 5, filt: RecallFilter | None = None, *,
               mode: str = "hybrid") -> list[dict[str, Any]]:
        """The ``k`` memories nearest ``query``; ``mode`` hybrid | vector | words (FTS5 alone,
        any word: the baseline bench/recall.py compares with). ``agent=None``: every agent's
        memories, each agent's best merged by score (the person's view)."""
        if not isinstance(query, str) or not _WORD.search(query):
            raise InvalidArgument("query: expected text with at least one word", field="query",
                                  expected="text with at least one word")
        if mode not in MODES:
            raise InvalidArgument(f"mode: expected one of {', '.join(MODES)}, got {mode!r}", field="mode",
                                  expected=" | ".join(MODES))
        filt = filt or RecallFilter()
        if filt.collection is not None:
            check_collection(filt.collection)
        t0 = time.perf_counter()
        qv = self._query_vector(query) if mode != "words" else None        # outside the lock
        t1 = time.perf_counter()
        try:
            if agent is not None:
                return self._recall(agent, query, k, filt, mode, qv)
            found = [r for a in self.agents() for r in self._recall(a, query, k, filt, mode, qv)]
            return sorted(found, key=lambda r: (-r["score"], -(r["similarity"] or 0.0), r["id"]))[:k]
        finally:
            self.last_ms = ((t1 - t0) * 1000, (time.perf_counter() - t1) * 1000)

    def _query_vector(self, query: str) -> np.ndarray:
        """The query's embedding: from the LRU of recent queries, else the model's (run
        outside the lock). Keyed by the text: the model is fixed for the store's life."""
        with self._lock:
            v = self._qvecs.get(query)
            if v is not None:
                self._qvecs.move_to_end(query)
                self.cache_hits += 1
                return v
        v = self.embedder.embed([query])[0]
        if self.query_cache > 0:
            with self._lock:
                self._qvecs[query] = v
                while len(self._qvecs) > self.query_cache:
                    self._qvecs.popitem(last=False)
        return v

    def _recall(self, agent: str, query: str, k: int, filt: RecallFilter, mode: str,
                qv: np.ndarray | None) -> list[dict[str, Any]]:
        with self._db("recall"):
            allowed = self._allowed(agent, filt)
            if allowed is not None and not len(allowed):
                return []
            hits: dict[int, _Hit] = {}
            if qv is not None:
                try:
                    ranked = self._by_vector(agent, qv, allowed)
                except _VectorsBroken as e:
                    self._rebuild(str(e))
                    ranked = self._by_vector(agent, qv, allowed)
                for rank, (cid, mid, sim) in enumerate(ranked, 1):
                    h = hits.setdefault(cid, _Hit(mid, cid))
                    h.similarity, h.ranks["vector"] = sim, rank
                    h.score += 1.0 / (RRF_K + rank)
            if mode != "vector":
                every = mode == "hybrid"        # alone (the baseline) it matches any word
                for rank, (cid, mid) in enumerate(self._by_words(agent, query, allowed, every), 1):
                    h = hits.setdefault(cid, _Hit(mid, cid))
                    h.ranks["words"] = rank
                    h.score += 1.0 / (RRF_K + rank)
            best: dict[int, _Hit] = {}
            for h in hits.values():
                if h.memory not in best or h.score > best[h.memory].score:
                    best[h.memory] = h
            top = sorted(best.values(), key=lambda h: (-h.score, -(h.similarity or 0.0), h.memory))[:k]
            return self._describe(agent, top)

    def _allowed(self, agent: str, filt: RecallFilter) -> np.ndarray | None:
        """Chunk ids the filter lets through (None: no filter)."""
        if filt.empty:
            return None
        sql = "SELECT c.id FROM chunks c JOIN memories m ON m.id = c.memory WHERE m.agent = ?"
        args: list[Any] = [agent]
        for t in filt.tags:
            sql += " AND m.id IN (SELECT memory FROM memory_tags WHERE agent = ? AND tag = ?)"
            args += [agent, t]
        if filt.after_s is not None:
            sql += " AND m.created_s >= ?"
            args.append(filt.after_s)
        if filt.before_s is not None:
            sql += " AND m.created_s < ?"
            args.append(filt.before_s)
        if filt.collection is not None:
            sql += " AND m.collection = ?"
            args.append(filt.collection)
        return np.array([r[0] for r in self._conn.execute(sql, args)], np.int64)

    def _signatures(self, agent: str) -> Signatures:
        sigs = self._sigs.get(agent)
        if sigs is None:
            emb = self.embedder
            sigs = Signatures(emb.dim // 64, codes=True)
            cur = self._conn.execute("SELECT chunk, sig, vec FROM vectors WHERE agent = ? ORDER BY chunk",
                                     (agent,))
            while rows := list(islice(cur, 4096)):       # 6 MB of vectors at a time
                if any(len(s) != emb.dim // 8 or len(v) != emb.dim * 4 for _, s, v in rows):
                    raise _VectorsBroken("holding signatures or vectors of the wrong size")
                sigs.add([r[0] for r in rows], [r[1] for r in rows],
                         np.frombuffer(b"".join(r[2] for r in rows), np.float32).reshape(len(rows), emb.dim))
            self._sigs[agent] = sigs
        return sigs

    def _by_vector(self, agent: str, qv: np.ndarray, allowed: np.ndarray | None) -> list[tuple[int, int, float]]:
        """(chunk, memory, cosine) of the nearest chunks, best first. ``+agent``: each
        candidate by its rowid, the agent checked on the row (through the (agent, chunk)
        index it took 3x as long)."""
        import apsw

        try:
            cand = self._signatures(agent).ranked(qv, SCAN_CANDIDATES, FUSE_DEPTH, allowed)
            if not len(cand):
                return []
            rows = self._conn.execute(
                "SELECT t.chunk, c.memory, t.d FROM (SELECT chunk, vec_distance_cosine(vec, ?) AS d "
                "FROM vectors WHERE chunk IN carray(?) AND +agent = ? ORDER BY d LIMIT ?) t "
                "JOIN chunks c ON c.id = t.chunk ORDER BY t.d",
                (qv.astype(np.float32).tobytes(), apsw.carray(cand), agent, FUSE_DEPTH)).fetchall()
        except apsw.Error as e:
            raise _VectorsBroken(f"unreadable ({e})") from e
        return [(cid, mid, 1.0 - d) for cid, mid, d in rows]

    def _by_words(self, agent: str, query: str, allowed: np.ndarray | None,
                  every: bool = True) -> list[tuple[int, int]]:
        """(chunk, memory) by FTS5 bm25, best first, of the chunks holding every word of the
        query (``every``) or any. Each word is quoted: user text is never FTS5 syntax."""
        import apsw

        words = _WORD.findall(query)[:QUERY_WORDS]
        match = (" AND " if every else " OR ").join('"' + w + '"' for w in words)
        sql = ("SELECT c.id, c.memory FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
               "WHERE chunks_fts MATCH ? AND c.agent = ?")
        args: list[Any] = [match, agent]
        if allowed is not None:
            sql += " AND c.id IN carray(?)"
            args.append(apsw.carray(allowed))
        sql += " ORDER BY bm25(chunks_fts) LIMIT ?"
        args.append(FUSE_DEPTH)
        return [(r[0], r[1]) for r in self._conn.execute(sql, args)]

    def _describe(self, agent: str, top: list[_Hit]) -> list[dict[str, Any]]:
        out = []
        for h in top:
            (text, tags, created, coll, n_chunks), = self._conn.execute(
                "SELECT text, tags, created_s, collection, (SELECT count(*) FROM chunks WHERE memory = m.id) "
                "FROM memories m WHERE id = ? AND agent = ?", (h.memory, agent)).fetchall()
            item: dict[str, Any] = {"id": h.memory, "agent": agent, "collection": coll, "text": text,
                                    "tags": json.loads(tags),
                                    "created_s": created, "score": round(h.score, 6),
                                    "similarity": None if h.similarity is None else round(h.similarity, 4),
                                    "ranks": h.ranks}
            if n_chunks > 1:
                item["match"] = self._conn.execute("SELECT text FROM chunks WHERE id = ?",
                                                   (h.chunk,)).fetchall()[0][0]
            out.append(item)
        return out

    # ── forget / list / stats ──────────────────────────────────────────────
    def forget(self, agent: str | None, memory_id: int, collection: str | None = None) -> dict[str, Any]:
        """Delete one memory of ``agent`` (None: of whichever agent holds it), in
        ``collection`` when one is named (a grantee's forget stays within its share)."""
        where, args = scope_sql(agent, collection)
        with self._db("forget") as c:
            with c:
                row = c.execute("SELECT agent, bytes FROM memories WHERE id = ?" + where,
                                [memory_id, *args]).fetchall()
                if not row:
                    place = f" in collection {collection!r}" if collection is not None else ""
                    raise NotFound(f"no memory {memory_id}{place}",
                                   hint="memory.list and memory.recall show the memories' ids")
                owner, size = row[0]
                chunk_ids = self._delete(c, owner, [memory_id])
                c.execute("UPDATE usage SET bytes = bytes - ?, memories = memories - 1 WHERE agent = ?",
                          (size, owner))
            if owner in self._sigs:
                self._sigs[owner].remove(chunk_ids)
        return {"id": memory_id, "chunks": len(chunk_ids), "agent": owner}

    def forget_all(self, agent: str | None, collection: str | None = None) -> dict[str, Any]:
        """Delete every memory of ``agent`` (None: of every agent), or only those in
        ``collection``; one transaction. Returns how many memories and bytes went."""
        where, args = scope_sql(agent, collection)
        with self._db("forget") as c:
            with c:
                rows = c.execute("SELECT id, agent, bytes FROM memories WHERE 1" + where, args).fetchall()
                by_agent: dict[str, list[tuple[int, int]]] = {}
                for mid, owner, size in rows:
                    by_agent.setdefault(owner, []).append((mid, size))
                for owner, items in by_agent.items():
                    self._delete(c, owner, [m for m, _ in items])
                    c.execute("UPDATE usage SET bytes = bytes - ?, memories = memories - ? WHERE agent = ?",
                              (sum(b for _, b in items), len(items), owner))
            for owner in by_agent:
                self._sigs.pop(owner, None)      # reloaded on the next recall
        return {"forgotten": len(rows), "bytes": sum(r[2] for r in rows), "agents": sorted(by_agent)}

    @staticmethod
    def _delete(c: Any, agent: str, memory_ids: Sequence[int]) -> list[int]:
        """Delete memories of ``agent`` with their chunks, vectors and tags (in the caller's
        transaction); the chunk ids that went."""
        import apsw

        ids = apsw.carray(np.asarray(memory_ids, np.int64))
        chunk_ids = [r[0] for r in c.execute("SELECT id FROM chunks WHERE memory IN carray(?) AND agent = ?",
                                             (ids, agent))]
        c.execute("DELETE FROM vectors WHERE chunk IN (SELECT id FROM chunks WHERE memory IN carray(?)) "
                  "AND agent = ?", (ids, agent))
        c.execute("DELETE FROM chunks WHERE memory IN carray(?) AND agent = ?", (ids, agent))
        c.execute("DELETE FROM memory_tags WHERE memory IN carray(?) AND agent = ?", (ids, agent))
        c.execute("DELETE FROM memories WHERE id IN carray(?) AND agent = ?", (ids, agent))
        return chunk_ids

    def list(self, agent: str | None, tags: Sequence[str] = (), limit: int = 50,
             before_id: int | None = None, collection: str | None = None) -> list[dict[str, Any]]:
        """The agent's memories (None: every agent's), newest first (``before_id`` pages on)."""
        where, args = scope_sql(agent, collection)
        sql = "SELECT id, agent, collection, text, tags, created_s, bytes FROM memories m WHERE 1" + where
        for t in check_tags(tags):
            sql += " AND id IN (SELECT memory FROM memory_tags WHERE agent = m.agent AND tag = ?)"
            args.append(t)
        if before_id is not None:
            sql += " AND id < ?"
            args.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._db("list") as c:
            return [{"id": i, "agent": a, "collection": coll, "text": t, "tags": json.loads(g),
                     "created_s": s, "bytes": b} for i, a, coll, t, g, s, b in c.execute(sql, args)]

    def agents(self) -> list[str]:
        """The agents holding memories."""
        with self._db("agents") as c:
            return [r[0] for r in c.execute("SELECT agent FROM usage WHERE memories > 0 ORDER BY agent")]

    def usage(self, agent: str | None) -> dict[str, int]:
        with self._db("usage") as c:
            if agent is None:
                row = c.execute("SELECT coalesce(sum(bytes), 0), coalesce(sum(memories), 0) FROM usage").fetchall()
            else:
                row = c.execute("SELECT bytes, memories FROM usage WHERE agent = ?", (agent,)).fetchall()
        b, n = row[0] if row else (0, 0)
        return {"bytes": b, "memories": n, "quota_bytes": self.quota_bytes}


class _VectorsBroken(Exception):
    """The vector table cannot be read as it should (rebuilt by the caller)."""
