"""Long-term memory on the real embedding model (all-MiniLM-L6-v2 from its wheel, numpy).

Default tier: the model loads once per process (~0.4 s) and each test embeds a few
sentences. The reference values are sentence-transformers' own for this model."""

from __future__ import annotations

import numpy as np
import pytest

from llmos.llm.embed import MAX_TOKENS, default_embedder


@pytest.fixture(scope="module")
def model():
    return default_embedder()


def test_the_numpy_model_reproduces_sentence_transformers(model):
    v = model.embed(["This is an example sentence"])[0]
    assert v.shape == (384,) and v.dtype == np.float32
    np.testing.assert_allclose(v[:4], [0.0676569, 0.0634959, 0.0487131, 0.0793050], atol=2e-5)
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    a, b, c = model.embed(["A man is eating food.", "A man is eating a piece of bread.",
                           "A man is riding a horse."])
    assert abs(float(a @ b) - 0.7553) < 2e-3 and float(a @ c) < 0.3


def test_a_batch_equals_one_at_a_time(model):
    texts = ["short", "a somewhat longer sentence about the weather tomorrow", "x " * 400]
    batch = model.embed(texts)
    for t, row in zip(texts, batch, strict=True):
        np.testing.assert_allclose(model.embed([t])[0], row, atol=1e-5)
    assert model.count_tokens("x " * 400) == MAX_TOKENS == 256     # the model reads no further
    assert model.count_tokens("hello world") == 4                       # [CLS] hello world [SEP]
    assert model.embed([]).shape == (0, 384)


async def test_recall_finds_a_memory_by_meaning_alone(kernel):
    sys = kernel.syscall
    for text in ["Maria is allergic to peanuts, so never order satay for team lunches.",
                 "The staging cluster costs about 1,400 dollars a month.",
                 "My passport expires on 14 March 2027."]:
        assert (await sys("root", "memory.remember", {"text": text})).ok
    res = (await sys("root", "memory.recall", {"query": "which colleague has a nut allergy?", "k": 1})).value
    assert res["results"][0]["text"].startswith("Maria is allergic")
    res = (await sys("root", "memory.recall", {"query": "when does my travel document run out?", "k": 1})).value
    assert res["results"][0]["text"].startswith("My passport")


async def test_memory_embed_serves_the_same_vectors(kernel, model):
    res = (await kernel.syscall("root", "memory.embed", {"input": ["hello world", "hi"]})).value
    assert res["model"] == "all-MiniLM-L6-v2" and res["dim"] == 384 and res["tokens"] == 7
    np.testing.assert_allclose(res["embeddings"][0], model.embed(["hello world"])[0], atol=1e-6)
