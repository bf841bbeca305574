"""The embedding model's encoder in onnxruntime (llm.embed_onnx) against the numpy pass.

Default tier: both load the packaged all-MiniLM-L6-v2 once per module (~1 s together)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from llmos.errors import InvalidArgument, ModelPackageMissing
from llmos.llm.embed import MiniLM, default_embedder
from llmos.llm.embed_onnx import _Proto

TEXTS = ["short", "which colleague has a nut allergy?", "a somewhat longer sentence about the weather tomorrow",
         "Ünïcödé, emoji 🙂 and numbers 1,400.50", "x " * 400]


@pytest.fixture(scope="module")
def onnx():
    return MiniLM(runtime="onnxruntime")


@pytest.fixture(scope="module")
def numpy_pass():
    return MiniLM(runtime="numpy")


def test_the_session_gives_the_numpy_pass_embeddings(onnx, numpy_pass):
    assert onnx.runtime == "onnxruntime" and numpy_pass.runtime == "numpy"
    a, b = onnx.embed(TEXTS), numpy_pass.embed(TEXTS)          # one padded batch, a 256-token text in it
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert float((a * b).sum(1).min()) > 1 - 1e-6
    for t, row in zip(TEXTS, a, strict=True):                  # alone, no padding
        np.testing.assert_allclose(onnx.embed([t])[0], row, atol=1e-5)


def test_hidden_states_match_layer_for_layer_output(onnx, numpy_pass):
    ids = np.array([onnx._tok.encode("hello world, how are you").ids], np.int64)
    mask = np.ones(ids.shape, np.float32)
    h = onnx._onnx.run(ids, mask.astype(np.int32))
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


def test_protobuf_fields_encode_as_the_wire_format_says():
    assert _Proto.num(1, 150) == b"\x08\x96\x01"                        # the encoding guide's example
    assert _Proto.num(1, -1) == b"\x08" + b"\xff" * 9 + b"\x01"          # int64 -1: ten bytes
    assert _Proto.blob(2, "testing") == b"\x12\x07testing"
    assert _Proto.f32(2, 1.0) == b"\x15\x00\x00\x80\x3f"
