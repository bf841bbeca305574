"""Reminders through the kernel's timer hook; to-do list and calendar as workspace files."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from llmos.errors import InvalidArgument, NotFound, PermissionDenied, ToolError
from llmos.tools.builtin._when import parse_date, parse_delay, parse_time


@pytest.fixture
def timers(ctx):
    got = []

    def set_timer(seconds, message):
        got.append((seconds, message))
        return {"timer": len(got), "due_in_s": seconds}
    return got, dataclasses.replace(ctx, set_timer=set_timer)


def test_timer_after_a_delay(reg, timers):
    got, tctx = timers
    r = reg.call("timer.set", {"message": "stretch", "delay": "2 seconds"}, tctx)
    assert got == [(2.0, "stretch")]
    assert r.output["timer"] == {"timer": 1, "due_in_s": 2.0}
    assert r.output["due"] == "2026-03-04T10:00:02" and "stretch" in r.summary


def test_timer_at_a_time(reg, timers):
    got, tctx = timers
    reg.call("timer.set", {"message": "tea", "at": "17:30"}, tctx)
    reg.call("timer.set", {"message": "early", "at": "9am"}, tctx)         # passed today: tomorrow
    reg.call("timer.set", {"message": "iso", "at": "2026-03-05 10:00"}, tctx)
    assert [s for s, _ in got] == [7.5 * 3600, 23 * 3600, 86400]


def test_timer_errors(reg, ctx, timers):
    with pytest.raises(ToolError, match="kernel"):
        reg.call("timer.set", {"message": "x", "delay": "1 minute"}, ctx)
    _, tctx = timers
    for bad in ({"message": "x"}, {"message": "x", "delay": "1m", "at": "10:00"},
                {"message": "x", "delay": "soonish"}, {"message": "x", "at": "2020-01-01 00:00"}):
        with pytest.raises(InvalidArgument):
            reg.call("timer.set", bad, tctx)


@pytest.mark.parametrize("text,seconds", [("2 seconds", 2), ("in 5 mins", 300), ("1h 30m", 5400),
                                          ("half an hour", 1800), ("an hour", 3600), ("90", 90),
                                          ("2 days", 172800)])
def test_parse_delay(text, seconds):
    assert parse_delay(text) == seconds


def test_parse_dates_and_times():
    today = dt.date(2026, 3, 4)          # a Wednesday
    assert parse_date("tomorrow", today) == dt.date(2026, 3, 5)
    assert parse_date("friday", today) == dt.date(2026, 3, 6)
    assert parse_date("wednesday", today) == today
    assert parse_date("next wednesday", today) == dt.date(2026, 3, 11)
    assert parse_date("march 5", today) == dt.date(2026, 3, 5)
    assert parse_date("1 feb", today) == dt.date(2027, 2, 1)
    assert parse_date("2026-12-24", today) == dt.date(2026, 12, 24)
    assert parse_time("2:30 pm") == dt.time(14, 30) and parse_time("noon") == dt.time(12)
    assert parse_time("12am") == dt.time(0)
    for bad in ("someday", "feb 30"):
        with pytest.raises(InvalidArgument):
            parse_date(bad, today)
    for bad in ("25:00", "9", "later"):
        with pytest.raises(InvalidArgument):
            parse_time(bad)


def test_todo_keeps_the_file_style(call, ws):
    (ws / "todo.txt").write_text("- pay rent\n")
    r = call("todo.add", item="call the dentist")
    assert (ws / "todo.txt").read_text() == "- pay rent\n- call the dentist\n"
    assert r.output["added"] and r.files == ["todo.txt"]
    assert not call("todo.add", item="Call the dentist").output["added"]      # already there
    r = call("todo.done", item="dentist")
    assert (ws / "todo.txt").read_text() == "- pay rent\n- [x] call the dentist\n"
    r = call("todo.list")
    assert [i["text"] for i in r.output["items"]] == ["pay rent"] and r.output["done"] == 1
    assert len(call("todo.list", include_done=True).output["items"]) == 2


def test_todo_plain_numbered_and_new_file(call, ws):
    call("todo.add", item="water plants", path="plain.txt")
    call("todo.add", item="read", path="plain.txt")
    call("todo.done", item="1", path="plain.txt")
    assert (ws / "plain.txt").read_text() == "x water plants\nread\n"
    (ws / "num.txt").write_text("1. one\n2. two\n")
    call("todo.add", item="three", path="num.txt")
    assert (ws / "num.txt").read_text().splitlines()[-1] == "3. three"


def test_todo_errors(call, ws):
    with pytest.raises(NotFound):
        call("todo.done", item="x")
    (ws / "todo.txt").write_text("buy milk\nbuy bread\n")
    with pytest.raises(InvalidArgument, match="matches 2"):
        call("todo.done", item="buy")
    with pytest.raises(InvalidArgument):
        call("todo.done", item="9")
    with pytest.raises(NotFound):
        call("todo.done", item="walk")
    with pytest.raises(PermissionDenied):
        call("todo.add", item="x", path="../todo.txt")


def test_calendar(call, ws):
    call("calendar.add", date="friday", time="2pm", title="dentist")
    call("calendar.add", date="2026-03-04", title="launch day")
    call("calendar.add", date="tomorrow", time="09:00", title="standup")
    assert not call("calendar.add", date="friday", time="14:00", title="dentist").output["added"]
    assert (ws / "calendar.txt").read_text() == (
        "2026-03-04 launch day\n2026-03-05 09:00 standup\n2026-03-06 14:00 dentist\n")
    r = call("calendar.list", days=2)
    assert [e["title"] for e in r.output["events"]] == ["launch day", "standup"]
    assert call("calendar.list", date="friday", days=1).output["events"][0]["time"] == "14:00"
    assert call("calendar.list", all=True).output["count"] == 3
    with pytest.raises(InvalidArgument):
        call("calendar.add", date="the 5th of never", title="x")
