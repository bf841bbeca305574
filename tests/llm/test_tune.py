"""The thread probe (llm/tune.py) without a model: the choice from made-up timings, the
probe loop on a fake context with a fake clock, the kept choices and the override."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from llmos.llm import _llama, tune
from llmos.llm.tune import Choice, TuneStore, candidates, choose, engine_threads


def s(d8: list[float], d1: list[float]) -> dict[str, list[float]]:
    return {"decode8": d8, "decode1": d1}


# ── the choice ──────────────────────────────────────────────────────────────
def test_idle_machine_takes_the_faster_steady_count() -> None:
    c = choose({1: s([50, 51, 49], [30, 31, 30]), 2: s([93, 90, 95], [50, 52, 51])})
    assert c.threads == 2 and "fastest steady" in c.reason


def test_a_faster_but_unsteady_count_is_passed_over() -> None:
    # two threads win on the median but collapse in one sample (a stalled spin barrier)
    c = choose({1: s([50, 51, 49], [30, 31, 30]), 2: s([93, 16, 95], [50, 52, 51])})
    assert c.threads == 1 and "(unstable)" in c.reason


def test_more_threads_must_gain_enough() -> None:
    c = choose({1: s([50, 50, 50], [30, 30, 30]), 2: s([51, 52, 51], [31, 30, 31])})
    assert c.threads == 1
    c = choose({1: s([50, 50, 50], [30, 30, 30]), 2: s([60, 60, 60], [36, 36, 36]),
                4: s([61, 61, 61], [36, 37, 36])})
    assert c.threads == 2


def test_both_workloads_count() -> None:
    # faster on 8 sequences, much slower alone: the geometric mean keeps one thread
    c = choose({1: s([50, 50, 50], [40, 40, 40]), 2: s([60, 60, 60], [20, 20, 20])})
    assert c.threads == 1


def test_nothing_steady_takes_the_best_worst_case() -> None:
    c = choose({1: s([50, 10, 49], [30, 5, 30]), 2: s([93, 2, 95], [50, 1, 51])})
    assert c.threads == 1 and "no setting was steady" in c.reason


def test_a_stalled_count_is_never_chosen() -> None:
    c = choose({1: s([31, 30, 30], [18, 17, 18]), 2: s([0, 0, 0], [0, 0, 0])})
    assert c.threads == 1
    # even when the count that ran was not steady itself (a busy machine)
    c = choose({1: s([20, 21, 19], [10, 5, 11]), 2: s([0, 0, 0], [0, 0, 0])})
    assert c.threads == 1 and "no setting was steady" in c.reason


def test_no_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="no candidate"):
        choose({1: s([], [])})


@pytest.mark.parametrize(("cpus", "want"), [(1, [1]), (2, [1, 2]), (4, [1, 2, 3, 4]),
                                            (16, [1, 2, 4, 8, 15, 16])])
def test_candidates(cpus: int, want: list[int]) -> None:
    assert candidates(cpus) == want
    assert len(candidates(256)) <= 8 and candidates(256)[0] == 1 and candidates(256)[-1] == 256


# ── the probe loop on a fake context ───────────────────────────────────────
class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeModel:
    n_ctx_train = 8192

    def __init__(self, path: Path) -> None:
        self.path = path

    def tokenize(self, text: str) -> np.ndarray:
        return np.arange(5, dtype=np.int32)


class FakeContext:
    """Decode costs ``step_s[threads] + per_token_s[threads] * tokens`` on the fake clock;
    past the deadline it is aborted the way llama.cpp does (DECODE_ABORTED)."""

    layout = "fake layout"

    def __init__(self, clock: Clock, step_s: dict[int, float], n_seq_max: int = 16) -> None:
        self.clock, self.step_s = clock, step_s
        self.n_ctx, self.n_seq_max = 4096, n_seq_max
        self.threads = 1
        self.deadline: float | None = None
        self.held: set[int] = set()
        self.decodes: dict[int, int] = {}

    def set_threads(self, t: int) -> None:
        self.threads = t

    def set_deadline(self, d: float | None) -> None:
        self.deadline = d

    def seq_rm(self, seq: int) -> bool:
        self.held.discard(seq)
        return True

    def seq_cp(self, src: int, dst: int) -> None:
        self.held.add(dst)

    def decode(self, batch: _llama.Batch) -> int:
        self.decodes[self.threads] = self.decodes.get(self.threads, 0) + 1
        self.held.update(int(x) for x in batch.seq[:batch.n_tokens])
        self.clock.t += self.step_s[self.threads]
        if self.deadline is not None and self.clock.t > self.deadline:
            self.clock.t = self.deadline
            return _llama.DECODE_ABORTED
        return _llama.DECODE_OK

    def logits(self, n: int) -> np.ndarray:
        return np.zeros((n, 10), dtype=np.float32)


def test_probe_interleaves_and_cleans_up(monkeypatch, tmp_path: Path) -> None:
    clock = Clock()
    monkeypatch.setattr(tune.time, "perf_counter", clock)
    ctx = FakeContext(clock, {1: 0.02, 2: 0.011})
    samples = tune.probe(ctx, FakeModel(tmp_path), [1, 2])
    assert {t: {w: len(v) for w, v in x.items()} for t, x in samples.items()} == \
        {1: {"decode8": 3, "decode1": 3}, 2: {"decode8": 3, "decode1": 3}}
    assert samples[1]["decode8"][0] == pytest.approx(8 / 0.02)
    assert samples[1]["decode1"][0] == pytest.approx(1 / 0.02)
    assert choose(samples).threads == 2
    assert ctx.held == set() and ctx.deadline is None      # the probe's sequences are gone


def test_a_stalling_count_costs_one_deadline(monkeypatch, tmp_path: Path) -> None:
    clock = Clock()
    monkeypatch.setattr(tune.time, "perf_counter", clock)
    ctx = FakeContext(clock, {1: 0.02, 2: 30.0})           # two threads: a 30 s decode
    samples = tune.probe(ctx, FakeModel(tmp_path), [1, 2])
    assert samples[2] == s([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    assert ctx.decodes[2] == 1                              # aborted once, never run again
    assert clock.t < 3 * 2 * 2 * (tune.WINDOW_S + 0.02) + tune.STALL_S + 1
    assert choose(samples).threads == 1


# ── kept choices and the override ──────────────────────────────────────────
@pytest.fixture
def model(tmp_path: Path) -> FakeModel:
    p = tmp_path / "m.gguf"
    p.write_bytes(b"GGUF" + bytes(64))
    return FakeModel(p)


@pytest.fixture
def probes(monkeypatch) -> list[int]:
    """Replace the measurement with fixed timings (two threads win); count the probes."""
    calls: list[int] = []

    def fake_probe(ctx, model, cands, **kw):
        calls.append(len(cands))
        return {t: s([50.0 * t] * 3, [30.0 * t] * 3) for t in cands}

    monkeypatch.setattr(tune, "probe", fake_probe)
    monkeypatch.setattr(tune, "_MEMORY", {})
    return calls


def test_measured_once_then_kept(model, probes, tmp_path: Path) -> None:
    store = TuneStore(tmp_path / "cache" / tune.STORE_NAME)
    ctx = FakeContext(Clock(), {})
    first = engine_threads(0, ctx, model, store, cpus=2)
    assert first.threads == 2 and probes == [2]
    assert oct(os.stat(store.path).st_mode & 0o777) == "0o600"
    tune._MEMORY.clear()                                    # a new process: only the file remains
    again = engine_threads(0, ctx, model, store, cpus=2)
    assert again.threads == 2 and probes == [2] and again.measured_at == first.measured_at
    assert "cpus=2" in next(iter(json.loads(store.path.read_text())))


def test_measured_again_for_another_core_count_or_model(model, probes, tmp_path: Path) -> None:
    store = TuneStore(tmp_path / tune.STORE_NAME)
    ctx = FakeContext(Clock(), {})
    engine_threads(0, ctx, model, store, cpus=2)
    assert engine_threads(0, ctx, model, store, cpus=4).threads == 4 and probes == [2, 4]
    model.path.write_bytes(b"GGUF" + bytes(128))            # the model file changed
    engine_threads(0, ctx, model, store, cpus=4)
    assert probes == [2, 4, 4] and len(json.loads(store.path.read_text())) == 3


def test_configured_threads_win(model, probes, tmp_path: Path) -> None:
    store = TuneStore(tmp_path / tune.STORE_NAME)
    c = engine_threads(3, FakeContext(Clock(), {}), model, store, cpus=2)
    assert c.threads == 3 and "LLMOS_THREADS" in c.reason and probes == [] and not store.path.exists()


def test_one_core_needs_no_probe(model, probes, tmp_path: Path) -> None:
    assert engine_threads(0, FakeContext(Clock(), {}), model, None, cpus=1).threads == 1 and probes == []


def test_without_a_store_the_process_remembers(model, probes) -> None:
    ctx = FakeContext(Clock(), {})
    engine_threads(0, ctx, model, None, cpus=2)
    engine_threads(0, ctx, model, None, cpus=2)
    assert probes == [2]


def test_a_bad_file_is_measured_over(model, probes, tmp_path: Path, caplog) -> None:
    store = TuneStore(tmp_path / tune.STORE_NAME)
    store.path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="llmos.llm.tune"):
        assert engine_threads(0, FakeContext(Clock(), {}), model, store, cpus=2).threads == 2
    assert "unreadable" in caplog.text and probes == [2]
    key = next(iter(json.loads(store.path.read_text())))
    store.path.write_text(json.dumps({key: {"threads": "many"}}))
    tune._MEMORY.clear()
    engine_threads(0, FakeContext(Clock(), {}), model, store, cpus=2)
    assert probes == [2, 2]


def test_store_round_trip(tmp_path: Path) -> None:
    store = TuneStore(tmp_path / "t.json")
    store.put(Choice(2, "why", {1: s([1.0], [2.0])}, "k", 5.0))
    got = store.get("k")
    assert got == Choice(2, "why", {1: s([1.0], [2.0])}, "k", 5.0)
    assert store.get("other") is None
