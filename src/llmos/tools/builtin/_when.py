"""Reading times the way people write them, for reminders and the calendar.

- ``parse_delay("2 minutes")`` -> seconds ("90", "1h 30m", "half an hour", "in 5 mins").
- ``parse_date("tomorrow", today)`` -> date ("2026-03-01", "friday", "march 5", "5 mar 2026").
- ``parse_time("2:30 pm")`` -> time ("14:00", "9am", "noon", "midnight").
- ``parse_at("2026-03-01 09:00", now)`` -> datetime (a time alone means its next occurrence).
Each raises InvalidArgument naming the field and the forms it accepts.
"""

from __future__ import annotations

import datetime as dt
import re

from llmos.errors import InvalidArgument

DELAY_MAX_S = 366 * 86400
_UNITS = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
          "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
          "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
          "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800}
_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def parse_delay(text: str, field: str = "delay") -> float:
    s = text.strip().lower()
    s = re.sub(r"^(in|after)\s+", "", s).replace("half an hour", "30 minutes")
    s = re.sub(r"\b(an?|one)\s+", "1 ", s).replace(" and ", " ").replace(",", " ")
    if re.fullmatch(r"\d+(\.\d+)?", s):
        total = float(s)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", s)
        rest = re.sub(r"(\d+(?:\.\d+)?)\s*([a-z]+)", "", s).strip()
        if not parts or rest or any(u not in _UNITS for _, u in parts):
            raise InvalidArgument(f"{field}: cannot read {text!r} as a delay", field=field,
                                  expected="a delay like '2 minutes', '90 s', '1h 30m' or 'half an hour'")
        total = sum(float(n) * _UNITS[u] for n, u in parts)
    if not 0 < total <= DELAY_MAX_S:
        raise InvalidArgument(f"{field}: {text!r} is out of range", field=field,
                              expected="a delay between 1 second and 366 days")
    return total


def parse_time(text: str, field: str = "time") -> dt.time:
    s = text.strip().lower().replace(".", "")
    if s in ("noon", "midday"):
        return dt.time(12, 0)
    if s == "midnight":
        return dt.time(0, 0)
    m = re.fullmatch(r"(\d{1,2})(?::(\d{2}))?\s*(am|pm)?", s)
    if m:
        h, mi, ap = int(m.group(1)), int(m.group(2) or 0), m.group(3)
        if ap == "pm" and h < 12:
            h += 12
        elif ap == "am" and h == 12:
            h = 0
        if (m.group(2) or ap) and h < 24 and mi < 60:
            return dt.time(h, mi)
    raise InvalidArgument(f"{field}: cannot read {text!r} as a time of day", field=field,
                          expected="a time like 14:30, 9am, 2:30 pm or noon")


def parse_date(text: str, today: dt.date, field: str = "date") -> dt.date:
    s = text.strip().lower().rstrip(".")
    s = re.sub(r"^(on|this)\s+", "", s)
    if s == "today":
        return today
    if s == "tomorrow":
        return today + dt.timedelta(days=1)
    nxt = s.startswith("next ")
    s2 = s[5:] if nxt else s
    for i, name in enumerate(_DAYS):
        if s2 in (name, name[:3]):
            ahead = (i - today.weekday()) % 7
            return today + dt.timedelta(days=ahead + (7 if nxt and ahead == 0 else 0))
    try:
        return dt.date.fromisoformat(s)
    except ValueError:
        pass
    m = re.fullmatch(r"([a-z]+)\s+(\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(\d{4}))?", s) \
        or re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)?\s+([a-z]+)(?:,?\s+(\d{4}))?", s)
    if m:
        a, b, year = m.groups()
        mon, day = (a, b) if a.isalpha() else (b, a)
        if mon[:3] in _MONTHS:
            try:
                d = dt.date(int(year) if year else today.year, _MONTHS.index(mon[:3]) + 1, int(day))
            except ValueError:
                d = None
            if d is not None:
                return d if year or d >= today else d.replace(year=d.year + 1)
    raise InvalidArgument(f"{field}: cannot read {text!r} as a date", field=field,
                          expected="a date like 2026-03-01, today, tomorrow, friday or march 5")


def parse_at(text: str, now: dt.datetime, field: str = "at") -> dt.datetime:
    """An absolute moment: 'YYYY-MM-DD HH:MM', 'tomorrow 9am', or a time (next occurrence)."""
    s = text.strip()
    try:
        when = dt.datetime.fromisoformat(s)
        return when if when.tzinfo is None else when.astimezone().replace(tzinfo=None)
    except ValueError:
        pass
    try:
        t = parse_time(s, field)
        when = dt.datetime.combine(now.date(), t)
        return when if when > now else when + dt.timedelta(days=1)
    except InvalidArgument:
        pass
    m = re.fullmatch(r"(.+?)\s+(?:at\s+)?(\d{1,2}(?::\d{2})?\s*(?:am|pm)?|noon|midnight)", s, re.I)
    if m:
        return dt.datetime.combine(parse_date(m.group(1), now.date(), field), parse_time(m.group(2), field))
    raise InvalidArgument(f"{field}: cannot read {text!r} as a date and time", field=field,
                          expected="a moment like 2026-03-01 09:00, tomorrow 9am or 17:30")
