"""The runner's date and time guard (``normalize.Moments``): a timer's time comes from the
request or the clock, never from the model."""

from __future__ import annotations

import datetime as dt

from llmos.shell.normalize import Moments
from llmos.tools.builtin._when import parse_delay

NOW = dt.datetime(2026, 12, 2, 9, 0)


def test_a_made_up_time_beside_the_requests_delay_is_dropped():
    m = Moments.of("remind me in 2 seconds to stretch", NOW)
    args = {"message": "stretch", "delay": "2", "at": "now"}
    notes = m.check_args("timer.set", args)
    assert "at" not in args and parse_delay(args["delay"]) == 2.0 and any("dropped" in n for n in notes)


def test_a_time_the_request_states_is_kept():
    m = Moments.of("remind me at 17:30 to call Bo", NOW)
    args = {"message": "call Bo", "at": "17:30"}
    m.check_args("timer.set", args)
    assert args["at"] == "17:30" and "delay" not in args
