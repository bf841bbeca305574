"""report.write: Markdown + HTML + PNG charts beside it, relative links, paths confined
to the workspace, nothing written when the report cannot be made."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest

from llmos.errors import InvalidArgument, PermissionDenied
from llmos.shell.plan import Plan
from llmos.shell.planner import Planner, check_plan
from llmos.tools.builtin.report import report_risk
from llmos.types import Risk

SALES = "region,amount\nnorth,10\nsouth,5\nnorth,7\neast,12\n"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def sales(ws):
    (ws / "sales.csv").write_text(SALES)
    return "sales.csv"


def test_writes_markdown_html_and_charts_beside_it(call, ws, sales):
    r = call("report.write", path="out/sales.md", title="Sales by region", table=sales,
             summary="North leads.\n\n- two regions grew", sections=[{"heading": "Method", "text": "Sums per region."}],
             charts=[{"x": "region", "y": "amount"}, {"x": "region", "y": "amount", "kind": "pie", "title": "Share"}])
    assert r.files == ["out/sales.md", "out/sales.html", "out/sales_chart1.png", "out/sales_chart2.png"]
    assert r.output == {"path": "out/sales.md", "html": "out/sales.html",
                        "charts": ["out/sales_chart1.png", "out/sales_chart2.png"], "sections": 3,
                        "words": r.output["words"]}
    md = (ws / "out/sales.md").read_text()
    page = (ws / "out/sales.html").read_text()
    for f in ("sales_chart1.png", "sales_chart2.png"):
        assert (ws / "out" / f).read_bytes().startswith(PNG)
        assert f"]({f})" in md and f'src="{f}"' in page          # linked relative to the report
    assert md.startswith("# Sales by region\n\n_Written 2026-03-04 10:00 from sales.csv._")
    assert "## Summary\n\nNorth leads." in md and "## Method\n\nSums per region." in md
    assert ("The table has 4 rows. sum of amount by region: total 34; largest north (17), smallest south (5)."
            in md)
    assert "| region | amount |\n|---|---|\n| north | 10 |" in md and "### Share" in md
    # under each chart, the numbers it draws (repeated regions summed)
    assert "| region | sum of amount |\n|---|---|\n| east | 12 |\n| north | 17 |\n| south | 5 |" in md
    assert "<h1>Sales by region</h1>" in page and "<table>" in page and "<li>two regions grew</li>" in page


def test_rows_from_an_earlier_step_and_a_summary_that_holds_html(call, ws, sales):
    groups = call("data.groupby", path=sales, by="region", column="amount").output["groups"]
    r = call("report.write", path="r", title="Totals <b>", rows=groups, table_title="Total per region",
             summary="<script>alert(1)</script> done", charts=[{"x": "region", "y": "amount"}])
    assert r.files == ["r.md", "r.html", "r_chart1.png"]            # a path without a suffix gets .md
    md, page = (ws / "r.md").read_text(), (ws / "r.html").read_text()
    assert "## Total per region" in md and "| north | 17 |" in md and "amount by region: total 34; largest north (17)" in md
    assert "<script>" not in page and "&lt;script&gt;" in page and "<title>Totals &lt;b&gt;</title>" in page


def test_long_tables_are_cut_cells_escaped_and_numbers_plain(call, ws):
    (ws / "big.csv").write_text("k,v\n" + "".join(f"a|{i},{i + 1234567.25}\n" for i in range(40)))
    call("report.write", path="big.md", title="Big", table="big.csv", max_rows=5)
    md = (ws / "big.md").read_text()
    assert "_The first 5 of 40 rows._" in md and "| a\\|0 | 1234567.25 |" in md and "a\\|5" not in md


def test_paths_stay_in_the_workspace(call, ws, sales, tmp_path):
    with pytest.raises(PermissionDenied):
        call("report.write", path="../escape.md", title="x", table=sales)
    with pytest.raises(PermissionDenied):
        call("report.write", path="ok.md", title="x", table="../outside.csv")
    (tmp_path / "target.html").write_text("keep")
    (ws / "link.html").symlink_to(tmp_path / "target.html")      # the HTML twin would leave the workspace
    with pytest.raises(PermissionDenied):
        call("report.write", path="link.md", title="x", table=sales)
    assert (tmp_path / "target.html").read_text() == "keep" and not (ws / "link.md").exists()
    assert not (tmp_path / "escape.md").exists() and not (ws / "ok.md").exists()


def test_a_bad_chart_writes_nothing(call, ws, sales):
    with pytest.raises(InvalidArgument) as e:
        call("report.write", path="r.md", title="x", table=sales, charts=[{"x": "region", "y": "profit"}])
    assert e.value.field == "charts[0].y" and "'profit'" in str(e.value)
    with pytest.raises(InvalidArgument) as e:
        call("report.write", path="r.md", title="x", charts=[{"x": "region"}])
    assert e.value.field == "charts"
    with pytest.raises(InvalidArgument):
        call("report.write", path="r.md", title="x", table=sales, rows=[{"a": 1}])
    assert sorted(p.name for p in ws.iterdir()) == ["sales.csv"]


def test_risk_and_declared_paths(reg, ctx, ws, sales):
    tool = reg.get("report.write")
    assert dict(tool.path_args) == {"path": "w", "table": "r"}
    args = {"path": "r.md", "title": "x", "charts": [{"x": "region"}]}
    assert report_risk(args, ctx) == Risk.WRITE
    (ws / "r_chart1.png").write_bytes(PNG)                        # replacing a chart is destructive too
    assert tool.risk_for(args, ctx) == Risk.DESTRUCTIVE
    assert tool.risk_for({"path": "other.md", "title": "x"}, ctx) == Risk.WRITE


@pytest.mark.parametrize("name", ["decide.json", "report.json"])
def test_the_worked_examples_fit_the_schema_and_check(reg, name):
    planner = Planner(reg, lambda *a, **k: None)
    raw = json.loads(resources.files("llmos.shell").joinpath(f"examples/{name}").read_text())
    assert len(raw) == 1 and len(json.dumps(raw)) < 900            # the fixed prompt prefix stays short
    for e in raw:
        jsonschema.validate(e["plan"], planner.schema)
        plan = Plan.from_dict(e["plan"], e["request"])
        check_plan(plan, reg)
        assert plan.answer and not plan.notes


def test_a_ranking_as_rows(call, ws):
    (ws / "f.csv").write_text("flat,rent\nAsh,900\nBirch,700\n")
    ranked = call("data.rank", path="f.csv", criteria=[{"column": "rent", "goal": "min"}]).output["ranked"]
    call("report.write", path="pick.md", title="Which flat", rows=ranked, summary="Birch is cheaper.")
    md = (ws / "pick.md").read_text()
    assert "| 1 | Birch | 100 |" in md and "rent: value: 700" in md
    assert "The table has 2 rows.\n" in md                     # no figures of a column it does not single out
