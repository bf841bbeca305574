"""plot.chart: a bar, line, scatter or pie chart of a table, saved as PNG (or SVG/PDF).

Draws x against y, or a group-by aggregate of y per x (sum, mean, count, min, max).
With ``agg`` "auto", repeated x values are summed (bar/line/pie) and the output says so.
matplotlib runs headless (Agg) through the object API, so no global pyplot state is
shared between calls; it loads on first use.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from llmos.errors import InvalidArgument
from llmos.tools.builtin._common import PATH, enum, params, string, write_text
from llmos.tools.builtin.data import col, group, load, num
from llmos.tools.registry import Tool, ToolContext, ToolResult, overwrite_risk
from llmos.types import Risk

if TYPE_CHECKING:
    import pandas as pd

POINTS_OUT_MAX = 500     # most (x, y) values returned in the output
POINTS_PLOT_MAX = 5000   # most points drawn
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def _series(ctx: ToolContext, a: dict) -> tuple[list, list, str, str, str]:
    return series(load(ctx, a["path"]), a)


def series(df: pd.DataFrame, a: dict) -> tuple[list, list, str, str, str]:
    """(x values, y values, x label, y label, aggregation used) of table ``df`` for chart
    arguments ``a`` (x, y, kind, agg); report.write draws its charts with it too."""
    import pandas as pd

    x = col(df, a["x"], "x")
    y = col(df, a["y"], "y") if a.get("y") else None
    agg = a["agg"]
    if agg == "auto":
        repeated = df[x].duplicated().any()
        agg = "count" if y is None else "sum" if repeated and a["kind"] != "scatter" else "none"
    if y is None and agg not in ("count",):
        raise InvalidArgument("y: expected the column to draw (or agg 'count' to count rows per x)",
                              field="y", expected="a column name")
    if agg == "none":
        d = df[[x, y]].dropna()
        xs, ys, ylabel = d[x].tolist(), d[y].tolist(), str(y)
    else:
        g = group(df, x, y, agg)
        xs, ys = g.iloc[:, 0].tolist(), g.iloc[:, 1].tolist()
        ylabel = "count" if agg == "count" else f"{agg} of {y}"
    if a["kind"] != "pie" and not all(isinstance(v, (int, float)) or pd.api.types.is_number(v) for v in ys):
        raise InvalidArgument(f"y: column {y!r} does not hold numbers", field="y", expected="a numeric column")
    if len(xs) > POINTS_PLOT_MAX:
        raise InvalidArgument(f"{len(xs)} points are too many to draw", field="agg",
                              expected=f"at most {POINTS_PLOT_MAX} points (aggregate with agg)")
    return [num(v) for v in xs], [num(v) for v in ys], str(x), ylabel, agg


def _draw(xs: list, ys: list, kind: str, xlabel: str, ylabel: str, title: str, fmt: str) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.subplots()
    labels = [str(v) for v in xs]
    if kind == "bar":
        ax.bar(labels, ys)
    elif kind == "line":
        ax.plot(labels if not all(isinstance(v, (int, float)) for v in xs) else xs, ys, marker="o")
    elif kind == "scatter":
        ax.scatter(xs if all(isinstance(v, (int, float)) for v in xs) else labels, ys)
    else:
        ax.pie(ys, labels=labels, autopct="%1.1f%%")
        ax.axis("equal")
    if kind != "pie":
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if len(labels) > 6:
            ax.tick_params(axis="x", labelrotation=45)
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    return buf.getvalue()


def plot_chart(ctx: ToolContext, a: dict) -> ToolResult:
    save_to = a["save_to"]
    dest = ctx.resolve(save_to, "w", field="save_to")
    if dest.suffix.lower() not in FORMATS:
        dest = dest.with_name(dest.name + ".png")
        ctx.resolve(str(dest), "w", field="save_to")
    xs, ys, xlabel, ylabel, agg = _series(ctx, a)
    title = a.get("title") or (f"{ylabel} by {xlabel}" if a["kind"] != "scatter" else f"{ylabel} vs {xlabel}")
    data = _draw(xs, ys, a["kind"], xlabel, ylabel, title, FORMATS[dest.suffix.lower()])
    write_text(dest, data)
    rel = ctx.rel(dest)
    out: dict[str, Any] = {"file": rel, "kind": a["kind"], "agg": agg, "points": len(xs),
                           "x": xs[:POINTS_OUT_MAX], "y": ys[:POINTS_OUT_MAX], "title": title}
    if a["agg"] == "auto" and agg == "sum":
        out["note"] = f"{xlabel} repeats, so {a.get('y')} was summed per {xlabel}"
    summary = f"saved a {a['kind']} chart of {ylabel} by {xlabel} ({len(xs)} points) to {rel}"
    return ToolResult(out, summary, [rel])


TOOLS = [
    Tool(name="plot.chart", returns="{file, kind, agg, points, x, y, title, note}", kind="plot", risk=Risk.WRITE, fn=plot_chart, risk_fn=overwrite_risk("save_to"),
         path_args={"path": "r", "save_to": "w"},
         description="Draw a bar, line, scatter or pie chart from a table file and save it as a PNG image; "
                     "it can total (sum) or average a column per x value first.",
         parameters=params(["path", "x"],
                           path={**PATH, "description": "table file (.csv, .tsv, .json or .jsonl)"},
                           x=string("column for the x axis (or the pie's labels)", 200, min_length=1),
                           y=string("column with the values to draw", 200),
                           kind=enum("chart type", ["bar", "line", "scatter", "pie"], "bar"),
                           agg=enum("combine rows with the same x first: auto sums repeats",
                                    ["auto", "none", "sum", "mean", "count", "min", "max"], "auto"),
                           save_to={**PATH, "description": "image file to write, like chart.png",
                                    "default": "chart.png"},
                           title=string("optional chart title", 200))),
]
