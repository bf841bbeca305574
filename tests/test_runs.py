"""``llmos.runs``: ordered run and step statuses, typed run records."""

from __future__ import annotations

import pytest

from llmos.errors import InvalidArgument
from llmos.runs import Run, RunStatus, Step, StepStatus


def test_finished_and_ok_come_from_the_order():
    assert [s.label for s in RunStatus if not s.finished] == ["planning", "running", "pending"]
    assert RunStatus.final() == ("succeeded", "planned", "failed", "denied", "needs_confirmation",
                                 "rejected", "cancelled")
    assert [s for s in RunStatus if s.ok] == [RunStatus.SUCCEEDED, RunStatus.PLANNED]
    assert StepStatus.no_effect() == ("planned", "skipped", "denied", "needs_confirmation")
    assert StepStatus.RUNNING.had_effect and not StepStatus.RUNNING.finished


def test_the_api_and_the_sdk_use_the_same_statuses():
    from llmos.api import runs as api_runs
    from llmos.sdk import client

    assert api_runs.FINAL == client.RUN_FINAL == RunStatus.final()
    assert StepStatus.no_effect() == api_runs.NO_EFFECT


def test_parse_names_the_expected_values():
    assert RunStatus.parse("Needs_Confirmation") is RunStatus.NEEDS_CONFIRMATION
    with pytest.raises(InvalidArgument, match="expected|unknown") as e:
        RunStatus.parse("done")
    assert e.value.field == "status" and "planning" in e.value.expected


def test_a_run_round_trips_and_keeps_unknown_keys():
    d = {"id": "r1", "request": "count lines", "owner": "root", "status": "succeeded", "created": 1.0,
         "updated": 2.0, "plan": [{"tool": "files.count", "args": {"path": "a"}}],
         "steps": [{"tool": "files.count", "args": {"path": "a"}, "why": "count", "risk": "read",
                    "status": "succeeded", "summary": "3 lines", "attempt": 2}],
         "pending": None, "answer": "3", "explanation": None, "error": None, "shell_run": "s1"}
    run = Run.from_dict(d)
    assert run.status is RunStatus.SUCCEEDED and run.finished and run.extra == {"shell_run": "s1"}
    assert run.steps[0] == Step(tool="files.count", args={"path": "a"}, status=StepStatus.SUCCEEDED,
                                why="count", risk="read", summary="3 lines", extra={"attempt": 2})
    assert run.to_dict() == d


def test_statuses_travel_as_their_names_and_order_only_among_themselves():
    import json
    import sqlite3

    assert RunStatus.NEEDS_CONFIRMATION == "needs_confirmation" and f"{StepStatus.SKIPPED}" == "skipped"
    assert json.dumps({"s": RunStatus.PLANNED}) == '{"s": "planned"}'
    db = sqlite3.connect(":memory:")
    assert db.execute("SELECT ?, typeof(?)", (RunStatus.DENIED, RunStatus.DENIED)).fetchone() == ("denied", "text")
    assert sorted([RunStatus.CANCELLED, RunStatus.PLANNING, RunStatus.FAILED]) == [
        RunStatus.PLANNING, RunStatus.FAILED, RunStatus.CANCELLED]          # the lifecycle, not the alphabet
    with pytest.raises(TypeError, match="ordered only against itself"):
        assert RunStatus.SUCCEEDED < "zzz"
    with pytest.raises(TypeError):
        assert RunStatus.SUCCEEDED >= StepStatus.SUCCEEDED


def test_a_step_shows_its_public_part_and_keeps_the_rest():
    s = Step.from_dict({"tool": "files.count", "args": {"path": "a"}, "why": "", "each": None, "risk": "read",
                        "status": "succeeded", "seconds": 0.5, "pids": [3], "summary": "", "output": "{}",
                        "files": []})
    assert s.public() == {"tool": "files.count", "args": {"path": "a"}, "risk": "read", "status": "succeeded"}
    assert list(s.to_dict()) == ["tool", "args", "why", "each", "risk", "status", "seconds", "pids", "summary",
                                 "output", "files"]
    s.update(status=StepStatus.FAILED, error="boom")
    assert s.status is StepStatus.FAILED and s.to_dict()["error"] == "boom"
    with pytest.raises(AttributeError, match="no field"):
        s.update(colour="red")
