"""Fixtures for the LLM tests.

- ``openai_stub``: one scripted OpenAI-compatible server (``stub_openai_server.StubServer``)
  per session on 127.0.0.1, reset before each test that uses it.

The helper module sits next to the tests; with ``--import-mode=importlib`` pytest puts no
test directory on ``sys.path``, so this conftest adds this one for ``import stub_openai_server``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from stub_openai_server import StubServer  # noqa: E402


@pytest.fixture(scope="session")
def _openai_stub_server():
    with StubServer() as s:
        yield s


@pytest.fixture
def openai_stub(_openai_stub_server):
    _openai_stub_server.reset()
    yield _openai_stub_server
    _openai_stub_server.reset()


# ── embedded engine (model tier) ─────────────────────────────────────────────
@pytest.fixture(scope="session")
def _llama_session_engine():
    """One embedded LlamaCppEngine (SmolLM2-135M) for every model test of the session."""
    from llmos.config import EngineConfig
    from llmos.llm.llamacpp import LlamaCppEngine

    eng = LlamaCppEngine(config=EngineConfig(n_ctx=4096, n_seq_max=8, prefill_chunk=64), batch_invariant=True)
    yield eng
    eng.shutdown()


@pytest.fixture
def llama_engine(_llama_session_engine):
    """The session engine, reset: FIFO policy, empty prefix cache, nothing live."""
    _llama_session_engine.reset()
    yield _llama_session_engine
    _llama_session_engine.reset()
