"""Engine settings by measurement: how many llama.cpp threads decode fastest, and steadily, here.

Map:
- ``choose(samples)``: pure. tok/s samples per candidate thread count and workload
  (``decode8``: 8 sequences decoding together, ``decode1``: one) → a ``Choice``
  (threads, reason). Tested with made-up timings.
- ``candidates(cpus)``: the thread counts worth trying on ``cpus`` usable cores.
- ``probe(ctx, model, cands)``: the real measurement on a live context (the engine's
  own, before it serves anything): interleaved rounds of short decode windows per
  candidate, switched with ``llama_set_n_threads``; every decode has a deadline
  (``Context.set_deadline``), so a candidate that stalls (threads losing their core at
  llama.cpp's spin barriers) costs at most about a second.
- ``TuneStore(path)``: the choices kept in the state directory, one per key (model
  file, usable cores, library version); a changed model or core count is measured again.
- ``engine_threads(cfg, ctx, model, store)``: the resolution used by the engine:
  ``engine.threads`` (config or ``LLMOS_THREADS``) > the stored choice > a new probe.

NOTE (why measure). llama.cpp's threads meet at a spin barrier after every op: on an
idle 2-core machine 2 threads decode ~1.8x faster than 1, but once other work runs a
thread that loses its core stalls the rest and 2 threads fall to a few tok/s. A fixed
rule ("all cores but one") is wrong on one of the two. The probe measures both
workloads on the real model and keeps the fastest candidate whose samples stay within
``STABLE_FLOOR`` of their median; a candidate must beat fewer threads by ``MIN_GAIN``.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmos.errors import EngineError

if TYPE_CHECKING:
    from llmos.llm import _llama

__all__ = ["Choice", "TuneStore", "choose", "candidates", "probe", "tune_key", "usable_cpus",
           "engine_threads", "STORE_NAME"]

log = logging.getLogger("llmos.llm.tune")

STORE_NAME = "engine-tune.json"   # under $LLMOS_HOME/cache
WORKLOADS = ("decode8", "decode1")
STABLE_FLOOR = 0.6      # a candidate is stable when every sample >= this x its median
MIN_GAIN = 0.05         # more threads must be at least this much faster (score) to be chosen
ROUNDS = 3              # interleaved rounds: every candidate once per round and workload
WINDOW_S = 0.15         # seconds of decoding per sample (at least MIN_STEPS steps)
MIN_STEPS = 2
STALL_S = 1.0           # a decode past this is aborted; the sample counts what finished
PROMPT = "Once upon a time, there lived"


@dataclass(frozen=True)
class Choice:
    threads: int
    reason: str
    # tok/s per candidate per workload, one sample per round (the evidence)
    samples: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    key: str = ""
    measured_at: float = 0.0         # unix seconds


def usable_cpus() -> int:
    """Cores this process may run on (its affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def candidates(cpus: int) -> list[int]:
    """1, powers of two below ``cpus``, ``cpus - 1`` and ``cpus`` (at most 8 counts)."""
    out = {1, cpus, max(1, cpus - 1)}
    p = 2
    while p < cpus:
        out.add(p)
        p *= 2
    cands = sorted(out)
    while len(cands) > 8:                 # keep the ends, thin the middle
        cands.pop(len(cands) // 2)
    return cands


def choose(samples: Mapping[int, Mapping[str, Sequence[float]]]) -> Choice:
    """The thread count to use, from tok/s ``samples[threads][workload]`` (see NOTE).

    Score of a candidate: the geometric mean over workloads of its median over the best
    median of that workload. Among stable candidates the best score wins; more threads
    must beat the best with fewer by ``MIN_GAIN``. With no stable candidate, the one whose
    worst samples are best wins (what it gives when the machine is busy)."""
    cands = sorted(t for t, w in samples.items() if w and all(w.get(k) for k in WORKLOADS))
    if not cands:
        raise ValueError("no candidate has samples for every workload")

    def score(stat: Any) -> dict[int, float]:
        vals = {t: {w: stat(samples[t][w]) for w in WORKLOADS} for t in cands}
        best = {w: max(vals[t][w] for t in cands) or 1e-9 for w in WORKLOADS}
        return {t: float(np.prod([vals[t][w] / best[w] for w in WORKLOADS]) ** (1 / len(WORKLOADS)))
                for t in cands}

    med = score(statistics.median)
    # a count that stalled (0 tok/s: aborted, see probe) is never steady, however alike its zeros
    stable = [t for t in cands if all(0 < STABLE_FLOOR * statistics.median(samples[t][w]) <= min(samples[t][w])
                                      for w in WORKLOADS)]
    table = "; ".join(f"{t}: " + ", ".join(f"{w} {statistics.median(samples[t][w]):.1f}" for w in WORKLOADS)
                      + ("" if t in stable else " (unstable)") for t in cands)
    if not stable:
        worst = score(min)
        pick = max(cands, key=lambda t: (worst[t], -t))
        return Choice(pick, f"no setting was steady; {pick} thread(s) had the best worst case "
                            f"(median tok/s {table})", {t: {w: list(v) for w, v in samples[t].items()} for t in cands})
    pick = stable[0]
    for t in stable[1:]:
        if med[t] >= med[pick] * (1 + MIN_GAIN):
            pick = t
    return Choice(pick, f"{pick} thread(s): fastest steady setting (median tok/s {table})",
                  {t: {w: list(v) for w, v in samples[t].items()} for t in cands})


# ── the real measurement ────────────────────────────────────────────────────
class _Runner:
    """Decode windows on the first ``n`` seq ids of a context (their KV is the probe's)."""

    def __init__(self, ctx: _llama.Context, model: _llama.Model, n: int) -> None:
        from llmos.llm import _llama

        self.ctx, self.n = ctx, n
        self.prompt = model.tokenize(PROMPT)
        self.batch = _llama.Batch(max(len(self.prompt), n))
        # positions one sequence may reach: its share of the cells, kept under the model's window
        self.limit = min(ctx.n_ctx // n, model.n_ctx_train) - 1
        self.pos = np.zeros(n, dtype=np.int64)
        self.next = np.zeros(n, dtype=np.int32)
        self.ready = False
        self.stalled = False

    def _prefill(self) -> None:
        """The prompt into every probe sequence, on one thread (never the candidate under
        test: a stalling setting would make this unbounded)."""
        from llmos.llm import _llama

        threads = self.ctx.threads
        self.ctx.set_threads(1)
        for s in range(self.n):
            self.ctx.seq_rm(s)
        self.batch.clear()
        self.batch.add(self.prompt, 0, 0, True)        # once, then shared by every probe sequence
        self.ctx.set_deadline(None)
        rc = self.ctx.decode(self.batch)
        self.ctx.set_threads(threads)
        if rc != _llama.DECODE_OK:
            raise EngineError("the thread probe's prompt found no KV slot",
                              hint="set engine.threads (LLMOS_THREADS) to skip the probe")
        for s in range(1, self.n):
            self.ctx.seq_cp(0, s)
        self.next[:] = int(self.ctx.logits(1)[0].argmax())
        self.pos[:] = len(self.prompt)
        self.ready = True

    def sample(self, k: int) -> float:
        """tok/s of ``k`` sequences decoding together for about ``WINDOW_S``; sets
        ``stalled`` when a decode ran past ``STALL_S`` and was aborted."""
        from llmos.llm import _llama

        if not self.ready or self.pos.max() + MIN_STEPS * 40 >= self.limit:
            self._prefill()
        steps, t0 = 0, time.perf_counter()
        while steps < MIN_STEPS or time.perf_counter() - t0 < WINDOW_S:
            if self.pos.max() + 1 >= self.limit:
                break
            self.batch.clear()
            for s in range(k):
                self.batch.add((int(self.next[s]),), int(self.pos[s]), s, True)
            self.ctx.set_deadline(time.perf_counter() + STALL_S)
            rc = self.ctx.decode(self.batch)
            self.ctx.set_deadline(None)
            if rc != _llama.DECODE_OK:            # stalled past STALL_S (or no slot): its KV is gone
                self.ready = False
                self.stalled = True
                break
            self.next[:k] = self.ctx.logits(k).argmax(axis=1)
            self.pos[:k] += 1
            steps += 1
        return steps * k / max(time.perf_counter() - t0, 1e-9)


def probe(ctx: _llama.Context, model: _llama.Model, cands: Sequence[int], *,
          rounds: int = ROUNDS) -> dict[int, dict[str, list[float]]]:
    """tok/s samples per candidate and workload on ``ctx`` (whose first 8 seq ids must be
    empty; they are left empty). Candidates rotate each round so none always runs first.
    A candidate that stalls once (a decode past ``STALL_S``) is not run again: its
    remaining samples are 0, so the probe lasts at most about ``STALL_S`` longer per
    candidate than its windows."""
    n = max(1, min(8, ctx.n_seq_max))
    runner = _Runner(ctx, model, n)
    out: dict[int, dict[str, list[float]]] = {t: {w: [] for w in WORKLOADS} for t in cands}
    stalled: set[int] = set()
    try:
        for r in range(rounds):
            order = list(cands[r % len(cands):]) + list(cands[:r % len(cands)])
            for t in order:
                ctx.set_threads(t)
                for w, k in (("decode8", n), ("decode1", 1)):
                    runner.stalled = False
                    out[t][w].append(0.0 if t in stalled else runner.sample(k))
                    if runner.stalled:
                        stalled.add(t)
    finally:
        ctx.set_deadline(None)
        for s in range(n):
            ctx.seq_rm(s)
    return out


# ── persistence and resolution ──────────────────────────────────────────────
def tune_key(model_path: str | Path, cpus: int, layout: str = "") -> str:
    """What a choice was measured for: the model file (resolved path, size, mtime), the
    usable cores and the context layout (library version, flash attention, ubatch)."""
    from llmos.llm.prefix_store import model_digest

    return f"{model_digest(model_path)} cpus={cpus} {layout}"


class TuneStore:
    """Choices kept as JSON (``{key: Choice}``) in one file; a bad file is measured over."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("engine tuning file %s unreadable (%s); measuring again", self.path, e)
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> Choice | None:
        raw = self._read().get(key)
        try:
            threads = int(raw["threads"])  # type: ignore[index]
        except (TypeError, KeyError, ValueError):
            return None
        if threads < 1:
            return None
        samples = {int(t): v for t, v in (raw.get("samples") or {}).items()}
        return Choice(threads, str(raw.get("reason", "")), samples, key, float(raw.get("measured_at", 0.0)))

    def put(self, choice: Choice) -> None:
        data = self._read()
        data[choice.key] = {k: v for k, v in asdict(choice).items() if k != "key"}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)


_MEMORY: dict[str, Choice] = {}       # choices made in this process without a store (tests, benches)


def engine_threads(configured: int, ctx: _llama.Context, model: _llama.Model,
                   store: TuneStore | None, *, cpus: int | None = None) -> Choice:
    """The thread count for an engine: ``configured`` (> 0: config or LLMOS_THREADS) wins;
    else the choice stored for this model and machine; else a new probe on ``ctx``
    (kept in ``store``, or in this process's memory when there is none)."""
    if configured > 0:
        return Choice(configured, "engine.threads (config or LLMOS_THREADS)")
    cpus = cpus or usable_cpus()
    key = tune_key(model.path, cpus, ctx.layout)
    found = (store.get(key) if store is not None else None) or _MEMORY.get(key)
    if found is not None:
        return found
    if cpus == 1:
        choice = Choice(1, "one usable core", key=key, measured_at=time.time())
    else:
        t0 = time.perf_counter()
        samples = probe(ctx, model, candidates(cpus))
        picked = choose(samples)
        choice = Choice(picked.threads, picked.reason, picked.samples, key, time.time())
        log.info("engine threads for %s: %s (probe %.1f s)", model.path.name, choice.reason,
                 time.perf_counter() - t0)
    if store is not None:
        try:
            store.put(choice)
        except OSError as e:
            log.warning("could not keep the engine tuning in %s: %s", store.path, e)
    _MEMORY[key] = choice
    return choice
