"""Planner: scripted model output (valid, malformed, off-schema, refusals), the one schema
generated from the whole registry, the fixed prompt prefix, checks and normalization."""

from __future__ import annotations

import json

import jsonschema
import pytest

from llmos.shell.context import Workspace
from llmos.shell.plan import Plan
from llmos.shell.planner import PlanError, Planner, check_plan, load_examples, parse_model_output
from llmos.tools.registry import default_registry


@pytest.fixture(scope="module")
def registry():
    return default_registry()


def scripted(*answers):
    """A generate() that answers in order and records what it was asked."""
    calls = []

    async def generate(messages, schema, max_tokens, temperature, prefix_messages=0):
        calls.append({"messages": messages, "schema": schema, "prefix": prefix_messages,
                      "temperature": temperature})
        return answers[min(len(calls), len(answers)) - 1]
    generate.calls = calls
    return generate


def plan_json(*steps, answer="Done: $step1.output."):
    return json.dumps({"steps": [{"tool": t, "args": a} for t, a in steps], "answer": answer})


def ws_with(tmp_path, **files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return Workspace.scan(tmp_path)


async def test_valid_plan_and_prompt(registry, tmp_path):
    ws = ws_with(tmp_path, **{"poem.txt": "a\nb\n", "sales.csv": "month,amount\n2026-01,5\n"})
    gen = scripted(plan_json(("files.count", {"path": "poem.txt"}), answer="It has $step1.output.lines lines."))
    planner = Planner(registry, gen)
    plan = await planner.plan("how many lines are in poem.txt?", ws)
    assert [s.tool for s in plan.steps] == ["files.count"] and plan.steps[0].args == {"path": "poem.txt"}
    call = gen.calls[0]
    last = call["messages"][-1]["content"]
    assert last.endswith("Request: how many lines are in poem.txt?")
    assert "- poem.txt (4 B)" in last and "columns: month, amount" in last and "Today:" in last
    # the fixed prefix: system + worked examples, the same for every request
    assert call["prefix"] == 1 + 2 * len(planner.examples)
    assert call["messages"][:call["prefix"]] == planner.prefix()
    assert "poem.txt" not in json.dumps(call["messages"][:call["prefix"]])


def test_schema_covers_every_tool_and_refuses_nothing_the_registry_has(registry):
    planner = Planner(registry, scripted("{}"))
    schema = planner.schema
    names = {t["name"] for t in registry.schemas()} | {"llm"}
    steps = schema["anyOf"][0]["properties"]["steps"]
    assert {a["properties"]["tool"]["const"] for a in steps["items"]["anyOf"]} == names
    assert {a["properties"]["tool"]["const"] for a in steps["prefixItems"][0]["anyOf"]} == names
    assert steps["maxItems"] == 12
    # a long plan over several tools, with each / when / references, fits the one schema
    long = {"steps": [
        {"tool": "files.list", "args": {"path": ".", "pattern": "*.csv"}},
        {"tool": "data.count_rows", "each": "$step1.output.entries", "args": {"path": "$item.name"}},
        {"tool": "data.compute", "args": {"path": "a.csv", "name": "t", "expression": "x * 2"}},
        {"tool": "data.write", "args": {"path": "out.csv", "rows": "$step3.output.rows"}},
        {"tool": "net.fetch", "when": {"ref": "$step2.output.count", "op": ">", "value": 1},
         "args": {"url": "https://example.com"}},
        {"tool": "llm", "args": {"task": "summarize", "instruction": "short", "text": "$step5.output.text"}},
    ], "answer": "Rows: $step2.output; summary: $step6.output. You asked about 3 files."}
    jsonschema.validate(long, schema)
    jsonschema.validate({"refuse": "No tool can send email from here."}, schema)
    for bad in ({"steps": [{"tool": "rm.rf", "args": {}}], "answer": ""},
                {"steps": [{"tool": "files.read", "args": {"path": "a", "mode": "x"}}], "answer": ""},
                {"steps": [{"tool": "files.read", "args": {"path": "$bogus"}}], "answer": ""},
                {"ask": "which file?"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    jsonschema.validate({"ask": "Which of the two files do you mean?"},
                        Planner(registry, scripted("{}"), allow_ask=True).schema)


@pytest.mark.parametrize("text, field", [
    ("no json here", "plan"),
    ('{"steps": [{"tool": "files.read"', "plan"),
    ('{"steps": []}', "steps"),
    ('{"steps": [{"tool": "nope.tool", "args": {}}], "answer": ""}', "steps[1].tool"),
    ('{"steps": [{"tool": "files.read", "args": {"path": "$step2.output"}}], "answer": ""}', "steps[1].args"),
    ('{"steps": [{"tool": "python.run", "args": {"code": "def f(:"}}], "answer": ""}', "steps[1].args"),
])
async def test_malformed_output_is_retried_once_then_rejected(registry, tmp_path, text, field):
    gen = scripted(text)
    with pytest.raises(PlanError) as e:
        await Planner(registry, gen).plan("do it", Workspace.scan(tmp_path))
    # the retry tells the model what was wrong; the same reply again: one last sampled try
    assert e.value.field == field and len(gen.calls) == 3
    assert "not valid" in gen.calls[1]["messages"][-1]["content"]
    assert [c["temperature"] for c in gen.calls] == [0.0, 0.0, 0.7]


async def test_a_different_wrong_reply_is_not_sampled_again(registry, tmp_path):
    gen = scripted('{"steps": [{"tool": "nope", "args": {}}], "answer": ""}',
                   '{"steps": [{"tool": "nope.two", "args": {}}], "answer": ""}')
    with pytest.raises(PlanError):
        await Planner(registry, gen).plan("do it", Workspace.scan(tmp_path))
    assert len(gen.calls) == 2
    # the sampled try's plan is used, and said to be sampled
    gen = scripted('{"steps": [{"tool": "nope", "args": {}}], "answer": ""}',
                   '{"steps": [{"tool": "nope", "args": {}}], "answer": ""}',
                   plan_json(("calc.eval", {"expression": "2+2"})))
    plan = await Planner(registry, gen).plan("what is 2+2", Workspace.scan(tmp_path))
    assert plan.steps[0].tool == "calc.eval" and any("sampled" in n for n in plan.notes)


async def test_repaired_on_the_second_try(registry, tmp_path):
    gen = scripted('{"steps": [{"tool": "nope", "args": {}}], "answer": ""}',
                   plan_json(("calc.eval", {"expression": "2+2"})))
    plan = await Planner(registry, gen).plan("what is 2+2", Workspace.scan(tmp_path))
    assert plan.steps[0].tool == "calc.eval" and any("planned again" in n for n in plan.notes)


async def test_refusal(registry, tmp_path):
    gen = scripted('{"refuse": "No tool here can send email."}')
    plan = await Planner(registry, gen).plan("email my boss", Workspace.scan(tmp_path))
    assert plan.refuse == "No tool here can send email." and plan.steps == []


def test_names_are_normalized_to_the_workspace(registry, tmp_path):
    ws = ws_with(tmp_path, **{"Sales Q1.csv": "Region,Unit Price\nN,2\n"})
    plan = Plan.from_dict({"steps": [{"tool": "data.stat", "args": {"path": "sales_q1.csv", "column": "unit_price",
                                                                    "stat": "sum"}}], "answer": ""}, "sum it")
    check_plan(plan, registry, ws)
    assert plan.steps[0].args == {"path": "Sales Q1.csv", "column": "Unit Price", "stat": "sum"}
    assert len(plan.notes) == 2


def test_answer_may_quote_the_request_but_not_invent_numbers(registry):
    ok = Plan.from_dict({"steps": [{"tool": "calc.eval", "args": {"expression": "3*4"}}],
                         "answer": "Meeting at 10am on the 3rd floor: $step1.output.value"},
                        "book the meeting at 10am on the 3rd floor and compute 3*4")
    check_plan(ok, default_registry())
    assert ok.answer.startswith("Meeting at 10am")
    bad = Plan.from_dict({"steps": [{"tool": "calc.eval", "args": {"expression": "3*4"}}],
                          "answer": "The result is 13."}, "what is 3*4")
    check_plan(bad, default_registry())
    assert bad.answer == "" and any("13" in n for n in bad.notes)


def test_parse_model_output_takes_first_object():
    assert parse_model_output('noise {"a": 1} {"b": 2}') == {"a": 1}


def test_every_example_fits_the_schema_and_checks(registry, tmp_path):
    planner = Planner(registry, scripted("{}"))
    assert len(planner.examples) == len(load_examples()) >= 8
    for e in planner.examples:
        jsonschema.validate(e.plan, planner.schema)
        check_plan(Plan.from_dict(e.plan, e.request), registry)


async def test_revise_shows_what_happened_and_takes_the_whole_plan(registry, tmp_path):
    ws = ws_with(tmp_path, **{"a.txt": "x\n"})
    first = Plan.from_dict(json.loads(plan_json(("files.read", {"path": "b.txt"}))), "read a")
    gen = scripted(plan_json(("files.read", {"path": "a.txt"}), answer="$step1.output.text"))
    planner = Planner(registry, gen)
    new = await planner.revise("read a", ws, [(first.steps[0], None, "failed: no such file: b.txt")],
                               "$step1 (files.read) failed: no such file", first)
    assert new.steps[0].args == {"path": "a.txt"} and new.answer == "$step1.output.text"
    msgs = gen.calls[0]["messages"]
    assert msgs[-2] == {"role": "assistant", "content": first.to_json()}
    assert "failed: no such file: b.txt" in msgs[-1]["content"] and "from $step1" in msgs[-1]["content"]


def test_the_grammar_rules_out_the_common_reference_errors(registry):
    schema = Planner(registry, scripted("{}")).schema
    for bad in ({"steps": [{"tool": "files.read", "args": {"path": "$step1.output.path"}}], "answer": ""},
                {"steps": [{"tool": "files.list", "args": {}},
                           {"tool": "files.read", "args": {"path": "$item.name"}}], "answer": ""},
                {"steps": [{"tool": "files.read", "each": "$step1.output", "args": {"path": "a"}}], "answer": ""},
                {"steps": [{"tool": "python.run_file", "args": {"path": "a.py", "args": ["$step1.output"]}}],
                 "answer": ""},
                {"steps": [{"tool": "data.filter", "args": {"path": "a.csv", "column": "x", "op": "==",
                                                            "value": "$step1.output.value"}}], "answer": ""}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    ok = {"steps": [{"tool": "files.list", "args": {}},
                    {"tool": "files.read", "args": {"path": "$step1.output.entries.0.name"}},
                    {"tool": "files.count", "each": "$step1.output.entries", "args": {"path": "$item.name"}}],
          "answer": "$step3.output"}
    jsonschema.validate(ok, schema)


def test_named_files_are_the_names_a_person_writes():
    from llmos.shell.planner import named_files
    req = ("summarize Incident_Report.txt into out/sum.md, e.g. briefly; mail it to dana.reyes@brightlane.com "
           "(see https://example.org/help.html) and keep data.tar.gz and incident_report.txt")
    assert named_files(req) == ["Incident_Report.txt", "out/sum.md", "data.tar.gz"]
    assert named_files("what is 3.5 times 2?") == [] and named_files("") == []


async def test_a_plan_that_leaves_out_a_named_file_is_made_again(registry, tmp_path):
    ws = ws_with(tmp_path, **{"numbers.txt": "3\n1\n2\n"})
    request = "sort numbers.txt and save them to sorted.txt"
    partial = plan_json(("text.sort", {"path": "numbers.txt"}), answer="")
    whole = plan_json(("text.sort", {"path": "numbers.txt", "save_to": "sorted.txt"}), answer="")
    gen = scripted(partial, whole)
    plan = await Planner(registry, gen).plan(request, ws)
    assert plan.steps[0].args["save_to"] == "sorted.txt" and len(gen.calls) == 2
    assert "sorted.txt" in gen.calls[1]["messages"][-1]["content"]     # told what it left out
    # the same partial plan twice: kept (the run then says what it did not make), with a note
    gen = scripted(partial, partial)
    plan = await Planner(registry, gen).plan(request, ws)
    assert any("sorted.txt" in n for n in plan.notes) and len(gen.calls) == 2
    # a retry that drops as much as it adds, or one that is not valid: the first plan is kept
    worse = plan_json(("files.write", {"path": "sorted.txt", "content": "1 2 3"}), answer="")
    for second in (worse, '{"steps": [{"tool": "nope", "args": {}}], "answer": ""}'):
        gen = scripted(partial, second)
        plan = await Planner(registry, gen).plan(request, ws)
        assert plan.steps[0].tool == "text.sort" and any("kept the first plan" in n for n in plan.notes)
        assert "keep the steps that were right" in gen.calls[1]["messages"][-1]["content"]
    # a pattern that covers the name counts as using it; a refusal uses nothing
    cover = plan_json(("files.list", {"path": ".", "pattern": "*.txt"}), answer="")
    assert len((await Planner(registry, scripted(cover)).plan("list numbers.txt", ws)).steps) == 1
    refusal = json.dumps({"refuse": "No tool sends mail."})
    assert (await Planner(registry, scripted(refusal)).plan("mail numbers.txt to Bo", ws)).refuse
