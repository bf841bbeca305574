"""The workflows' table and their runs, in ``workflows.db`` under the state directory.

Map:
- ``State``: active < paused < deleted (ordered; only active ones fire).
- ``Workflow``: one standing order: its trigger, its checked plan, the workspace it runs
  in, its owner, when it fired last and is due next (time rules), the files it has seen
  (file rules), the rights shown when it was approved.
- ``WorkflowStore``: save / get / list / set_state / record runs. SQLite in WAL with
  ``synchronous=FULL``: a trigger acknowledged survives a restart or ``kill -9``.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmos.errors import InvalidArgument, NotFound
from llmos.workflows.trigger import Trigger

__all__ = ["State", "Workflow", "WorkflowStore", "check_name"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS workflows (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, description TEXT NOT NULL, task TEXT NOT NULL,
    trigger TEXT NOT NULL, plan TEXT NOT NULL, workdir TEXT NOT NULL, rights TEXT NOT NULL,
    state INTEGER NOT NULL, created_s REAL NOT NULL, last_fire_s REAL, next_due_s REAL,
    seen TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS workflow_runs (
    id INTEGER PRIMARY KEY, workflow TEXT NOT NULL, cause TEXT NOT NULL, started_s REAL NOT NULL,
    finished_s REAL, status TEXT NOT NULL, run_ids TEXT NOT NULL DEFAULT '[]', answer TEXT,
    explain TEXT);
CREATE INDEX IF NOT EXISTS workflow_runs_wf ON workflow_runs(workflow, id);
"""
NAME_MAX = 60


class State(enum.IntEnum):
    ACTIVE = 1
    PAUSED = 2
    DELETED = 3


@dataclass
class Workflow:
    name: str
    owner: str                   # agent id whose rights it runs under
    description: str             # the person's words
    task: str                    # the description with the trigger taken out
    trigger: Trigger
    plan: dict[str, Any]         # Plan.to_dict() of the approved, checked plan
    workdir: str                 # the workspace its runs read and write
    rights: list[str]            # what was shown for approval
    state: State = State.ACTIVE  # changed by set_state only
    created_s: float = 0.0
    last_fire_s: float | None = None   # epoch seconds it last fired (any cause)
    next_due_s: float | None = None    # time rules: epoch seconds of the next fire
    seen: dict[str, list[float]] = field(default_factory=dict)   # file rules: name -> [mtime, size]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "owner": self.owner, "description": self.description, "task": self.task,
                "trigger": self.trigger.to_dict(), "plan": self.plan, "workdir": self.workdir,
                "rights": self.rights, "state": self.state.name.lower(), "created_s": self.created_s,
                "last_fire_s": self.last_fire_s, "next_due_s": self.next_due_s}


def check_name(name: Any) -> str:
    if (not isinstance(name, str) or not name or len(name) > NAME_MAX
            or not all(c.isalnum() or c in "-_." for c in name) or name[0] in "-."):
        raise InvalidArgument(f"name: {name!r} is not a workflow name", field="name",
                              expected=f"1-{NAME_MAX} letters, digits, '-', '_' or '.'")
    return name


class WorkflowStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            self.path.touch(mode=0o600)     # the state directory is private (boot checks it)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def _q(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    @staticmethod
    def _row(r: tuple) -> Workflow:
        return Workflow(r[0], r[1], r[2], r[3], Trigger.from_dict(json.loads(r[4])), json.loads(r[5]), r[6],
                        json.loads(r[7]), State(r[8]), r[9], r[10], r[11], json.loads(r[12]))

    _COLS = ("name, owner, description, task, trigger, plan, workdir, rights, state, created_s, "
             "last_fire_s, next_due_s, seen")

    def add(self, wf: Workflow) -> None:
        existing = self._q("SELECT state FROM workflows WHERE name = ?", (wf.name,))
        if existing and existing[0][0] != State.DELETED:
            raise InvalidArgument(f"name: a workflow named {wf.name!r} exists", field="name",
                                  expected="a new name (or delete the old one first)")
        self._q(f"INSERT OR REPLACE INTO workflows({self._COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (wf.name, wf.owner, wf.description, wf.task, json.dumps(wf.trigger.to_dict()),
                 json.dumps(wf.plan), wf.workdir, json.dumps(wf.rights), int(wf.state), wf.created_s,
                 wf.last_fire_s, wf.next_due_s, json.dumps(wf.seen)))

    def save(self, wf: Workflow) -> None:
        """Persist what firing changes: state, last and next fire, files seen."""
        self._q("UPDATE workflows SET state = ?, last_fire_s = ?, next_due_s = ?, seen = ? WHERE name = ?",
                (int(wf.state), wf.last_fire_s, wf.next_due_s, json.dumps(wf.seen), wf.name))

    def get(self, name: str) -> Workflow:
        rows = self._q(f"SELECT {self._COLS} FROM workflows WHERE name = ? AND state < ?",
                       (name, int(State.DELETED)))
        if not rows:
            raise NotFound(f"no workflow named {name!r}", hint="llmos workflow list shows them")
        return self._row(rows[0])

    def list(self) -> list[Workflow]:
        rows = self._q(f"SELECT {self._COLS} FROM workflows WHERE state < ? ORDER BY name", (int(State.DELETED),))
        return [self._row(r) for r in rows]

    # ── runs ───────────────────────────────────────────────────────────────
    def start_run(self, workflow: str, cause: str, now: float) -> int:
        with self._lock:
            cur = self._db.execute("INSERT INTO workflow_runs(workflow, cause, started_s, status) "
                                   "VALUES (?,?,?,'running')", (workflow, cause, now))
            return int(cur.lastrowid or 0)

    def finish_run(self, rid: int, status: str, now: float, run_ids: list[str], answer: str,
                   explain: str) -> None:
        self._q("UPDATE workflow_runs SET status = ?, finished_s = ?, run_ids = ?, answer = ?, explain = ? "
                "WHERE id = ?", (status, now, json.dumps(run_ids), answer, explain, rid))

    def runs(self, workflow: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        sql = "SELECT id, workflow, cause, started_s, finished_s, status, run_ids, answer, explain FROM workflow_runs"
        args: tuple = ()
        if workflow is not None:
            sql += " WHERE workflow = ?"
            args = (workflow,)
        rows = self._q(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        keys = ("id", "workflow", "cause", "started_s", "finished_s", "status", "run_ids", "answer", "explain")
        out = [dict(zip(keys, r, strict=True)) for r in rows]
        for d in out:
            d["run_ids"] = json.loads(d["run_ids"])
        return out
