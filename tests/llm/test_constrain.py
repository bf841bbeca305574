"""Constrained decoding: schema/grammar compilation, batch masks, and valid output
from the real model across concurrent sequences with different schemas."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import llguidance
import numpy as np
import pytest

from llmos.errors import InvalidRequest
from llmos.llm.base import GenerationRequest, SamplingParams
from llmos.llm.constrain import compile_grammar
from llmos.llm.llamacpp import LlamaCppEngine

PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string", "maxLength": 20},
                         "age": {"type": "integer", "minimum": 0, "maximum": 120}}}
SCHEMAS = [
    PERSON,
    {"type": "object", "additionalProperties": False, "required": ["city", "country"],
     "properties": {"city": {"type": "string", "maxLength": 24}, "country": {"type": "string", "maxLength": 24}}},
    {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 3, "maxItems": 3},
    {"type": "object", "additionalProperties": False, "required": ["ok"], "properties": {"ok": {"type": "boolean"}}},
    {"type": "object", "additionalProperties": False, "required": ["color"],
     "properties": {"color": {"enum": ["red", "green", "blue"]}}},
    {"type": "object", "additionalProperties": False, "required": ["steps"],
     "properties": {"steps": {"type": "array", "maxItems": 3,
                              "items": {"type": "string", "maxLength": 16}}}},
    {"type": "string", "maxLength": 12},
    {"type": "object", "additionalProperties": False, "required": ["x", "y"],
     "properties": {"x": {"type": "number", "minimum": -10, "maximum": 10},
                    "y": {"type": "integer", "minimum": 1, "maximum": 5}}},
]
PROMPTS = ["Give a person as JSON.", "Name a city and its country as JSON.", "Three digits as a JSON array.",
           "Is the sky blue? Answer as JSON.", "Pick a color as JSON.", "Plan to make tea, as JSON.",
           "Say hello as a JSON string.", "A point as JSON."]


def test_compile_rejects_bad_input_without_a_model() -> None:
    with pytest.raises(InvalidRequest) as e:
        compile_grammar(["not", "an", "object"])        # type: ignore[arg-type]
    assert e.value.field == "json_schema"
    with pytest.raises(InvalidRequest) as e:
        compile_grammar(grammar="   ")
    assert e.value.field == "grammar"
    with pytest.raises(InvalidRequest):
        compile_grammar()
    assert compile_grammar(PERSON)      # a grammar text


@pytest.mark.model
@pytest.mark.parametrize("schema", [{"type": "nonsense"}, {"properties": 3},
                                    {"type": "string", "pattern": "("}, {"$ref": "#/nowhere"}])
def test_invalid_schemas_are_invalid_requests(llama_engine: LlamaCppEngine, schema: dict) -> None:
    with pytest.raises(InvalidRequest) as e:
        llama_engine.submit(GenerationRequest(prompt="x", json_schema=schema))
    assert e.value.field == "json_schema" and e.value.expected


@pytest.mark.model
def test_invalid_grammar_is_an_invalid_request(llama_engine: LlamaCppEngine) -> None:
    with pytest.raises(InvalidRequest) as e:
        llama_engine.submit(GenerationRequest(prompt="x", grammar="start: undefined_rule"))
    assert e.value.field == "grammar"


@pytest.mark.model
def test_batch_mask_matches_each_matchers_own_mask(llama_engine: LlamaCppEngine) -> None:
    con = llama_engine._constrainer
    ms = [con.matcher(compile_grammar(s)) for s in SCHEMAS[:4]]
    for m, tok in zip(ms[:2], con.tokenizer.tokenize_str('{"'), strict=False):
        con.commit(m, tok)
    n = con.n_vocab
    x = np.random.default_rng(0).normal(size=(6, n)).astype(np.float32)
    before = x.copy()
    rows = [0, 2, 3, 5]
    con.apply(x, rows, con.start(ms).result())
    for r, m in zip(rows, ms, strict=True):
        ref = np.frombuffer(m.compute_bitmask(), dtype=np.uint8)
        allowed = np.unpackbits(ref, count=n, bitorder="little").astype(bool)
        assert np.array_equal(np.isfinite(x[r]), allowed)
        assert np.array_equal(x[r][allowed], before[r][allowed])
    assert np.array_equal(x[[1, 4]], before[[1, 4]])        # unconstrained rows untouched


@pytest.mark.model
async def test_eight_concurrent_schemas_all_validate(llama_engine: LlamaCppEngine) -> None:
    reqs = [GenerationRequest(messages=({"role": "user", "content": p},), json_schema=s,
                              params=SamplingParams(max_tokens=48))
            for p, s in zip(PROMPTS, SCHEMAS, strict=True)]
    done = await asyncio.gather(*(llama_engine.generate(r) for r in reqs))
    for d, s in zip(done, SCHEMAS, strict=True):
        assert d.finish_reason == "stop", d.text
        jsonschema.validate(json.loads(d.text), s)


@pytest.mark.model
async def test_sampled_constrained_output_validates(llama_engine: LlamaCppEngine) -> None:
    reqs = [GenerationRequest(prompt="JSON:", json_schema=PERSON,
                              params=SamplingParams(max_tokens=40, temperature=1.2, top_p=0.95, seed=i))
            for i in range(3)]
    for d in await asyncio.gather(*(llama_engine.generate(r) for r in reqs)):
        assert d.finish_reason == "stop"
        jsonschema.validate(json.loads(d.text), PERSON)


@pytest.mark.model
async def test_lark_grammar(llama_engine: LlamaCppEngine) -> None:
    grammar = 'start: "answer: " ("yes" | "no")'
    d = await llama_engine.generate(GenerationRequest(
        messages=({"role": "user", "content": "Is water wet?"},), grammar=grammar,
        params=SamplingParams(max_tokens=8)))
    assert d.text in ("answer: yes", "answer: no")
    assert llguidance.LLMatcher.grammar_from_lark(grammar)
