"""Generic normalizers: numbers, durations, dates and times a request states, and names
resolved to the files and columns the workspace has.

Map:
- ``numbers(text) -> set[str]``: the numbers a text states, as canonical strings
  (digits, decimals, number words up to twenty and the tens), for the answer check.
- ``Moments.of(request, now)``: every duration (seconds), date and time of day the
  request states, read by the same parsers the assistant tools use (n-grams of the
  request tried in turn); ``check_args(tool, args)`` keeps a reminder's or an event's
  date/time to those (or the clock), never the model's own.
- ``resolve_path(value, paths)`` / ``resolve_column(value, columns)``: a name the model
  wrote resolved to the one existing file or column it means (case, separators, a
  missing suffix); ``None`` when there is no single match.

None of these chooses a plan: they read values, never the phrasing of a request.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from typing import Any

from llmos.errors import InvalidArgument
from llmos.tools.builtin._when import parse_date, parse_delay, parse_time

__all__ = ["numbers", "Moments", "resolve_path", "resolve_column", "canon_number", "WhenError"]

_WORDS = {w: i for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"])}
_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
               "ninety": 90, "hundred": 100, "thousand": 1000, "dozen": 12, "half": 0.5})


def canon_number(s: str) -> str:
    """'1,200' -> '1200', '3.50' -> '3.5', '07' -> '7'."""
    s = s.replace(",", "")
    try:
        v = float(s)
    except ValueError:
        return s
    return f"{v:g}" if abs(v) < 1e15 else s


def numbers(text: str) -> set[str]:
    out = {canon_number(m.group(0)) for m in re.finditer(r"\d+(?:[.,]\d+)*", text)}
    for w in re.findall(r"[a-z]+", text.lower()):
        if w in _WORDS:
            out.add(canon_number(str(_WORDS[w])))
    return out


class WhenError(InvalidArgument):
    """A date or time the request does not state."""


@dataclass
class Moments:
    now: dt.datetime
    delays: list[float] = field(default_factory=list)        # seconds
    dates: list[dt.date] = field(default_factory=list)
    times: list[dt.time] = field(default_factory=list)

    @classmethod
    def of(cls, request: str, now: dt.datetime) -> Moments:
        m = cls(now)
        text = re.sub(r"(\d)(am|pm)\b", r"\1 \2", request.lower())
        toks = re.findall(r"[a-z]+|\d+(?::\d{2})?(?:\.\d+)?|\d{4}-\d{2}-\d{2}", text)
        used: set[int] = set()
        for n in (3, 2, 1):
            for i in range(len(toks) - n + 1):
                if any(j in used for j in range(i, i + n)):
                    continue
                gram = " ".join(toks[i:i + n])
                if not any(c.isdigit() for c in gram) and gram not in (
                        "today", "tomorrow", "noon", "midnight", "midday") and not any(
                        d in gram for d in ("day", "week", "hour", "minute", "second")):
                    continue
                got = m._read(gram)
                if got:
                    used.update(range(i, i + n))
        return m

    def _read(self, gram: str) -> bool:
        words = gram.split()
        if words and words[0] in _WORDS and len(words) > 1:
            gram = " ".join([str(_WORDS[words[0]]), *words[1:]])
        for fn, into in ((lambda s: parse_delay(s), self.delays),
                         (lambda s: parse_time(s), self.times),
                         (lambda s: parse_date(s, self.now.date()), self.dates)):
            try:
                v = fn(gram)
            except (InvalidArgument, ValueError, OverflowError):
                continue
            if isinstance(v, float) and not re.search(r"[a-z]", gram):
                continue              # a bare number is not a delay
            if v not in into:
                into.append(v)
            return True
        return False

    # ── the guard ──────────────────────────────────────────────────────────────
    def check_args(self, tool: str, args: dict[str, Any]) -> list[str]:
        """Keep date/time arguments to what the request states; returns notes of changes.
        Raises WhenError when the model's value is not the request's and no single value
        of the request can stand in."""
        notes: list[str] = []
        if tool == "timer.set":
            delay, at = args.get("delay"), args.get("at")
            if (isinstance(delay, str) and delay.strip() and isinstance(at, str) and at.strip()
                    and self.delays and not self.times):
                args.pop("at")           # the request states a delay and no time: the time is made up
                notes.append(f"timer.set: at {at!r} dropped; the request states a delay and no time")
            if isinstance(delay, str) and delay.strip():
                notes += self._keep(args, "delay", lambda s: parse_delay(s), self.delays,
                                    lambda v: f"{v:g} seconds")
            elif isinstance(at, str) and at.strip():
                notes += self._keep_at(args)
            elif self.delays:
                args["delay"] = f"{self.delays[0]:g} seconds"
                notes.append(f"timer.set: delay {args['delay']} from the request")
        elif tool == "calendar.add":
            date = args.get("date")
            if isinstance(date, str) and date.strip():
                if self.dates:
                    notes += self._keep(args, "date", lambda s: parse_date(s, self.now.date()), self.dates,
                                        lambda v: v.isoformat())
                else:
                    args["date"] = self.now.date().isoformat()
                    notes.append("calendar.add: the request names no day, so today")
            t = args.get("time")
            if isinstance(t, str) and t.strip():
                if self.times:
                    notes += self._keep(args, "time", lambda s: parse_time(s), self.times,
                                        lambda v: v.strftime("%H:%M"))
                else:
                    args.pop("time")
                    notes.append("calendar.add: the request names no time, so none")
            elif self.times and len(self.times) == 1:
                args["time"] = self.times[0].strftime("%H:%M")
                notes.append(f"calendar.add: time {args['time']} from the request")
        return notes

    def _keep(self, args: dict, key: str, parse, stated: list, show) -> list[str]:
        try:
            v = parse(args[key])
        except (InvalidArgument, ValueError):
            v = None
        if v is not None and v in stated:
            return []
        if len(stated) == 1:
            args[key] = show(stated[0])
            return [f"{key} {args[key]} from the request (the plan said something else)"]
        raise WhenError(f"{key}: the request does not say {args[key]!r}", field=key,
                        expected="a date or time stated in the request",
                        hint="say the day or time in the request, like 'tomorrow at 10am'")

    def _keep_at(self, args: dict) -> list[str]:
        s = str(args["at"])
        parts = re.split(r"[ T]", s.strip(), maxsplit=1)
        try:
            t = parse_time(parts[-1])
        except InvalidArgument:
            t = None
        if t is not None and t in self.times:
            return []
        if len(self.times) == 1:
            day = ""
            if self.dates:
                day = self.dates[0].isoformat() + " "
            args["at"] = day + self.times[0].strftime("%H:%M")
            return [f"at {args['at']} from the request"]
        if self.delays:
            args.pop("at")
            args["delay"] = f"{self.delays[0]:g} seconds"
            return [f"delay {args['delay']} from the request"]
        raise WhenError(f"at: the request does not say {s!r}", field="at",
                        expected="a time stated in the request",
                        hint="say the time in the request, like 'at 10am'")


def _key(s: str) -> str:
    return re.sub(r"[\s_\-]+", "", s.lower())


def resolve_path(value: str, paths: list[str]) -> str | None:
    """The one existing path ``value`` means, or None (exists already, or no single match)."""
    if not value or any(c in value for c in "*?$") or value in paths or value.rstrip("/") + "/" in paths:
        return None
    v = os.path.normpath(value.lstrip("./") or ".")
    if v in paths:
        return v
    k = _key(v)
    exact = [p for p in paths if _key(p.rstrip("/")) == k]
    if len(exact) == 1:
        return exact[0].rstrip("/")
    stem = [p for p in paths if not p.endswith("/") and _key(os.path.splitext(p)[0]) == k]
    if len(stem) == 1:
        return stem[0]
    return None


def resolve_column(value: str, columns: list[str]) -> str | None:
    """The one existing column ``value`` means (case and separators aside), or None."""
    if not isinstance(value, str) or value in columns:
        return None
    k = _key(value)
    hits = [c for c in columns if _key(c) == k]
    if len(hits) == 1:
        return hits[0]
    hits = [c for c in columns if _key(c).rstrip("s") == k.rstrip("s")]
    return hits[0] if len(hits) == 1 else None
