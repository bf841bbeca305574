"""make_engine: the engine for each kind of registry entry."""

from __future__ import annotations

import subprocess
import sys

import pytest

import llmos.llm
from llmos.errors import EngineError
from llmos.llm import make_engine
from llmos.llm import server as srv
from llmos.llm.base import GenerationRequest
from llmos.llm.models import ModelInfo
from llmos.llm.openai import OpenAIEngine


def test_public_names_exist():
    for name in llmos.llm.__all__:
        assert hasattr(llmos.llm, name), name


def test_import_loads_no_engine():
    code = ("import sys, llmos.llm; "
            "print(','.join(m for m in ('llama_cpp', 'httpx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


async def test_remote_gives_openai_engine(config, openai_stub, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "k-1")
    info = ModelInfo(name="stub", kind="remote", location=openai_stub.base_url,
                     remote_model="stub-model", api_key_env="STUB_KEY", context_length=2048)
    eng = make_engine(info, config, max_in_flight=3)
    assert isinstance(eng, OpenAIEngine)
    assert eng.model == "stub-model" and eng.capabilities.context_length == 2048
    assert eng.capabilities.max_active == 3
    try:
        await eng.start()
        done = await eng.generate(GenerationRequest(messages=({"role": "user", "content": "hi there"},)))
    finally:
        await eng.close()
    assert done.text == "hi there"
    assert openai_stub.headers[0]["authorization"] == "Bearer k-1"
    with pytest.raises(EngineError, match="local GGUF"):
        make_engine(info, config, managed_server=True)


def test_gguf_with_managed_server(config, tmp_path, monkeypatch):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(srv, "missing_server_packages", lambda: [])
    info = ModelInfo(name="mine", kind="gguf", location=str(gguf))
    eng = make_engine(info, config, managed_server=True, read_timeout_s=30.0)
    assert isinstance(eng, OpenAIEngine) and eng.model == "mine"
    assert eng._server is not None and eng.base_url == eng._server.base_url
    assert eng.capabilities.max_active == 1 and eng.capabilities.context_length == config.engine.n_ctx
    assert eng._server.command[eng._server.command.index("--model_alias") + 1] == "mine"


def test_unknown_kind(config):
    with pytest.raises(EngineError, match="unknown kind"):
        make_engine(ModelInfo(name="x", kind="weird", location="/x"), config)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["embedded", "gguf"])
def test_local_gives_llamacpp_engine(config, monkeypatch, kind):
    """Dispatch only: the embedded engine itself is tested in test_llamacpp.py (model tier)."""
    import llmos.llm.llamacpp as llamacpp

    made = []

    class Recorder:
        def __init__(self, *args, **kw):
            made.append((args, kw))

    monkeypatch.setattr(llamacpp, "LlamaCppEngine", Recorder)
    info = ModelInfo(name="m", kind=kind, location="/models/m.gguf")
    eng = make_engine(info, config, prefix_cache=False)
    assert isinstance(eng, Recorder)
    # the prefix files and the measured thread count are kept in the state directory
    assert made == [((info, config.engine), {"prefix_cache": False,
                                             "prefix_dir": llamacpp.prefix_dir_for(config),
                                             "tune_dir": config.home / "cache"})]


async def test_the_kernel_builds_its_engines_through_make_engine(config, monkeypatch):
    """One factory: the kernel's EngineSet asks make_engine for every engine it builds,
    once per name."""
    from llmos.kernel.engines import EngineSet
    from llmos.llm.fake import FakeEngine
    from llmos.llm.models import ModelInfo as MI

    made: list[tuple[str, str]] = []

    def factory(info, cfg, **options):
        made.append((info.name, info.kind))
        return FakeEngine(model=info.name)

    monkeypatch.setattr(llmos.llm, "make_engine", factory)
    monkeypatch.setattr("llmos.llm.models.resolve",
                        lambda name, cfg: MI(name=name, kind="remote", location="http://127.0.0.1:9/v1"))
    engines = EngineSet(config, None, lambda: None)
    eng = await engines.get("elsewhere")
    assert made == [("elsewhere", "remote")] and eng.model == "elsewhere"
    assert await engines.get("elsewhere") is eng and len(made) == 1      # built once
    await engines.close_built()
