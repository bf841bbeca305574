"""Marked fixed prefixes persisted to disk, on the real model (SmolLM2-135M, ``model`` marker).

Each test starts fresh engines on one prefix directory, the way a restarted daemon or
a new ``llmos run`` process would, and checks the engine's counters of evaluated and
loaded prompt tokens (never wall time).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest

from llmos.config import EngineConfig
from llmos.llm.base import GenerationRequest, SamplingParams
from llmos.llm.llamacpp import LlamaCppEngine
from llmos.llm.prefix_store import decode

pytestmark = pytest.mark.model

SYSTEM = ("You are the planner of LLM OS. Turn the person's request into a JSON plan of tool calls. "
          "Tools: read_file(path): read a text file. write_file(path, text): write a file. "
          "plot(csv, x, y): draw a chart from a CSV file. search(query): search the notes. "
          "Example: 'plot sales.csv by month' -> plot(csv='sales.csv', x='month', y='sales'). ") * 3
SHORT = SYSTEM[:len(SYSTEM) // 3]          # ~100 tokens: for tests about files, not about savings
CFG = EngineConfig(n_ctx=2048, n_seq_max=4, n_batch=256, prefill_chunk=64)


def engine(prefix_dir: Path | None, **kw) -> LlamaCppEngine:
    return LlamaCppEngine(config=CFG, prefix_dir=prefix_dir, batch_invariant=True, **kw)


def plan(user: str, mark: bool = True, n: int = 12, system: str = SYSTEM) -> GenerationRequest:
    return GenerationRequest(messages=({"role": "system", "content": system}, {"role": "user", "content": user}),
                             params=SamplingParams(max_tokens=n), prefix_messages=1 if mark else None)


def prefix_tokens(eng: LlamaCppEngine, system: str = SYSTEM):
    """The marked prefix's token ids (the template over the system message alone)."""
    return eng._model.tokenize(eng._model.apply_template(plan("x", system=system).messages[:1],
                                                         add_assistant=False))


def pin_of(eng: LlamaCppEngine, system: str = SYSTEM) -> int:
    return len(prefix_tokens(eng, system))


async def test_a_fresh_engine_loads_the_prefix_instead_of_evaluating_it(tmp_path: Path) -> None:
    q1, q2 = "Plot sales by month from sales.csv", "Find my notes about the budget"
    cold = engine(tmp_path)
    try:
        r1 = await cold.generate(plan(q1))
        await cold.sync()
        cold_facts = cold.ledger_snapshot()
        pin = pin_of(cold)
        assert cold.stats().prompt_tokens_evaluated == r1.usage.prompt_tokens and r1.usage.cached_tokens == 0
        assert cold_facts["pinned"] == 1
        cold.clear_prefix_cache()
        r1b = await cold.generate(plan(q2, mark=False))            # q2 from scratch, nothing cached
        assert r1b.usage.cached_tokens == 0
    finally:
        await cold.close()                                          # waits for the file
    files = list(tmp_path.iterdir())
    assert [f.suffix for f in files] == [".bin"] and cold.prefix_store.counts["saved"] == 1

    warm = engine(tmp_path)                                         # a new process, in effect
    try:
        r2 = await warm.generate(plan(q1))
        await warm.sync()
        st = warm.stats()
        # (a) the prefix came from the file: only the request's own tokens were evaluated
        assert st.prompt_tokens_loaded == pin and r2.usage.cached_tokens == pin
        assert st.prompt_tokens_evaluated == r2.usage.prompt_tokens - pin
        assert st.prompt_tokens_evaluated < r2.usage.prompt_tokens // 5
        assert warm.prefix_store.counts == {"loaded": 1, "missed": 0, "rejected": 0, "saved": 0,
                                            "save_failed": 0}
        # the loaded prefix is accounted exactly like the evaluated one
        assert warm.ledger_snapshot() == cold_facts
        # (b) greedy output is the same as with the prefix evaluated from scratch
        assert r2.text == r1.text
        r2b = await warm.generate(plan(q2))                        # shares the loaded entry in memory
        assert r2b.text == r1b.text and r2b.usage.cached_tokens >= pin
        assert warm.prefix_store.counts["loaded"] == 1
    finally:
        await warm.close()


async def test_a_corrupt_file_is_ignored_and_written_again(tmp_path: Path, caplog) -> None:
    first = engine(tmp_path)
    try:
        want = (await first.generate(plan("List the files in data/", system=SHORT))).text
    finally:
        await first.close()
    (path,) = tmp_path.iterdir()
    raw = bytearray(path.read_bytes())
    raw[-7] ^= 0xFF                                                 # one damaged KV byte
    path.write_bytes(bytes(raw))

    again = engine(tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="llmos.llm.prefix_store"):
            done = await again.generate(plan("List the files in data/", system=SHORT))
        assert "ignoring prefix file" in caplog.text and "checksum" in caplog.text
        assert done.text == want and done.usage.cached_tokens == 0
        assert again.stats().prompt_tokens_evaluated == done.usage.prompt_tokens
        assert again.stats().prompt_tokens_loaded == 0
        tokens = prefix_tokens(again, SHORT)
    finally:
        await again.close()
    counts = again.prefix_store.counts
    assert counts["rejected"] == 1 and counts["saved"] == 1
    decode(path.read_bytes(), tokens)                               # whole again: does not raise


async def test_a_file_that_does_not_restore_is_rejected(tmp_path: Path) -> None:
    """A file whose checks pass but whose state does not restore the prefix (here: a valid
    state of another, shorter sequence stored under its name) is deleted, and the prefix
    is evaluated instead."""
    first = engine(tmp_path)
    try:
        await first.generate(plan("What is 17 * 23?", n=2, system=SHORT))
        await first.sync()
        want_facts = first.ledger_snapshot()
        first.clear_prefix_cache()
        await first.generate(GenerationRequest(prompt="Count from one to ten: one, two, three, four, five,",
                                               params=SamplingParams(max_tokens=1)))
        await first.sync()
        (entry,) = first._stepper.ledger.entries
        short = first._ctx.state_get(entry.slot)
        tokens = prefix_tokens(first, SHORT)
    finally:
        await first.close()
    assert first.prefix_store.save_now(tokens, short) is not None  # same name, wrong content
    again = engine(tmp_path)
    try:
        done = await again.generate(plan("What is 17 * 23?", n=2, system=SHORT))
        await again.sync()
        assert done.usage.cached_tokens == 0 and again.stats().prompt_tokens_loaded == 0
        assert again.prefix_store.counts["rejected"] == 1 and again.prefix_store.counts["saved"] == 1
        assert again.ledger_snapshot() == want_facts              # the failed restore left nothing
    finally:
        await again.close()


async def test_prompt_requests_mark_a_prefix_by_characters(tmp_path: Path) -> None:
    fixed = "Answer with the capital city of the country named at the end.\n" * 4
    req = GenerationRequest(prompt=fixed + "Country: France\nCapital:", prefix_chars=len(fixed),
                            params=SamplingParams(max_tokens=4))
    a = engine(tmp_path)
    try:
        want = await a.generate(req)
    finally:
        await a.close()
    b = engine(tmp_path)
    try:
        got = await b.generate(dataclasses.replace(req, request_id="second"))
        n_fixed = len(b._model.tokenize(fixed))
        assert got.text == want.text and got.usage.cached_tokens == n_fixed
        assert b.stats().prompt_tokens_evaluated == got.usage.prompt_tokens - n_fixed
    finally:
        await b.close()


async def test_a_cut_inside_a_token_is_not_kept(tmp_path: Path, caplog) -> None:
    text = "Summarize: the unbelievably long-winded introduction goes on and on and on " * 2
    cut = text.index("believably")                                  # inside the word "unbelievably"
    eng = engine(tmp_path)
    try:
        with caplog.at_level(logging.DEBUG, logger="llmos.llm.llamacpp"):
            done = await eng.generate(GenerationRequest(prompt=text, prefix_chars=cut,
                                                        params=SamplingParams(max_tokens=2)))
        assert done.finish_reason in ("stop", "length")
        assert "not a token prefix" in caplog.text
        await eng.sync()
        assert eng.ledger_snapshot()["pinned"] == 0
    finally:
        await eng.close()
    assert list(tmp_path.iterdir()) == [] and eng.prefix_store.counts["saved"] == 0


async def test_requests_arriving_together_evaluate_and_save_the_prefix_once(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    try:
        users = ["Plot costs.csv by team", "Count the words in notes.txt", "What is 2 + 2?"]
        done = await asyncio.gather(*(eng.generate(plan(u, n=4, system=SHORT)) for u in users))
        pin = pin_of(eng, SHORT)
        assert sorted(d.usage.cached_tokens >= pin for d in done) == [False, True, True]
        assert eng.stats().prompt_tokens_evaluated == sum(d.usage.prompt_tokens - d.usage.cached_tokens
                                                          for d in done)
    finally:
        await eng.close()
    assert eng.prefix_store.counts["saved"] == 1 and len(list(tmp_path.iterdir())) == 1


async def test_files_are_per_model_layout(tmp_path: Path) -> None:
    engines = [LlamaCppEngine(config=CFG, prefix_dir=tmp_path, batch_invariant=False), engine(tmp_path),
               engine(None), LlamaCppEngine(config=CFG, prefix_dir=tmp_path, prefix_cache=False)]
    try:
        fast, exact, memory_only, no_cache = engines
        assert fast.prefix_store.model_digest != exact.prefix_store.model_digest
        assert memory_only.prefix_store is None and no_cache.prefix_store is None
    finally:
        for e in engines:
            await e.close()
