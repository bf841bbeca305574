"""POST /v1/embeddings: the long-term memory's model (all-MiniLM-L6-v2) as an OpenAI route."""

from __future__ import annotations

import base64
import struct

import numpy as np


async def test_embeddings_route_serves_minilm(api):
    r = await api.client.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2",
                                                       "input": ["the cat sat", "a dog ran"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1]
    v = np.array(body["data"][0]["embedding"])
    assert v.shape == (384,) and abs(np.linalg.norm(v) - 1) < 1e-4
    assert body["usage"]["prompt_tokens"] > 0
    r = await api.client.post("/v1/embeddings", json={"model": "sentence-transformers/all-MiniLM-L6-v2",
                                                       "input": "the cat sat", "encoding_format": "base64"})
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    np.testing.assert_allclose(struct.unpack("<384f", raw), v, atol=1e-6)


async def test_embeddings_refuse_other_models_and_empty_input(api):
    r = await api.client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = await api.client.post("/v1/embeddings", json={"model": "default", "input": [""]})
    assert r.status_code in (400, 422) and r.json()["error"]["param"] == "input"
