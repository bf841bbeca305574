"""report.write: a Markdown report with an HTML twin and its charts as PNGs beside it.

A report is a title, a summary in words (given, often an earlier ``llm`` step's text, and
a line of key figures computed here from the table), text sections, one table (a table
file, or rows from an earlier step such as data.groupby's groups) and charts of that table
drawn by plot.chart's code. ``report.md`` gets ``report.html`` and ``report_chart1.png``…
in the same folder; images are linked by file name, so the folder can move as a whole.

Everything is computed and drawn before the first file is written, so a bad column
leaves no half-written report. The HTML is rendered from the Markdown by markdown-it
with raw HTML off: text from a file or a model is shown, never run.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos.errors import InvalidArgument
from llmos.tools.builtin._common import PATH, enum, integer, params, string, write_text
from llmos.tools.builtin.data import WRITE_ROWS_MAX, load, num
from llmos.tools.builtin.decide import fmt_number
from llmos.tools.builtin.plot import _draw, series
from llmos.tools.registry import Tool, ToolContext, ToolResult
from llmos.types import Risk

if TYPE_CHECKING:
    import pandas as pd

TEXT_MAX_CHARS = 8000        # longest summary or section text
SECTIONS_MAX = 10
CHARTS_MAX = 4
CELL_MAX_CHARS = 80          # a longer table cell is cut
_MD_SUFFIXES = (".md", ".markdown")
_CSS = ("body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.5}"
        "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.25rem .6rem}"
        "td{text-align:right}td:first-child{text-align:left}img{max-width:100%}")


# ── paths ───────────────────────────────────────────────────────────────────
def targets(ctx: ToolContext, a: dict) -> tuple[Path, Path, list[Path]]:
    """(markdown, html, chart PNGs) the call writes, all checked for writing."""
    md = ctx.resolve(a["path"], "w", field="path")
    if md.suffix.lower() not in _MD_SUFFIXES:
        md = ctx.resolve(str(md.with_suffix(".md")), "w", field="path")
    page = ctx.resolve(str(md.with_suffix(".html")), "w", field="path")
    pngs = [ctx.resolve(str(md.with_name(f"{md.stem}_chart{i}.png")), "w", field="path")
            for i in range(1, len(a.get("charts") or []) + 1)]
    return md, page, pngs


def report_risk(args: dict, ctx: ToolContext) -> Risk:
    """DESTRUCTIVE when any file the report writes (markdown, HTML, charts) exists."""
    md, page, pngs = targets(ctx, args)
    return Risk.DESTRUCTIVE if any(p.exists() or p.is_symlink() for p in (md, page, *pngs)) else Risk.WRITE


report_risk.overwrites = ("path",)    # type: ignore[attr-defined]  # read by the planner's checks


# ── content ─────────────────────────────────────────────────────────────────
def _cell(v: Any) -> str:
    v = num(v)
    if v is None:
        return ""
    if isinstance(v, float):
        text = fmt_number(v)
    elif isinstance(v, dict):
        text = ", ".join(f"{k}: {_cell(x)}" for k, x in v.items())
    elif isinstance(v, list):
        text = ", ".join(_cell(x) for x in v)
    else:
        text = str(v)
    text = " ".join(text.split()).replace("\\", "\\\\").replace("|", "\\|")
    return text if len(text) <= CELL_MAX_CHARS else text[: CELL_MAX_CHARS - 1] + "…"


def markdown_table(df: pd.DataFrame, max_rows: int) -> list[str]:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(_cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in df.head(max_rows).itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    if len(df) > max_rows:
        lines += ["", f"_The first {max_rows} of {len(df)} rows._"]
    return lines


def key_figures(df: pd.DataFrame, drawn: list[pd.DataFrame]) -> str:
    """Figures in words, computed here: the table's size and, for the first chart's values
    (or the table's one numeric column beside a text column), the total, the largest and
    the smallest. Nothing is said of a column the report does not single out."""
    import pandas as pd

    text = f"The table has {len(df)} row{'s' if len(df) != 1 else ''}."
    nums = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    labels = [c for c in df.columns if c not in nums]
    if drawn and pd.api.types.is_numeric_dtype(drawn[0].iloc[:, 1]):
        t, key, val = drawn[0], drawn[0].columns[0], drawn[0].columns[1]
    elif len(nums) == 1 and labels:
        t, key, val = df, labels[0], nums[0]
    else:
        return text
    s = t[val]
    if not s.count():
        return text
    hi, lo = t.loc[s.idxmax()], t.loc[s.idxmin()]
    return (text + f" {val} by {key}: total {_cell(s.sum())}; largest {_cell(hi[key])} ({_cell(hi[val])}), "
            f"smallest {_cell(lo[key])} ({_cell(lo[val])}).")


def _table(ctx: ToolContext, a: dict) -> tuple[pd.DataFrame | None, str]:
    import pandas as pd

    if a.get("table") and a.get("rows"):
        raise InvalidArgument("rows: give a table file or rows, not both", field="rows",
                              expected="table or rows")
    if a.get("table"):
        return load(ctx, a["table"], "table"), a["table"]
    if a.get("rows"):
        rows = a["rows"]
        if not all(isinstance(r, dict) for r in rows):
            raise InvalidArgument("rows: expected a list of records (like $step1.output.groups)", field="rows",
                                  expected="a list of objects")
        return pd.DataFrame(rows), ""
    return None, ""


def build(ctx: ToolContext, a: dict, pngs: list[Path]) -> tuple[str, list[bytes], list[str]]:
    """(markdown text, chart images, chart titles)."""
    df, source = _table(ctx, a)
    if a.get("charts") and df is None:
        raise InvalidArgument("charts: a chart needs the table to draw from (table or rows)", field="charts",
                              expected="a table file or rows")
    import pandas as pd

    images, titles, drawn = [], [], []          # drawn: the values each chart shows, as a table
    for i, ch in enumerate(a.get("charts") or []):
        spec = {"x": ch["x"], "y": ch.get("y"), "kind": ch.get("kind", "bar"), "agg": ch.get("agg", "auto")}
        try:
            xs, ys, xl, yl, _ = series(df, spec)
        except InvalidArgument as e:
            raise InvalidArgument(f"charts[{i}].{e.field}: {e.message.split(': ', 1)[-1]}",
                                  field=f"charts[{i}].{e.field}", expected=e.expected) from None
        title = ch.get("title") or (f"{yl} by {xl}" if spec["kind"] != "scatter" else f"{yl} vs {xl}")
        images.append(_draw(xs, ys, spec["kind"], xl, yl, title, "png"))
        titles.append(title)
        drawn.append(pd.DataFrame({xl: xs, yl: ys}))
    lines = [f"# {' '.join(a['title'].split())}", ""]
    when = dt.datetime.fromtimestamp(ctx.clock.time()).strftime("%Y-%m-%d %H:%M")
    lines += [f"_Written {when}" + (f" from {_cell(source)}" if source else "") + "._", ""]
    summary = (a.get("summary") or "").strip()
    figures = key_figures(df, drawn) if df is not None else ""
    if summary or figures:
        lines += ["## Summary", ""]
        if summary:
            lines += [summary, ""]
        if figures:
            lines += [figures, ""]
    for s in a.get("sections") or []:
        lines += [f"## {' '.join(s['heading'].split())}", ""]
        if (s.get("text") or "").strip():
            lines += [s["text"].strip(), ""]
    if df is not None:
        lines += [f"## {' '.join((a.get('table_title') or 'Data').split())}", ""]
        lines += markdown_table(df, a["max_rows"]) + [""]
    for title, png, values in zip(titles, pngs, drawn, strict=True):
        lines += [f"### {title}", "", f"![{_cell(title)}]({png.name})", ""]
        if len(values) <= a["max_rows"]:
            lines += markdown_table(values, a["max_rows"]) + [""]
    return "\n".join(lines), images, titles


def to_html(md: str, title: str) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(md)
    return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(' '.join(title.split()))}</title>\n<style>{_CSS}</style>\n</head>\n"
            f"<body>\n{body}</body>\n</html>\n")


def report_write(ctx: ToolContext, a: dict) -> ToolResult:
    md_path, html_path, pngs = targets(ctx, a)
    text, images, titles = build(ctx, a, pngs)
    page = to_html(text, a["title"])
    for png, data in zip(pngs, images, strict=True):
        write_text(png, data)
    write_text(md_path, text)
    write_text(html_path, page)
    files = [ctx.rel(md_path), ctx.rel(html_path)] + [ctx.rel(p) for p in pngs]
    out = {"path": files[0], "html": files[1], "charts": files[2:], "sections": text.count("\n## "),
           "words": len(text.split())}
    summary = f"wrote the report {files[0]} and {files[1]}" + (
        f" with {len(pngs)} chart{'s' if len(pngs) != 1 else ''}" if pngs else "")
    return ToolResult(out, summary, files)


# ── schema ──────────────────────────────────────────────────────────────────
_SCALAR = ["string", "number", "boolean", "null"]
_BOUNDS = {"maxLength": 10_000, "minimum": -1e15, "maximum": 1e15}
_CELL = {"type": _SCALAR, **_BOUNDS}
# a cell may hold a record or list two levels deep (data.rank's criteria), shown as text
_NESTED = {"type": [*_SCALAR, "object"], **_BOUNDS, "additionalProperties": _CELL}
_ROW = {"type": "object", "additionalProperties": {"type": [*_SCALAR, "object", "array"], **_BOUNDS,
                                                   "additionalProperties": _NESTED, "items": _CELL, "maxItems": 100}}
_CHART = params(["x"], x=string("column for the x axis (or the pie's labels)", 200, min_length=1),
                y=string("column with the values to draw", 200),
                kind=enum("chart type", ["bar", "line", "scatter", "pie"], "bar"),
                agg=enum("combine rows with the same x first: auto sums repeats",
                         ["auto", "none", "sum", "mean", "count", "min", "max"], "auto"),
                title=string("optional chart title", 200))
_SECTION = params(["heading"], heading=string("section heading", 200, min_length=1),
                  text=string("the section's text (Markdown)", TEXT_MAX_CHARS))

TOOLS = [
    Tool(name="report.write", kind="report", risk=Risk.WRITE, fn=report_write, path_args={"path": "w", "table": "r"},
         risk_fn=report_risk, returns="{path, html, charts, sections, words}",
         description="Write a Markdown report and an HTML copy: title, summary, sections [{heading, text}], a "
                     "table (a file or an earlier step's rows) and its charts [{x, y, kind}] as PNGs beside it.",
         parameters=params(["path", "title"],
                           path={**PATH, "description": "the report file to write, like report.md"},
                           title=string("the report's title", 200, min_length=1),
                           summary=string("the summary in words (e.g. an llm step's $stepN.output)", TEXT_MAX_CHARS),
                           sections={"type": "array", "items": _SECTION, "maxItems": SECTIONS_MAX,
                                     "description": "more text sections, each with a heading"},
                           table={**PATH, "description": "optional table file to show and chart"},
                           rows={"type": "array", "items": _ROW, "maxItems": WRITE_ROWS_MAX,
                                 "description": "or rows from an earlier step, like $step1.output.groups"},
                           table_title=string("heading above the table", 200),
                           charts={"type": "array", "items": _CHART, "maxItems": CHARTS_MAX,
                                   "description": "charts of the table, each saved as a PNG beside the report"},
                           max_rows=integer("most table rows shown", 1, 500, 30))),
]

__all__ = ["TOOLS", "report_write", "to_html", "markdown_table", "key_figures"]
