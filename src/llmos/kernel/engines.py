"""The kernel's engines: the ones it was given, and the ones it builds on first use
from the model registry (embedded llama.cpp, local GGUF, OpenAI-compatible remote).
Every engine runs under the scheduler's token-level step policy.

Map:
- ``EngineSet``: given engines + engines built on first use (by ``llm.make_engine``, the
  one engine factory); ``get(key)`` (``<key>@<node>``: engine ``key`` on that node, for an
  engine spread over nodes, as the allocator placed it: ``kernel.placement``),
  ``check(model)``, ``stats()`` (each loaded engine's live ``EngineStats``).
- ``LivePriorities``: pid -> the kernel's current priority of a live generation
  (``proc.nice`` writes it, the engine's step thread reads it; request ids map back
  to pids through ``executor.base.pid_of_request``).
- ``RenicedPolicy``: wraps the scheduler's step policy so the views it decides on
  carry those current priorities; the policy (``sched.step.TokenPolicy``) sees a
  changed priority and renices the sequence in its own scheduler, so a renice
  reorders the running batch at the next engine step, not only the kernel queue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from llmos.executor.base import pid_of_request

if TYPE_CHECKING:
    from llmos.config import Config
    from llmos.llm.base import Engine, SeqView, StepBudget, StepDecision, StepPolicy

__all__ = ["EngineSet", "LivePriorities", "RenicedPolicy"]


class LivePriorities:
    """Current priorities of llm processes reniced while live, by pid (thread-safe)."""

    def __init__(self) -> None:
        self._by_pid: dict[int, int] = {}     # pid -> priority -20..19; owner: the kernel (nice, _end)
        self._lock = threading.Lock()

    def set(self, pid: int, priority: int) -> None:
        with self._lock:
            self._by_pid[pid] = priority

    def forget(self, pid: int) -> None:
        with self._lock:
            self._by_pid.pop(pid, None)

    def get(self, pid: int) -> int | None:
        return self._by_pid.get(pid)

    def __len__(self) -> int:
        return len(self._by_pid)

    def apply(self, seqs: Sequence[SeqView]) -> list[SeqView]:
        """``seqs`` with the current priority of every kernel generation that was reniced."""
        if not self._by_pid:
            return list(seqs)
        with self._lock:
            live = dict(self._by_pid)
        out = []
        for v in seqs:
            pid = pid_of_request(v.request_id)
            p = live.get(pid) if pid is not None else None
            out.append(v if p is None or p == v.priority else dataclasses.replace(v, priority=p))
        return out


class RenicedPolicy:
    """A StepPolicy that hands ``inner`` views carrying the kernel's current priorities.

    Everything else (``explain``, ``preemptions``, ...) is the inner policy's.
    """

    def __init__(self, inner: StepPolicy, live: LivePriorities) -> None:
        self.inner = inner
        self.live = live

    def decide(self, seqs: Sequence[SeqView], budget: StepBudget) -> StepDecision:
        return self.inner.decide(self.live.apply(seqs), budget)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class EngineSet:
    def __init__(self, config: Config, given: dict[str, Engine] | None,
                 policy: Callable[[], Any]) -> None:
        self.config = config
        self.live = LivePriorities()                     # renices of running generations
        self._make_policy = policy                       # () -> a fresh StepPolicy
        self._engines: dict[str, Engine] = dict(given or {})   # name -> engine
        self._built: set[str] = set()                    # names this set built (and closes)
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> dict[str, Engine]:
        return self._engines

    @property
    def given(self) -> dict[str, Engine]:
        return {k: e for k, e in self._engines.items() if k not in self._built}

    def _policy(self) -> Any:
        return RenicedPolicy(self._make_policy(), self.live)

    def stats(self) -> dict[str, Any]:
        """Each loaded engine's live ``EngineStats`` (an engine whose stats fail is left out)."""
        out = {}
        for name, eng in list(self._engines.items()):
            try:
                out[name] = eng.stats()
            except Exception:  # noqa: BLE001 - stats are best effort; a driver hiccup must not stop top
                continue
        return out

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
        key, at, node = name.partition("@")                 # "<key>@<node>": the allocator chose a node
        if at and callable(getattr(self._engines.get(key), "at", None)):
            return self._engines[key].at(node)
        async with self._lock:
            if name not in self._engines:
                engine = self._build(name)
                await engine.start()
                engine.set_policy(self._policy())
                self._engines[name] = engine
                self._built.add(name)
        return self._engines[name]

    def _build(self, name: str) -> Engine:
        """A new engine for registry name ``name``, made by the one factory (``llm.make_engine``);
        with ``ray`` and ``ray_engines`` configured, a local model runs as one engine actor per
        Ray node (``executor.ray_engines.RayEngine``), each made by that factory on its node."""
        from llmos.llm import make_engine
        from llmos.llm.models import resolve

        info = resolve(name, self.config)
        if self.config.ray and self.config.ray_engines and info.kind in ("embedded", "packaged", "gguf"):
            import functools

            from llmos.executor.ray_engines import RayEngine, node_engine

            return RayEngine(functools.partial(node_engine, name, self.config), model=name)
        return make_engine(info, self.config)

    async def close_built(self) -> None:
        for name in sorted(self._built):
            await self._engines[name].close()
