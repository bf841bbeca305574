"""Usage accounting per agent: tokens (total and a rolling minute, for quotas), CPU
seconds, and joules (measured and modelled kept apart).

Map:
- ``Accounting.seed(procs)``: lifetime totals from journaled processes (boot).
- ``charge(agent, tokens, cpu_s)``: usage of a finished attempt (the kernel's fold).
- ``charge_live(agent, tokens)``: tokens while a generation runs (the quota guard).
- ``tokens_last_min(agent)``: the tokens_per_min window; O(expired entries) per call.
- ``add_energy(agent, joules, modelled_j)``: joules of a stopped meter interval.
- ``of(agent)`` / ``agents()``: what ``agent.list``, ``llmos top`` and ``/metrics`` show.

Owner: the kernel (its fold and its transition hook call in; recovery seeds totals
from the journal). Energy of processes still running lives in the kernel's
``EnergyMeter`` until they stop; ``Kernel.energy_by_agent`` adds the two.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from llmos.kernel.process import Process, energy_label

__all__ = ["Accounting", "AgentUsage", "TOKEN_WINDOW_S"]

TOKEN_WINDOW_S = 60.0      # tokens_per_min quota window


@dataclass
class AgentUsage:
    tokens: int = 0                # prompt + generated, lifetime
    cpu_s: float = 0.0             # CPU seconds of its tools and jobs, lifetime
    joules: float | None = None    # J attributed to its processes (None: never metered)
    joules_modelled: float = 0.0   # J of ``joules`` from power models

    @property
    def joules_label(self) -> str | None:
        return energy_label(self.joules, self.joules_modelled)


class Accounting:
    def __init__(self, clock_time: Callable[[], float]) -> None:
        self._now = clock_time
        self._window: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        # agent -> (time s, tokens) within the last TOKEN_WINDOW_S; owner: charge*, tokens_last_min
        self._window_sum: dict[str, int] = collections.defaultdict(int)   # agent -> tokens in _window
        self._totals: dict[str, AgentUsage] = collections.defaultdict(AgentUsage)   # agent -> lifetime

    def seed(self, procs: Iterable[Process]) -> None:
        """Lifetime totals from journaled processes (boot)."""
        for p in procs:
            t = self._totals[p.owner]
            t.tokens += p.tokens_in + p.tokens_out
            t.cpu_s += p.cpu_s
            if p.joules is not None:
                self.add_energy(p.owner, p.joules, p.joules_modelled or 0.0)

    def charge(self, agent: str, tokens: int, cpu_s: float) -> None:
        t = self._totals[agent]
        t.tokens += tokens
        t.cpu_s += cpu_s
        if tokens:
            self._window[agent].append((self._now(), tokens))
            self._window_sum[agent] += tokens

    def charge_live(self, agent: str, tokens: int) -> None:
        """Tokens of a generation still running: they count toward the window now."""
        self.charge(agent, tokens, 0.0)

    def tokens_last_min(self, agent: str) -> int:
        q = self._window.get(agent)
        if not q:
            return 0
        cutoff = self._now() - TOKEN_WINDOW_S
        while q and q[0][0] < cutoff:
            self._window_sum[agent] -= q.popleft()[1]
        return self._window_sum[agent]

    def cpu_s(self, agent: str) -> float:
        return self._totals[agent].cpu_s if agent in self._totals else 0.0

    def add_energy(self, agent: str, joules: float, modelled_j: float) -> None:
        t = self._totals[agent]
        t.joules = (t.joules or 0.0) + joules
        t.joules_modelled += modelled_j

    def usage(self, agent: str) -> AgentUsage:
        return self._totals.get(agent) or AgentUsage()

    def agents(self) -> list[str]:
        return sorted(self._totals)

    def of(self, agent: str) -> dict[str, Any]:
        t = self.usage(agent)
        return {"tokens_total": int(t.tokens), "tokens_last_min": self.tokens_last_min(agent),
                "cpu_s": round(t.cpu_s, 3)}
