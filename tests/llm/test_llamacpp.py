"""The embedded llama.cpp engine on the real model (SmolLM2-135M, ``model`` marker).

Greedy outputs are compared over short generations: llama.cpp's attention sums
over KV cells in cell order, so two runs whose cells lie in a different order can
split a near-tie differently after a few dozen tokens.
"""

from __future__ import annotations

import asyncio
import gc
import os

import numpy as np
import psutil
import pytest

from llmos.config import EngineConfig, load_config
from llmos.errors import ContextOverflow, EngineError, InvalidRequest, ModelNotFound
from llmos.llm.base import (
    FifoPolicy,
    GenerationRequest,
    SamplingParams,
    SeqState,
    SeqView,
    StepBudget,
    StepDecision,
)
from llmos.llm.llamacpp import LlamaCppEngine

pytestmark = pytest.mark.model

QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "What is 12 times 12?",
    "Write one sentence about the sea.",
    "What do bees make?",
    "Give a synonym for happy.",
]
SYSTEM = ("You are the planner of an operating system for agents. You turn a person's request into "
          "a plan of tool calls. Tools: read_file(path), write_file(path, text), run_python(code), "
          "plot(csv, x, y), search(query), ask_user(question). Answer with one short plan. ") * 2


def chat(q: str, n: int = 16, system: str | None = None, **kw) -> GenerationRequest:
    msgs = ({"role": "system", "content": system},) if system else ()
    return GenerationRequest(messages=(*msgs, {"role": "user", "content": q}),
                             params=SamplingParams(max_tokens=n, **kw))


class Recorder:
    """FIFO, plus a record of every view list and decision (runs on the engine thread)."""

    def __init__(self, inner=None) -> None:
        self.inner = inner or FifoPolicy()
        self.steps: list[tuple[list[SeqView], StepDecision]] = []

    def decide(self, seqs, budget: StepBudget) -> StepDecision:
        d = self.inner.decide(seqs, budget)
        self.steps.append((list(seqs), d))
        return d


# ── correctness ─────────────────────────────────────────────────────────────
async def test_batched_equals_unbatched(llama_engine: LlamaCppEngine) -> None:
    solo = []
    for q in QUESTIONS:
        llama_engine.clear_prefix_cache()
        solo.append((await llama_engine.generate(chat(q))).text)
    llama_engine.clear_prefix_cache()
    rec = Recorder()
    llama_engine.set_policy(rec)
    batched = await asyncio.gather(*(llama_engine.generate(chat(q)) for q in QUESTIONS))
    assert [c.text for c in batched] == solo
    assert max(d.run.__len__() for _, d in rec.steps) >= 4      # they really shared steps


async def test_chat_template_is_chatml(llama_engine: LlamaCppEngine) -> None:
    text = llama_engine.render(chat("hi", system="be brief"))
    assert text == ("<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                    "<|im_start|>assistant\n")
    done = await llama_engine.generate(chat("What is the capital of France?", 24))
    assert "Paris" in done.text and done.finish_reason == "stop"


async def test_raw_prompt_and_count_tokens(llama_engine: LlamaCppEngine) -> None:
    assert llama_engine.count_tokens("The quick brown fox") == 4
    done = await llama_engine.generate(GenerationRequest(prompt="The quick brown fox jumps over the",
                                                         params=SamplingParams(max_tokens=3)))
    assert done.usage.prompt_tokens == 7 and done.usage.completion_tokens == 3


async def test_seeded_sampling_is_reproducible(llama_engine: LlamaCppEngine) -> None:
    q = "Tell me a story about a fox."
    a = await llama_engine.generate(chat(q, 12, temperature=0.9, top_p=0.9, top_k=40, seed=7))
    b = await llama_engine.generate(chat(q, 12, temperature=0.9, top_p=0.9, top_k=40, seed=7))
    assert a.text == b.text
    llama_engine.clear_prefix_cache()
    g = await llama_engine.generate(chat(q, 12))
    llama_engine.clear_prefix_cache()
    k1 = await llama_engine.generate(chat(q, 12, temperature=1.0, top_k=1, seed=3))
    assert k1.text == g.text


async def test_stop_strings(llama_engine: LlamaCppEngine) -> None:
    req = GenerationRequest(prompt="Numbers: 1, 2, 3,", params=SamplingParams(max_tokens=12, stop=(" 6",)))
    chunks = []
    h = llama_engine.submit(req)
    async for c in h:
        chunks.append(c.text)
    done = await h.result()
    assert done.finish_reason == "stop"
    assert done.text == " 4, 5,"                     # cut before the stop string
    assert "".join(chunks).startswith(done.text)     # the stream ran up to the stop token


# ── snapshots and the policy hook ───────────────────────────────────────────
@pytest.mark.parametrize("to_disk", [False, True])
async def test_snapshot_restore_mid_generation(llama_engine: LlamaCppEngine, to_disk: bool) -> None:
    q = "Describe a dragon in two sentences."
    plain = (await llama_engine.generate(chat(q, 24))).text
    llama_engine.clear_prefix_cache()
    h = llama_engine.submit(chat(q, 24))
    n = 0
    async for _ in h:
        n += 1
        if n == 6:
            await llama_engine.suspend(h.request_id, to_disk=to_disk)
            facts = llama_engine.ledger_snapshot()
            assert facts["live"] == 0 and facts["reserved"] == 0   # its cells and slot are free
            if to_disk:
                snap_dir = llama_engine.snapshot_dir
                assert snap_dir is not None and (snap_dir / f"{h.request_id}.kv").stat().st_size > 0
            await asyncio.sleep(0.05)
            assert not h.done
            await llama_engine.resume(h.request_id)
    done = await h.result()
    assert done.text == plain and done.usage.preemptions == 1
    if to_disk:
        assert not (llama_engine.snapshot_dir / f"{h.request_id}.kv").exists()


class SwapOnce:
    """Swap one request out at a given generated length, keep it out a few steps, then FIFO."""

    def __init__(self, rid: str, at: int, pause: bool = False) -> None:
        self.rid, self.at, self.pause = rid, at, pause
        self.out_steps = 0
        self.done = False
        self.states: list[SeqState] = []
        self.kv_while_out: list[int] = []

    def decide(self, seqs, budget):
        fifo = FifoPolicy().decide(seqs, budget)
        me = next((s for s in seqs if s.request_id == self.rid), None)
        if me is None or self.done:
            return fifo
        self.states.append(me.state)
        if me.generated_tokens >= self.at and self.out_steps < 3:
            self.out_steps += 1
            self.kv_while_out.append(me.kv_tokens)
            run = [r for r in fifo.run if r != self.rid]
            if self.out_steps == 1:
                return StepDecision(run=run, pause=[self.rid] if self.pause else [],
                                    swap_out=[] if self.pause else [self.rid])
            return StepDecision(run=run)
        if self.out_steps >= 3:
            self.done = True
        return fifo


@pytest.mark.parametrize("pause", [False, True], ids=["swap_out", "pause"])
async def test_policy_preemption_keeps_the_text(llama_engine: LlamaCppEngine, pause: bool) -> None:
    q = "Explain what a compiler does."
    plain = (await llama_engine.generate(chat(q, 20))).text
    llama_engine.clear_prefix_cache()
    other = llama_engine.submit(chat("Name a fruit.", 20))
    h = llama_engine.submit(chat(q, 20))
    pol = SwapOnce(h.request_id, at=5, pause=pause)
    llama_engine.set_policy(pol)
    done = await h.result()
    await other.result()
    assert done.text == plain
    assert done.usage.preemptions == 1
    expected = SeqState.PAUSED if pause else SeqState.SWAPPED
    assert expected in pol.states
    if pause:
        assert pol.kv_while_out[-1] > 0          # paused: KV kept
    else:
        assert pol.kv_while_out[-1] == 0         # swapped out: cells freed


async def test_long_prompt_prefills_in_chunks_beside_decoding(llama_engine: LlamaCppEngine) -> None:
    rec = Recorder()
    llama_engine.set_policy(rec)
    runner = llama_engine.submit(chat("Write a poem about autumn leaves.", 48))
    async for _ in runner:
        break
    long_q = "Summarize this text: " + "the cat sat on the mat and looked at the rain. " * 24
    big = llama_engine.submit(chat(long_q, 2))
    await big.result()
    await runner.result()
    big_views = [(v, d) for views, d in rec.steps for v in views if v.request_id == big.request_id]
    prefill_steps = [v for v, d in big_views if v.prefilled_tokens < v.prompt_tokens
                     and big.request_id in d.run]
    assert len(prefill_steps) >= 4             # 400+ tokens in chunks of 64
    gen = [v.generated_tokens for views, d in rec.steps for v in views
           if v.request_id == runner.request_id and any(w.request_id == big.request_id
                                                        and w.prefilled_tokens < w.prompt_tokens
                                                        for w in views)]
    assert gen == sorted(gen) and len(set(gen)) == len(gen)   # the runner advanced every step


# ── KV budget, slots, prefixes ──────────────────────────────────────────────
@pytest.fixture(scope="module")
def small_engine():
    eng = LlamaCppEngine(config=EngineConfig(n_ctx=256, n_seq_max=2, n_batch=64, prefill_chunk=32),
                         prefix_slots=2)
    yield eng
    eng.shutdown()


async def test_kv_budget_waits_instead_of_failing(small_engine: LlamaCppEngine) -> None:
    small_engine.reset()
    with pytest.raises(ContextOverflow):
        small_engine.submit(chat("hi", 300))
    rec = Recorder()
    small_engine.set_policy(rec)
    # each reserves ~15 + 150 cells: the second cannot fit the 256-cell cache beside the first
    a = small_engine.submit(chat("Write a long story about a ship.", 150))
    async for _ in a:
        break
    b = small_engine.submit(chat("Write a long story about a train.", 150))
    await asyncio.sleep(0.2)
    views = {v.request_id: v for v in rec.steps[-1][0]}
    assert views[b.request_id].state == SeqState.WAITING and views[b.request_id].kv_tokens == 0
    assert b.request_id in rec.steps[-1][1].run                 # listed, yet it waits: no room
    assert small_engine.ledger_snapshot()["live"] == 1
    small_engine.cancel(a.request_id)
    async for _ in b:
        break                                                     # admitted once a left
    small_engine.cancel(b.request_id)
    await b.result()
    small_engine.reset()
    assert small_engine.ledger_snapshot()["cells_held"] == 0


async def test_slot_count_is_enforced(small_engine: LlamaCppEngine) -> None:
    small_engine.reset()
    rec = Recorder()
    small_engine.set_policy(rec)
    done = await asyncio.gather(*(small_engine.generate(chat(q, 4)) for q in QUESTIONS[:4]))
    assert all(d.usage.completion_tokens >= 1 for d in done)
    resident = [sum(1 for v in views if v.kv_tokens > 0) for views, _ in rec.steps]
    assert max(resident) == 2
    assert any(v.state == SeqState.WAITING for views, _ in rec.steps[1:] for v in views)
    small_engine.reset()


async def test_prefix_sharing(llama_engine: LlamaCppEngine) -> None:
    llama_engine.clear_prefix_cache()
    n_sys = len(llama_engine._model.tokenize(llama_engine.render(chat("x", system=SYSTEM))))
    first = await llama_engine.generate(chat("Plot sales by month from sales.csv", 12, system=SYSTEM))
    assert first.usage.cached_tokens == 0
    second = await llama_engine.generate(chat("Count the words in notes.txt", 12, system=SYSTEM))
    assert second.usage.cached_tokens >= n_sys - 8
    assert second.usage.prompt_tokens > second.usage.cached_tokens
    # the same answer as without sharing
    llama_engine.clear_prefix_cache()
    fresh = await llama_engine.generate(chat("Count the words in notes.txt", 12, system=SYSTEM))
    assert fresh.usage.cached_tokens == 0 and fresh.text == second.text
    facts = llama_engine.ledger_snapshot()
    assert facts["entries"] >= 1 and facts["entry_cells"] > 0


async def test_concurrent_requests_share_a_prefix_being_prefilled(llama_engine: LlamaCppEngine) -> None:
    llama_engine.clear_prefix_cache()
    n_sys = len(llama_engine._model.tokenize(llama_engine.render(chat("x", system=SYSTEM))))
    users = ["Plot sales by month from sales.csv", "Count the words in notes.txt", "List the files in data/"]
    solo = []
    for u in users:
        llama_engine.clear_prefix_cache()
        solo.append((await llama_engine.generate(chat(u, 8, system=SYSTEM))).text)
    llama_engine.clear_prefix_cache()
    done = await asyncio.gather(*(llama_engine.generate(chat(u, 8, system=SYSTEM)) for u in users))
    cached = sorted(d.usage.cached_tokens for d in done)
    assert cached[0] == 0 and cached[1] >= n_sys - 8 and cached[2] >= n_sys - 8
    assert [d.text for d in done] == solo


async def test_cancel_frees_kv(llama_engine: LlamaCppEngine) -> None:
    h = llama_engine.submit(chat("Write a long essay about rivers.", 200))
    async for _ in h:
        break
    assert llama_engine.ledger_snapshot()["live"] == 1
    llama_engine.cancel(h.request_id)
    assert (await h.result()).finish_reason == "cancelled"
    await llama_engine.sync()
    facts = llama_engine.ledger_snapshot()
    assert facts["live"] == 0 and facts["reserved"] == 0 and facts["entries"] == 0
    assert facts["cells_held"] == 0


@pytest.mark.parametrize("n", [300, pytest.param(1000, marks=pytest.mark.slow)])
async def test_many_requests_in_a_row_leak_nothing(n: int) -> None:
    """Every request costs at least one prefilled token (~5 ms of one core here), so the
    default tier runs 300 and the slow tier the full 1,000."""
    eng = LlamaCppEngine(config=EngineConfig(n_ctx=512, n_seq_max=64, n_batch=64), prefix_slots=4)
    proc = psutil.Process(os.getpid())
    words = ["a", "b", "c", "x", "y", "z", "one", "two"]

    async def wave(i0: int) -> None:
        reqs = [GenerationRequest(prompt=words[i % len(words)], params=SamplingParams(max_tokens=1))
                for i in range(i0, i0 + 100)]
        done = await asyncio.gather(*(eng.generate(r) for r in reqs))
        assert all(d.usage.completion_tokens == 1 for d in done)

    try:
        await wave(0)
        gc.collect()
        rss0 = proc.memory_info().rss
        for i in range(100, n, 100):
            await wave(i)
        await eng.sync()
        facts = eng.ledger_snapshot()
        assert facts["live"] == 0 and facts["reserved"] == 0 and facts["free"] == eng.n_ctx
        assert facts["cells_held"] == 0          # one-token prompts are never cached: nothing stays
        assert eng.stats().tokens_generated == n
        gc.collect()
        assert proc.memory_info().rss - rss0 < 64 << 20
        assert not eng.live_ids()
    finally:
        await eng.close()


# ── bad input ───────────────────────────────────────────────────────────────
async def test_bad_input(llama_engine: LlamaCppEngine, home) -> None:
    with pytest.raises(InvalidRequest) as e:
        llama_engine.submit(GenerationRequest(messages=()))
    assert e.value.field == "messages"
    with pytest.raises(ContextOverflow, match="max_tokens"):
        llama_engine.submit(chat("hi", llama_engine.capabilities.context_length))
    with pytest.raises(ContextOverflow, match="longer than the context"):
        llama_engine.submit(GenerationRequest(prompt="many words " * 3000))
    with pytest.raises(InvalidRequest) as e:
        llama_engine.submit(GenerationRequest(prompt="x", json_schema={"type": "nonsense"}))
    assert e.value.field == "json_schema"
    with pytest.raises(ModelNotFound):
        LlamaCppEngine.from_config(load_config(env={"LLMOS_HOME": str(home)}), "no-such-model")
    with pytest.raises(EngineError):
        await llama_engine.resume("no-such-request")
    assert not llama_engine.live_ids()


async def test_stats(llama_engine: LlamaCppEngine) -> None:
    hs = [llama_engine.submit(chat(q, 24)) for q in QUESTIONS[:3]]
    async for _ in hs[0]:
        pass
    st = llama_engine.stats()
    assert st.kv_total_tokens == llama_engine.n_ctx and st.tokens_per_s > 0
    await asyncio.gather(*(h.result() for h in hs))
    caps = llama_engine.capabilities
    assert caps.snapshots and caps.constrained and not caps.embeddings
    assert caps.max_active == 8 and caps.context_length == 4096
    assert np.isfinite(st.tokens_per_s)
