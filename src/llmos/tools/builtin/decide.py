"""Decision tools: rank options on weighted criteria; choose tasks to maximize Σ p.

Map:
- ``data.rank``: the rows of a table are the options. Hard conditions (``where``) drop
  options first (each one dropped says which condition it failed); every criterion is
  then scaled min–max over the options left (1 = best, 0 = worst, per its goal max or
  min), weighted by its share of the stated weights, and summed to a score out of 100.
  The output keeps the data behind every score and one sentence per option, built here
  from the numbers; ties share a rank.
- ``tasks.choose``: the seeds' decision model (``alloc``: max Σ p·x over optional tasks)
  on one worker: choose the tasks whose summed success probability is largest within a
  time limit, a budget and each task's deadline, solved exactly by HiGHS (scipy, loaded on
  the first call), then ordered earliest deadline first and, among equal deadlines, most
  probability per unit of time first.

Every number in an output is computed here, never by the model.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from llmos.errors import InvalidArgument
from llmos.tools.builtin._common import PATH, SAVE_TO, enum, integer, number, params, string
from llmos.tools.builtin.data import OPS, ROWS_OUT_MAX, col, load, num, save, where
from llmos.tools.registry import Tool, ToolContext, ToolResult, overwrite_risk
from llmos.types import Risk

if TYPE_CHECKING:
    import pandas as pd

CRITERIA_MAX = 12           # criteria in one ranking
CONDITIONS_MAX = 10         # hard conditions in one ranking
EXCLUDED_OUT_MAX = 100      # options left out, listed in the output
TASKS_MAX = 200             # tasks tasks.choose accepts
SOLVE_TIME_S = 2.0          # HiGHS time limit for tasks.choose
_TIE = 1e-9                 # scores closer than this share a rank
_STRIP = r"[,\s$€£¥%]"      # thousands separators, currency and percent signs around numbers


# ── shared ──────────────────────────────────────────────────────────────────
def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def fmt_number(v: Any) -> str:
    """A number as a person reads it: at most 2 decimals (4 significant digits below 1)."""
    if isinstance(v, float):
        if abs(v) < 1:
            return f"{v:.4g}"
        return f"{v:.2f}".rstrip("0").rstrip(".") if abs(v) < 1e15 else str(v)
    return str(v)


def numeric(s: pd.Series, field: str, what: str, names: list[str] | None = None) -> pd.Series:
    """``s`` as floats: text such as "1,200", "$30" or "45%" is read as its number; a cell
    that holds other text is an InvalidArgument naming the column, the option and the value."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(s):
        return s.astype(float)
    if pd.api.types.is_numeric_dtype(s):
        return s.astype(float)
    text = s.astype("string").str.replace(_STRIP, "", regex=True)
    out = pd.to_numeric(text, errors="coerce")
    bad = out.isna() & s.notna() & (s.astype("string").str.strip() != "")
    if bad.any():
        pos = int(bad.to_numpy().nonzero()[0][0])
        who = f" for {names[pos]}" if names else f" in row {pos + 1}"
        raise InvalidArgument(f"{field}: column {what!r} holds text, not numbers ({s.iloc[pos]!r}{who})",
                              field=field, expected="a column of numbers",
                              hint="rank by a numeric column, or use a text column in a condition")
    return out.astype(float)


# ── data.rank ───────────────────────────────────────────────────────────────
def _label_column(df: pd.DataFrame, given: str | None, criteria: set[str]) -> str | None:
    import pandas as pd

    if given:
        return col(df, given, "label")
    rest = [c for c in df.columns if c not in criteria]
    for c in rest:
        if not pd.api.types.is_numeric_dtype(df[c]):
            return c
    return rest[0] if rest else None


def _names(df: pd.DataFrame, label: str | None) -> list[str]:
    if label is None:
        return [f"row {i + 1}" for i in range(len(df))]
    raw = ["" if v is None or v != v else str(num(v)) for v in df[label].tolist()]
    seen: dict[str, int] = {}
    for v in raw:
        seen[v] = seen.get(v, 0) + 1
    return [v if v and seen[v] == 1 else f"{v or '(no name)'} (row {i + 1})" for i, v in enumerate(raw)]


def _conditions(df: pd.DataFrame, conds: list[dict], names: list[str]) -> tuple[pd.DataFrame, list[dict], list[str]]:
    """(rows meeting every condition, [{option, reason}] of the others, the conditions as text)."""
    keep = df
    excluded: list[dict] = []
    texts = []
    pos = {idx: i for i, idx in enumerate(df.index)}
    for i, w in enumerate(conds):
        c = col(df, w["column"], f"where[{i}].column")
        text = f"{c} {w['op']} {fmt_number(w['value'])}"
        texts.append(text)
        try:
            met = where(keep, c, w["op"], w["value"], f"where[{i}].column")
        except InvalidArgument as e:
            if e.field != "value":
                raise
            raise InvalidArgument(f"where[{i}].{e.field or 'value'}: {e.message.split(': ', 1)[-1]}",
                                  field=f"where[{i}].{e.field or 'value'}", expected=e.expected) from None
        for idx in keep.index.difference(met.index):
            v = keep.at[idx, c]
            excluded.append({"option": names[pos[idx]], "reason": f"fails {text}: it is {fmt_number(num(v))}"})
        keep = met
    return keep, excluded, texts


def _score(df: pd.DataFrame, crits: list[tuple[str, float, str]], names: list[str]) -> tuple[list[dict], list[str]]:
    """Per option: {option, score, criteria}; and notes on criteria that cannot separate options."""
    notes = []
    total_w = sum(w for _, w, _ in crits)
    per: list[dict[str, dict]] = [{} for _ in range(len(df))]
    for i, (c, w, goal) in enumerate(crits):
        vals = numeric(df[c], f"criteria[{i}].column", c, names).tolist()
        have = [v for v in vals if not math.isnan(v)]
        lo, hi = (min(have), max(have)) if have else (0.0, 0.0)
        share = w / total_w
        if have and hi == lo:
            notes.append(f"every option has {c} {fmt_number(num(lo))}, so it does not separate them")
        if len(have) < len(vals):
            notes.append(f"{len(vals) - len(have)} option(s) have no {c}; they get 0 points for it")
        for k, v in enumerate(vals):
            if math.isnan(v):
                norm = 0.0
            elif hi == lo:
                norm = 1.0
            else:
                norm = (v - lo) / (hi - lo) if goal == "max" else (hi - v) / (hi - lo)
            at = "none" if math.isnan(v) or hi == lo else "best" if norm == 1.0 else "worst" if norm == 0.0 else ""
            per[k][c] = {"value": None if math.isnan(v) else num(v), "normalized": round(norm, 4),
                         "weight": round(share, 4), "points": round(100 * share * norm, 2), "_at": at,
                         "_goal": goal}
    out = [{"option": names[k], "score": sum(x["points"] for x in per[k].values()), "criteria": per[k],
            "_exact": sum(100 * x["weight"] * x["normalized"] for x in per[k].values())}
           for k in range(len(df))]
    return out, notes


def _sentence(o: dict, n: int, tied: list[str]) -> str:
    parts = []
    for c, x in o["criteria"].items():
        best, worst = ("highest", "lowest") if x["_goal"] == "max" else ("lowest", "highest")
        tag = {"best": f"{best}, ", "worst": f"{worst}, "}.get(x["_at"], "")
        value = "no value" if x["value"] is None else fmt_number(x["value"])
        parts.append(f"{c} {value} ({tag}{fmt_number(x['points'])} of {fmt_number(round(100 * x['weight'], 2))} points)")
    tie = f", tied with {', '.join(tied)}" if tied else ""
    return (f"{o['option']} ranks {_ordinal(o['rank'])} of {n} with {fmt_number(o['score'])} of 100 points{tie}: "
            + "; ".join(parts) + ".")


def data_rank(ctx: ToolContext, a: dict) -> ToolResult:
    df = load(ctx, a["path"])
    crits: list[tuple[str, float, str]] = []
    for i, c in enumerate(a["criteria"]):
        name = col(df, c["column"], f"criteria[{i}].column")
        if any(name == k for k, _, _ in crits):
            raise InvalidArgument(f"criteria[{i}].column: {name!r} is already a criterion", field=f"criteria[{i}].column",
                                  expected="each column once")
        crits.append((name, float(c.get("weight", 1)), c.get("goal", "max")))
    if not any(w > 0 for _, w, _ in crits):
        raise InvalidArgument("criteria: every weight is 0", field="criteria.weight", expected="a weight above 0")
    label = _label_column(df, a.get("label"), {k for k, _, _ in crits})
    names = _names(df, label)
    keep, excluded, conds = _conditions(df, a.get("where") or [], names)
    pos = {idx: i for i, idx in enumerate(df.index)}
    kept_names = [names[pos[idx]] for idx in keep.index]
    scored, notes = _score(keep, crits, kept_names)
    scored.sort(key=lambda o: -o["_exact"])           # stable: file order within a tie
    ties: list[list[dict]] = []                        # options in score order, grouped by equal score
    for k, o in enumerate(scored):
        if k == 0 or scored[k - 1]["_exact"] - o["_exact"] > _TIE:
            ties.append([])
        ties[-1].append(o)
        o["rank"], o["_group"] = k + 1 - len(ties[-1]) + 1, len(ties) - 1
        o["score"] = round(o["score"], 2)
    n = len(scored)
    for o in scored:
        o["sentence"] = _sentence(o, n, [x["option"] for x in ties[o["_group"]] if x is not o])
    weights = {c: round(w / sum(x for _, x, _ in crits), 4) for c, w, _ in crits}
    weights_text = ", ".join(f"{c} {fmt_number(round(100 * weights[c], 1))}% ({'higher' if g == 'max' else 'lower'} "
                             f"is better)" for c, _, g in crits)
    shown = scored[: a["limit"]] if a.get("limit") else scored
    ranked = [{"rank": o["rank"], "option": o["option"], "score": o["score"], "sentence": o["sentence"],
               "criteria": {c: {k: v for k, v in x.items() if not k.startswith("_")} for c, x in o["criteria"].items()}}
              for o in shown]
    head = (f"Weights used: {weights_text}; each criterion is scaled min-max over the {n} option(s)"
            + (f" that meet {' and '.join(conds)}" if conds else "") + ".")
    lines = [head] + [o["sentence"] for o in shown]
    if excluded:
        lines.append("Left out: " + "; ".join(f"{x['option']} ({x['reason']})" for x in excluded[:20])
                     + ("; ..." if len(excluded) > 20 else "") + ".")
    lines += [f"Note: {x}." for x in notes]
    out: dict[str, Any] = {
        "ranked": ranked, "best": ranked[0]["option"] if ranked else None, "weights": weights,
        "weights_text": weights_text, "conditions": conds, "count": n, "of": len(df),
        "excluded": excluded[:EXCLUDED_OUT_MAX], "ties": [[x["option"] for x in g] for g in ties if len(g) > 1],
        "notes": notes, "text": "\n".join(lines), "saved_to": None}
    files = []
    if a.get("save_to"):
        import pandas as pd

        table = pd.DataFrame([{"rank": o["rank"], "option": o["option"], "score": o["score"],
                               **{f"{c} ({x['weight'] * 100:g}%)": x["value"] for c, x in o["criteria"].items()},
                               **{f"{c} points": x["points"] for c, x in o["criteria"].items()}} for o in scored])
        out["saved_to"] = save(ctx, table, a["save_to"])
        files.append(out["saved_to"])
    if not scored:
        summary = f"no option of {len(df)} meets {' and '.join(conds)}"
    else:
        summary = (f"ranked {n} of {len(df)} options on {', '.join(c for c, _, _ in crits)}; best: "
                   f"{scored[0]['option']} ({fmt_number(scored[0]['score'])} of 100)")
        if len(ties) and len(ties[0]) > 1:
            summary += f", tied with {', '.join(x['option'] for x in ties[0][1:])}"
    return ToolResult(out, summary, files)


# ── tasks.choose ────────────────────────────────────────────────────────────
def _task_rows(ctx: ToolContext, a: dict) -> tuple[list[dict], list[str]]:
    """[{name, p, time, cost, deadline}] from the table or the inline list; notes."""
    import pandas as pd

    notes: list[str] = []
    if a.get("path") and a.get("tasks"):
        raise InvalidArgument("tasks: give a table (path) or a list of tasks, not both", field="tasks",
                              expected="path or tasks")
    if a.get("path"):
        df = load(ctx, a["path"])
        cols = {k: col(df, a[f"{k}_column"], f"{k}_column") for k in ("name", "p", "time")}
        for k in ("cost", "deadline"):
            want = a.get(f"{k}_column")
            if want:
                cols[k] = col(df, want, f"{k}_column")
            elif k in [str(c).lower() for c in df.columns]:
                cols[k] = col(df, k, f"{k}_column")
        names = _names(df, cols["name"])
        frame = {"name": names}
        for k in ("p", "time", "cost", "deadline"):
            if k in cols:
                frame[k] = numeric(df[cols[k]], f"{k}_column", cols[k], names).tolist()
        rows = [{k: frame[k][i] if k in frame else None for k in ("name", "p", "time", "cost", "deadline")}
                for i in range(len(df))]
        pct = df[cols["p"]].astype("string").str.contains("%", regex=False).any()
    elif a.get("tasks"):
        rows = [{"name": t["name"], "p": t["p"], "time": t["time"], "cost": t.get("cost"),
                 "deadline": t.get("deadline")} for t in a["tasks"]]
        pct = False
        if len({r["name"] for r in rows}) < len(rows):
            raise InvalidArgument("tasks: two tasks have the same name", field="tasks.name",
                                  expected="a different name per task")
    else:
        raise InvalidArgument("tasks: expected a table of tasks (path) or a list of tasks", field="tasks",
                              expected="path or tasks")
    if len(rows) > TASKS_MAX:
        raise InvalidArgument(f"tasks: {len(rows)} tasks, at most {TASKS_MAX}", field="tasks",
                              expected=f"at most {TASKS_MAX} tasks")
    ps = [r["p"] for r in rows if r["p"] is not None and not pd.isna(r["p"])]
    if pct or (ps and max(ps) > 1 and max(ps) <= 100):
        notes.append("success chances above 1 were read as percentages")
        for r in rows:
            r["p"] = None if r["p"] is None or pd.isna(r["p"]) else r["p"] / 100
    for r in rows:
        for k in ("p", "time", "cost", "deadline"):
            v = r[k]
            if v is not None and (isinstance(v, float) and math.isnan(v)):
                r[k] = v = None
            if v is None and k in ("p", "time"):
                raise InvalidArgument(f"{k}: task {r['name']!r} has no {'success chance' if k == 'p' else 'time'}",
                                      field=k, expected="a number for every task")
        if not 0 <= r["p"] <= 1:
            raise InvalidArgument(f"p: task {r['name']!r} has success chance {fmt_number(r['p'])}; expected 0..1 "
                                  "(or a percentage)", field="p", expected="a probability from 0 to 1")
        if r["time"] < 0 or (r["cost"] is not None and r["cost"] < 0):
            raise InvalidArgument(f"task {r['name']!r}: time and cost cannot be negative", field="time",
                                  expected="a number >= 0")
    return rows, notes


def tasks_choose(ctx: ToolContext, a: dict) -> ToolResult:
    rows, notes = _task_rows(ctx, a)
    limit, budget = a.get("time_limit"), a.get("budget")
    if limit is not None and limit <= 0:
        raise InvalidArgument("time_limit: expected a positive amount of time", field="time_limit",
                              expected="a number > 0")
    if budget is not None and any(r["cost"] is None for r in rows):
        miss = next(r["name"] for r in rows if r["cost"] is None)
        raise InvalidArgument(f"budget: task {miss!r} has no cost", field="cost_column",
                              expected="a cost for every task when a budget is given")
    from llmos.alloc.model import Problem, Resource, Task
    from llmos.alloc.solve import solve

    # every task must end within the time limit: it is each task's latest deadline (the
    # model's horizon row alone counts only tasks that have a deadline)
    who = "you"
    due = [min(x for x in (r["deadline"], limit) if x is not None) if r["deadline"] is not None or limit is not None
           else None for r in rows]
    tasks = [Task(f"t{i}", optional=True, deadline_s=due[i],
                  demand={"budget": r["cost"]} if budget is not None else {},
                  figures={"probability": {who: r["p"]}, "delay": {who: r["time"]}})
             for i, r in enumerate(rows)]
    res = Resource(who, capacity={"budget": float(budget)} if budget is not None else {})
    if rows:
        sol = solve(Problem.build(tasks, [res], horizon_s=limit), "probability", time_limit_s=SOLVE_TIME_S,
                    duals=False, explain=False)
        picked = [r for i, r in enumerate(rows) if sol.assignment[f"t{i}"] is not None]
        optimal, method = sol.optimal, sol.method
    else:
        picked, optimal, method = [], True, "milp"
    picked.sort(key=lambda r: (r["deadline"] if r["deadline"] is not None else math.inf,
                               -(r["p"] / r["time"]) if r["time"] > 0 else -math.inf))
    chosen, t = [], 0.0
    for k, r in enumerate(picked, 1):
        chosen.append({"order": k, "name": r["name"], "p": num(r["p"]), "time": num(r["time"]),
                       "cost": num(r["cost"]) if r["cost"] is not None else None,
                       "deadline": num(r["deadline"]) if r["deadline"] is not None else None,
                       "start": num(t), "end": num(t + r["time"])})
        t += r["time"]
    left = []
    ids = {id(r) for r in picked}
    for r in rows:
        if id(r) in ids:
            continue
        if r["deadline"] is not None and r["time"] > r["deadline"]:
            why = f"takes {fmt_number(num(r['time']))}, longer than its deadline {fmt_number(num(r['deadline']))}"
        elif limit is not None and r["time"] > limit:
            why = f"takes {fmt_number(num(r['time']))}, more than the whole time limit"
        elif budget is not None and r["cost"] > budget:
            why = f"costs {fmt_number(num(r['cost']))}, more than the whole budget"
        else:
            why = "the chosen tasks give a larger total chance within the limits"
        left.append({"name": r["name"], "p": num(r["p"]), "time": num(r["time"]),
                     "cost": num(r["cost"]) if r["cost"] is not None else None, "reason": why})
    expected = round(sum(r["p"] for r in picked), 6)
    cost_used = round(sum(r["cost"] for r in picked), 6) if budget is not None else None
    limits = [f"time limit {fmt_number(limit)}" if limit is not None else "", f"budget {fmt_number(budget)}" if budget is not None else ""]
    limits = [x for x in limits if x] + (["each task's deadline"] if any(r["deadline"] is not None for r in rows) else [])
    lines = [f"Chose {len(chosen)} of {len(rows)} tasks to maximize the expected number of successes (sum of "
             f"success chances) within {' and '.join(limits) or 'no limit'}: expected successes "
             f"{fmt_number(num(expected))}, time used {fmt_number(num(t))}"
             + (f" of {fmt_number(limit)}" if limit is not None else "")
             + (f", cost {fmt_number(num(cost_used))} of {fmt_number(budget)}" if budget is not None else "")
             + ("." if optimal else f" (best found: {method}, not proven optimal).")]
    lines += [f"{c['order']}. {c['name']}: chance {fmt_number(c['p'])}, from {fmt_number(c['start'])} to {fmt_number(c['end'])}"
              + (f" (deadline {fmt_number(c['deadline'])})" if c["deadline"] is not None else "") for c in chosen]
    if left:
        lines.append("Left out: " + "; ".join(f"{x['name']} ({x['reason']})" for x in left[:20]) + ".")
    lines += [f"Note: {x}." for x in notes]
    out = {"chosen": chosen, "left_out": left, "expected": num(expected), "time_used": num(round(t, 6)),
           "time_limit": limit, "cost_used": num(cost_used) if cost_used is not None else None, "budget": budget,
           "optimal": optimal, "notes": notes, "text": "\n".join(lines)}
    summary = (f"chose {len(chosen)} of {len(rows)} tasks: {', '.join(c['name'] for c in chosen[:10]) or 'none'}; "
               f"expected successes {fmt_number(num(expected))}")
    return ToolResult(out, summary)


# ── schemas ─────────────────────────────────────────────────────────────────
_TABLE = {**PATH, "description": "table file (.csv, .tsv, .json or .jsonl), one row per option"}
_COL = string("column name", 200, min_length=1)
_BIG = 1e15
_CRITERION = params(["column"], column=_COL,
                    weight=number("how much this criterion counts (any scale; shares are stated)", 0, 1e6, 1),
                    goal=enum("max: higher is better; min: lower is better (price, distance)", ["max", "min"], "max"))
_CONDITION = params(["column", "op", "value"], column=_COL, op=enum("comparison", OPS),
                    value={"type": ["string", "number"], "maxLength": 200, "minimum": -_BIG, "maximum": _BIG,
                           "description": "the value to compare with"})
_TASK = params(["name", "p", "time"], name=string("the task", 200, min_length=1),
               p=number("its chance of success, 0..1", 0, 1),
               time=number("how long it takes", 0, _BIG), cost=number("what it costs", 0, _BIG),
               deadline=number("it must end by this time (same unit as time, from now)", 0, _BIG))

TOOLS = [
    Tool(name="data.rank", kind="decide", risk=Risk.READ, fn=data_rank, path_args={"path": "r", "save_to": "w"},
         risk_fn=overwrite_risk("save_to"),
         returns="{ranked: [{rank, option, score, sentence, criteria: {COLUMN: {value, normalized, weight, points}}}], "
                 "best, weights: {COLUMN: share}, weights_text, conditions, count, of, excluded: [{option, reason}], "
                 "ties, notes, text, saved_to}",
         description="Rank options (table rows) to pick the best: criteria [{column, weight, goal max|min}] score "
                     "each row after hard conditions where [{column, op, value}]; gives the data and a sentence each.",
         parameters=params(["path", "criteria"], path=_TABLE,
                           criteria={"type": "array", "items": _CRITERION, "minItems": 1, "maxItems": CRITERIA_MAX,
                                     "description": "the columns to score on, each with a weight and a goal"},
                           where={"type": "array", "items": _CONDITION, "maxItems": CONDITIONS_MAX,
                                  "description": "hard conditions every option must meet, like price <= 1000"},
                           label=string("optional column that names each option (default: the first text column)",
                                        200),
                           limit=integer("show only the top this many (0 = all)", 0, ROWS_OUT_MAX, 0),
                           save_to=SAVE_TO)),
    Tool(name="tasks.choose", kind="decide", risk=Risk.READ, fn=tasks_choose, path_args={"path": "r"},
         returns="{chosen: [{order, name, p, time, cost, deadline, start, end}], "
                 "left_out: [{name, p, time, cost, reason}], expected, time_used, time_limit, cost_used, budget, "
                 "optimal, notes, text}",
         description="Choose and order the tasks that give the most expected successes (sum of each task's "
                     "chance of success p) within a time limit and/or budget and deadlines; tasks from a "
                     "table (path) or listed (tasks).",
         parameters=params([], path={**PATH, "description": "optional table with one row per task"},
                           tasks={"type": "array", "items": _TASK, "maxItems": TASKS_MAX,
                                  "description": "the tasks, when there is no table"},
                           time_limit=number("total time available (same unit as the tasks' time)", 0, _BIG),
                           budget=number("total money available (needs each task's cost)", 0, _BIG),
                           name_column=string("table column naming each task", 200, "name", 1),
                           p_column=string("table column with the chance of success (0..1 or %)", 200, "p", 1),
                           time_column=string("table column with the time each task takes", 200, "time", 1),
                           cost_column=string("optional table column with each task's cost", 200),
                           deadline_column=string("optional table column with each task's deadline", 200))),
]

__all__ = ["TOOLS", "data_rank", "tasks_choose", "numeric", "fmt_number"]
