"""data.* tools on pandas: every number computed, columns matched, bad input named."""

from __future__ import annotations

import json

import pytest

from llmos.errors import InvalidArgument, NotFound, PermissionDenied, ToolError

SALES = ("month,region,amount\n2026-01,north,120\n2026-01,south,80\n2026-02,north,150\n"
         "2026-02,south,95\n2026-03,north,140\n2026-03,south,100\n")
LAPTOPS = "name,price,battery_hours\nAlpha,899,9\nBeta,1299,14\nGamma,949,12\nDelta,650,7\n"


@pytest.fixture
def sales(ws):
    (ws / "sales.csv").write_text(SALES)
    (ws / "laptops.csv").write_text(LAPTOPS)
    return ws


def test_load_and_describe(call, sales):
    r = call("data.load", path="sales.csv", rows=2)
    assert r.output["columns"] == ["month", "region", "amount"] and r.output["rows"] == 6
    assert r.output["head"][0] == {"month": "2026-01", "region": "north", "amount": 120}
    d = call("data.describe", path="sales.csv").output["columns"]
    assert d["amount"]["sum"] == 685 and d["amount"]["max"] == 150
    assert d["region"]["unique"] == 2


def test_load_saves_in_another_format(call, sales, ws):
    r = call("data.load", path="sales.csv", save_to="sales.json")
    assert r.output["saved_to"] == "sales.json" and r.files == ["sales.json"]
    rows = json.loads((ws / "sales.json").read_text())
    assert len(rows) == 6 and rows[0] == {"month": "2026-01", "region": "north", "amount": 120}


def test_stat_total_and_row_of_max(call, sales):
    assert call("data.stat", path="sales.csv", column="amount", stat="sum").output["value"] == 685
    assert call("data.stat", path="sales.csv", column="Amount", stat="mean").output["value"] == pytest.approx(114.1666666667)
    r = call("data.stat", path="laptops.csv", column="battery_hours", stat="max",
             where_column="price", where_op="<", where_value=1000)
    assert r.output["value"] == 12 and r.output["row"]["name"] == "Gamma"
    assert "Gamma" in r.summary
    r = call("data.stat", path="sales.csv", column="amount", stat="sum", where_column="region", where_value="NORTH")
    assert r.output["value"] == 410


def test_groupby_finds_the_larger_group(call, sales):
    r = call("data.groupby", path="sales.csv", by="region", column="amount")
    assert r.output["groups"] == [{"region": "north", "amount": 410}, {"region": "south", "amount": 275}]
    assert r.output["largest"] == {"key": "north", "value": 410}
    r = call("data.groupby", path="sales.csv", by="month", column="amount", agg="mean", sort="value")
    assert r.output["groups"][0] == {"month": "2026-02", "amount": 122.5}
    assert call("data.groupby", path="sales.csv", by="region").output["groups"][0] == {"region": "north", "count": 3}


def test_filter_compares_a_column_with_another_column(call, ws):
    (ws / "inv.csv").write_text("item,stock,reorder_level,status\npaper,3,10,low\npens,20,5,ok\nink,0,2,low\n")
    r = call("data.filter", path="inv.csv", column="stock", op="<", value="reorder_level")
    assert [row["item"] for row in r.output["rows"]] == ["paper", "ink"]
    r = call("data.filter", path="inv.csv", column="stock", op="<", value="Reorder Level")
    assert r.output["count"] == 2
    with pytest.raises(InvalidArgument) as ei:
        call("data.filter", path="inv.csv", column="stock", op="<", value="status")
    assert ei.value.field == "value"
    # a text value that the column holds is a value, even when a column has that name
    (ws / "t.csv").write_text("kind,low\nlow,1\nhigh,2\n")
    assert call("data.filter", path="t.csv", column="kind", op="==", value="low").output["count"] == 1


def test_filter_sort_and_save(call, sales, ws):
    r = call("data.filter", path="laptops.csv", column="price", op="<", value=1000,
             sort_by="battery_hours", descending=True, limit=1)
    assert r.output["rows"] == [{"name": "Gamma", "price": 949, "battery_hours": 12}]
    r = call("data.filter", path="sales.csv", column="region", op="==", value="south", save_to="south.json")
    assert r.output["count"] == 3 and r.files == ["south.json"]
    assert [row["amount"] for row in json.loads((ws / "south.json").read_text())] == [80, 95, 100]
    r = call("data.sort", path="laptops.csv", by="price", descending=True, save_to="by_price.csv")
    assert r.output["first"]["name"] == "Beta"
    assert (ws / "by_price.csv").read_text().splitlines()[1].startswith("Beta,")
    r = call("data.filter", path="laptops.csv", column="name", op="contains", value="ph", columns=["name"])
    assert r.output["rows"] == [{"name": "Alpha"}]


def test_compute_column(call, sales, ws):
    r = call("data.compute", path="laptops.csv", name="price_per_hour", expression="price / battery_hours",
             save_to="out.csv")
    assert r.output["rows"][0]["price_per_hour"] == pytest.approx(99.8888888889)
    assert "price_per_hour" in (ws / "out.csv").read_text().splitlines()[0]
    with pytest.raises(InvalidArgument):
        call("data.compute", path="laptops.csv", name="x", expression="__import__('os')")
    with pytest.raises(InvalidArgument, match="unknown name"):
        call("data.compute", path="laptops.csv", name="x", expression="weight * 2")


def test_count_rows_per_file(call, ws):
    (ws / "a.csv").write_text("x\n1\n2\n")
    (ws / "b.csv").write_text("y\n1\n2\n3\n4\n")
    r = call("data.count_rows", path="*.csv", save_to="counts.txt")
    assert r.output["counts"] == {"a.csv": 2, "b.csv": 4} and r.output["total"] == 6
    assert (ws / "counts.txt").read_text() == "a.csv: 2\nb.csv: 4\n"


def test_json_tables_and_write(call, ws):
    (ws / "t.json").write_text(json.dumps([{"k": "a", "v": 1}, {"k": "b", "v": 2}]))
    (ws / "t.jsonl").write_text('{"k": "a", "v": 5}\n{"k": "b", "v": 6}\n')
    assert call("data.stat", path="t.json", column="v", stat="sum").output["value"] == 3
    assert call("data.stat", path="t.jsonl", column="v", stat="sum").output["value"] == 11
    r = call("data.write", path="w.csv", rows=[{"a": 1, "b": "x"}, {"a": 2, "b": None}])
    assert (ws / "w.csv").read_text() == "a,b\n1,x\n2,\n" and r.output["rows"] == 2


def test_data_errors(call, sales, ws):
    with pytest.raises(InvalidArgument) as ei:
        call("data.stat", path="sales.csv", column="amont", stat="sum")
    assert ei.value.field == "column" and "amount" in str(ei.value) and "amount" in ei.value.hint
    with pytest.raises(InvalidArgument):
        call("data.stat", path="sales.csv", column="region", stat="mean")
    with pytest.raises(InvalidArgument) as ei:
        call("data.filter", path="sales.csv", column="amount", op=">", value="lots")
    assert ei.value.field == "value"
    with pytest.raises(InvalidArgument) as ei:
        call("data.filter", path="sales.csv", column="amount", op="~", value=1)
    assert ei.value.field == "op"
    with pytest.raises(NotFound):
        call("data.load", path="nope.csv")
    (ws / "bad.json").write_text("{not json")
    with pytest.raises(ToolError, match="cannot read"):
        call("data.load", path="bad.json")
    with pytest.raises(PermissionDenied):
        call("data.load", path="../sales.csv")
    with pytest.raises(PermissionDenied):
        call("data.sort", path="sales.csv", by="amount", save_to="/tmp/x.csv")


def test_filter_a_yes_no_column_with_a_word(call, ws):
    (ws / "flags.json").write_text('[{"app": "a", "debug": true}, {"app": "b", "debug": false}]')
    assert [r["app"] for r in call("data.filter", path="flags.json", column="debug", op="==",
                                   value="True").output["rows"]] == ["a"]
    assert call("data.filter", path="flags.json", column="debug", op="==", value="no").output["count"] == 1
    with pytest.raises(InvalidArgument) as ei:
        call("data.filter", path="flags.json", column="debug", op="==", value="maybe")
    assert ei.value.field == "value"
