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
