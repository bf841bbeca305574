"""``ShellStore`` keeps runs as typed ``RunRecord``s, in the JSON form the shell always wrote:
a state directory from before the typed records loads, explains and is written back
byte for byte."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from llmos.errors import InvalidArgument, NotFound
from llmos.runs import RunRecord, RunStatus, StepStatus
from llmos.shell.execution import RunResult
from llmos.shell.render import explain_text
from llmos.shell.store import RunRow, ShellStore

OLD = json.loads((Path(__file__).parent / "data" / "records_v1.json").read_text())["runs"]


def _old_state(path: Path) -> None:
    """A shell.db as the shell wrote it before runs were typed: rows inserted by hand."""
    ShellStore(path).close()
    db = sqlite3.connect(path)
    for r in OLD.values():
        rec = json.loads(r["record"])
        db.execute("INSERT INTO runs (id, created, user, request, workdir, model, status, answer, record)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (rec["run"], rec["created"], rec["user"], rec["request"], rec["workdir"], rec["model"],
                    r["status"], rec["answer"], r["record"]))
    db.commit()
    db.close()


def test_an_old_state_directory_loads_as_typed_records(tmp_path):
    _old_state(tmp_path / "shell.db")
    store = ShellStore(tmp_path / "shell.db")
    rec = store.get_run(json.loads(OLD["repaired"]["record"])["run"])
    assert isinstance(rec, RunRecord) and rec.status is RunStatus.SUCCEEDED and rec.ok
    assert [s.status for s in rec.steps] == [StepStatus.SUCCEEDED]
    assert [(s.tool, s.status, s.error) for s in rec.replaced] == [
        ("files.read", StepStatus.FAILED, "no such file: notes-final.txt")]
    assert rec.revisions == 1 and rec.steps[0].pids and rec.steps[0].seconds > 0 and rec.steps[0].files == []
    assert rec.kernel["run process"]["result"] == {"status": "succeeded"} and rec.extra == {}
    waiting = store.get_run(json.loads(OLD["confirm"]["record"])["run"])
    assert waiting.status is RunStatus.NEEDS_CONFIRMATION and not waiting.ok
    assert waiting.steps[0].status is StepStatus.NEEDS_CONFIRMATION and not waiting.steps[0].status.had_effect
    rows = store.list_runs(10)
    assert all(isinstance(r, RunRow) for r in rows)
    assert sorted(r.status for r in rows) == [RunStatus.SUCCEEDED, RunStatus.PLANNED, RunStatus.NEEDS_CONFIRMATION]
    store.close()


@pytest.mark.parametrize("name", sorted(OLD))
def test_an_old_record_explains_and_answers_as_before(tmp_path, name):
    _old_state(tmp_path / "shell.db")
    store = ShellStore(tmp_path / "shell.db")
    rec = store.get_run(json.loads(OLD[name]["record"])["run"])
    assert explain_text(rec).split("\n", 1)[1] == OLD[name]["explain"]     # the first line holds local time
    assert RunResult.of(rec).to_json() == OLD[name]["json"]                # `llmos run --json`
    store.close()


@pytest.mark.parametrize("name", sorted(OLD))
def test_a_record_is_written_back_byte_for_byte(tmp_path, name):
    _old_state(tmp_path / "shell.db")
    store = ShellStore(tmp_path / "shell.db")
    rid = json.loads(OLD[name]["record"])["run"]
    store.save_run(store.get_run(rid))
    row = store.db.execute("SELECT record, status FROM runs WHERE id = ?", (rid,)).fetchone()
    assert (row["record"], row["status"]) == (OLD[name]["record"], OLD[name]["status"])
    assert type(row["status"]) is str
    store.close()


def test_a_rating_is_kept_beside_the_record(tmp_path):
    _old_state(tmp_path / "shell.db")
    store = ShellStore(tmp_path / "shell.db")
    rid = json.loads(OLD["repaired"]["record"])["run"]
    rated = store.rate(rid[:5], True, "right")
    again = store.get_run(rid)
    assert (rated.rating, rated.note) == ("good", "right") == (again.rating, again.note)
    assert "rating" not in again.to_dict() and store.approved()[0]["signature"] == "files.read"
    assert [r.rating for r in store.list_runs(10) if r.id == rid] == ["good"]
    store.close()


def test_a_record_that_cannot_be_read_is_one_clear_error(tmp_path):
    store = ShellStore(tmp_path / "shell.db")
    store.db.execute("INSERT INTO runs (id, created, user, request, workdir, status, record) "
                     "VALUES ('rbad', 1, '', 'x', '', 'failed', '{\"run\": \"rbad\", \"status\": \"exploded\"}')")
    with pytest.raises(InvalidArgument, match="status"):
        store.get_run("rbad")
    with pytest.raises(NotFound):
        store.get_run("rnone")
    store.close()
