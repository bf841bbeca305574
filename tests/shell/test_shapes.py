"""Output shapes (``shell/shapes.py``) and the planner's field check: a reference must
name a field its step's tool returns; the model gets one more try with the fields there
are and the tools that have the one it asked for, and a second miss is left to run time
(where the model revises with the real outputs), never a lost plan."""

from __future__ import annotations

import json

import pytest

from llmos.shell import shapes as S
from llmos.shell.context import Workspace
from llmos.shell.plan import Plan
from llmos.shell.planner import PlanError, Planner, check_plan
from llmos.tools.registry import default_registry


@pytest.fixture(scope="module")
def registry():
    return default_registry()


LIST = S.parse("{path, entries: [{name, size}], largest: {name, size}, count}")


@pytest.mark.parametrize("path", [[], ["entries"], ["entries", "0", "name"], ["entries", "name"],
                                  ["entries", "count"], ["largest", "name"], ["path", "csv"],
                                  ["largest", "name", "txt"]])
def test_references_that_can_exist(path):
    assert S.check_ref(LIST, path) is None


@pytest.mark.parametrize("path,key", [(["files"], "files"), (["entries", "path"], "path"),
                                      (["largest", "modified"], "modified")])
def test_references_that_cannot(path, key):
    bad = S.check_ref(LIST, path)
    assert bad is not None and bad[0] == key and key in bad[1]


def test_open_records_lists_of_any_and_each_outputs():
    groups = S.parse("{groups: [{BY, COLUMN}], largest: {key, value}}")
    assert S.check_ref(groups, ["groups", "0", "region"]) is None       # names known at run time
    assert S.check_ref(S.parse("{rows: [rows], count}"), ["rows", "0", "price"]) is None
    w = S.parse("{path, bytes}")
    assert S.check_ref(w, ["path"], each=True) is None                   # projected over the runs
    assert S.check_ref(w, ["0", "output", "bytes"], each=True) is None
    assert S.check_ref(w, ["size"], each=True)[0] == "size"
    assert S.item_of(LIST, ["entries"]).field("name") is S.ANY
    assert S.parse("the text it wrote") is None and S.parse("{a, b") is None


def test_every_registry_returns_line_parses(registry):
    for t in registry.schemas():
        if not t["name"].startswith("mcp."):
            assert S.parse(t.get("returns")) is not None, t["name"]


def _plan(*steps, answer=""):
    return Plan.from_dict({"steps": list(steps), "answer": answer}, "back up every file")


def test_check_plan_names_the_fields_and_the_tools_that_have_it(registry, tmp_path):
    ws = Workspace.scan(tmp_path)
    plan = _plan({"tool": "files.mkdir", "args": {"path": "backup"}},
                 {"tool": "files.copy", "args": {"source": "$item.name", "destination": "backup/$item.name"},
                  "each": "$step1.output.entries"})
    with pytest.raises(PlanError) as e:
        check_plan(plan, registry, ws)
    msg = e.value.message
    assert e.value.field == "steps[2].each" and "files.mkdir" in msg and "{path, created}" in msg
    assert "files.list" in msg                                           # who has 'entries'
    ok = _plan({"tool": "files.list", "args": {"path": "."}},
               {"tool": "files.copy", "args": {"source": "$item.name", "destination": "backup/$item.name"},
                "each": "$step1.output.entries"})
    check_plan(ok, registry, ws)
    bad_item = _plan({"tool": "files.list", "args": {"path": "."}},
                     {"tool": "files.copy", "args": {"source": "$item.path", "destination": "b/$item.name"},
                      "each": "$step1.output.entries"})
    with pytest.raises(PlanError, match=r"\$item.path: each element has no field 'path'; it has \{name, type, size, modified\}$"):
        check_plan(bad_item, registry, ws)


def test_a_second_miss_is_noted_and_an_answer_template_dropped(registry, tmp_path):
    plan = _plan({"tool": "files.count", "args": {"path": "a.txt"}}, answer="It has $step1.output.rows rows.")
    with pytest.raises(PlanError, match="answer"):
        check_plan(plan, registry, Workspace.scan(tmp_path))
    plan = _plan({"tool": "files.count", "args": {"path": "a.txt"}}, answer="It has $step1.output.rows rows.")
    check_plan(plan, registry, Workspace.scan(tmp_path), strict_fields=False)
    assert plan.answer == "" and any("rows" in n for n in plan.notes)


async def test_the_model_is_told_and_mends_it(registry, tmp_path):
    calls = []
    first = {"steps": [{"tool": "files.count", "args": {"path": "a.txt"}}], "answer": "$step1.output.rows"}
    second = {"steps": [{"tool": "files.count", "args": {"path": "a.txt"}}], "answer": "$step1.output.lines"}

    async def generate(messages, schema, max_tokens, temperature, prefix_messages=0):
        calls.append(messages)
        return json.dumps(first if len(calls) == 1 else second)

    (tmp_path / "a.txt").write_text("x\ny\n")
    plan = await Planner(registry, generate).plan("how many lines in a.txt", Workspace.scan(tmp_path))
    assert plan.answer == "$step1.output.lines" and len(calls) == 2
    assert "has no field 'rows'" in calls[1][-1]["content"] and "lines" in calls[1][-1]["content"]


def test_a_file_replaced_before_anything_read_it(registry, tmp_path):
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "b.csv").write_text("x\n1\n2\n")
    ws = Workspace.scan(tmp_path)
    twice = _plan({"tool": "data.count_rows", "args": {"path": "a.csv", "save_to": "counts.txt"}},
                  {"tool": "data.count_rows", "args": {"path": "b.csv", "save_to": "counts.txt"}})
    with pytest.raises(PlanError, match=r"step 1 already writes counts.txt") as e:
        check_plan(twice, registry, ws)
    assert e.value.field == "steps[2].args.save_to"
    # read in between (or changed in place): fine
    check_plan(_plan({"tool": "data.filter", "args": {"path": "a.csv", "column": "x", "op": ">", "value": 0,
                                                      "save_to": "out.csv"}},
                     {"tool": "data.sort", "args": {"path": "out.csv", "by": "x", "save_to": "out.csv"}}),
               registry, ws)
    per_item = _plan({"tool": "files.list", "args": {"path": ".", "pattern": "*.csv"}},
                     {"tool": "data.count_rows", "args": {"path": "$item.name", "save_to": "n.txt"},
                      "each": "$step1.output.entries"})
    with pytest.raises(PlanError, match="once per element"):
        check_plan(per_item, registry, ws)
    check_plan(_plan({"tool": "files.list", "args": {"path": ".", "pattern": "*.csv"}},
                     {"tool": "data.count_rows", "args": {"path": "$item.name", "save_to": "$item.name.txt"},
                      "each": "$step1.output.entries"}), registry, ws)
