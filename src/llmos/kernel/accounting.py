"""Usage accounting per agent: tokens (total and a rolling minute, for quotas), CPU
seconds, and energy attributed to the processes that ran while it was spent.

Owner: the kernel (``Kernel.update`` folds each Outcome in; recovery seeds totals
from the journal).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any

from llmos.kernel.process import Process

__all__ = ["Accounting", "TOKEN_WINDOW_S"]

log = logging.getLogger(__name__)

TOKEN_WINDOW_S = 60.0      # tokens_per_min quota window


class Accounting:
    def __init__(self, clock_time: Callable[[], float]) -> None:
        self._now = clock_time
        self._window: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        # agent -> (time s, tokens) within the last TOKEN_WINDOW_S
        self._totals: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
        # agent -> [tokens, cpu seconds] over its lifetime
        self._joules_seen: float | None = None   # J; the last total energy reading

    def seed(self, procs: list[Process]) -> None:
        """Lifetime totals from journaled processes (boot)."""
        for p in procs:
            t = self._totals[p.owner]
            t[0] += p.tokens_in + p.tokens_out
            t[1] += p.cpu_s

    def charge(self, agent: str, tokens: int, cpu_s: float) -> None:
        t = self._totals[agent]
        t[0] += tokens
        t[1] += cpu_s
        if tokens:
            self._window[agent].append((self._now(), tokens))

    def tokens_last_min(self, agent: str) -> int:
        q = self._window.get(agent)
        if not q:
            return 0
        cutoff = self._now() - TOKEN_WINDOW_S
        while q and q[0][0] < cutoff:
            q.popleft()
        return sum(n for _, n in q)

    def cpu_s(self, agent: str) -> float:
        return self._totals[agent][1] if agent in self._totals else 0.0

    def of(self, agent: str) -> dict[str, Any]:
        tok, cpu = self._totals.get(agent, [0, 0.0])
        return {"tokens_total": int(tok), "tokens_last_min": self.tokens_last_min(agent),
                "cpu_s": round(cpu, 3)}

    def attribute_energy(self, hal: Any, procs: list[Process]) -> None:
        """Split the energy spent since the last reading evenly over ``procs`` (those that
        ran in the interval). The HAL labels its figures measured or modelled."""
        if hal is None or not procs:
            return
        try:
            total = sum(r.joules for r in hal.read_energy())
        except Exception as e:   # a flaky counter must not stop the loop
            log.debug("energy reading failed: %s", e)
            return
        if self._joules_seen is not None and total >= self._joules_seen:
            share = (total - self._joules_seen) / len(procs)
            for p in procs:
                p.joules = (p.joules or 0.0) + share
        self._joules_seen = total
