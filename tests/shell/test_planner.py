"""Planner: scripted model output (valid, malformed, off-schema), the schema, retrieval, roles."""

from __future__ import annotations

import json

import jsonschema
import pytest

from llmos.shell.examples import Retriever, load_library
from llmos.shell.extract import extract
from llmos.shell.plan import Plan
from llmos.shell.planner import (
    PlanError,
    Planner,
    _shown_plan,
    check_plan,
    parse_model_output,
)
from llmos.tools.registry import default_registry


@pytest.fixture(scope="module")
def registry():
    return default_registry()


def scripted(*answers):
    """A generate() that answers in order and records what it was asked."""
    calls = []

    async def generate(messages, schema, max_tokens, temperature):
        calls.append({"messages": messages, "schema": schema})
        return answers[min(len(calls), len(answers)) - 1]
    generate.calls = calls
    return generate


def plan_json(*steps, answer="Done: $step1.output."):
    return json.dumps({"steps": [{"tool": t, "args": a, "why": "because"} for t, a in steps], "answer": answer})


async def test_valid_plan(registry, tmp_path):
    (tmp_path / "poem.txt").write_text("a\nb\n")
    gen = scripted(plan_json(("files.count", {"path": "poem.txt"}), answer="It has $step1.output.lines lines."))
    plan = await Planner(registry, gen).plan("how many lines are in poem.txt?", tmp_path)
    assert [s.tool for s in plan.steps] == ["files.count"] and plan.steps[0].args == {"path": "poem.txt"}
    assert plan.examples and plan.examples[0] == "files-count-lines"
    msgs = gen.calls[0]["messages"]
    assert msgs[-1]["content"].startswith("Request: how many lines are in poem.txt?")
    assert "Files here: poem.txt (4 B)" in msgs[-1]["content"]
    # the schema offers the retrieved skeletons and narrows the path to the named file
    schema = gen.calls[0]["schema"]
    jsonschema.validate(json.loads(gen.calls[0] and plan_json(("files.count", {"path": "poem.txt"}),
                                                              answer="It has $step1.output.lines lines.")), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"steps": [{"tool": "files.count", "args": {"path": "other.txt"}, "why": ""}],
                             "answer": ""}, schema)


@pytest.mark.parametrize("text,field", [
    ("no json here", "plan"),
    ('{"steps": [{"tool": "files.count", "args": {"path": "p.txt"}', "plan"),          # cut off
    (plan_json(("files.shred", {"path": "p.txt"})), "steps[1].tool"),                 # unknown tool
    (plan_json(("files.count", {})), "steps[1].args.args"),                           # required arg missing
    (plan_json(("calc.eval", {"expression": 5})), "steps[1].args.expression"),          # wrong type
    (plan_json(("files.count", {"path": "$step2.output"})), "steps[1].args"),          # forward reference
])
async def test_malformed_output_is_rejected(registry, tmp_path, text, field):
    with pytest.raises(PlanError) as e:
        await Planner(registry, scripted(text)).plan("count lines in p.txt", tmp_path)
    assert e.value.field == field


async def test_unknown_argument_is_dropped_and_noted(registry, tmp_path):
    gen = scripted(plan_json(("calc.eval", {"expression": "1+1", "precision": 3})))
    plan = await Planner(registry, gen).plan("what is 1 plus 1", tmp_path)
    assert plan.steps[0].args == {"expression": "1+1"}
    assert any("precision" in n for n in plan.notes)


async def test_script_gets_a_main(registry, tmp_path):
    gen = scripted(plan_json(("python.run", {"code": "print(1)"})), "\n    for i in range(3):\n        print(i)\n")
    plan = await Planner(registry, gen).plan("write and run a python script that prints 0 to 2", tmp_path)
    code = plan.steps[0].args["code"]
    assert code.startswith("def main():\n    for i in range(3):") and code.endswith("main()\n")


def test_parse_model_output_takes_first_object():
    assert parse_model_output('noise {"a": 1} {"b": 2}') == {"a": 1}


def test_every_library_example_fits_its_own_schema(registry):
    """Each curated plan is valid for the registry and admitted by the grammar built for it."""
    planner = Planner(registry, scripted("{}"))
    assert len(planner.library) == len(load_library()) >= 50
    for ex in planner.library:
        plan = check_plan(Plan.from_dict(ex.plan, ex.request), registry)
        assert plan.steps, ex.id
        schema = planner.schema_for(ex.fact_obj, [ex])
        jsonschema.validate(_shown_plan(ex.plan), schema), ex.id


def test_library_covers_every_kind():
    kinds = {e.kind for e in load_library()}
    assert {"files", "data", "calc", "code", "assistant", "decision", "workflow", "security"} <= kinds


@pytest.mark.parametrize("request_,expected", [
    ("how many words are in letter.txt?", "files-count-words"),
    ("what is 9 times 8 minus 2?", "calc-mul-sub"),
    ("remind me in 5 minutes to take the pizza out", "assistant-remind-delay"),
    ("what is the average salary in staff.csv?", "data-mean"),
    ("delete every .bak file", "files-delete-pattern"),
])
def test_retrieval_finds_the_kind(request_, expected):
    top = Retriever(load_library()).top(request_, 1)[0][0]
    assert top.id == expected


async def test_code_is_written_by_a_second_call_and_checked(registry, tmp_path):
    gen = scripted(plan_json(("files.write", {"path": "sq.py", "content": "x"}), answer="Wrote $step1.output.path."),
                   "\n    return n * n\n\nprint(sq(3))\n")
    plan = await Planner(registry, gen).plan("write a python file sq.py with a function sq(n)", tmp_path)
    assert plan.steps[0].args["content"] == "def sq(n):\n    return n * n\n"      # the seeded function only
    assert gen.calls[1]["messages"] == "# write a python file sq.py with a function sq(n)\ndef sq(n):"
    assert any("compiles" in n for n in plan.notes)
    gen = scripted(plan_json(("files.write", {"path": "sq.py", "content": "x"})), " return(")
    plan = await Planner(registry, gen).plan("write a python file sq.py with a function sq(n)", tmp_path)
    assert any("does not compile" in n for n in plan.notes)


async def test_a_cut_off_plan_is_made_again_with_short_text(registry, tmp_path):
    cut = '{"steps":[{"tool":"files.write","args":{"path":"a.txt","content":"la la la la la'
    gen = scripted(cut, plan_json(("files.write", {"path": "a.txt", "content": "la"}),
                                  answer="Wrote $step1.output.path."))
    plan = await Planner(registry, gen).plan("create a file called a.txt", tmp_path)
    assert plan.steps[0].args["content"] == "la" and any("cut off" in n for n in plan.notes)
    first, tight = json.dumps(gen.calls[0]["schema"]), json.dumps(gen.calls[1]["schema"])
    assert '"maxLength": 400' in first and '"maxLength": 400' not in tight and '"maxLength": 80' in tight
    with pytest.raises(PlanError):        # cut off twice: rejected, never run
        await Planner(registry, scripted(cut)).plan("create a file called a.txt", tmp_path)


def test_free_text_may_name_only_earlier_steps(registry):
    from llmos.shell import schema as S

    f = extract("add up the numbers in n.txt and write the total to t.txt", files={"n.txt": "1\n"})
    args = S.tool_args_schema(registry.get("files.write").schema() if hasattr(registry.get("files.write"), "schema")
                              else {"parameters": registry.get("files.write").parameters}, f, before=1)
    content = args["properties"]["content"]
    jsonschema.validate("total: $step1.output.sum", content)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("$step2.output.sum", content)


def test_calc_examples_use_the_extracted_expression():
    """A calc example's expression is what the pre-pass reads from its request, so the
    role narrowing offers a new request exactly its own arithmetic."""
    for ex in load_library():
        for s in ex.plan["steps"]:
            if s["tool"] == "calc.eval":
                assert s["args"]["expression"] == ex.fact_obj.expression, ex.id


async def test_code_that_calls_an_undefined_helper_is_written_again(registry, tmp_path):
    gen = scripted(plan_json(("python.run", {"code": "x"}), answer="It printed $step1.output.stdout"),
                   "\n    print(add_up(100))\n", "\n    print(sum(range(1, 101)))\n")
    plan = await Planner(registry, gen).plan("write and run a python program that adds 1 to 100", tmp_path)
    assert "sum(range(1, 101))" in plan.steps[0].args["code"] and any("compiles" in n for n in plan.notes)
