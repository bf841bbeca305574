"""plot.chart: PNG files from tables, with the plotted numbers in the output."""

from __future__ import annotations

import pytest

from llmos.errors import InvalidArgument, PermissionDenied
from llmos.types import Risk

PNG = b"\x89PNG\r\n\x1a\n"
SALES = "month,region,amount\n2026-01,north,120\n2026-01,south,80\n2026-02,north,150\n2026-02,south,95\n"


@pytest.fixture
def sales(ws):
    (ws / "sales.csv").write_text(SALES)
    return ws


def test_total_per_month_bar_chart(call, sales, ws):
    r = call("plot.chart", path="sales.csv", x="month", y="amount", save_to="sales.png")
    assert (ws / "sales.png").read_bytes()[:8] == PNG
    assert r.output["x"] == ["2026-01", "2026-02"] and r.output["y"] == [200, 245]
    assert r.output["agg"] == "sum" and "summed" in r.output["note"]
    assert r.files == ["sales.png"]


@pytest.mark.parametrize("kind", ["line", "scatter", "pie"])
def test_other_kinds(call, sales, ws, kind):
    r = call("plot.chart", path="sales.csv", x="region", y="amount", kind=kind, agg="mean",
             save_to=f"{kind}.png")
    assert (ws / f"{kind}.png").read_bytes()[:8] == PNG
    assert r.output["y"] == [135, 87.5]


def test_count_and_svg_and_default_name(call, sales, ws):
    r = call("plot.chart", path="sales.csv", x="region", save_to="c.svg")
    assert r.output["y"] == [2, 2] and (ws / "c.svg").read_text().lstrip().startswith("<?xml")
    call("plot.chart", path="sales.csv", x="region", y="amount")
    assert (ws / "chart.png").exists()
    call("plot.chart", path="sales.csv", x="region", y="amount", save_to="noext")
    assert (ws / "noext.png").exists()


def test_plot_errors(reg, call, ctx, sales, ws):
    with pytest.raises(InvalidArgument):
        call("plot.chart", path="sales.csv", x="month", y="region", agg="none")
    with pytest.raises(InvalidArgument) as ei:
        call("plot.chart", path="sales.csv", x="mnth", y="amount")
    assert ei.value.field == "x"
    with pytest.raises(PermissionDenied):
        call("plot.chart", path="sales.csv", x="month", y="amount", save_to="../out.png")
    (ws / "old.png").write_bytes(PNG)
    assert reg.get("plot.chart").risk_for({"path": "sales.csv", "x": "m", "save_to": "old.png"}, ctx) \
        == Risk.DESTRUCTIVE
