"""LocalExecutor against the FakeEngine and a small tool registry, with a fake claim."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from llmos.errors import Cancelled, NotFound, QuotaExceeded, ToolError
from llmos.executor.base import Outcome, Result, Work
from llmos.executor.local import LocalExecutor
from llmos.kernel.sched import Plan
from llmos.llm.fake import FakeEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernel"))
from conftest import make_registry  # noqa: E402


class Harness:
    def __init__(self, engine=None, tools=None):
        self.works: dict[int, Work] = {}
        self.claimed: list[int] = []
        self.engine = engine or FakeEngine("one two three")

        self.engine_keys: list[str | None] = []

        async def engine_for(model):
            self.engine_keys.append(model)
            return self.engine

        async def claim(pids):
            self.claimed += list(pids)
            return {p: self.works[p] for p in pids if p in self.works}
        self.ex = LocalExecutor(claim, engine_for=engine_for, tools=tools)

    async def until_done(self, pids, plan=None, limit=200) -> Outcome:
        total = Outcome()
        plan = plan or Plan()
        for _ in range(limit):
            out = await asyncio.wait_for(self.ex.run(plan), 5)
            plan = Plan()
            total.finished |= out.finished
            total.results.update(out.results)
            total.preempted |= out.preempted
            for pid, (tok, s) in out.usage.items():
                t0, s0 = total.usage.get(pid, (0, 0.0))
                total.usage[pid] = (t0 + tok, s0 + s)
            if set(pids) <= total.finished:
                return total
        raise AssertionError("did not finish")


@pytest.fixture
async def h(tmp_path):
    harness = Harness(tools=make_registry())
    yield harness
    await harness.ex.close()
    await harness.engine.close()


async def test_llm_streams_and_reports_usage(h):
    chunks = []
    h.works[1] = Work(1, "llm", "a", 0, {"prompt": "go"}, sink=chunks.append)
    out = await h.until_done([1], Plan(run=[1]))
    res: Result = out.results[1]
    assert res.ok and res.value["text"] == "one two three" and res.tokens_out == 3
    assert "".join(c.text for c in chunks) == "one two three"
    assert out.usage[1][0] == 3 and h.ex.running() == set()
    assert h.engine.requests[0].request_id == "pid1.1" and h.engine.requests[0].owner == "a"


async def test_tool_and_jobs(h, tmp_path):
    h.works[1] = Work(1, "tool", "a", 0, {"tool": "test.echo", "args": {"text": "hi"}}, workdir=str(tmp_path))
    h.works[2] = Work(2, "job", "a", 0, {}, call=lambda: {"n": 1})

    async def coro():
        return "async"
    h.works[3] = Work(3, "job", "a", 0, {}, call=coro)
    out = await h.until_done([1, 2, 3], Plan(run=[1, 2, 3]))
    assert out.results[1].value == {"output": "hi", "summary": "echoed", "files": [], "risk": None}
    assert out.results[2].value == {"n": 1} and out.results[3].value == "async"
    assert all(out.results[p].cpu_s >= 0 and out.results[p].wall_s >= 0 for p in (1, 2, 3))


async def test_failures_become_results_not_exceptions(h, tmp_path):
    def boom():
        raise ZeroDivisionError("nope")
    h.works[1] = Work(1, "tool", "a", 0, {"tool": "test.fail", "args": {}}, workdir=str(tmp_path))
    h.works[2] = Work(2, "job", "a", 0, {}, call=boom)
    h.works[3] = Work(3, "daemon", "a", 0, {})
    out = await h.until_done([1, 2, 3], Plan(run=[1, 2, 3]))
    assert isinstance(out.results[1].error, ToolError)
    assert isinstance(out.results[2].exc, ZeroDivisionError) and "nope" in out.results[2].error.message
    assert isinstance(out.results[3].error, NotFound)


async def test_unclaimed_pids_do_not_run(h):
    out = await asyncio.wait_for(h.ex.run(Plan(run=[42])), 1)
    assert h.claimed == [42] and out.finished == set() and h.ex.running() == set()


async def test_cancel_stops_a_generation():
    h = Harness(FakeEngine("w " * 500, step_delay_s=0.01))
    h.works[1] = Work(1, "llm", "a", 0, {"prompt": "go", "max_tokens": 500})
    await h.ex.run(Plan(run=[1]))
    await asyncio.sleep(0.05)
    assert h.ex.cancel(1) and not h.ex.cancel(99)
    out = await h.until_done([1])
    assert isinstance(out.results[1].error, Cancelled)
    await h.ex.close()
    await h.engine.close()


async def test_preempt_pauses_and_resume_continues():
    h = Harness(FakeEngine("w " * 40, step_delay_s=0.005))
    h.works[1] = Work(1, "llm", "a", 0, {"prompt": "go", "max_tokens": 100})
    await h.ex.run(Plan(run=[1]))
    await asyncio.sleep(0.03)
    out = await h.ex.run(Plan(preempt=[1]))
    assert out.preempted == {1} and 1 in h.ex.running()
    await asyncio.sleep(0.05)
    seen = h.engine.views()[0].generated_tokens
    await asyncio.sleep(0.05)
    assert h.engine.views()[0].generated_tokens == seen          # paused: no progress
    out = await h.until_done([1], Plan(run=[1]))
    assert out.results[1].value["text"] == "w " * 40 and out.results[1].value["usage"]["preemptions"] >= 1
    await h.ex.close()
    await h.engine.close()


async def test_wake_returns_an_idle_run(h):
    task = asyncio.ensure_future(h.ex.run(Plan()))
    await asyncio.sleep(0.02)
    assert not task.done()
    h.ex.wake()
    out = await asyncio.wait_for(task, 1)
    assert out.finished == set()


async def test_memory_quota_tightens_the_tool_sandbox(h, tmp_path):
    from llmos.tools.sandbox import default_sandbox

    seen = []
    orig = h.ex._tool_context

    def spy(w):
        ctx = orig(w)
        seen.append(ctx.sandbox)
        return ctx
    h.ex._tool_context = spy
    h.works[1] = Work(1, "tool", "a", 0, {"tool": "test.echo", "args": {"text": "x"}}, workdir=str(tmp_path),
                      memory_bytes=64 << 20)
    h.works[2] = Work(2, "tool", "a", 0, {"tool": "test.echo", "args": {"text": "x"}}, workdir=str(tmp_path))
    await h.until_done([1, 2], Plan(run=[1, 2]))
    assert seen[0].limits.memory_bytes == 64 << 20 < default_sandbox().limits.memory_bytes
    assert seen[1] is None


async def test_llm_runs_on_the_engine_the_kernel_chose(h):
    h.works[1] = Work(1, "llm", "a", 0, {"prompt": "go", "model": "m"}, engine="engine-b")
    h.works[2] = Work(2, "llm", "a", 0, {"prompt": "go", "model": "m"})
    await h.until_done([1, 2], Plan(run=[1, 2]))
    assert sorted(h.engine_keys) == ["engine-b", "m"]              # the key wins; else the model


async def test_token_guard_stops_a_generation_and_keeps_what_was_delivered(h):
    chunks, asked = [], []

    def guard(n):
        asked.append(n)
        return None if len(asked) <= 2 else "quota spent"

    h.works[1] = Work(1, "llm", "a", 0, {"prompt": "go"}, sink=chunks.append, on_tokens=guard)
    out = await h.until_done([1], Plan(run=[1]))
    res = out.results[1]
    assert not res.ok and isinstance(res.error, QuotaExceeded) and "quota spent" in res.error.message
    assert res.tokens_out == 2 and res.value["text"] == "one two" and res.value["finish_reason"] == "quota"
    assert "".join(c.text for c in chunks) == "one two" and asked == [1, 1, 1]


async def test_a_job_is_told_its_device_when_it_asks(h):
    import functools

    def placed(x, device="cpu"):
        return f"{x}@{device}"

    async def placed_async(*, device):
        return device

    h.works[1] = Work(1, "job", "a", 0, {}, call=functools.partial(placed, 1), device="gpu:0")
    h.works[2] = Work(2, "job", "a", 0, {}, call=lambda: "no device parameter", device="gpu:0")
    h.works[3] = Work(3, "job", "a", 0, {}, call=placed_async, device="gpu:1")
    h.works[4] = Work(4, "job", "a", 0, {}, call=functools.partial(placed, 2, device="cpu"), device="gpu:0")
    out = await h.until_done([1, 2, 3, 4], Plan(run=[1, 2, 3, 4]))
    assert [out.results[p].value for p in (1, 2, 3, 4)] == ["1@gpu:0", "no device parameter", "gpu:1", "2@cpu"]


async def test_engine_load_time_is_reported_apart_from_the_work():
    engine = FakeEngine("one two")

    async def slow_engine_for(model):
        await asyncio.sleep(0.05)            # an engine built on first use
        return engine

    async def claim(pids):
        return {1: Work(1, "llm", "a", 0, {"prompt": "go"})}

    ex = LocalExecutor(claim, engine_for=slow_engine_for)
    try:
        out = Outcome()
        while 1 not in out.finished:
            out = await asyncio.wait_for(ex.run(Plan(run=[1])), 5)
        res = out.results[1]
        assert res.ok and res.setup_s >= 0.05 and res.wall_s >= res.setup_s
    finally:
        await ex.close()
        await engine.close()
