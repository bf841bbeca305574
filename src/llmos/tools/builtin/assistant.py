"""Personal-assistant tools: reminders (timer.set), a to-do list and a calendar.

- ``timer.set`` asks the kernel (``ctx.set_timer``) for a timer that fires as an event
  and survives a restart; without a kernel hook it refuses with a clear ToolError.
- The to-do list is a plain text file (default ``todo.txt``), one item per line, in the
  file's own style ("- item", "* item", "- [ ] item", "1. item" or plain); a done item is
  marked "[x]" (checkbox style) or prefixed "x " (todo.txt style). Nothing is deleted.
- The calendar is ``calendar.txt``: one event per line, ``YYYY-MM-DD [HH:MM] title``,
  kept sorted. Dates like "tomorrow" or "friday" use ``ctx.clock``.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from llmos.errors import InvalidArgument, NotFound, ToolError
from llmos.tools.builtin._common import PATH, boolean, integer, params, read_text, string, write_text
from llmos.tools.builtin._when import parse_at, parse_date, parse_delay, parse_time
from llmos.tools.registry import Tool, ToolContext, ToolResult
from llmos.types import Risk

_BULLET = re.compile(r"^(\s*(?:[-*+]|\d+[.)])\s+)?(\[[ xX]\]\s+)?(x\s+)?(.*)$")
_EVENT = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:\s+(\d{2}:\d{2}))?\s+(.*\S)\s*$")


def _now(ctx: ToolContext) -> dt.datetime:
    return dt.datetime.fromtimestamp(ctx.clock.time())


# ── reminders ───────────────────────────────────────────────────────────────
def timer_set(ctx: ToolContext, a: dict) -> ToolResult:
    if ctx.set_timer is None:
        raise ToolError("reminders need the LLM OS kernel, which was not given to this tool",
                        hint="run the request through `llmos run` or the daemon")
    if bool(a.get("delay")) == bool(a.get("at")):
        raise InvalidArgument("give either delay (like '10 minutes') or at (like '17:30'), not both",
                              field="delay", expected="exactly one of delay or at")
    now = _now(ctx)
    if a.get("delay"):
        seconds = parse_delay(a["delay"])
    else:
        when = parse_at(a["at"], now)
        seconds = (when - now).total_seconds()
        if seconds <= 0:
            raise InvalidArgument(f"at: {a['at']!r} is in the past", field="at", expected="a future time")
    info = ctx.set_timer(float(seconds), a["message"])
    due = now + dt.timedelta(seconds=seconds)
    out = {"message": a["message"], "seconds": seconds, "due": due.isoformat(timespec="seconds"),
           "timer": info}
    return ToolResult(out, f"reminder set for {due:%Y-%m-%d %H:%M:%S} "
                           f"(in {_span(seconds)}): {a['message']}")


def _span(seconds: float) -> str:
    s = int(round(seconds))
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "min"), (s % 60, "s")]
    return " ".join(f"{n} {u}" for n, u in parts if n) or "0 s"


# ── to-do list ──────────────────────────────────────────────────────────────
def _todo_lines(ctx: ToolContext, path: str, must_exist: bool) -> tuple[Path, list[str]]:
    p = ctx.resolve(path, "r")
    if not p.exists():
        if must_exist:
            raise NotFound(f"no to-do list at {path}", hint="todo.add creates it")
        return p, []
    text, _ = read_text(p)
    return p, text.splitlines()


def _parse_item(line: str) -> dict | None:
    if not line.strip():
        return None
    m = _BULLET.match(line)
    bullet, box, xmark, text = m.groups()
    done = bool((box and box.strip().lower() == "[x]") or xmark)
    return {"text": text.strip(), "done": done}


def _style(lines: list[str]) -> str:
    """The prefix new items get: the most common style of the existing lines."""
    counts: dict[str, int] = {}
    for ln in lines:
        m = _BULLET.match(ln)
        if not ln.strip() or m is None:
            continue
        bullet, box = (m.group(1) or ""), (m.group(2) or "")
        key = ("num" if bullet.strip()[:1].isdigit() else bullet.strip()) + ("[ ]" if box else "")
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        return ""
    return max(counts, key=lambda k: counts[k])


def todo_add(ctx: ToolContext, a: dict) -> ToolResult:
    p, lines = _todo_lines(ctx, a["path"], False)
    item = a["item"].strip()
    items = [i for i in map(_parse_item, lines) if i]
    if any(i["text"].casefold() == item.casefold() and not i["done"] for i in items):
        return ToolResult({"path": ctx.rel(p), "item": item, "added": False, "count": len(items)},
                          f"{item!r} is already on the list in {ctx.rel(p)}")
    style = _style(lines)
    box = "[ ] " if style.endswith("[ ]") else ""
    bullet = style.removesuffix("[ ]")
    prefix = f"{len(items) + 1}. " if bullet == "num" else (f"{bullet} " if bullet else "")
    line = f"{prefix}{box}{item}"
    w = ctx.resolve(a["path"], "w")
    text = "\n".join(lines)
    write_text(w, (text + "\n" if text else "") + line + "\n")
    return ToolResult({"path": ctx.rel(w), "item": item, "added": True, "line": line, "count": len(items) + 1},
                      f"added {item!r} to {ctx.rel(w)} ({len(items) + 1} items)", [ctx.rel(w)])


def todo_list(ctx: ToolContext, a: dict) -> ToolResult:
    p, lines = _todo_lines(ctx, a["path"], False)
    items = [i for i in map(_parse_item, lines) if i]
    numbered = [{"n": k, **i} for k, i in enumerate(items, 1)]
    shown = numbered if a["include_done"] else [i for i in numbered if not i["done"]]
    open_n = sum(1 for i in items if not i["done"])
    return ToolResult({"path": ctx.rel(p), "items": shown, "open": open_n, "done": len(items) - open_n},
                      f"{open_n} open items in {ctx.rel(p)}"
                      + (": " + "; ".join(i["text"] for i in shown[:10]) if shown else ""))


def todo_done(ctx: ToolContext, a: dict) -> ToolResult:
    p, lines = _todo_lines(ctx, a["path"], True)
    idx = [k for k, ln in enumerate(lines) if ln.strip()]
    want = a["item"].strip()
    if want.isdigit():
        n = int(want)
        if not 1 <= n <= len(idx):
            raise InvalidArgument(f"item: there is no item {n} (the list has {len(idx)})", field="item",
                                  expected=f"a number from 1 to {len(idx)} or the item's text")
        hits = [idx[n - 1]]
    else:
        hits = [k for k in idx if want.casefold() in (_parse_item(lines[k]) or {}).get("text", "").casefold()]
        exact = [k for k in hits if _parse_item(lines[k])["text"].casefold() == want.casefold()]
        hits = exact or hits
    if not hits:
        raise NotFound(f"no item matching {want!r} in {ctx.rel(p)}", hint="todo.list shows the items")
    if len(hits) > 1:
        names = "; ".join(_parse_item(lines[k])["text"] for k in hits[:5])
        raise InvalidArgument(f"item: {want!r} matches {len(hits)} items ({names})", field="item",
                              expected="words that match one item, or its number")
    k = hits[0]
    item = _parse_item(lines[k])
    if item["done"]:
        return ToolResult({"path": ctx.rel(p), "item": item["text"], "changed": False},
                          f"{item['text']!r} was already done")
    m = _BULLET.match(lines[k])
    bullet, box = m.group(1) or "", m.group(2)
    lines[k] = f"{bullet}[x] {item['text']}" if (box or bullet) else f"x {item['text']}"
    w = ctx.resolve(a["path"], "w")
    write_text(w, "\n".join(lines) + "\n")
    return ToolResult({"path": ctx.rel(w), "item": item["text"], "changed": True, "line": lines[k]},
                      f"marked {item['text']!r} done in {ctx.rel(w)}", [ctx.rel(w)])


# ── calendar ────────────────────────────────────────────────────────────────
def _events(ctx: ToolContext, path: str) -> tuple[Path, list[str], list[dict]]:
    p = ctx.resolve(path, "r")
    lines = read_text(p)[0].splitlines() if p.exists() else []
    events = []
    for ln in lines:
        m = _EVENT.match(ln)
        if m:
            events.append({"date": m.group(1), "time": m.group(2), "title": m.group(3)})
    return p, lines, events


def _event_line(e: dict) -> str:
    return f"{e['date']} {e['time']} {e['title']}" if e["time"] else f"{e['date']} {e['title']}"


def calendar_add(ctx: ToolContext, a: dict) -> ToolResult:
    today = _now(ctx).date()
    day = parse_date(a["date"], today)
    t = parse_time(a["time"]) if a.get("time") else None
    ev = {"date": day.isoformat(), "time": t.strftime("%H:%M") if t else None, "title": a["title"].strip()}
    p, lines, events = _events(ctx, a["path"])
    if ev in events:
        return ToolResult({"path": ctx.rel(p), "event": ev, "added": False},
                          f"already in {ctx.rel(p)}: {_event_line(ev)}")
    others = [ln for ln in lines if ln.strip() and not _EVENT.match(ln)]
    rows = sorted([*events, ev], key=lambda e: (e["date"], e["time"] or ""))
    w = ctx.resolve(a["path"], "w")
    write_text(w, "".join(ln + "\n" for ln in others) + "".join(_event_line(e) + "\n" for e in rows))
    when = f"{day:%A %Y-%m-%d}" + (f" at {ev['time']}" if ev["time"] else "")
    return ToolResult({"path": ctx.rel(w), "event": ev, "added": True},
                      f"added to {ctx.rel(w)}: {ev['title']} on {when}", [ctx.rel(w)])


def calendar_list(ctx: ToolContext, a: dict) -> ToolResult:
    today = _now(ctx).date()
    start = parse_date(a["date"], today) if a.get("date") else today
    end = start + dt.timedelta(days=a["days"])
    p, _, events = _events(ctx, a["path"])
    shown = events if a["all"] else [e for e in events if start.isoformat() <= e["date"] < end.isoformat()]
    span = "all dates" if a["all"] else f"{start} to {end - dt.timedelta(days=1)}"
    return ToolResult({"path": ctx.rel(p), "events": shown, "count": len(shown), "from": start.isoformat(),
                       "to": (end - dt.timedelta(days=1)).isoformat()},
                      f"{len(shown)} events ({span})"
                      + (": " + "; ".join(_event_line(e) for e in shown[:10]) if shown else ""))


_TODO = {**PATH, "description": "the to-do file", "default": "todo.txt"}
_CAL = {**PATH, "description": "the calendar file", "default": "calendar.txt"}

TOOLS = [
    Tool(name="timer.set", returns="{message, seconds, due, timer: {due, message}}", kind="assistant", risk=Risk.WRITE, fn=timer_set, idempotent=False,
         description="Set a reminder or timer that shows a message after a delay (like '10 minutes') "
                     "or at a time (like '17:30').",
         parameters=params(["message"], message=string("what to remind about", 500, min_length=1),
                           delay=string("how long from now, like '2 seconds' or '1 hour'", 100),
                           at=string("or when, like '17:30' or '2026-03-01 09:00'", 100))),
    Tool(name="todo.add", returns="{path, item, added, line, count}", kind="assistant", risk=Risk.WRITE, fn=todo_add, path_args={"path": "w"},
         description="Add an item to the to-do list file (todo.txt).",
         parameters=params(["item"], item=string("the task to add", 500, min_length=1), path=_TODO)),
    Tool(name="todo.list", returns="{path, items: [{n, text, done}], open, done}", kind="assistant", risk=Risk.READ, fn=todo_list, path_args={"path": "r"},
         description="Show the items on the to-do list (todo.txt).",
         parameters=params([], path=_TODO, include_done=boolean("also show finished items"))),
    Tool(name="todo.done", returns="{path, item, changed, line}", kind="assistant", risk=Risk.WRITE, fn=todo_done, path_args={"path": "w"},
         description="Mark a to-do item as done, by its number or words from it.",
         parameters=params(["item"], item=string("the item's number or words from it", 500, min_length=1),
                           path=_TODO)),
    Tool(name="calendar.add", returns="{path, event: {date, time, title}, added}", kind="assistant", risk=Risk.WRITE, fn=calendar_add, path_args={"path": "w"},
         description="Add an event to the calendar file (calendar.txt) on a date, optionally at a time.",
         parameters=params(["date", "title"], date=string("the day, like 2026-03-01, tomorrow or friday", 100,
                                                         min_length=1),
                           time=string("optional time, like 14:30 or 2pm", 50),
                           title=string("what the event is", 500, min_length=1), path=_CAL)),
    Tool(name="calendar.list", returns="{path, events: [{date, time, title}], count, from, to}", kind="assistant", risk=Risk.READ, fn=calendar_list, path_args={"path": "r"},
         description="Show calendar events from a day (default today) for some days (default 7).",
         parameters=params([], date=string("first day, like today or 2026-03-01", 100),
                           days=integer("how many days", 1, 366, 7),
                           all=boolean("show every event, whatever the date"), path=_CAL)),
]
