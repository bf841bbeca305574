"""The planner-tier model on its real GGUF (``model`` marker; skipped until `make` installed it).

Header facts (read with ``gguf`` when ``install_model`` joined the file, and by llama.cpp
on load), ChatML rendering of chat messages from the GGUF's own template, and a short
greedy ``llm.generate`` with ``"model": "qwen2.5-coder-1.5b"`` through the kernel, which
builds the engine from the registry on first use. One load of the 1.1 GB file in all
(the full ``gguf`` header parse takes 7 s or more, so it runs at install time only).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmos.config import EngineConfig
from llmos.errors import ModelPackageMissing
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.llm.base import GenerationRequest
from llmos.llm.models import PACKAGED, resolve

pytestmark = pytest.mark.model

NAME = "qwen2.5-coder-1.5b"
SMALL = EngineConfig(n_ctx=1024, n_seq_max=2, prefill_chunk=128)
ASK = ({"role": "system", "content": "Answer with one word."},
       {"role": "user", "content": "What is the capital of France?"})


@pytest.fixture
def planner(config):
    try:
        return resolve(NAME, config)
    except ModelPackageMissing as e:
        pytest.skip(f"{NAME} is not installed ({e.hint})")


def test_header_is_qwen2_coder_instruct(planner):
    spec = PACKAGED[NAME]
    assert planner.kind == "packaged" and planner.size_bytes == spec.size_bytes
    assert (planner.architecture, planner.context_length) == ("qwen2", 32768)
    facts = json.loads(Path(f"{planner.path}.meta.json").read_text())
    assert facts == {"size_bytes": spec.size_bytes, "sha256": spec.sha256, "architecture": "qwen2",
                     "context_length": 32768, "name": "Qwen2.5 Coder 1.5B Instruct GGUF"}


async def test_chatml_and_greedy_generation_through_the_kernel(planner, config, clock):
    k = await Kernel.boot(config.replace(engine=SMALL), clock=clock, hal=FakeHAL(clock))
    try:
        res = await k.syscall("root", "llm.generate", {"model": NAME, "messages": list(ASK),
                                                       "max_tokens": 8})
        assert res.ok, res.error
        assert "Paris" in res.value["text"] and "<|im_end|>" not in res.value["text"]
        assert res.value["finish_reason"] == "stop"                 # <|im_end|> ended the turn
        eng = k.engine_set.loaded[NAME]
        assert (eng._model.n_ctx_train, eng._model.n_vocab) == (32768, 151936)
        assert "<|im_start|>" in (eng._model.chat_template or "")
        assert eng.render(GenerationRequest(messages=ASK)) == (
            "<|im_start|>system\nAnswer with one word.<|im_end|>\n"
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
            "<|im_start|>assistant\n")
    finally:
        await k.shutdown(grace_s=0.5)
