"""The LLM layer: engines behind one interface, and the factory that picks one.

Map:
- ``make_engine(model_info, config)``: THE engine factory (the kernel's ``EngineSet`` builds
  through it too): the engine for a registry entry
  (``models.resolve``): ``embedded`` / ``packaged`` / ``gguf`` → ``llamacpp.LlamaCppEngine`` in-process
  (marked prompt prefixes persist under ``prefix_dir_for(config)``),
  or, with ``managed_server=True``, a supervised llama.cpp server (``server``) driven by
  ``openai.OpenAIEngine``; ``remote`` → ``openai.OpenAIEngine``.
- Re-exported from ``base``: the interface (``Engine``, requests, results, step policy).

Engines are imported only when made, so importing ``llmos.llm`` loads neither
llama.cpp nor httpx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmos.errors import EngineError
from llmos.llm.base import (
    Capabilities,
    Chunk,
    Completion,
    Engine,
    EngineStats,
    FifoPolicy,
    GenerationHandle,
    GenerationRequest,
    SamplingParams,
    SeqState,
    SeqView,
    StepBudget,
    StepDecision,
    StepPolicy,
    Usage,
)

if TYPE_CHECKING:
    from llmos.config import Config
    from llmos.llm.models import ModelInfo

__all__ = [
    "make_engine", "Engine", "Capabilities", "Chunk", "Completion", "EngineStats", "FifoPolicy",
    "GenerationHandle", "GenerationRequest", "SamplingParams", "SeqState", "SeqView",
    "StepBudget", "StepDecision", "StepPolicy", "Usage",
]


def make_engine(model_info: ModelInfo, config: Config, *, managed_server: bool = False,
                **options: Any) -> Engine:
    """A new (not yet started) engine for ``model_info``; ``options`` go to its constructor.

    ``managed_server``: serve a local GGUF from a child llama.cpp server (``llama-server``
    on PATH, else llama-cpp-python's server) instead of in-process.
    """
    kind = model_info.kind
    if kind in ("embedded", "packaged", "gguf"):
        if managed_server:
            from llmos.llm.openai import OpenAIEngine
            from llmos.llm.server import ManagedServer

            server = ManagedServer.for_gguf(model_info.path, config, alias=model_info.name)
            return OpenAIEngine(server.base_url, model_info.name, server=server,
                                **{**server.engine_options, **options})
        from llmos.llm.llamacpp import LlamaCppEngine, prefix_dir_for

        options.setdefault("prefix_dir", prefix_dir_for(config))
        options.setdefault("tune_dir", config.home / "cache")    # the measured thread count, kept
        return LlamaCppEngine(model_info, config.engine, **options)
    if kind == "remote":
        if managed_server:
            raise EngineError(f"model {model_info.name} is remote ({model_info.location}); "
                              "a managed server needs a local GGUF file")
        from llmos.llm.openai import OpenAIEngine

        return OpenAIEngine.from_model(model_info, config, **options)
    raise EngineError(f"model {model_info.name}: unknown kind {kind!r}; expected embedded, packaged, gguf or remote")
