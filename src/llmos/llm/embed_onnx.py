"""MiniLM's encoder in onnxruntime: a graph built in this process from the numpy weights.

Map:
- ``Encoder(word, pos, type0, ln0, layers, heads)``: an ``onnxruntime.InferenceSession`` on
  one thread whose graph is the BERT encoder of ``embed.MiniLM``; ``run(ids, mask)``: token
  ids int64 [n, t] and mask int32 [n, t] (1 = a real token) -> hidden states float32
  [n, t, 384]. Mean pooling and the unit norm stay in ``embed``. Raises ``ImportError``
  when onnxruntime or onnx is not installed (``embed`` then runs its numpy forward pass).
- ``build_model(...)``: the ONNX ModelProto of that graph, built with ``onnx.helper``, and
  its weights by name. The weights are external data: the session is handed the numpy
  arrays (``add_external_initializers``), so the model serializes to 6 KB and the session
  builds in ~0.5 s, not 90 MB serialized and parsed again (~3 s); importing onnx adds
  ~0.2 s, once a process.

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

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

__all__ = ["Encoder", "build_model", "OPSET", "IR_VERSION"]

IR_VERSION = 8          # written explicitly: onnx 1.23 writes 14 by default, onnxruntime 1.30 reads up to 13
OPSET = 17              # ai.onnx opset (LayerNormalization is in it); com.microsoft opset 1
_MS = "com.microsoft"   # onnxruntime's contrib ops: Attention, SkipLayerNormalization, BiasGelu
_EPS = 1e-12            # BERT layer-norm epsilon (as embed._EPS)


class _Graph:
    """Nodes and weights, each output named in order (``t1``, ``t2``...)."""

    def __init__(self) -> None:
        from onnx import helper

        self._make_node = helper.make_node
        self.nodes: list[onnx.NodeProto] = []
        self.weights: dict[str, np.ndarray] = {}    # name -> C-contiguous array (external data)
        self._n = 0

    def const(self, name: str, arr: np.ndarray) -> str:
        self.weights[name] = np.ascontiguousarray(arr)
        return name

    def op(self, op_type: str, inputs: Sequence[str], *, ms: bool = False, out: str | None = None,
           **attrs: Any) -> str:
        self._n += 1
        out = out or f"t{self._n}"
        self.nodes.append(self._make_node(op_type, list(inputs), [out], name=f"n{self._n}",
                                          domain=_MS if ms else None, **attrs))
        return out


def _external(name: str, arr: np.ndarray) -> onnx.TensorProto:
    """An initializer whose data the session is handed: its location is its name."""
    from onnx import StringStringEntryProto, TensorProto, helper

    return TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(arr.dtype), dims=arr.shape,
                       data_location=TensorProto.EXTERNAL,
                       external_data=[StringStringEntryProto(key="location", value=name)])


def build_model(word: np.ndarray, pos: np.ndarray, type0: np.ndarray, ln0: tuple[np.ndarray, np.ndarray],
                layers: Sequence[tuple], heads: int) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The encoder's ModelProto and its weights by name (external data); ``layers`` as
    ``embed.MiniLM._layers`` holds them (weights [out, in] as stored)."""
    from onnx import TensorProto, helper

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
    graph = helper.make_graph(
        g.nodes, "minilm",
        inputs=[helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", "t"]),
                helper.make_tensor_value_info("mask", TensorProto.INT32, ["n", "t"])],
        outputs=[helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["n", "t", dim])],
        initializer=[_external(name, a) for name, a in g.weights.items()])
    model = helper.make_model(graph, producer_name="llmos", ir_version=IR_VERSION,
                              opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(_MS, 1)])
    return model, g.weights


class Encoder:
    """The encoder's session on one thread (as embed's BLAS: these products are small, and
    threads spinning on a busy 2-core machine cost more than they give). Thread-safe."""

    def __init__(self, word: np.ndarray, pos: np.ndarray, type0: np.ndarray,
                 ln0: tuple[np.ndarray, np.ndarray], layers: Sequence[tuple], heads: int) -> None:
        import onnxruntime as ort

        model, weights = build_model(word, pos, type0, ln0, layers, heads)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3                # errors only: no notes on stderr
        # the session reads the weights from these values: they live as long as it does
        self._values = [ort.OrtValue.ortvalue_from_numpy(a) for a in weights.values()]
        so.add_external_initializers(list(weights), self._values)
        self._session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Hidden states float32 [n, t, dim] of ids int64 [n, t] under mask int32 [n, t]."""
        return self._session.run(None, {"ids": ids, "mask": mask})[0]
