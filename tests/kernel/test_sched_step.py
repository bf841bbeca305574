"""Token-level scheduling: the TokenPolicy on hand-built SeqViews, on FakeEngine end to end,
the batch-cap measurement, and admission control for engines without steps."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from llmos.clock import FakeClock
from llmos.errors import InvalidArgument
from llmos.kernel.sched import AdmissionController, TokenPolicy, make_scheduler, measure_batch_cap
from llmos.kernel.sched.step import SHIELD_STEPS
from llmos.llm.base import GenerationRequest, SamplingParams, SeqState, SeqView, StepBudget
from llmos.llm.fake import FakeEngine

W, PF, DE, PA, SW = (SeqState.WAITING, SeqState.PREFILLING, SeqState.DECODING, SeqState.PAUSED,
                     SeqState.SWAPPED)


def view(rid: str, *, prio: int = 0, owner: str = "a", state: SeqState = W, arrival: float = 0.0,
         prompt: int = 10, prefilled: int = 0, gen: int = 0, max_tokens: int = 100,
         kv: int | None = None) -> SeqView:
    return SeqView(rid, owner, prio, state, arrival, prompt, prefilled, gen, max_tokens,
                   prefilled + gen if kv is None else kv)


def budget(max_active: int = 2, kv_free: int = 10_000, kv_total: int = 10_000) -> StepBudget:
    return StepBudget(max_active, 512, kv_free, kv_total)


def policy(name: str = "priority", **opts) -> TokenPolicy:
    return make_scheduler(name, FakeClock(), **opts).step_policy()


# ── hand-built views ───────────────────────────────────────────────────────
def test_admits_up_to_the_cap_in_policy_order():
    p = policy(prefills_per_step=8)
    seqs = [view("low", prio=10, arrival=0), view("mid", prio=1, arrival=1), view("hi", prio=0, arrival=2)]
    d = p.decide(seqs, budget(max_active=2))
    assert d.run == ["hi", "mid"] and d.pause == [] and d.swap_out == []
    assert d.reason.startswith("priority: batch 2/2")


def test_batch_cap_below_the_engines_max_active():
    p = make_scheduler("fifo", FakeClock(), batch_cap=3, prefills_per_step=8).step_policy()
    d = p.decide([view(f"s{i}", arrival=i) for i in range(6)], budget(max_active=8))
    assert d.run == ["s0", "s1", "s2"]
    with pytest.raises(InvalidArgument):
        TokenPolicy(make_scheduler("fifo", FakeClock()), batch_cap=0)
    with pytest.raises(InvalidArgument):
        make_scheduler("fifo", FakeClock(), prefills_per_step=0)


def test_at_most_prefills_per_step_members_prefill_at_once():
    p = make_scheduler("fifo", FakeClock(), prefills_per_step=2).step_policy()
    d = p.decide([view(f"s{i}", arrival=i) for i in range(4)], budget(max_active=4))
    assert d.run == ["s0", "s1"] and "2 held this step" in d.reason
    assert sorted(p.sched.running()) == [1, 2, 3, 4]        # all four keep their batch place
    seqs = [view("s0", state=DE, prefilled=10, gen=1, arrival=0),
            view("s1", state=DE, prefilled=10, gen=1, arrival=1),
            view("s2", arrival=2), view("s3", arrival=3)]
    assert p.decide(seqs, budget(max_active=4)).run == ["s0", "s1", "s2", "s3"]


def test_urgent_first_token_step_is_kept_short():
    """While an outranking sequence waits for its first token, those it outranks sit out."""
    p = policy(prefills_per_step=8, batch_cap=3)
    seqs = [view("a", prio=10, state=DE, prefilled=10, gen=3), view("b", prio=10, arrival=1)]
    p.decide([view("a", prio=10)], budget(max_active=4))
    p.decide(seqs, budget(max_active=4))
    seqs = [view("a", prio=10, state=DE, prefilled=10, gen=4),
            view("b", prio=10, state=PF, prompt=100, prefilled=64, arrival=1),
            view("hi", prio=-10, arrival=2)]
    d = p.decide(seqs, budget(max_active=4))
    assert d.run == ["hi"] and "2 held this step" in d.reason     # a and b sit this step out
    seqs[2] = view("hi", prio=-10, state=DE, prefilled=10, gen=1, arrival=2)
    assert p.decide(seqs, budget(max_active=4)).run == ["hi", "a", "b"]


def test_others_sit_out_at_most_a_few_steps_for_an_urgent_first_token():
    p = policy(prefills_per_step=8)
    p.decide([view("a", prio=10)], budget(max_active=4))
    a = view("a", prio=10, state=DE, prefilled=10, gen=3)
    hi = view("hi", prio=-10, prompt=1000, arrival=1)          # a long prompt: many chunks
    runs = []
    for k in range(8):
        hi = view("hi", prio=-10, state=PF if k else W, prompt=1000, prefilled=64 * k, arrival=1)
        runs.append(p.decide([a, hi], budget(max_active=4)).run)
    assert runs[:SHIELD_STEPS] == [["hi"]] * SHIELD_STEPS
    assert all(r == ["hi", "a"] for r in runs[SHIELD_STEPS:])


def test_high_priority_newcomer_pauses_the_least_urgent_after_hysteresis():
    # batch of 2 in an engine that holds 4 sequences: a paused one keeps its slot and KV
    p = policy(min_run_tokens=4, min_run_s=1e9, batch_cap=2)
    a, b = view("a", prio=10, arrival=0, prompt=2), view("b", prio=9, arrival=1, prompt=2)
    assert p.decide([a, b], budget(max_active=4)).run == ["b", "a"]
    a = view("a", prio=10, state=DE, prompt=2, prefilled=2, gen=1)     # 3 tokens since admitted
    b = view("b", prio=9, state=DE, prompt=2, prefilled=2, gen=1)
    hi = view("hi", prio=-10, arrival=2)
    d = p.decide([a, b, hi], budget(max_active=4))
    assert d.run == ["b", "a"] and d.pause == []          # neither has run min_run_tokens yet
    a = view("a", prio=10, state=DE, prompt=2, prefilled=2, gen=2)
    b = view("b", prio=9, state=DE, prompt=2, prefilled=2, gen=2)
    d = p.decide([a, b, hi], budget(max_active=4))
    assert d.pause == ["a"] and d.swap_out == [] and d.run == ["hi"]   # b sits out hi's first step
    assert "preempted by" in " ".join(p.explain("a"))
    # the newcomer finishes: the paused one comes back
    a = view("a", prio=10, state=PA, prompt=2, prefilled=2, gen=2)
    b = view("b", prio=9, state=DE, prompt=2, prefilled=2, gen=4)
    d = p.decide([a, b], budget(max_active=4))
    assert d.run == ["b", "a"] and p.preemptions == 1 and p.swaps == 0


def test_kv_short_swaps_the_victim_out_and_restores_it_later():
    # footprints (prompt + max_tokens): a = 40 + 100, hi = 50 + 100; the KV holds 200
    p = policy(min_run_tokens=1)
    a = view("a", prio=10, arrival=0, prompt=40)
    assert p.decide([a], budget(max_active=1, kv_free=200, kv_total=200)).run == ["a"]
    a = view("a", prio=10, state=DE, prompt=40, prefilled=40, gen=30)
    hi = view("hi", prio=-10, arrival=1, prompt=50)
    d = p.decide([a, hi], budget(max_active=1, kv_free=60, kv_total=200))
    assert d.swap_out == ["a"] and d.pause == [] and d.run == ["hi"]
    assert "swapped out for KV" in " ".join(p.explain("a"))
    # hi done; a is swapped (its cells are free again): listing it restores it
    a = view("a", prio=10, state=SW, prompt=40, prefilled=40, gen=30, kv=0)
    d = p.decide([a], budget(max_active=1, kv_free=200, kv_total=200))
    assert d.run == ["a"] and p.swaps == 1


def test_pause_when_kv_and_slots_suffice_else_swap():
    p = policy(min_run_tokens=1, batch_cap=1)
    p.decide([view("a", prio=10)], budget(max_active=2, kv_free=1000, kv_total=1000))
    a = view("a", prio=10, state=DE, prefilled=10, gen=5)
    d = p.decide([a, view("hi", prio=-10)], budget(max_active=2, kv_free=890, kv_total=1000))
    assert d.pause == ["a"] and d.swap_out == [] and d.run == ["hi"]
    # the engine holds one sequence only: the paused one would keep the newcomer's slot
    p = policy(min_run_tokens=1)
    p.decide([view("a", prio=10)], budget(max_active=1, kv_free=1000, kv_total=1000))
    d = p.decide([a, view("hi", prio=-10)], budget(max_active=1, kv_free=890, kv_total=1000))
    assert d.swap_out == ["a"] and d.pause == [] and d.run == ["hi"]


def test_a_swapped_sequence_waits_until_its_cells_fit():
    p = policy(min_run_tokens=1)
    p.decide([view("a", prio=10)], budget(max_active=1, kv_free=200, kv_total=200))
    d = p.decide([view("a", prio=10, state=DE, prefilled=10, gen=5), view("hi", prio=-10, prompt=50)],
                 budget(max_active=1, kv_free=90, kv_total=200))
    assert d.swap_out == ["a"] and d.run == ["hi"]
    a = view("a", prio=10, state=SW, prefilled=10, gen=5, kv=0)              # needs 110 cells back
    hi = view("hi", prio=-10, state=DE, prompt=50, prefilled=50, gen=1)      # holds 150
    # room in the batch but not in KV: a is not listed, and hi is not preempted for it
    d = p.decide([a, hi], budget(max_active=2, kv_free=50, kv_total=200))
    assert d.run == ["hi"] and d.swap_out == [] and "a waits for KV (110 cells, 50 free)" in d.reason


def test_newcomer_waits_rather_than_overcommitting_kv():
    p = policy(preempt=False)
    p.decide([view("a")], budget(max_active=4, kv_free=350, kv_total=350))
    held = view("a", state=DE, prompt=10, prefilled=10, gen=80)               # 110 reserved
    d = p.decide([held, view("big", prompt=200, arrival=1)], budget(max_active=4, kv_free=240,
                                                                       kv_total=350))
    assert d.run == ["a"] and "big waits for KV (300 cells, 240 free)" in d.reason


def test_overcommitted_kv_swaps_the_least_deserving_member():
    p = policy()
    p.decide([view("a", prio=0), view("b", prio=10, arrival=1)], budget())
    a = view("a", prio=0, state=DE, prompt=10, prefilled=10, gen=40)
    b = view("b", prio=10, state=DE, prompt=10, prefilled=10, gen=40)
    d = p.decide([a, b], budget(kv_free=-20, kv_total=200))      # 2 x 110 reserved in 200
    assert d.swap_out == ["b"] and d.run == ["a"]
    assert "over-committed" in " ".join(p.explain(b.request_id))


def test_a_sequence_the_engine_did_not_admit_goes_back_in_line():
    p = policy("fifo")
    assert p.decide([view("a")], budget(max_active=1)).run == ["a"]
    d = p.decide([view("a"), view("b", arrival=1)], budget(max_active=1))   # a still WAITING
    assert d.run == ["a"]
    assert "not running in the engine" in " ".join(p.explain("a"))


def test_vanished_sequences_finish_and_renice_is_followed():
    p = policy()
    p.decide([view("a", prio=5), view("b", prio=6, arrival=1)], budget(max_active=1))
    d = p.decide([view("b", prio=-5, arrival=1)], budget(max_active=1))
    assert d.run == ["b"] and len(p.sched) == 1
    assert p.explain("a")[-1].startswith("finished after")
    assert "reniced 6 -> -5" in p.explain("b")


def test_fair_policy_shares_the_batch_across_agents():
    p = policy("fair")
    seqs = [view(f"x{i}", owner="x", arrival=i) for i in range(4)] + [view("y0", owner="y", arrival=9)]
    d = p.decide(seqs, budget(max_active=2))
    assert sorted(d.run) == ["x0", "y0"]


# ── a model engine for property tests (the FakeEngine step, without asyncio) ─
@dataclass
class _Seq:
    rid: str
    prio: int
    prompt: int
    answer: int
    owner: str = "a"
    state: SeqState = W
    prefilled: int = 0
    gen: int = 0


def _run_model(policy_: TokenPolicy, seqs: list[_Seq], arrivals: list[int], max_active: int,
               ctx: int, steps: int = 3000):
    live: dict[str, _Seq] = {}
    done: list[str] = []
    for step in range(steps):
        for s, at in zip(seqs, arrivals, strict=True):
            if at == step:
                live[s.rid] = s
        if not live and len(done) == len(seqs):
            break
        used = sum(s.prompt + s.answer for s in live.values() if s.state in (PF, DE, PA))  # reserved
        assert used <= ctx, "KV overcommitted"
        assert sum(1 for s in live.values() if s.state in (PF, DE, PA)) <= max_active, "slots overcommitted"
        views = [SeqView(s.rid, s.owner, s.prio, s.state, float(i), s.prompt, s.prefilled, s.gen,
                         s.answer, 0 if s.state in (W, SW) else s.prefilled + s.gen)
                 for i, s in enumerate(live.values())]
        d = policy_.decide(views, StepBudget(max_active, 64, ctx - used, ctx))
        assert len(d.run) == len(set(d.run)) <= max_active
        assert set(d.run) <= set(live) and set(d.pause) <= set(live) and set(d.swap_out) <= set(live)
        assert not (set(d.run) & (set(d.pause) | set(d.swap_out)))
        for r in d.pause:
            live[r].state = PA
        for r in d.swap_out:
            live[r].state = SW
        for r in d.run:
            s = live[r]
            if s.prefilled < s.prompt:
                s.prefilled = min(s.prompt, s.prefilled + 64)
                s.state = PF
            else:
                s.gen += 1
                s.state = DE
                if s.gen >= s.answer:
                    done.append(r)
                    del live[r]
    return done


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-20, 19), st.integers(1, 80), st.integers(1, 60), st.integers(0, 50)),
                min_size=1, max_size=10),
       st.integers(1, 4), st.sampled_from(["fifo", "rr", "priority", "fair", "sjf"]),
       st.one_of(st.none(), st.integers(1, 3)))
def test_every_sequence_finishes_without_overcommitting_kv(specs, max_active, name, cap):
    seqs = [_Seq(f"s{i}", prio, prompt, answer, owner="ab"[i % 2])
            for i, (prio, prompt, answer, _) in enumerate(specs)]
    ctx = max(s.prompt + s.answer for s in seqs) + 8
    note(f"{specs=} {max_active=} {name=} {ctx=} {cap=}")
    done = _run_model(policy(name, min_run_tokens=2, batch_cap=cap), seqs, [at for *_, at in specs], max_active, ctx)
    assert sorted(done) == sorted(s.rid for s in seqs)


# ── FakeEngine end to end (FakeEngine calls policy.decide every step) ──────
LONG = " ".join(f"w{i}" for i in range(120))
SHORT = "the answer is five"


async def _low_then_high(engine: FakeEngine, prompt_words: int = 1) -> tuple[list, list]:
    order: list[str] = []
    pad = " p" * (prompt_words - 1)
    lows = [engine.submit(GenerationRequest(prompt=f"low{i}{pad}", priority=10, owner=f"low{i}",
                                            params=SamplingParams(max_tokens=150)))
            for i in range(2)]

    async def collect(h, name):
        await h.result()
        order.append(name)

    tasks = [asyncio.create_task(collect(h, f"low{i}")) for i, h in enumerate(lows)]
    for _ in range(30):       # let the lows get going
        await asyncio.sleep(0)
    hi = engine.submit(GenerationRequest(prompt=f"urgent{pad}", priority=-10, owner="human",
                                         params=SamplingParams(max_tokens=20)))
    tasks.append(asyncio.create_task(collect(hi, "hi")))
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    return order, [await h.result() for h in [*lows, hi]]


def _script(req: GenerationRequest) -> str:
    return SHORT if req.priority < 0 else LONG


async def test_fake_engine_high_priority_preempts_low_and_texts_stay_whole():
    engine = FakeEngine(_script, max_active=4)
    engine.set_policy(make_scheduler("priority", FakeClock(), batch_cap=2).step_policy())
    try:
        order, results = await _low_then_high(engine)
    finally:
        await engine.close()
    assert order[0] == "hi"
    low0, low1, hi = results
    assert low0.text == LONG and low1.text == LONG and hi.text == SHORT
    assert low0.usage.preemptions + low1.usage.preemptions >= 1
    assert any(d.pause for d in engine.step_log)


async def test_fake_engine_fifo_makes_the_urgent_request_wait():
    engine = FakeEngine(_script, max_active=4)
    engine.set_policy(make_scheduler("fifo", FakeClock(), batch_cap=2).step_policy())
    try:
        order, _ = await _low_then_high(engine)
    finally:
        await engine.close()
    assert order[-1] == "hi"


async def test_fake_engine_swaps_out_when_kv_is_short_and_restores():
    # each low needs 100 + 120 cells at the end: both cannot stay resident, nor can the
    # newcomer's 100-token prompt fit beside them
    engine = FakeEngine(_script, max_active=2, context_length=260)
    engine.set_policy(make_scheduler("priority", FakeClock()).step_policy())
    free_seen: list[int] = []
    inner = engine.policy

    class Spy:
        def decide(self, seqs, budget):
            free_seen.append(budget.kv_free_tokens)
            return inner.decide(seqs, budget)

    engine.set_policy(Spy())
    try:
        order, results = await _low_then_high(engine, prompt_words=100)
    finally:
        await engine.close()
    assert order[0] == "hi"
    assert [r.text for r in results] == [LONG, LONG, SHORT]
    assert any(d.swap_out for d in engine.step_log)
    assert min(free_seen) >= 0                      # never more KV in use than exists


async def test_fake_engine_suspended_sequences_stay_hidden_until_resumed():
    engine = FakeEngine("a b c", max_active=2)
    engine.set_policy(make_scheduler("fifo", FakeClock()).step_policy())
    try:
        h = engine.submit(GenerationRequest(prompt="x"))
        await engine.suspend(h.request_id)
        for _ in range(10):
            await asyncio.sleep(0)
        assert not h.done
        await engine.resume(h.request_id)
        assert (await asyncio.wait_for(h.result(), 5)).text == "a b c"
    finally:
        await engine.close()


# ── measuring the cap ──────────────────────────────────────────────────────
class _KneeEngine(FakeEngine):
    """Each step costs 1 s up to ``knee`` active sequences, then grows linearly (on a FakeClock)."""

    def __init__(self, clock: FakeClock, knee: int, **kw) -> None:
        super().__init__(" ".join(["t"] * 16), **kw)
        self.clock, self.knee = clock, knee

    def step(self):
        d = super().step()
        if d is not None:
            self.clock.advance(max(1.0, self._stats.active / self.knee))
        return d


@pytest.mark.parametrize("knee, expected", [(4, 4), (1, 1), (16, 16)])
async def test_measure_batch_cap_finds_the_knee(knee, expected):
    clock = FakeClock()
    engine = _KneeEngine(clock, knee, max_active=16)
    before = engine.policy
    try:
        assert await measure_batch_cap(engine, clock=clock, max_tokens=16) == expected
    finally:
        await engine.close()
    assert engine.policy is before


# ── admission control (remote engines) ─────────────────────────────────────
async def test_admission_limits_in_flight_and_orders_by_policy():
    ac = make_scheduler("priority", FakeClock(), preempt=False).admission(max_in_flight=1)
    assert isinstance(ac, AdmissionController)
    entered: list[str] = []
    release = asyncio.Event()

    async def req(rid, prio):
        async with ac.slot(rid, owner=rid, priority=prio):
            entered.append(rid)
            await release.wait()

    first = asyncio.create_task(req("first", 0))
    await asyncio.sleep(0)
    others = [asyncio.create_task(req(r, p)) for r, p in (("low", 10), ("high", -10))]
    await asyncio.sleep(0)
    assert entered == ["first"] and ac.in_flight() == ["first"] and ac.waiting() == ["high", "low"]
    release.set()
    await asyncio.gather(first, *others)
    assert entered == ["first", "high", "low"]
    assert ac.in_flight() == [] and ac.waiting() == []


async def test_admission_preempts_by_cancel_and_resume():
    ac = make_scheduler("priority", FakeClock(), min_run_tokens=2).admission(max_in_flight=1)
    low = ac.slot("low", priority=10)
    await low.__aenter__()
    low.charge(tokens=5, seconds=0.1)
    high_done, let_go = asyncio.Event(), asyncio.Event()

    async def high():
        async with ac.slot("high", priority=-10):
            await let_go.wait()
        high_done.set()

    t = asyncio.create_task(high())
    await asyncio.sleep(0)
    assert low.preempted.is_set() and "preempted by" in low.reason
    assert ac.in_flight() == ["high"] and ac.waiting() == ["low"]
    resumed = asyncio.create_task(low.resume())     # the caller cancelled its stream; waits
    await asyncio.sleep(0)
    assert not resumed.done()
    let_go.set()
    await asyncio.wait_for(resumed, 5)
    assert high_done.is_set() and not low.preempted.is_set()
    assert ac.in_flight() == ["low"]
    await low.__aexit__(None, None, None)
    await t
    assert ac.in_flight() == []
    with pytest.raises(InvalidArgument):
        ac.set_max_in_flight(0)
