"""Ratings -> approved examples (and blocks), habits learned and applied, render helpers."""

from __future__ import annotations

import json

import pytest

from llmos.runs import RunRecord, RunStatus, Step
from llmos.shell import feedback
from llmos.shell.context import Workspace
from llmos.shell.plan import Plan
from llmos.shell.planner import Planner
from llmos.shell.render import cut_repeats, fill_answer
from llmos.shell.store import ShellStore
from llmos.tools.registry import default_registry


@pytest.fixture
def store(tmp_path):
    s = ShellStore(tmp_path / "shell.db")
    yield s
    s.close()


def _rec(run, request, plan, steps=(), user="ann"):
    return RunRecord(run, request=request, status=RunStatus.SUCCEEDED, user=user, plan=plan,
                     steps=[Step.from_dict(s) for s in steps], facts=["Files here: none"])


PLAN = {"steps": [{"tool": "calc.eval", "args": {"expression": "2 ** 8"}, "why": "x"}],
        "answer": "It is $step1.output.value."}


def test_good_plans_become_examples_and_bad_ones_never_return(store, tmp_path):
    store.save_run(_rec("r1", "how big is two to the eighth power", PLAN))
    feedback.rate(store, "r1", True, "yes")
    planner = Planner(default_registry(), None, store=store)
    shown = planner.approved("how big is two to the eighth power")
    assert shown and shown[-1][1] == PLAN
    msgs, reqs = planner.messages("how big is two to the eighth power", Workspace.scan(tmp_path))
    assert reqs == ["how big is two to the eighth power"]
    assert PLAN in [json.loads(m["content"]) for m in msgs if m["role"] == "assistant"]
    feedback.rate(store, "r1", False, "wrong")
    assert planner.approved("how big is two to the eighth power") == []
    assert store.is_blocked("how big is two to the eighth power", PLAN)
    assert store.get_run("r1").rating == "bad"


def test_habits_learned_from_two_good_runs_and_applied(store, tmp_path):
    reg = default_registry()
    steps = [{"tool": "plot.chart", "status": "succeeded", "args": {"kind": "line"}, "files": ["charts/a.png"]}]
    for i in (1, 2):
        store.save_run(_rec(f"r{i}", "plot sales", PLAN, steps))
        _, evidence = feedback.rate(store, f"r{i}", True, registry=reg)
        assert evidence == ["output_dir=charts", "arg:plot.chart.kind=line"]
        if i == 1:
            assert feedback.active_habits(store, "ann") == {}
    habits = feedback.active_habits(store, "ann")
    assert habits["output_dir"] == ("charts", 2) and habits["arg:plot.chart.kind"] == ("line", 2)
    plan = Plan.from_dict({"steps": [{"tool": "plot.chart", "args": {"path": "s.csv", "x": "m", "kind": "bar",
                                                                     "save_to": "out.png"}}],
                           "answer": "Saved $step1.output.file."})
    (tmp_path / "s.csv").write_text("m,amount\n")
    facts = Workspace.scan(tmp_path)
    applied = feedback.apply_habits(plan, facts, "plot amount by month from s.csv", habits, reg)
    assert plan.steps[0].args["save_to"] == "charts/out.png" and plan.steps[0].args["kind"] == "line"
    assert len(applied) == 2 and all("learned from 2 rated runs" in a for a in applied)
    # the person's own words win over a habit
    plan = Plan.from_dict({"steps": [{"tool": "plot.chart", "args": {"path": "s.csv", "x": "m", "kind": "bar",
                                                                     "save_to": "sales.png"}}]})
    facts = Workspace.scan(tmp_path)
    assert feedback.apply_habits(plan, facts, "draw a bar chart of s.csv as sales.png", habits, reg) == []


def test_explicit_habit(store):
    store.set_habit("ann", "output_dir", "out")
    assert feedback.active_habits(store, "ann") == {"output_dir": ("out", 1000)}
    store.set_habit("ann", "output_dir", None)
    assert feedback.active_habits(store, "ann") == {}


def test_fill_answer():
    outs = {1: {"value": 395, "expression": "17*23+4"}, 2: {"rows": [{"name": "Gamma", "h": 12}]}}
    sums = {1: "17*23+4 = 395", 2: "1 of 4 rows"}
    assert fill_answer("It is $step1.output.", outs, sums) == "It is 395."
    assert "Gamma" in fill_answer("Pick $step2.output.rows.3.name.", outs, sums)   # deepest prefix
    assert fill_answer("", outs, sums) == "1 of 4 rows"                               # no template
    moved = {1: {"source": "a.md", "destination": "b.md"}}
    assert fill_answer("Moved $step1.output.source to $step1.output.destination.", moved, {}) == "Moved a.md to b.md."
    # an empty value is never a silent gap in the sentence: it reads "none" and the summary is added
    empty = {1: {"files": [], "lines": 0}}
    assert fill_answer("There are $step1.output.files files.", empty, {1: "0 files: 0 lines"}) == \
        "There are none files. (0 files: 0 lines)"
    assert cut_repeats("The x has  story has  story has  story has") == "The x has  story has  story"


def test_store_run_lookup(store):
    store.save_run(_rec("rabc123", "q", PLAN))
    assert store.get_run("rabc").run == "rabc123" and store.get_run("last").run == "rabc123"
    with pytest.raises(Exception, match="no run"):
        store.get_run("zzz")
