"""The shell's own SQLite file (``$LLMOS_HOME/shell.db``): runs, ratings, approved plans, habits.

Map:
- ``ShellStore(path)``: opens (and migrates) the database; one connection, WAL.
- runs: ``save_run(record)``, ``get_run(id_or_prefix|"last") -> RunRecord``,
  ``list_runs(limit) -> [RunRow]`` (the columns only, for listings). A run is a
  ``llmos.runs.RunRecord`` in and out; its JSON in ``record`` has kept one form since v1.
- ratings: ``rate(run, good, note)`` — a good rating files the run's plan as an approved
  example; a bad one marks every approved copy of it (and the plan's signature) bad.
- approved examples: ``approved(limit)`` (never the bad ones), ``is_blocked(signature)``.
- habits: ``habit_evidence(user, key, value)``, ``habits(user)``, ``set_habit``.

The kernel's journal is not touched: this file is the shell's, next to it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmos.errors import InvalidArgument, NotFound, map_foreign
from llmos.runs import RunRecord, RunStatus

__all__ = ["ShellStore", "RunRow", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,          -- unix seconds
    user TEXT NOT NULL,
    request TEXT NOT NULL,
    workdir TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    answer TEXT NOT NULL DEFAULT '',
    record TEXT NOT NULL,           -- JSON: plan, steps, timings, decisions, notes
    rating TEXT,                    -- good | bad | NULL
    note TEXT
);
CREATE INDEX IF NOT EXISTS runs_created ON runs(created);
CREATE TABLE IF NOT EXISTS approved (
    run TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    facts TEXT NOT NULL,            -- JSON list of the fact lines the planner saw
    plan TEXT NOT NULL,             -- JSON plan (planner shape)
    signature TEXT NOT NULL,        -- tool sequence, e.g. files.read>calc
    bad INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS blocked (
    request TEXT NOT NULL,
    plan TEXT NOT NULL,
    PRIMARY KEY (request, plan)
);
CREATE TABLE IF NOT EXISTS habits (
    user TEXT NOT NULL,
    key TEXT NOT NULL,              -- output_dir | chart_kind | ...
    value TEXT NOT NULL,
    evidence INTEGER NOT NULL,      -- rated-good runs that showed it (explicit: 1000)
    updated REAL NOT NULL,
    PRIMARY KEY (user, key, value)
);
"""


@dataclass(frozen=True)
class RunRow:
    """One line of the run listing (``llmos history``): the columns, not the record."""

    id: str
    created: float                  # wall-clock seconds (epoch)
    request: str
    status: RunStatus
    answer: str
    rating: str | None              # good | bad | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "created": self.created, "request": self.request, "status": self.status,
                "answer": self.answer, "rating": self.rating}


class ShellStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as e:
            raise map_foreign(e, context=f"shell store {self.path}") from e

    def close(self) -> None:
        self.db.close()

    # ── runs ───────────────────────────────────────────────────────────────
    def save_run(self, rec: RunRecord) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO runs (id, created, user, request, workdir, model, status, answer, record)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rec.run, rec.created or time.time(), rec.user, rec.request, rec.workdir, rec.model,
             rec.status.label, rec.answer, json.dumps(rec.to_dict(), default=str)))

    def get_run(self, ref: str) -> RunRecord:
        """A run by id, unique id prefix, or ``last``."""
        if ref == "last":
            row = self.db.execute("SELECT * FROM runs ORDER BY created DESC LIMIT 1").fetchone()
        else:
            rows = self.db.execute("SELECT * FROM runs WHERE id LIKE ? ORDER BY created DESC LIMIT 2",
                                   (ref.replace("%", "") + "%",)).fetchall()
            if len(rows) > 1 and rows[0]["id"] != ref:
                raise InvalidArgument(f"run {ref!r} is ambiguous", field="run",
                                      expected="a longer prefix of the run id")
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"no run {ref!r}", hint="`llmos history` lists recent runs")
        return self._record(row)

    def list_runs(self, limit: int = 20) -> list[RunRow]:
        """The latest runs, newest first."""
        rows = self.db.execute("SELECT id, created, request, status, answer, rating FROM runs "
                               "ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [RunRow(r["id"], r["created"], r["request"], RunStatus.parse(r["status"]), r["answer"],
                       r["rating"]) for r in rows]

    @staticmethod
    def _record(row: sqlite3.Row) -> RunRecord:
        try:
            rec = RunRecord.from_dict(json.loads(row["record"]))
        except (ValueError, TypeError, InvalidArgument) as e:
            why = getattr(e, "message", e)
            raise InvalidArgument(f"run {row['id']}: its stored record cannot be read ({why})", field="record",
                                  expected="a run record as the shell writes it") from None
        rec.rating, rec.note = row["rating"], row["note"]
        return rec

    # ── ratings and approved plans ─────────────────────────────────────────
    def rate(self, run: str, good: bool, note: str | None = None) -> RunRecord:
        rec = self.get_run(run)
        rid = rec.run
        rating = "good" if good else "bad"
        self.db.execute("UPDATE runs SET rating = ?, note = ? WHERE id = ?", (rating, note, rid))
        plan = rec.plan or {}
        plan_json = json.dumps(plan, sort_keys=True)
        if good and plan.get("steps"):
            sig = ">".join(s.get("tool", "?") for s in plan["steps"])
            self.db.execute("DELETE FROM blocked WHERE request = ? AND plan = ?", (rec.request, plan_json))
            self.db.execute(
                "INSERT OR REPLACE INTO approved (run, request, facts, plan, signature, bad, created)"
                " VALUES (?, ?, ?, ?, ?, 0, ?)",
                (rid, rec.request, json.dumps(rec.facts or []), plan_json, sig, time.time()))
        elif not good:
            self.db.execute("UPDATE approved SET bad = 1 WHERE run = ? OR plan = ?", (rid, plan_json))
            self.db.execute("INSERT OR IGNORE INTO blocked (request, plan) VALUES (?, ?)",
                            (rec.request, plan_json))
        rec.rating, rec.note = rating, note
        return rec

    def approved(self, limit: int = 500) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT run, request, facts, plan, signature FROM approved WHERE bad = 0 "
                               "ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [{"id": f"approved:{r['run']}", "request": r["request"], "facts": json.loads(r["facts"]),
                 "plan": json.loads(r["plan"]), "signature": r["signature"]} for r in rows]

    def is_blocked(self, request: str, plan: dict[str, Any]) -> bool:
        """True when the person rated exactly this plan for exactly this request bad."""
        row = self.db.execute("SELECT 1 FROM blocked WHERE request = ? AND plan = ?",
                              (request, json.dumps(plan, sort_keys=True))).fetchone()
        return row is not None

    def bad_plans(self) -> set[str]:
        """Plans (sorted-key JSON) the person rated bad for any request."""
        return {r["plan"] for r in self.db.execute("SELECT plan FROM blocked")}

    # ── habits ─────────────────────────────────────────────────────────────
    def habit_evidence(self, user: str, key: str, value: str, weight: int = 1) -> None:
        self.db.execute(
            "INSERT INTO habits (user, key, value, evidence, updated) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(user, key, value) DO UPDATE SET evidence = evidence + excluded.evidence, "
            "updated = excluded.updated", (user, key, value, weight, time.time()))

    def set_habit(self, user: str, key: str, value: str | None) -> None:
        """An explicit habit beats learned ones; ``value=None`` forgets the key."""
        self.db.execute("DELETE FROM habits WHERE user = ? AND key = ?", (user, key))
        if value is not None:
            self.db.execute("INSERT INTO habits (user, key, value, evidence, updated) VALUES (?, ?, ?, 1000, ?)",
                            (user, key, value, time.time()))

    def habits(self, user: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT key, value, evidence, updated FROM habits WHERE user = ? "
                               "ORDER BY key, evidence DESC, updated DESC", (user,)).fetchall()
        return [dict(r) for r in rows]
