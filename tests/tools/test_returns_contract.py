"""Every builtin tool's ``returns`` line is a contract the planner checks references
against (``shell/shapes.py``): each tool is run here on a small workspace and what it
really returns must fit the shape it declares — no undeclared field at the top level or
in list elements, and every declared field present."""

from __future__ import annotations

import dataclasses

import pytest

from llmos.shell import shapes as S

SETUP = {"a.txt": "one\ntwo 2\ntwo 2\nthree 3\n", "sales.csv": "region,amount\nnorth,10\nsouth,5\nnorth,7\n",
         "todo.txt": "- [ ] call bob\n", "prog.py": "print('hi')\n"}

CALLS = {
    "calc.eval": {"expression": "2 + 3"},
    "calendar.add": {"title": "dentist", "date": "2026-03-05", "time": "10:00"},
    "calendar.list": {},
    "data.compute": {"path": "sales.csv", "name": "double", "expression": "amount * 2"},
    "data.count_rows": {"path": "sales.csv"},
    "data.describe": {"path": "sales.csv"},
    "data.filter": {"path": "sales.csv", "column": "amount", "op": ">", "value": 6},
    "data.groupby": {"path": "sales.csv", "by": "region", "column": "amount"},
    "data.load": {"path": "sales.csv"},
    "data.rank": {"path": "sales.csv", "criteria": [{"column": "amount"}],
                  "where": [{"column": "amount", "op": ">", "value": 5}]},
    "data.sort": {"path": "sales.csv", "by": "amount"},
    "data.stat": {"path": "sales.csv", "column": "amount", "stat": "max"},
    "data.write": {"path": "out.csv", "rows": [{"a": 1}]},
    "files.append": {"path": "a.txt", "content": "four\n"},
    "files.copy": {"source": "a.txt", "destination": "b.txt"},
    "files.count": {"path": "a.txt"},
    "files.delete": {"path": "b.txt"},
    "files.list": {"path": "."},
    "files.mkdir": {"path": "sub"},
    "files.move": {"source": "a.txt", "destination": "moved.txt"},
    "files.read": {"path": "a.txt"},
    "files.search": {"text": "two"},
    "files.write": {"path": "c.txt", "content": "x"},
    "plot.chart": {"path": "sales.csv", "x": "region", "y": "amount", "save_to": "chart.png"},
    "python.run": {"code": "print(1)"},
    "report.write": {"path": "rep.md", "title": "Sales", "table": "sales.csv",
                     "charts": [{"x": "region", "y": "amount"}]},
    "python.run_file": {"path": "prog.py"},
    "shell.run": {"command": "echo hi"},
    "tasks.choose": {"tasks": [{"name": "a", "p": 0.5, "time": 1}, {"name": "b", "p": 0.9, "time": 2}],
                     "time_limit": 2},
    "text.extract": {"path": "a.txt", "what": "number"},
    "text.numbers": {"path": "a.txt"},
    "text.replace": {"path": "a.txt", "find": "one", "replace": "uno"},
    "text.sort": {"path": "a.txt"},
    "text.unique": {"path": "a.txt"},
    "timer.set": {"message": "stretch", "delay": "5 minutes"},
    "todo.add": {"item": "buy milk"},
    "todo.done": {"item": "call bob"},
    "todo.list": {},
}
NOT_RUN = {"net.fetch": "needs the network"}


def _fits(value, shape: S.Shape, where: str) -> list[str]:
    if shape.kind == "any":
        return []
    if shape.kind == "list":
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        return [e for v in value[:3] for e in _fits(v, shape.item or S.ANY, where + "[]")]
    if not isinstance(value, dict):
        return [f"{where}: expected a record, got {type(value).__name__}"]
    declared = {k for k, _ in shape.fields}
    bad = [f"{where}.{k}: returned but not declared" for k in value if k not in declared and not shape.open]
    bad += [f"{where}.{k}: declared but not returned" for k in declared if k not in value]
    for k, sub in shape.fields:
        if k in value:
            bad += _fits(value[k], sub, f"{where}.{k}")
    return bad


def test_every_builtin_tool_is_covered(reg):
    names = {t["name"] for t in reg.schemas() if not t["name"].startswith("mcp.")}
    assert names == set(CALLS) | set(NOT_RUN)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_output_fits_declared_shape(name, reg, ws, xctx):
    for f, text in SETUP.items():
        (ws / f).write_text(text)
    shape = S.parse(reg.get(name).returns)
    assert shape is not None, f"{name}: returns {reg.get(name).returns!r} is not a record shape"
    ctx = dataclasses.replace(xctx, set_timer=lambda s, m: {"due": s, "message": m})
    out = reg.call(name, CALLS[name], ctx).output
    assert _fits(out, shape, name) == [], out
