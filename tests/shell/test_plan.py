"""Plans: parsing, references, the DAG, substitution."""

from __future__ import annotations

import pytest

from llmos.errors import InvalidArgument
from llmos.shell.plan import Plan, Unresolved, render_value, substitute


def test_parse_and_deps():
    p = Plan.from_dict({"steps": [{"tool": "a.b", "args": {"x": 1}, "why": "first"},
                                  {"tool": "c.d", "args": {"y": "$step1.output.rows"}, "why": "second"}],
                        "answer": "got $step2.output"}, "req")
    assert [s.tool for s in p.steps] == ["a.b", "c.d"]
    assert p.deps() == {1: [], 2: [1]}
    assert p.steps[0].reason == "first"


@pytest.mark.parametrize("bad,field", [
    ({}, "steps"),
    ({"steps": []}, "steps"),
    ({"steps": [{"args": {}}]}, "steps[1].tool"),
    ({"steps": [{"tool": "a.b", "args": []}]}, "steps[1].args"),
    ({"steps": [{"tool": "a.b", "args": {"x": "$step1.output"}}]}, "steps[1].args"),
    ({"steps": [{"tool": "a.b", "args": {"x": "$step2.output"}}, {"tool": "a.b", "args": {}}]}, "steps[1].args"),
    ({"steps": [{"tool": "a.b", "args": {"x": "$item"}}]}, "steps[1].each"),
    ({"steps": [{"tool": "a.b", "args": {}}] * 13}, "steps"),
    ({"steps": [{"tool": "a.b", "args": {}, "each": "not a ref"}]}, "steps[1].each"),
])
def test_malformed_plans_rejected(bad, field):
    with pytest.raises(InvalidArgument) as e:
        Plan.from_dict(bad)
    assert e.value.field == field


def test_from_json_rejects_garbage():
    with pytest.raises(InvalidArgument):
        Plan.from_json("{not json")


def test_substitute_whole_and_embedded():
    outs = {1: {"rows": [{"name": "a", "n": 1}, {"name": "b", "n": 2}], "total": 3.0}}
    assert substitute("$step1.output.total", outs) == 3.0
    assert substitute("$step1.output.rows.1.name", outs) == "b"
    assert substitute("$step1.output.rows.name", outs) == ["a", "b"]   # projection over records
    assert substitute("$step1.output.rows.count", outs) == 2
    assert substitute("total: $step1.output.total.", outs) == "total: 3."
    assert substitute({"k": ["$step1.output.total"]}, outs) == {"k": [3.0]}
    assert substitute("$item.x", outs, item={"x": 5}) == 5
    with pytest.raises(Unresolved):
        substitute("$step1.output.nope", outs)


def test_render_value():
    assert render_value(2.0) == "2"
    assert render_value([1, 2]) == "1\n2"
    assert render_value({"a": 1, "b": "x"}) == "a: 1, b: x"
    assert render_value({"item": "a.csv", "output": 3}) == "a.csv: 3"
    assert render_value(True) == "yes"


def test_answer_naming_a_missing_step_is_dropped_not_fatal():
    plan = Plan.from_dict({"steps": [{"tool": "a.b", "args": {}}], "answer": "It is $step3.output"})
    assert plan.answer == "" and "refers to $step3" in plan.notes[0]


def test_llm_result_drops_echoed_fences():
    from llmos.shell import llmtool

    assert llmtool.result({"task": "translate"}, "<<<\nBonjour à tous\n>>>") == "Bonjour à tous"
    assert llmtool.result({"task": "classify", "labels": ["a", "b"]}, '"b"') == "b"
    msgs, schema, n = llmtool.request_for({"task": "classify", "instruction": "mood", "text": "great",
                                           "labels": ["positive", "negative"]})
    assert schema == {"enum": ["positive", "negative"]} and "great" in msgs[-1]["content"]
