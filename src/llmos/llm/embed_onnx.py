"""MiniLM's encoder in onnxruntime: a graph written in this process from the numpy weights.

Map:
- ``Encoder(word, pos, type0, ln0, layers, heads)``: an ``onnxruntime.InferenceSession`` on
  one thread whose graph is the BERT encoder of ``embed.MiniLM``; ``run(ids, mask)``: token
  ids int64 [n, t] and mask int32 [n, t] (1 = a real token) -> hidden states float32
  [n, t, 384]. Mean pooling and the unit norm stay in ``embed``. Raises ``ImportError``
  when onnxruntime is not installed (``embed`` then runs its numpy forward pass).
- ``model_bytes(...)``: the ONNX ModelProto of that graph, serialized here (``_Proto``):
  ~20 kinds of field do not need the ``onnx`` package (nor its IR-version skew with
  onnxruntime). Its weights are external data: the session is handed the numpy arrays
  (``add_external_initializers``), so the model is 6 KB and builds in ~0.5 s, not 90 MB
  serialized and parsed again (~3 s).

Why: a question is ~11 word pieces, so each layer is a few [11, 384] x [384, 1536]
products whose cost is reading the 42 MB of encoder weights. OpenBLAS packs the weight
operand again on every call; onnxruntime's MLAS packs it once, when the session starts
(without prepacking the session is 2x slower). Measured on the 50 bench questions (2
shared cores, load average 3-4): 5.7 ms a question against 14.5 ms for the numpy pass,
hidden states equal to 2e-6.

The graph, per layer: ``com.microsoft.Attention`` (fused QKV projection, scaled softmax
under the padding mask), ``MatMul`` + ``SkipLayerNormalization`` (output bias, residual,
layer norm), ``MatMul`` + ``BiasGelu`` (exact erf GELU, as BERT), ``MatMul`` +
``SkipLayerNormalization``. Weights are the numpy arrays transposed to [in, out].
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Encoder", "model_bytes", "OPSET", "IR_VERSION"]

IR_VERSION = 8          # ONNX IR version written (onnxruntime 1.30 reads up to 13)
OPSET = 17              # ai.onnx opset (LayerNormalization is in it); com.microsoft opset 1
_EPS = 1e-12            # BERT layer-norm epsilon (as embed._EPS)

# ONNX TensorProto.DataType and AttributeProto.AttributeType values used here
_FLOAT, _INT32, _INT64 = 1, 6, 7
_DTYPES = {np.dtype(np.float32): _FLOAT, np.dtype(np.int32): _INT32, np.dtype(np.int64): _INT64}
_ATTR_FLOAT, _ATTR_INT, _ATTR_INTS = 1, 2, 7


class _Proto:
    """Protocol-buffer encoding, the parts ONNX's messages need: varint and
    length-delimited fields, one float (fixed32)."""

    @staticmethod
    def varint(n: int) -> bytes:
        n &= (1 << 64) - 1                     # negative int64: two's complement, 10 bytes
        out = bytearray()
        while True:
            b, n = n & 0x7F, n >> 7
            out.append(b | 0x80 if n else b)
            if not n:
                return bytes(out)

    @classmethod
    def num(cls, field: int, n: int) -> bytes:
        """A varint field (int32, int64, enum)."""
        return cls.varint(field << 3) + cls.varint(n)

    @classmethod
    def blob(cls, field: int, data: bytes | str) -> bytes:
        """A length-delimited field (string, bytes, an embedded message)."""
        if isinstance(data, str):
            data = data.encode()
        return cls.varint(field << 3 | 2) + cls.varint(len(data)) + data

    @classmethod
    def f32(cls, field: int, x: float) -> bytes:
        return cls.varint(field << 3 | 5) + struct.pack("<f", x)


P = _Proto


def _external(name: str, arr: np.ndarray) -> bytes:
    """TensorProto whose data the session is handed: dims (1), data_type (2), name (8),
    external_data (13: location = the name), data_location (14: EXTERNAL)."""
    return (b"".join(P.num(1, d) for d in arr.shape) + P.num(2, _DTYPES[arr.dtype]) + P.blob(8, name)
            + P.blob(13, P.blob(1, "location") + P.blob(2, name)) + P.num(14, 1))


def _value_info(name: str, elem: int, dims: Sequence[int | str]) -> bytes:
    """ValueInfoProto name (1), type (2): TypeProto.tensor_type (1): elem_type (1), shape (2)
    of dims (1): dim_value (1) or dim_param (2)."""
    shape = b"".join(P.blob(1, P.num(1, d) if isinstance(d, int) else P.blob(2, d)) for d in dims)
    return P.blob(1, name) + P.blob(2, P.blob(1, P.num(1, elem) + P.blob(2, shape)))


def _attribute(name: str, value: Any) -> bytes:
    """AttributeProto name (1), f (2), i (3), ints (8), type (20)."""
    if isinstance(value, float):
        return P.blob(1, name) + P.f32(2, value) + P.num(20, _ATTR_FLOAT)
    if isinstance(value, int):
        return P.blob(1, name) + P.num(3, value) + P.num(20, _ATTR_INT)
    return P.blob(1, name) + b"".join(P.num(8, v) for v in value) + P.num(20, _ATTR_INTS)


class _Graph:
    """Nodes and weights, each output named in order (``t1``, ``t2``...)."""

    def __init__(self) -> None:
        self.nodes: list[bytes] = []
        self.weights: dict[str, np.ndarray] = {}    # name -> C-contiguous array (external data)
        self._n = 0

    def const(self, name: str, arr: np.ndarray) -> str:
        self.weights[name] = np.ascontiguousarray(arr)
        return name

    def op(self, op_type: str, inputs: Sequence[str], *, ms: bool = False, out: str | None = None,
           **attrs: Any) -> str:
        """NodeProto input (1), output (2), name (3), op_type (4), attribute (5), domain (7)."""
        self._n += 1
        out = out or f"t{self._n}"
        self.nodes.append(b"".join(P.blob(1, i) for i in inputs) + P.blob(2, out) + P.blob(3, f"n{self._n}")
                          + P.blob(4, op_type) + b"".join(P.blob(5, _attribute(k, v)) for k, v in attrs.items())
                          + (P.blob(7, "com.microsoft") if ms else b""))
        return out


def model_bytes(word: np.ndarray, pos: np.ndarray, type0: np.ndarray, ln0: tuple[np.ndarray, np.ndarray],
                layers: Sequence[tuple], heads: int) -> tuple[bytes, dict[str, np.ndarray]]:
    """The serialized ModelProto of the encoder and its weights by name (external data);
    ``layers`` as ``embed.MiniLM._layers`` holds them (weights [out, in] as stored)."""
    g = _Graph()
    dim = word.shape[1]
    x = g.op("Gather", [g.const("word", word), "ids"])                               # [n, t, dim]
    t = g.op("Shape", ["ids"], start=1, end=2)                                       # [1]: t
    zero = g.const("zero", np.zeros(1, np.int64))
    p = g.op("Slice", [g.const("pos", pos), zero, t, zero])                          # [t, dim]
    x = g.op("Add", [g.op("Add", [x, p]), g.const("type0", type0)])
    x = g.op("LayerNormalization", [x, g.const("ln0_w", ln0[0]), g.const("ln0_b", ln0[1])], axis=-1,
             epsilon=_EPS)
    for i, (qkv_w, qkv_b, o_w, o_b, ln1, i_w, i_b, f_w, f_b, ln2) in enumerate(layers):
        c = f"l{i}."
        ctx = g.op("Attention", [x, g.const(c + "qkv_w", qkv_w.T), g.const(c + "qkv_b", qkv_b), "mask"],
                   ms=True, num_heads=heads)                                          # [n, t, dim]
        y = g.op("MatMul", [ctx, g.const(c + "o_w", o_w.T)])
        x = g.op("SkipLayerNormalization", [y, x, g.const(c + "ln1_w", ln1[0]), g.const(c + "ln1_b", ln1[1]),
                                            g.const(c + "o_b", o_b)], ms=True, epsilon=_EPS)
        f = g.op("BiasGelu", [g.op("MatMul", [x, g.const(c + "i_w", i_w.T)]), g.const(c + "i_b", i_b)],
                 ms=True)                                                            # [n, t, 4 dim]
        y = g.op("MatMul", [f, g.const(c + "f_w", f_w.T)])
        last = i == len(layers) - 1
        x = g.op("SkipLayerNormalization", [y, x, g.const(c + "ln2_w", ln2[0]), g.const(c + "ln2_b", ln2[1]),
                                            g.const(c + "f_b", f_b)], ms=True, epsilon=_EPS,
                 out="hidden" if last else None)
    graph = (b"".join(P.blob(1, n) for n in g.nodes) + P.blob(2, "minilm")
             + b"".join(P.blob(5, _external(name, a)) for name, a in g.weights.items())
             + P.blob(11, _value_info("ids", _INT64, ["n", "t"]))
             + P.blob(11, _value_info("mask", _INT32, ["n", "t"]))
             + P.blob(12, _value_info("hidden", _FLOAT, ["n", "t", dim])))
    opsets = P.blob(8, P.num(2, OPSET)) + P.blob(8, P.blob(1, "com.microsoft") + P.num(2, 1))
    return P.num(1, IR_VERSION) + P.blob(2, "llmos") + opsets + P.blob(7, graph), g.weights


class Encoder:
    """The encoder's session on one thread (as embed's BLAS: these products are small, and
    threads spinning on a busy 2-core machine cost more than they give). Thread-safe."""

    def __init__(self, word: np.ndarray, pos: np.ndarray, type0: np.ndarray,
                 ln0: tuple[np.ndarray, np.ndarray], layers: Sequence[tuple], heads: int) -> None:
        import onnxruntime as ort

        model, weights = model_bytes(word, pos, type0, ln0, layers, heads)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3                # errors only: no notes on stderr
        # the session reads the weights from these values: they live as long as it does
        self._values = [ort.OrtValue.ortvalue_from_numpy(a) for a in weights.values()]
        so.add_external_initializers(list(weights), self._values)
        self._session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Hidden states float32 [n, t, dim] of ids int64 [n, t] under mask int32 [n, t]."""
        return self._session.run(None, {"ids": ids, "mask": mask})[0]
