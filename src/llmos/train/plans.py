"""Plan retrieval data and the embedder adapter, without torch: what the ``embedder`` recipe
trains on and what the shell would apply.

Map:
- ``PlanExample(request, shape, source)``: one request and the shape of the plan that
  served it (its tool sequence, ``files.read>llm``).
- ``library()``: the shell's worked examples (``llmos/shell/examples/*.json``, read as
  package data); ``approved(shell_db)``: the person's approved plans (read-only from the
  shell's ``approved`` table, never the ones rated bad); ``read_jsonl(path)``: lines of
  ``{"request", "shape"}``; ``snapshot`` / ``load_snapshot``: the job's frozen copy.
- ``split(examples, holdout, seed)`` -> (library, held out): by example, seeded.
- ``accuracy(queries, library, score)`` -> top-1 / top-3 same-shape accuracy of the
  held-out queries whose shape the library has; ``word_score`` is the shell's shared-word
  ranking (``Planner.approved``), ``cosine`` a dot product of unit rows.
- ``Adapter``: ``apply(vectors)`` = the rows of ``normalize(x + x A B)`` (a low-rank
  residual map on the MiniLM embeddings, the identity when B = 0); ``save`` / ``load``
  an ``.npz`` under ``$LLMOS_HOME/embedder/``; ``adapter_path(home)``.

These read the shell's data but import none of its code (train sits below the shell).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PlanExample", "library", "approved", "read_jsonl", "snapshot", "load_snapshot", "split",
           "accuracy", "word_score", "cosine", "Adapter", "adapter_path", "ADAPTER_FILE"]

ADAPTER_FILE = "plans-adapter.npz"       # under $LLMOS_HOME/embedder/


@dataclass(frozen=True)
class PlanExample:
    request: str
    shape: str                 # the plan's tool sequence, "files.read>llm" ("" for a refusal)
    source: str = ""           # library | approved | file


def _shape(plan: dict[str, Any]) -> str:
    return ">".join(str(s.get("tool", "?")) for s in plan.get("steps") or [])


def library() -> list[PlanExample]:
    """The shell's worked examples that have steps (a refusal has no shape to share)."""
    folder = resources.files("llmos.shell").joinpath("examples")
    out = []
    for f in sorted(folder.iterdir(), key=lambda f: f.name):
        if f.name.endswith(".json"):
            for e in json.loads(f.read_text()):
                if _shape(e.get("plan") or {}):
                    out.append(PlanExample(e["request"], _shape(e["plan"]), "library"))
    return out


def approved(shell_db: str | Path) -> list[PlanExample]:
    """The person's approved plans in ``shell_db`` (none when the file does not exist)."""
    p = Path(shell_db)
    if not p.is_file():
        return []
    db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=10.0)
    try:
        rows = db.execute("SELECT request, signature FROM approved WHERE bad = 0 ORDER BY created").fetchall()
    except sqlite3.Error:           # an older file without the table: nothing approved yet
        rows = []
    finally:
        db.close()
    return [PlanExample(r, s, "approved") for r, s in rows if r and s]


def read_jsonl(path: str | Path) -> list[PlanExample]:
    """``{"request": ..., "shape": ...}`` lines; ValueError naming the line when one is not."""
    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            out.append(PlanExample(str(r["request"]), str(r["shape"]), r.get("source", "file")))
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{Path(path).name}:{n}: expected a JSON object with request and shape") from None
    return out


def snapshot(path: Path, examples: Sequence[PlanExample]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps({"request": e.request, "shape": e.shape, "source": e.source}) + "\n"
                           for e in examples))
    tmp.replace(path)


def load_snapshot(path: Path) -> list[PlanExample]:
    return read_jsonl(path)


def split(examples: Sequence[PlanExample], holdout: float, seed: int) -> tuple[list[PlanExample],
                                                                              list[PlanExample]]:
    """(library, held out): a seeded permutation of the examples, ``holdout`` of them held out."""
    order = np.random.default_rng(seed).permutation(len(examples))
    cut = int(round(len(examples) * (1.0 - holdout)))
    return [examples[i] for i in order[:cut]], [examples[i] for i in order[cut:]]


# ── scoring ────────────────────────────────────────────────────────────────
def _words(s: str) -> set[str]:
    return set(re.findall(r"[a-z]{3,}", s.lower()))


def word_score(queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
    """[q, d] shared-word (Jaccard) scores, as the shell ranks approved plans today."""
    dw = [_words(d) for d in docs]
    out = np.zeros((len(queries), len(docs)), dtype=np.float32)
    for i, q in enumerate(queries):
        qw = _words(q)
        for j, w in enumerate(dw):
            out[i, j] = len(qw & w) / (len(qw | w) or 1)
    return out


def cosine(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    return q @ d.T


def accuracy(query_shapes: Sequence[str], lib_shapes: Sequence[str], scores: np.ndarray) -> dict[str, Any]:
    """Same-shape accuracy over the queries whose shape the library has (ties broken by
    library order, so equal scores never count as a hit by luck): ``top1``, the best item
    has the query's shape; ``top3``, one of the best three items has; ``top3_shapes``, one
    of the first three distinct shapes down the ranking is it (examples shown to the
    planner are worth more when they differ)."""
    have = set(lib_shapes)
    lib = np.asarray(lib_shapes)
    hits1 = hits3 = hits3s = n = 0
    for i, shape in enumerate(query_shapes):
        if shape not in have:
            continue
        n += 1
        order = np.argsort(-scores[i], kind="stable")
        hits1 += lib[order[0]] == shape
        hits3 += shape in set(lib[order[:3]])
        hits3s += shape in list(dict.fromkeys(lib[order].tolist()))[:3]
    def rate(hits: int) -> float | None:
        return round(hits / n, 4) if n else None
    return {"top1": rate(hits1), "top3": rate(hits3), "top3_shapes": rate(hits3s), "queries": n,
            "unanswerable": len(query_shapes) - n}


# ── the adapter ────────────────────────────────────────────────────────────
class Adapter:
    """normalize(x + x A B): A [dim, rank], B [rank, dim]; float32 numpy, no torch."""

    def __init__(self, a: np.ndarray, b: np.ndarray, meta: dict[str, Any] | None = None) -> None:
        self.a = np.asarray(a, dtype=np.float32)
        self.b = np.asarray(b, dtype=np.float32)
        self.meta = meta or {}

    def apply(self, x: np.ndarray) -> np.ndarray:
        y = x + (x @ self.a) @ self.b                              # [n, dim]
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, a=self.a, b=self.b, meta=np.asarray(json.dumps(self.meta)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Adapter:
        with np.load(path) as z:
            return cls(z["a"], z["b"], json.loads(str(z["meta"])))


def adapter_path(home: str | Path) -> Path:
    return Path(home) / "embedder" / ADAPTER_FILE


