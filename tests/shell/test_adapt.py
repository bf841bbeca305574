"""Case-based adaptation: role narrowing, fit of an example's plan, reference adaptation."""

from __future__ import annotations

from llmos.shell.adapt import adapt_refs, fit, role_overrides
from llmos.shell.examples import load_library
from llmos.shell.extract import extract
from llmos.shell.plan import Plan


def test_role_overrides_follow_the_example():
    ex = extract("rename report.txt to summary.txt", files={"report.txt": "x"})
    new = extract("rename draft.md to final.md", files={"draft.md": "x", "other.md": "y"})
    o = role_overrides({"source": "report.txt", "destination": "summary.txt"}, ex, new)
    # the source existed in the example, the destination was new: each keeps to its kind
    assert o == {"source": {"enum": ["draft.md"]}, "destination": {"enum": ["final.md"]}}
    new = extract("rename draft.md to other.md", files={"draft.md": "x", "other.md": "y"})
    o = role_overrides({"source": "report.txt", "destination": "summary.txt"}, ex, new)
    assert o["destination"] == {"enum": ["draft.md", "other.md"]}    # no new file named: both stay
    ex = extract("sort scores.txt from largest to smallest", files={})
    new = extract("sort n.txt from smallest to largest", files={})
    assert role_overrides({"descending": True}, ex, new) == {"descending": {"const": False}}
    ex = extract("phones under 300 dollars", files={})
    new = extract("laptops under 1000 dollars", files={})
    assert role_overrides({"value": 300, "limit": 1}, ex, new) == {"value": {"enum": [1000]}}


def test_typed_columns_cells_and_spans():
    ex = extract("which team scored the most goals in total in matches.csv?",
                 files={"matches.csv": "week,team,goals\n1,red,2\n"})
    new = extract("in spend.csv, which category did I spend the most on?",
                  files={"spend.csv": "date,category,cost\n2026-01-01,food,3\n"})
    o = role_overrides({"by": "team", "column": "goals"}, ex, new)
    assert o["by"] == {"enum": ["category"]} and o["column"] == {"enum": ["cost"]}   # text / numbers
    ex = extract("keep only the clients.csv rows whose city is paris", files={"clients.csv": "name,city\nlea,paris\n"})
    new = extract("rows of staff.csv where dept is sales", files={"staff.csv": "name,dept\nkim,sales\nlou,eng\n"})
    o = role_overrides({"column": "city", "value": "paris"}, ex, new)
    assert o == {"column": {"enum": ["dept"]}, "value": {"enum": ["sales"]}}
    ex = extract("remind me in 20 minutes to take the bread out", files={})
    new = extract("in 3 seconds remind me to drink water", files={})
    o = role_overrides({"message": "take the bread out"}, ex, new, {"message": {"type": "string"}})
    assert "drink water" in o["message"]["enum"]


def test_fit_prefers_plans_whose_facts_the_request_has():
    lib = {e.id: e for e in load_library()}
    f = extract("compute (12 + 8) * 7", files={})
    assert fit(lib["workflow-stat-write"], f) < fit(lib["calc-mul-sub"], f)     # no table to total
    q = extract("what is on my todo list in todo.txt?", files={"todo.txt": "- a\n"})
    assert fit(lib["assistant-todo-add-file"], q, writes=True) < fit(lib["assistant-todo-list"], q)


def test_references_follow_the_request():
    f = extract("which store has the lowest total revenue in r.csv?", files={"r.csv": "store,revenue\na,3\n"})
    p = Plan.from_dict({"steps": [{"tool": "data.groupby", "args": {"path": "r.csv", "by": "store"}, "why": ""}],
                        "answer": "$step1.output.largest.key has the highest total ($step1.output.largest.value)."})
    adapt_refs(p, f)
    assert p.answer == "$step1.output.smallest.key has the lowest total ($step1.output.smallest.value)."
    f = extract("find the largest number in v.txt and write it to m.txt", files={"v.txt": "1\n"})
    p = Plan.from_dict({"steps": [{"tool": "text.numbers", "args": {"path": "v.txt"}, "why": ""},
                                  {"tool": "files.write", "args": {"path": "m.txt", "content": "$step1.output.sum"},
                                   "why": ""}], "answer": "Saved $step1.output.sum."})
    adapt_refs(p, f)
    assert p.steps[1].args["content"] == "$step1.output.max" and p.answer == "Saved $step1.output.max."
    f = extract("which supplier in s.csv has the best rating?", files={"s.csv": "supplier,rating\nacme,3\n"})
    p = Plan.from_dict({"steps": [{"tool": "data.sort", "args": {"path": "s.csv", "by": "rating"}, "why": ""}],
                        "answer": "Pick $step1.output.first.car: it rates $step1.output.first.rating."})
    adapt_refs(p, f)
    assert p.answer == "Pick $step1.output.first.supplier: it rates $step1.output.first.rating."


def test_the_workspace_stays_the_workspace():
    ex = extract("which of these files talk about the budget?", files={"memo.txt": "x"})
    new = extract("which file mentions the word invoice?", files={"a.txt": "x", "b.txt": "y"})
    o = role_overrides({"text": "budget", "path": "."}, ex, new, {"text": {"type": "string"}, "path": {}})
    assert o == {"text": {"enum": ["invoice"]}, "path": {"enum": ["."]}}
