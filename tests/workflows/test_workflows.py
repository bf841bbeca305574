"""Workflows on the fake clock and the fake engine: the model's trigger split, time rules
across a restart and a clock jump, file rules, retries by idempotency, bad input."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from llmos.clock import FakeClock
from llmos.errors import InvalidArgument, NotFound, PermissionDenied
from llmos.runs import RunStatus
from llmos.workflows import open_workflows
from llmos.workflows.saved import SavedPlanRunner

MONDAY_0859 = dt.datetime(2026, 1, 5, 8, 59, tzinfo=dt.UTC).timestamp()


def plan(*steps, answer="$step1.output"):
    return json.dumps({"steps": [{"tool": t, "args": a, "why": "scripted"} for t, a in steps], "answer": answer})


def trigger(kind, task, **f):
    d = {"trigger": kind, "cron": "", "timezone": "", "folder": "", "pattern": "", "after": "", "task": task}
    d.update(f)
    return json.dumps(d)


class Model:
    """The trigger split for the small schema; the plan for the planner's schema."""

    def __init__(self, split: str, plan: str) -> None:
        self.split, self.plan = split, plan
        self.splits = 0

    def __call__(self, req) -> str:
        schema = req.json_schema or {}
        if "task" in schema.get("properties", {}):
            self.splits += 1
            return self.split
        return self.plan


@pytest.fixture
def ws(ws):
    (ws / "poem.txt").write_text("one\ntwo\nthree\n")
    return ws


@pytest.fixture
def world(boot_kernel):
    made: dict = {}

    async def boot(model: Model, clock: FakeClock):
        made["kernel"] = k = await boot_kernel(model, clock=clock)
        made["wf"] = svc = open_workflows(k, watch=False, model="fake")
        await svc.start()
        return k, svc

    async def stop():
        if "wf" in made:
            await made.pop("wf").close()
        if "kernel" in made:
            await made.pop("kernel").shutdown()

    made["boot"], made["stop"] = boot, stop
    yield made


async def _settle(svc):
    for _ in range(10):
        await asyncio.sleep(0)
    await svc.idle()


async def test_a_time_rule_fires_on_time_across_a_restart_and_a_jump(world, ws):
    clock = FakeClock(MONDAY_0859)
    model = Model(trigger("time", "count the lines of poem.txt", cron="0 9 * * 1-5", timezone="UTC"),
                  plan(("files.count", {"path": "poem.txt"})))
    k, svc = await world["boot"](model, clock)
    try:
        prop = await svc.compile("every weekday at 9 count the lines of poem.txt", ws)
        assert prop["trigger"]["cron"] == "0 9 * * 1-5" and prop["task"] == "count the lines of poem.txt"
        assert [s["tool"] for s in prop["steps"]] == ["files.count"] and str(ws) in prop["rights"][0]
        wf = svc.add(prop, "lines")
        assert wf.next_due_s == MONDAY_0859 + 60
        clock.advance(30)
        await _settle(svc)
        assert svc.store.runs("lines") == []
        clock.advance(31)                                    # Monday 09:00:01
        await _settle(svc)
        runs = svc.store.runs("lines")
        assert [r["status"] for r in runs] == ["succeeded"] and "3" in runs[0]["answer"]
        assert runs[0]["cause"].startswith("time 2026-01-05 09:00") and "fired by" in runs[0]["explain"]
        from llmos.shell.store import ShellStore

        kept = ShellStore(k.config.home / "shell.db")          # each run is explained like any run
        try:
            rec = kept.get_run(runs[0]["run_ids"][0])
            assert rec.status is RunStatus.SUCCEEDED and rec.plan["steps"][0]["tool"] == "files.count"
        finally:
            kept.close()
    finally:
        await world["stop"]()
    clock.advance(3 * 86400 + 3600)                          # down until Thursday 10:00: Tue, Wed, Thu missed
    k, svc = await world["boot"](model, clock)
    try:
        await _settle(svc)
        runs = svc.store.runs("lines")
        assert len(runs) == 2, "a missed time fires once on boot, never a burst"
        assert "missed time 2026-01-06 09:00" in runs[0]["cause"] and "2 more" in runs[0]["cause"]
        assert len(svc.boot_notes) == 1 and "passed while the daemon was down" in svc.boot_notes[0]
        assert svc.get("lines").next_due_s == dt.datetime(2026, 1, 9, 9, 0, tzinfo=dt.UTC).timestamp()
        clock.advance(8 * 86400)                             # the clock jumps over six fire times
        await _settle(svc)
        assert len(svc.store.runs("lines")) == 3
        svc.pause("lines")
        clock.advance(7 * 86400)
        await _settle(svc)
        assert len(svc.store.runs("lines")) == 3              # paused: nothing fires
        svc.resume("lines")
        assert svc.get("lines").next_due_s > clock.time()     # and resuming does not catch up
    finally:
        await world["stop"]()


async def test_a_file_rule_fires_once_per_new_file_and_after_rules_follow(world, ws):
    clock = FakeClock(MONDAY_0859)
    (ws / "drop").mkdir()
    (ws / "drop" / "old.csv").write_text("a\n1\n")
    model = Model(trigger("file", "count the lines of poem.txt", folder="drop", pattern="*.csv"),
                  plan(("files.count", {"path": "poem.txt"})))
    k, svc = await world["boot"](model, clock)
    try:
        svc.add(await svc.compile("when a CSV lands in drop/, count the lines of poem.txt", ws), "csv")
        model.split = trigger("after", "count the lines of poem.txt", after="csv")
        svc.add(await svc.compile("after csv, count the lines of poem.txt", ws), "then")
        assert await svc.scan_files("csv") == []              # a file already there does not fire
        (ws / "drop" / "a.csv").write_text("a\n1\n")
        (ws / "drop" / "b.csv").write_text("a\n2\n")
        (ws / "drop" / "notes.txt").write_text("not a csv")
        assert await svc.scan_files("csv") == ["a.csv", "b.csv"]
        assert await svc.scan_files("csv") == []              # nothing new: nothing fires
        await _settle(svc)
        runs = svc.store.runs("csv")
        assert sorted(r["cause"] for r in runs) == ["file drop/a.csv", "file drop/b.csv"]
        assert all(r["status"] == "succeeded" for r in runs)
        assert [r["cause"] for r in svc.store.runs("then")] == ["workflow csv finished"] * 2
    finally:
        await world["stop"]()


async def test_a_failed_step_retries_only_when_idempotent(world, ws):
    clock = FakeClock(MONDAY_0859)
    model = Model(trigger("webhook", "count the lines of data.txt"), plan(("files.count", {"path": "poem.txt"})))
    k, svc = await world["boot"](model, clock)
    try:
        prop = await svc.compile("when called, count the lines of data.txt", ws)
        model.plan = plan(("files.count", {"path": "data.txt"}))     # a repair fails the same way
        prop["plan"] = json.loads(model.plan)
        svc.add(prop, "count")
        attempts = []

        def factory(kernel, wf):                # the real runner; the file appears after one failure
            if attempts:
                (ws / "data.txt").write_text("x\ny\n")
            attempts.append(1)
            return SavedPlanRunner(kernel, wf.plan, user=wf.owner, model="fake")
        svc._factory = factory
        r = await svc.fire("count", "webhook")
        assert r["status"] == "succeeded" and len(attempts) == 2 and len(r["runs"]) == 2
        assert "retried: every step is idempotent" in r["explain"]

        (ws / "adir").mkdir()
        model.plan = plan(("files.append", {"path": "adir", "content": "hi"}))
        prop["plan"] = json.loads(model.plan)
        svc.add(prop, "append")
        svc._factory = lambda kernel, wf: SavedPlanRunner(kernel, wf.plan, user=wf.owner, model="fake")
        r = await svc.fire("append", "webhook")
        assert r["status"] != "succeeded" and len(r["runs"]) == 1
        assert "not retried: step 1 (files.append) is not idempotent" in r["explain"]

        (ws / "locked").write_text("a file, not a folder")      # the kernel refuses the path: denied
        model.plan = plan(("files.append", {"path": "locked/log.txt", "content": "hi"}))
        prop["plan"] = json.loads(model.plan)
        svc.add(prop, "denied")
        r = await svc.fire("denied", "webhook")
        assert r["status"] == "denied" and len(r["runs"]) == 1 and "not retried: the run ended denied" in r["explain"]
    finally:
        await world["stop"]()


async def test_bad_input_is_one_clear_line(world, ws, tmp_path):
    clock = FakeClock(MONDAY_0859)
    model = Model(trigger("time", "count the lines of poem.txt", cron="every day at nine"),
                  plan(("files.count", {"path": "poem.txt"})))
    k, svc = await world["boot"](model, clock)
    try:
        with pytest.raises(InvalidArgument, match=r"trigger.cron: 'every day at nine' is not a schedule"):
            await svc.compile("every day at nine count lines", ws)
        model.split = trigger("time", "count", cron="0 9 * * *", timezone="Mars/Olympus")
        with pytest.raises(InvalidArgument, match="trigger.tz"):
            await svc.compile("every day at nine count lines", ws)
        model.split = trigger("none", "count the lines")
        with pytest.raises(InvalidArgument, match="no clear trigger"):
            await svc.compile("count the lines", ws)
        outside = tmp_path / "elsewhere"
        outside.mkdir()
        model.split = trigger("file", "count", folder=str(outside))
        with pytest.raises(PermissionDenied, match="outside the workflow's workspace"):
            await svc.compile("when a file lands in elsewhere count it", ws)
        model.split = trigger("after", "count", after="nosuch")
        with pytest.raises(NotFound, match="no workflow named 'nosuch'"):
            await svc.compile("after nosuch count", ws)
        with pytest.raises(NotFound, match="no workflow named 'ghost'"):
            svc.pause("ghost")
        with pytest.raises(InvalidArgument, match="name"):
            svc.add({"workdir": str(ws)}, "bad name!")
        other = tmp_path / "other"
        other.mkdir()
        assert (await k.syscall("root", "agent.create", {"name": "bob", "capabilities": {
            "syscalls": ["llm.generate"], "read_roots": [str(other)], "write_roots": [str(other)]}})).ok
        with pytest.raises(PermissionDenied, match=r"workdir: .* is outside agent bob's write roots"):
            await svc.compile("every day at nine count lines", ws, owner="bob")
    finally:
        await world["stop"]()


async def test_a_folder_watcher_fires_for_a_new_file(boot_kernel, ws):
    """watchfiles on a real folder (wall clock, about a second)."""
    (ws / "drop").mkdir()
    model = Model(trigger("file", "count the lines of poem.txt", folder="drop"),
                  plan(("files.count", {"path": "poem.txt"})))
    k = await boot_kernel(model)
    svc = open_workflows(k, model="fake")
    try:
        await svc.start()
        svc.add(await svc.compile("when a file lands in drop/, count the lines of poem.txt", ws), "drop")
        await asyncio.sleep(0.3)                     # the watcher is up
        (ws / "drop" / "new.txt").write_text("hello")
        for _ in range(100):
            await asyncio.sleep(0.05)
            if svc.store.runs("drop"):
                break
        await svc.idle()
        assert [r["cause"] for r in svc.store.runs("drop")] == ["file drop/new.txt"]
    finally:
        await svc.close()
