"""Table tools on pandas: load, describe, filter, sort, group-by, stat, compute, count, write.

Tables are CSV, TSV, JSON (records or columns) or JSON lines, chosen by suffix. Column
names are matched ignoring case, spaces and underscores, with a clear error listing the
columns. Every number in an output is computed here; outputs carry at most
``ROWS_OUT_MAX`` rows (``save_to`` writes the whole result). pandas loads on first use.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos.errors import InvalidArgument, NotFound, ToolError
from llmos.tools.builtin._common import (
    PATH,
    SAVE_TO,
    boolean,
    enum,
    expand,
    integer,
    open_read,
    params,
    string,
    write_text,
)
from llmos.tools.builtin._expr import evaluate
from llmos.tools.registry import Tool, ToolContext, ToolResult, overwrite_risk
from llmos.types import Risk

if TYPE_CHECKING:
    import pandas as pd

DATA_FILE_MAX_BYTES = 64 << 20   # largest table file a tool will load
ROWS_OUT_MAX = 500               # most rows returned in a tool's output
WRITE_ROWS_MAX = 10_000          # most rows data.write accepts
OPS = ["==", "!=", "<", "<=", ">", ">=", "contains", "startswith", "endswith"]
AGGS = ["sum", "mean", "count", "min", "max", "median"]
STATS = ["sum", "mean", "min", "max", "median", "count", "std", "unique"]


# ── loading, columns, values ────────────────────────────────────────────────
def load(ctx: ToolContext, path: str, field: str = "path") -> pd.DataFrame:
    import pandas as pd

    p = ctx.resolve(path, "r", field=field)
    if not p.is_file():
        raise NotFound(f"no such file: {path}", hint="files.list shows what is here")
    if p.stat().st_size > DATA_FILE_MAX_BYTES:
        raise InvalidArgument(f"{path} is larger than {DATA_FILE_MAX_BYTES >> 20} MB", field=field,
                              expected="a smaller table")
    suffix = p.suffix.lower()
    try:
        with open_read(p) as f:            # under the root's handle: no swapped-in link
            if suffix in (".jsonl", ".ndjson"):
                return pd.read_json(f, lines=True)
            if suffix == ".json":
                obj = json.loads(f.read().decode("utf-8"))
                if isinstance(obj, dict) and not all(isinstance(v, list) for v in obj.values()):
                    obj = [obj]
                return pd.DataFrame(obj)
            if suffix in (".tsv", ".tab"):
                return pd.read_csv(f, sep="\t")
            if suffix == ".csv":
                return pd.read_csv(f, skipinitialspace=True)
            return pd.read_csv(f, sep=None, engine="python", skipinitialspace=True)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ToolError(f"cannot read {path} as a table: {str(exc).splitlines()[0]}",
                        hint="tables are CSV, TSV, JSON or JSON lines") from exc


def _key(name: str) -> str:
    return str(name).strip().lower().replace("_", "").replace(" ", "").replace("-", "")


def col(df: pd.DataFrame, name: str, field: str = "column") -> str:
    """The real column name for ``name`` (case, spaces and underscores ignored)."""
    if name in df.columns:
        return name
    by_key = {_key(c): c for c in df.columns}
    if _key(name) in by_key:
        return by_key[_key(name)]
    cols = [str(c) for c in df.columns]
    close = difflib.get_close_matches(name, cols, n=1)
    raise InvalidArgument(f"{field}: no column {name!r}; the columns are {', '.join(cols)}",
                          field=field, expected="one of " + ", ".join(cols),
                          hint=f"did you mean {close[0]!r}?" if close else None)


def num(x: Any) -> Any:
    """A pandas/numpy scalar as plain JSON: integral floats become ints, NaN None."""
    if hasattr(x, "item"):
        x = x.item()
    if isinstance(x, float):
        if x != x:
            return None
        if x.is_integer() and abs(x) < 2**53:
            return int(x)
        return round(x, 10)
    return x


def records(df: pd.DataFrame, limit: int = ROWS_OUT_MAX) -> list[dict]:
    rows = json.loads(df.head(limit).to_json(orient="records", date_format="iso"))
    return [{k: num(v) for k, v in r.items()} for r in rows]


def save(ctx: ToolContext, df: pd.DataFrame, save_to: str, field: str = "save_to") -> str:
    p = ctx.resolve(save_to, "w", field=field)
    suffix = p.suffix.lower()
    if suffix == ".json":
        text = json.dumps(records(df, len(df)), indent=1) + "\n"
    elif suffix in (".jsonl", ".ndjson"):
        text = "".join(json.dumps(r) + "\n" for r in records(df, len(df)))
    elif suffix in (".tsv", ".tab"):
        text = df.to_csv(sep="\t", index=False)
    else:
        text = df.to_csv(index=False)
    write_text(p, text)
    return ctx.rel(p)


def where(df: pd.DataFrame, column: str, op: str, value: Any, field: str = "column") -> pd.DataFrame:
    """Rows where ``column op value``; numbers compare as numbers, text ignoring case."""
    import pandas as pd

    c = col(df, column, field)
    s = df[c]
    if op in ("contains", "startswith", "endswith"):
        t = s.astype(str).str.lower()
        v = str(value).lower()
        mask = {"contains": t.str.contains(v, regex=False), "startswith": t.str.startswith(v),
                "endswith": t.str.endswith(v)}[op]
        return df[mask]
    numeric = pd.api.types.is_numeric_dtype(s)
    other = _column_named(df, value, s)
    if other is not None:               # stock < reorder_level: row by row against another column
        right = df[other]
        if numeric != pd.api.types.is_numeric_dtype(right):
            raise InvalidArgument(f"value: column {c!r} and column {other!r} hold different kinds of values",
                                  field="value", expected="a column of the same kind, or a value")
        if not numeric:
            s, right = s.astype(str).str.strip().str.lower(), right.astype(str).str.strip().str.lower()
        mask = {"==": s == right, "!=": s != right, "<": s < right, "<=": s <= right,
                ">": s > right, ">=": s >= right}[op]
        return df[mask]
    if numeric:
        flag = str(value).strip().lower()
        if pd.api.types.is_bool_dtype(s) and flag in _TRUTH:
            value = _TRUTH[flag]             # a yes/no column asked with a word: true, no, off
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise InvalidArgument(f"value: column {c!r} holds numbers; {value!r} is not one",
                                  field="value", expected="a number") from None
        left = s
    else:
        left, v = s.astype(str).str.strip().str.lower(), str(value).strip().lower()
    mask = {"==": left == v, "!=": left != v, "<": left < v, "<=": left <= v,
            ">": left > v, ">=": left >= v}[op]
    return df[mask]


_TRUTH = {"true": 1, "yes": 1, "on": 1, "false": 0, "no": 0, "off": 0}


def _column_named(df: pd.DataFrame, value: Any, s: pd.Series) -> str | None:
    """The other column ``value`` names (exactly or ignoring case and spaces), when it is
    not also a value the compared column ``s`` holds."""
    if not isinstance(value, str) or not value.strip():
        return None
    want = value.strip().lower().replace(" ", "_")
    hit = next((str(c) for c in df.columns if str(c).strip().lower().replace(" ", "_") == want), None)
    if hit is None or hit == s.name:
        return None
    if value.strip().lower() in set(s.astype(str).str.strip().str.lower()):
        return None
    return hit


def _where_args(df: pd.DataFrame, a: dict) -> pd.DataFrame:
    if a.get("where_column"):
        if a.get("where_value") is None:
            raise InvalidArgument("where_value: expected the value to compare with",
                                  field="where_value", expected="a number or text")
        return where(df, a["where_column"], a["where_op"], a["where_value"], "where_column")
    return df


def _done(ctx: ToolContext, df: pd.DataFrame, a: dict, out: dict, summary: str) -> ToolResult:
    files = []
    if a.get("save_to"):
        rel = save(ctx, df, a["save_to"])
        out["saved_to"] = rel
        files.append(rel)
        summary += f"; saved to {rel}"
    return ToolResult(out, summary, files)


# ── tools ───────────────────────────────────────────────────────────────────
def data_load(ctx: ToolContext, a: dict) -> ToolResult:
    df = load(ctx, a["path"])
    out = {"columns": [str(c) for c in df.columns], "types": {str(c): str(t) for c, t in df.dtypes.items()},
           "rows": len(df), "head": records(df, a["rows"])}
    return _done(ctx, df, a, out, f"{a['path']}: {len(df)} rows, columns {', '.join(out['columns'])}")


def data_describe(ctx: ToolContext, a: dict) -> ToolResult:
    import pandas as pd

    df = load(ctx, a["path"])
    cols = {}
    for c in df.columns:
        s = df[c]
        d: dict[str, Any] = {"type": str(s.dtype), "count": int(s.count()), "missing": int(s.isna().sum())}
        if pd.api.types.is_numeric_dtype(s) and s.count():
            d.update(sum=num(s.sum()), mean=num(s.mean()), min=num(s.min()), max=num(s.max()),
                     median=num(s.median()), std=num(s.std()) if s.count() > 1 else None)
        else:
            vc = s.astype(str).value_counts()
            d.update(unique=int(s.nunique()), top=str(vc.index[0]) if len(vc) else None,
                     top_count=int(vc.iloc[0]) if len(vc) else 0)
        cols[str(c)] = d
    return ToolResult({"rows": len(df), "columns": cols}, f"{a['path']}: {len(df)} rows, {len(cols)} columns")


def data_filter(ctx: ToolContext, a: dict) -> ToolResult:
    df = load(ctx, a["path"])
    got = where(df, a["column"], a["op"], a["value"])
    if a.get("sort_by"):
        got = got.sort_values(col(df, a["sort_by"], "sort_by"), ascending=not a["descending"])
    if a.get("limit"):
        got = got.head(a["limit"])
    if a.get("columns"):
        got = got[[col(df, c, "columns") for c in a["columns"]]]
    out = {"rows": records(got), "count": len(got), "of": len(df)}
    return _done(ctx, got, a, out, f"{len(got)} of {len(df)} rows have {a['column']} {a['op']} {a['value']}")


def data_sort(ctx: ToolContext, a: dict) -> ToolResult:
    df = load(ctx, a["path"])
    got = df.sort_values(col(df, a["by"], "by"), ascending=not a["descending"])
    if a.get("limit"):
        got = got.head(a["limit"])
    out = {"rows": records(got), "count": len(got), "first": records(got, 1)[0] if len(got) else None}
    order = "largest first" if a["descending"] else "smallest first"
    return _done(ctx, got, a, out, f"sorted {len(got)} rows by {a['by']}, {order}")


def group(df: pd.DataFrame, by: str, column: str | None, agg: str) -> pd.DataFrame:
    """Group ``df`` by ``by`` and aggregate ``column`` (rows counted when no column)."""
    b = col(df, by, "by")
    if agg == "count" or not column:
        g = df.groupby(b, sort=True).size().reset_index(name="count")
        return g
    c = col(df, column, "column")
    import pandas as pd

    if agg != "count" and not pd.api.types.is_numeric_dtype(df[c]):
        raise InvalidArgument(f"column: {c!r} does not hold numbers, so it has no {agg}",
                              field="column", expected="a numeric column, or agg 'count'")
    return df.groupby(b, sort=True)[c].agg(agg).reset_index()


def data_groupby(ctx: ToolContext, a: dict) -> ToolResult:
    df = _where_args(load(ctx, a["path"]), a)
    g = group(df, a["by"], a.get("column"), a["agg"])
    key, val = g.columns[0], g.columns[1]
    if a["sort"] == "value":
        g = g.sort_values(val, ascending=False)
    rows = records(g)
    out: dict[str, Any] = {"groups": rows, "count": len(g), "by": str(key), "value": str(val), "agg": a["agg"]}
    if len(g):
        hi, lo = g.loc[g[val].idxmax()], g.loc[g[val].idxmin()]
        out["largest"] = {"key": num(hi[key]), "value": num(hi[val])}
        out["smallest"] = {"key": num(lo[key]), "value": num(lo[val])}
    what = f"{a['agg']} of {val}" if a["agg"] != "count" and a.get("column") else "row count"
    summary = f"{what} by {key} for {len(g)} groups"
    if len(g):
        summary += f"; largest {out['largest']['key']} ({out['largest']['value']})"
    return _done(ctx, g, a, out, summary)


def data_stat(ctx: ToolContext, a: dict) -> ToolResult:
    import pandas as pd

    df = _where_args(load(ctx, a["path"]), a)
    c = col(df, a["column"])
    s, stat = df[c], a["stat"]
    if stat == "count":
        value = int(s.count())
    elif stat == "unique":
        value = int(s.nunique())
    else:
        if not pd.api.types.is_numeric_dtype(s):
            raise InvalidArgument(f"column: {c!r} does not hold numbers, so it has no {stat}",
                                  field="column", expected="a numeric column, or stat count/unique")
        if not s.count():
            raise ToolError(f"column {c!r} has no values" + (" after the filter" if a.get("where_column") else ""))
        value = num(getattr(s, stat)())
    out: dict[str, Any] = {"column": str(c), "stat": stat, "value": value, "rows": len(df)}
    if stat in ("min", "max") and len(df):
        idx = s.idxmax() if stat == "max" else s.idxmin()
        out["row"] = records(df.loc[[idx]], 1)[0]
    summary = f"{stat} of {c} = {value}"
    if "row" in out:
        summary += f" (row: {', '.join(f'{k}={v}' for k, v in out['row'].items())})"
    return ToolResult(out, summary)


def data_compute(ctx: ToolContext, a: dict) -> ToolResult:
    df = load(ctx, a["path"])
    names = {}
    for c in df.columns:
        names[str(c)] = df[c]
        names[_key(c)] = df[c]
        names[str(c).strip().replace(" ", "_")] = df[c]
    funcs = {"abs": abs, "round": lambda x, n=0: x.round(int(n)) if hasattr(x, "round") else round(x, int(n))}
    value = evaluate(a["expression"], names=names, funcs=funcs, field="expression")
    df[a["name"]] = value
    out = {"column": a["name"], "rows": records(df), "count": len(df)}
    return _done(ctx, df, a, out, f"computed {a['name']} = {a['expression']} for {len(df)} rows")


def _rows_in(ctx: ToolContext, p: Path) -> int:
    if p.suffix.lower() in (".csv", ".tsv", ".tab", ".json", ".jsonl", ".ndjson"):
        return len(load(ctx, str(p)))
    with open_read(p) as f:
        return sum(1 for line in f if line.strip())


def data_count_rows(ctx: ToolContext, a: dict) -> ToolResult:
    paths = [p for p in expand(ctx, a["path"], "r", must_match=True) if p.is_file()]
    files = [{"path": ctx.rel(p), "rows": _rows_in(ctx, p)} for p in paths]
    total = sum(f["rows"] for f in files)
    out: dict[str, Any] = {"files": files, "counts": {f["path"]: f["rows"] for f in files}, "total": total}
    summary = "; ".join(f"{f['path']}: {f['rows']} row{'' if f['rows'] == 1 else 's'}" for f in files[:20])
    written = []
    if a.get("save_to"):
        dest = ctx.resolve(a["save_to"], "w", field="save_to")
        if dest.suffix.lower() == ".json":
            text = json.dumps(out["counts"], indent=1) + "\n"
        elif dest.suffix.lower() == ".csv":
            text = "file,rows\n" + "".join(f"{f['path']},{f['rows']}\n" for f in files)
        else:
            text = "".join(f"{f['path']}: {f['rows']}\n" for f in files)
        write_text(dest, text)
        written.append(ctx.rel(dest))
        out["saved_to"] = ctx.rel(dest)
        summary += f"; saved to {ctx.rel(dest)}"
    return ToolResult(out, summary, written)


def data_write(ctx: ToolContext, a: dict) -> ToolResult:
    import pandas as pd

    df = pd.DataFrame(a["rows"])
    rel = save(ctx, df, a["path"], "path")
    return ToolResult({"path": rel, "rows": len(df), "columns": [str(c) for c in df.columns]},
                      f"wrote {len(df)} rows to {rel}", [rel])


_TABLE = {**PATH, "description": "table file (.csv, .tsv, .json or .jsonl)"}
_COL = string("column name", 200, min_length=1)
NUM_BOUND = 1e15                 # numbers in arguments stay within +-NUM_BOUND
_VALUE = {"type": ["string", "number"], "maxLength": 200, "minimum": -NUM_BOUND, "maximum": NUM_BOUND,
          "description": "the value to compare with"}
_WHERE = {"where_column": string("optional: only rows where this column ...", 200),
          "where_op": {**enum("... compares like this ...", OPS), "default": "=="},
          "where_value": {**_VALUE, "description": "... with this value"}}
_SAVE = {"save_to": SAVE_TO}
_RW = {"path": "r", "save_to": "w"}
_CELL = {"type": ["string", "number", "boolean", "null"], "maxLength": 10_000,
         "minimum": -NUM_BOUND, "maximum": NUM_BOUND}

TOOLS = [
    Tool(name="data.load", returns="{columns, types: {COLUMN: type}, rows, head: [rows]}", kind="data", risk=Risk.READ, fn=data_load, path_args=_RW,
         risk_fn=overwrite_risk("save_to"),
         description="Open a table file and show its columns, row count and first rows; with save_to, "
                     "write the whole table in the format its suffix names (convert CSV to JSON).",
         parameters=params(["path"], path=_TABLE, rows=integer("how many first rows to show", 0, 100, 5),
                           **_SAVE)),
    Tool(name="data.describe", returns="{rows, columns: {COLUMN: {type, count, missing, unique, top, top_count, sum, mean, min, max, median, std}}}", kind="data", risk=Risk.READ, fn=data_describe, path_args={"path": "r"},
         description="Summarize every column of a table: count, sum, mean, min, max, or most common value.",
         parameters=params(["path"], path=_TABLE)),
    Tool(name="data.filter", returns="{rows: [rows], count, of}", kind="data", risk=Risk.READ, fn=data_filter, path_args=_RW,
         risk_fn=overwrite_risk("save_to"),
         description="Keep the table rows where a column compares to a value (like price < 1000) or to "
                     "another column (value: its name, like stock < reorder_level), optionally sorted and saved.",
         parameters=params(["path", "column", "op", "value"], path=_TABLE, column=_COL,
                           op=enum("comparison", OPS), value=_VALUE,
                           sort_by=string("optional column to sort the result by", 200),
                           descending=boolean("sort largest first"),
                           limit=integer("keep only this many rows (0 = all)", 0, 100_000, 0),
                           columns={"type": "array", "items": _COL, "maxItems": 50,
                                    "description": "optional columns to keep"}, **_SAVE)),
    Tool(name="data.sort", returns="{rows: [rows], count, first}", kind="data", risk=Risk.READ, fn=data_sort, path_args=_RW,
         risk_fn=overwrite_risk("save_to"),
         description="Sort table rows by a column (descending for largest first), optionally keep the top rows.",
         parameters=params(["path", "by"], path=_TABLE, by=_COL, descending=boolean("largest first"),
                           limit=integer("keep only this many rows (0 = all)", 0, 100_000, 0), **_SAVE)),
    Tool(name="data.groupby", returns="{groups: [{BY, COLUMN}], count, by, value, agg, largest: {key, value}, smallest: {key, value}}", kind="data", risk=Risk.READ, fn=data_groupby, path_args=_RW,
         risk_fn=overwrite_risk("save_to"),
         description="Group table rows by a column and total (sum), average (mean) or count another column "
                     "per group, e.g. amount per region.",
         parameters=params(["path", "by"], path=_TABLE, by=_COL,
                           column=string("the column to aggregate (leave out to count rows)", 200),
                           agg=enum("how to combine each group", AGGS, "sum"),
                           sort=enum("order groups by key or by value (largest first)", ["key", "value"], "key"),
                           **_WHERE, **_SAVE)),
    Tool(name="data.stat", returns="{column, stat, value, rows, row}", kind="data", risk=Risk.READ, fn=data_stat, path_args={"path": "r"},
         description="Compute one number from a table column: sum (total), mean (average), min, max, "
                     "median, count, std or unique; min/max also return their row.",
         parameters=params(["path", "column", "stat"], path=_TABLE, column=_COL,
                           stat=enum("which number", STATS), **_WHERE)),
    Tool(name="data.compute", returns="{column, rows: [rows], count}", kind="data", risk=Risk.READ, fn=data_compute, path_args=_RW,
         risk_fn=overwrite_risk("save_to"),
         description="Add a column computed from other columns, like total = price * quantity.",
         parameters=params(["path", "name", "expression"], path=_TABLE,
                           name=string("the new column's name", 200, min_length=1),
                           expression=string("arithmetic on column names, like price * quantity", 500,
                                             min_length=1), **_SAVE)),
    Tool(name="data.count_rows", returns="{files: [{path, rows}], counts: {PATH: rows}, total}", kind="data", risk=Risk.READ, fn=data_count_rows, path_args=_RW,
         risk_fn=overwrite_risk("save_to"),
         description="Count the data rows (header not counted) in a table file or in every file "
                     "matching a pattern like *.csv, optionally saving the counts.",
         parameters=params(["path"], path={**_TABLE, "description": "a table file or a pattern like *.csv"},
                           **_SAVE)),
    Tool(name="data.write", returns="{path, rows, columns}", kind="data", risk=Risk.WRITE, fn=data_write, path_args={"path": "w"},
         risk_fn=overwrite_risk("path"),
         description="Write rows (a list of objects, e.g. an earlier step's rows) to a CSV or JSON file.",
         parameters=params(["rows", "path"], path=_TABLE,
                           rows={"type": "array", "maxItems": WRITE_ROWS_MAX, "description": "the rows",
                                 "items": {"type": "object", "additionalProperties": _CELL}})),
]
