"""The embedding model's encoder in onnxruntime (llm.embed_onnx) against the numpy pass.

Default tier: both load the packaged all-MiniLM-L6-v2 once per module (~1 s together)."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest

from llmos.errors import InvalidArgument, ModelPackageMissing
from llmos.llm.embed import MiniLM, default_embedder
from llmos.llm.embed_onnx import IR_VERSION, OPSET, build_model

TEXTS = ["short", "which colleague has a nut allergy?", "a somewhat longer sentence about the weather tomorrow",
         "Ünïcödé, emoji 🙂 and numbers 1,400.50", "x " * 400]


@pytest.fixture(scope="module")
def ort_pass():
    return MiniLM(runtime="onnxruntime")


@pytest.fixture(scope="module")
def numpy_pass():
    return MiniLM(runtime="numpy")


def test_the_session_gives_the_numpy_pass_embeddings(ort_pass, numpy_pass):
    assert ort_pass.runtime == "onnxruntime" and numpy_pass.runtime == "numpy"
    a, b = ort_pass.embed(TEXTS), numpy_pass.embed(TEXTS)          # one padded batch, a 256-token text in it
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert float((a * b).sum(1).min()) > 1 - 1e-6
    for t, row in zip(TEXTS, a, strict=True):                  # alone, no padding
        np.testing.assert_allclose(ort_pass.embed([t])[0], row, atol=1e-5)


def test_hidden_states_match_layer_for_layer_output(ort_pass, numpy_pass):
    ids = np.array([ort_pass._tok.encode("hello world, how are you").ids], np.int64)
    mask = np.ones(ids.shape, np.float32)
    h = ort_pass._onnx.run(ids, mask.astype(np.int32))
    assert h.shape == (1, ids.shape[1], 384) and h.dtype == np.float32
    np.testing.assert_allclose(h, numpy_pass._forward_numpy(ids, mask), atol=1e-4)


def test_the_default_embedder_runs_in_onnxruntime():
    assert default_embedder().runtime == "onnxruntime"     # installed by make (pyproject pins it)


def test_without_onnxruntime_auto_runs_numpy_and_onnxruntime_is_refused(monkeypatch, numpy_pass):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    m = MiniLM(runtime="auto")
    assert m.runtime == "numpy"
    np.testing.assert_allclose(m.embed(TEXTS[:2]), numpy_pass.embed(TEXTS[:2]), atol=1e-6)
    with pytest.raises(ModelPackageMissing, match="onnxruntime"):
        MiniLM(runtime="onnxruntime")


def test_an_unknown_runtime_is_refused_with_the_field():
    with pytest.raises(InvalidArgument, match="runtime: expected one of auto, onnxruntime, numpy") as e:
        MiniLM(runtime="torch")
    assert e.value.field == "runtime"


def test_without_the_onnx_package_auto_runs_numpy(monkeypatch, numpy_pass):
    monkeypatch.setitem(sys.modules, "onnx", None)         # the graph cannot be built
    m = MiniLM(runtime="auto")
    assert m.runtime == "numpy"
    np.testing.assert_allclose(m.embed(TEXTS[:2]), numpy_pass.embed(TEXTS[:2]), atol=1e-6)


def test_the_graph_is_valid_onnx_with_its_weights_handed_over(numpy_pass):
    m = numpy_pass
    model, weights = build_model(m._word, m._pos, m._type0, m._ln0, m._layers, m._heads)
    assert model.ir_version == IR_VERSION <= 13             # onnxruntime 1.30 reads up to 13
    assert {o.domain: o.version for o in model.opset_import} == {"": OPSET, "com.microsoft": 1}
    fused = [n.op_type for n in model.graph.node if n.domain == "com.microsoft"]
    assert fused == ["Attention", "SkipLayerNormalization", "BiasGelu", "SkipLayerNormalization"] * 6
    # every weight is external data named after itself: the model holds no weight bytes
    assert [t.name for t in model.graph.initializer] == list(weights)
    for t in model.graph.initializer:
        assert t.data_location == onnx.TensorProto.EXTERNAL and not t.raw_data
        assert [(e.key, e.value) for e in t.external_data] == [("location", t.name)]
        assert tuple(t.dims) == weights[t.name].shape
    assert len(model.SerializeToString()) < 16_000


def test_the_graph_passes_onnx_checker_with_its_weights_inline():
    """On a 2-layer encoder of width 8 with random weights (the checker wants the weight bytes);
    the com.microsoft ops are onnxruntime's, not the checker's, to check."""
    r = np.random.default_rng(0)

    def w(*shape):
        return r.standard_normal(shape).astype(np.float32)

    layer = (w(24, 8), w(24), w(8, 8), w(8), (w(8), w(8)), w(32, 8), w(32), w(8, 32), w(8), (w(8), w(8)))
    model, weights = build_model(w(30, 8), w(16, 8), w(8), (w(8), w(8)), [layer, layer], heads=2)
    for t in model.graph.initializer:
        t.CopyFrom(onnx.numpy_helper.from_array(weights[t.name], t.name))
    onnx.checker.check_model(model, full_check=True)
