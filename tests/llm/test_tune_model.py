"""The thread probe on the real model (SmolLM2-135M, ``model`` marker): the chosen count is
kept in the state directory, read back by the next engine, and it generates text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmos.config import EngineConfig, load_config
from llmos.llm import tune
from llmos.llm.base import GenerationRequest, SamplingParams
from llmos.llm.llamacpp import LlamaCppEngine

pytestmark = pytest.mark.model

CFG = EngineConfig(n_ctx=1024, n_seq_max=8)


def ask(n: int = 8) -> GenerationRequest:
    return GenerationRequest(messages=({"role": "user", "content": "What is the capital of France?"},),
                             params=SamplingParams(max_tokens=n))


async def test_the_measured_count_is_kept_and_generates(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tune, "_MEMORY", {})
    eng = LlamaCppEngine(config=CFG, tune_dir=tmp_path, prefix_cache=False)
    try:
        first = eng.tuning
        assert first.threads in tune.candidates(tune.usable_cpus())
        assert set(first.samples) == set(tune.candidates(tune.usable_cpus()))
        done = await eng.generate(ask())
        assert done.text.strip() and done.usage.completion_tokens > 0
    finally:
        await eng.close()
    stored = json.loads((tmp_path / tune.STORE_NAME).read_text())
    assert [v["threads"] for v in stored.values()] == [first.threads]
    monkeypatch.setattr(tune, "_MEMORY", {})
    again = LlamaCppEngine(config=CFG, tune_dir=tmp_path, prefix_cache=False)
    try:
        assert again.tuning == first                       # read back, not measured again
        assert (await again.generate(ask())).text == done.text
    finally:
        await again.close()


async def test_from_config_keeps_it_in_the_state_directory_and_the_override_wins(home) -> None:
    cfg = load_config(env={"LLMOS_HOME": str(home), "LLMOS_THREADS": "2"})
    eng = LlamaCppEngine.from_config(cfg, prefix_cache=False)
    try:
        assert eng.tuning.threads == 2 and "LLMOS_THREADS" in eng.tuning.reason
        assert (await eng.generate(ask())).usage.completion_tokens > 0
    finally:
        await eng.close()
    assert not (home / "cache" / tune.STORE_NAME).exists()  # nothing measured, nothing kept
