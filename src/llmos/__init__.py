"""LLM OS: an operating system for LLM agents.

The public API. Names load lazily, so ``import llmos`` stays cheap; every name
in ``__all__`` is importable (tested).

    import llmos
    cfg = llmos.load_config()
    kernel = await llmos.Kernel.boot(cfg)
    res = await kernel.syscall("root", "llm.generate", {"prompt": "Hello"})
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # foundation
    "Config": "llmos.config", "load_config": "llmos.config",
    "LLMOSError": "llmos.errors", "Risk": "llmos.types",
    "Clock": "llmos.clock", "SystemClock": "llmos.clock", "FakeClock": "llmos.clock",
    # LLM layer
    "Engine": "llmos.llm.base", "GenerationRequest": "llmos.llm.base",
    "SamplingParams": "llmos.llm.base", "Completion": "llmos.llm.base",
    "FakeEngine": "llmos.llm.fake", "ModelInfo": "llmos.llm.models",
    "resolve_model": ("llmos.llm.models", "resolve"),
    # kernel: the in-process API for programs
    "Kernel": "llmos.kernel", "SyncKernel": "llmos.kernel", "TaskHandle": "llmos.kernel",
    "SyscallResult": "llmos.kernel", "ProcState": "llmos.kernel", "Agent": "llmos.kernel",
    "Capabilities": "llmos.kernel",
    # SDK: programs and agents talking to a running daemon
    "Client": "llmos.sdk", "AsyncClient": "llmos.sdk",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'llmos' has no attribute {name!r}")
    mod, attr = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(mod), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
