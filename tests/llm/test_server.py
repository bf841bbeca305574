"""ManagedServer: start, health, restart, stop; the llama.cpp command; the engine on top."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from llmos.errors import EngineError
from llmos.llm import server as srv
from llmos.llm.base import GenerationRequest, SamplingParams
from llmos.llm.openai import OpenAIEngine
from llmos.llm.server import ManagedServer, ServerState, free_port, llama_server_command

CHILD = str(Path(__file__).with_name("stub_child_server.py"))


def child(tmp_path, *args: str, **kw) -> ManagedServer:
    port = free_port()
    kw.setdefault("startup_timeout_s", 10.0)
    kw.setdefault("restart_backoff_s", 0.05)
    kw.setdefault("stop_grace_s", 2.0)
    return ManagedServer([sys.executable, CHILD, "--port", str(port), *args], port=port,
                         log_path=tmp_path / "child.log", **kw)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie still answers kill(0): look at its state
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


async def wait_for(cond, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


async def test_start_waits_for_health_then_stop(tmp_path):
    s = child(tmp_path, "--health-delay-s", "0.3")
    try:
        await s.start()
        assert s.state == ServerState.READY and s.pid is not None
        pid = s.pid
        async with httpx.AsyncClient() as c:
            assert (await c.get(f"{s.base_url}/models")).status_code == 200
        log = s.log_path.read_text()
        assert "health 503" in log and "health 200" in log   # it waited through the loading phase
        await s.start()                                       # idempotent while running
        assert s.pid == pid
    finally:
        await s.stop()
    assert s.state == ServerState.STOPPED and not alive(pid) and s.pid is None
    await s.stop()                                            # idempotent


async def test_models_endpoint_is_the_probe_without_health(tmp_path):
    s = child(tmp_path, "--no-health")
    try:
        await s.start()
        assert s.state == ServerState.READY
    finally:
        await s.stop()


async def test_failed_start_reports_the_log(tmp_path):
    s = child(tmp_path, "--exit-now", "3")
    with pytest.raises(EngineError) as ei:
        await s.start()
    assert "exited with code 3" in str(ei.value) and "bad magic" in str(ei.value)
    assert str(s.log_path) in ei.value.hint and s.state == ServerState.FAILED
    with pytest.raises(EngineError, match="exited with code 3"):
        await s.wait_ready(1.0)


async def test_startup_timeout_kills_the_child(tmp_path):
    s = child(tmp_path, "--health-delay-s", "60", startup_timeout_s=0.5)
    with pytest.raises(EngineError, match="not healthy within 0.5 s"):
        await s.start()
    pid = int(s.log_path.read_text().split("pid ")[1].split()[0])
    await wait_for(lambda: not alive(pid))
    assert s.state == ServerState.FAILED


async def test_missing_program_is_a_clear_error(tmp_path):
    s = ManagedServer([str(tmp_path / "no-such-server")], port=free_port(), log_path=tmp_path / "l.log")
    with pytest.raises(EngineError, match="cannot run"):
        await s.start()


async def test_crash_is_restarted(tmp_path):
    s = child(tmp_path, "--exit-after-s", "0.4")
    try:
        await s.start()
        first = s.pid
        await wait_for(lambda: s.restarts >= 1 and s.state == ServerState.READY)
        assert s.pid != first and not alive(first)
    finally:
        await s.stop()


async def test_crash_loop_gives_failed(tmp_path):
    s = child(tmp_path, "--exit-after-s", "0.2", max_restarts=2)
    try:
        await s.start()
        await wait_for(lambda: s.state == ServerState.FAILED)
        assert s.restarts == 2
        with pytest.raises(EngineError, match="crashed 3 times"):
            await s.wait_ready(1.0)
    finally:
        await s.stop()
    assert s.state == ServerState.FAILED


async def test_wait_ready_before_start_and_timeout(tmp_path):
    s = child(tmp_path, "--health-delay-s", "30")
    with pytest.raises(EngineError, match="not running") as ei:
        await s.wait_ready(0.1)
    assert ei.value.hint == "start it first"
    starting = asyncio.create_task(s.start())
    await wait_for(lambda: s.state == ServerState.STARTING)
    with pytest.raises(EngineError, match="not ready within 0.1 s"):
        await s.wait_ready(0.1)
    await s.stop()                      # cuts the start short
    with pytest.raises(EngineError):
        await starting
    assert s.state == ServerState.STOPPED


async def test_engine_owns_the_server_and_rides_out_a_restart(tmp_path):
    s = child(tmp_path)
    eng = OpenAIEngine(s.base_url, "child", server=s, backoff_s=0.02, retries=3)
    req = GenerationRequest(messages=({"role": "user", "content": "hello from the child"},),
                            params=SamplingParams(max_tokens=16))
    try:
        await eng.start()
        assert (await eng.generate(req)).text == "hello from the child"
        pid = s.pid
        os.kill(pid, signal.SIGKILL)           # the child this test started, by its id
        await wait_for(lambda: s.state != ServerState.READY)
        done = await eng.generate(req)         # waits for the restart instead of failing
        assert done.text == "hello from the child" and s.restarts == 1 and s.pid != pid
    finally:
        await eng.close()
    assert s.state == ServerState.STOPPED


# ── the llama.cpp command ────────────────────────────────────────────────────
@pytest.fixture
def gguf(tmp_path):
    p = tmp_path / "m.gguf"
    p.write_bytes(b"GGUF")
    return p


def test_command_prefers_llama_server_on_path(tmp_path, gguf, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "llama-server"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    argv, opts = llama_server_command(gguf, host="127.0.0.1", port=9000, n_ctx=4096, parallel=4,
                                      threads=2, alias="m")
    assert argv[0] == str(exe)
    assert argv[1:] == ["-m", str(gguf), "--host", "127.0.0.1", "--port", "9000", "-c", "4096",
                        "-np", "4", "-ngl", "0", "-t", "2", "--alias", "m"]
    assert opts == {"max_in_flight": 4, "response_format": "json_schema", "context_length": 1024}


def test_command_falls_back_to_llama_cpp_python(tmp_path, gguf, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(srv, "missing_server_packages", lambda: [])
    argv, opts = llama_server_command(gguf, host="127.0.0.1", port=9001, n_ctx=2048)
    assert argv[:3] == [sys.executable, "-m", "llmos.llm.server"]
    assert argv[argv.index("--model") + 1] == str(gguf) and "--interrupt_requests" in argv
    assert opts == {"max_in_flight": 1, "response_format": "json_object", "context_length": 2048}


def test_missing_server_extra_names_what_to_install(tmp_path, gguf, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    real = srv.importlib.util.find_spec
    monkeypatch.setattr(srv.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("starlette_context", "pydantic_settings")
                        else real(name, *a))
    with pytest.raises(EngineError) as ei:
        llama_server_command(gguf, host="127.0.0.1", port=9002, n_ctx=2048)
    assert "starlette-context" in str(ei.value) and "pydantic-settings" in str(ei.value)
    assert "llama-cpp-python[server]" in ei.value.hint
    with pytest.raises(EngineError, match="no llama-server binary"):
        llama_server_command(gguf, host="127.0.0.1", port=9002, n_ctx=2048, prefer="binary")


def test_command_checks_the_model_file(tmp_path):
    with pytest.raises(EngineError, match="does not exist"):
        llama_server_command(tmp_path / "nope.gguf", host="127.0.0.1", port=1, n_ctx=256)


def test_for_gguf_sizes_from_config(config, gguf, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(srv, "missing_server_packages", lambda: [])
    s = ManagedServer.for_gguf(gguf, config, alias="mine")
    assert s.base_url == f"http://127.0.0.1:{s.port}/v1" and s.port > 0
    assert s.command[s.command.index("--n_ctx") + 1] == str(config.engine.n_ctx)
    assert s.log_path.parent == config.log_dir and s.engine_options["max_in_flight"] == 1


# ── the real thing (opt-in: needs the embedded GGUF and a server implementation) ─
@pytest.mark.slow
@pytest.mark.model
async def test_real_llama_cpp_server_with_embedded_model(config):
    from llmos.llm.models import embedded_model_path

    try:
        s = ManagedServer.for_gguf(embedded_model_path(), config.replace(
            engine=config.engine.__class__(n_ctx=1024, n_seq_max=2)), alias="smollm2",
            startup_timeout_s=120)
    except EngineError as e:
        pytest.skip(str(e))
    eng = OpenAIEngine(s.base_url, "smollm2", server=s, **s.engine_options)
    try:
        await eng.start()
        done = await eng.generate(GenerationRequest(
            messages=({"role": "user", "content": "Say hello."},), params=SamplingParams(max_tokens=8)))
        assert done.text and done.usage.completion_tokens >= 1
        schema = {"type": "object", "additionalProperties": False, "required": ["ok"],
                  "properties": {"ok": {"type": "boolean"}}}
        done = await eng.generate(GenerationRequest(
            messages=({"role": "user", "content": "Answer in JSON."},), json_schema=schema,
            params=SamplingParams(max_tokens=16)))
        import json
        assert isinstance(json.loads(done.text)["ok"], bool)
    finally:
        await eng.close()
