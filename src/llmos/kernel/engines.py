"""The kernel's engines: the ones it was given, and the ones it builds on first use
from the model registry (embedded llama.cpp, local GGUF, OpenAI-compatible remote).
Every engine runs under the scheduler's token-level step policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmos.config import Config
    from llmos.llm.base import Engine

__all__ = ["EngineSet"]


class EngineSet:
    def __init__(self, config: Config, given: dict[str, Engine] | None,
                 policy: Callable[[], Any]) -> None:
        self.config = config
        self._policy = policy                            # () -> a fresh StepPolicy
        self._engines: dict[str, Engine] = dict(given or {})   # name -> engine
        self._built: set[str] = set()                    # names this set built (and closes)
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> dict[str, Engine]:
        return self._engines

    async def start_given(self) -> None:
        for engine in self._engines.values():
            await engine.start()
            engine.set_policy(self._policy())

    def check(self, name: str) -> None:
        """Raise ModelNotFound (with the known names) unless ``name`` can be served."""
        if name in self._engines:
            return
        from llmos.llm.models import resolve

        resolve(name, self.config)

    async def get(self, model: str | None) -> Engine:
        """The engine for ``model`` (None: the configured default, else the first given)."""
        if model is None:
            if self.config.model in self._engines:
                return self._engines[self.config.model]
            if self._engines:
                return next(iter(self._engines.values()))
        name = model or self.config.model
        if name in self._engines:
            return self._engines[name]
        async with self._lock:
            if name not in self._engines:
                engine = self._build(name)
                await engine.start()
                engine.set_policy(self._policy())
                self._engines[name] = engine
                self._built.add(name)
        return self._engines[name]

    def _build(self, name: str) -> Engine:
        from llmos.llm.models import resolve

        info = resolve(name, self.config)
        if info.kind == "remote":
            from llmos.llm.openai import OpenAIEngine

            return OpenAIEngine(info.location, info.remote_model or name,
                                api_key_env=info.api_key_env, context_length=info.context_length)
        from llmos.llm.llamacpp import LlamaCppEngine

        return LlamaCppEngine.from_config(self.config, name)

    async def close_built(self) -> None:
        for name in sorted(self._built):
            await self._engines[name].close()
