"""The planner's context block: the facts of the workspace, the clock and the agent's rights.

Map:
- ``Workspace.scan(workdir, now)``: the file tree with sizes (at most ``MAX_FILES``
  entries, hidden files left out), and for each table file (.csv, .tsv, .json, .jsonl)
  its columns, row count and first rows. The text of other files is not shown: what
  a file says is data a step reads, never part of the planning prompt.
- ``Workspace.lines(request)``: the block as the model reads it, files the request
  names first, then ``memory``: lines ``shell.recall`` found in the person's memory
  (labelled as memory, set by the run after ``scan``; empty when memory is off).
- ``Workspace.paths`` / ``columns`` / ``table_of``: what the schema and the normalizer
  may draw on.
- ``mentioned(request, names)``: the existing names a request names (by name, stem or
  pattern), for the runner's named-path guard and the answer.

Nothing here reads the request's phrasing to choose a plan: it only states facts.
"""

from __future__ import annotations

import csv
import datetime as dt
import fnmatch
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Workspace", "Table", "mentioned", "MAX_FILES", "is_named"]

MAX_FILES = 60              # entries listed in the context block
TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")
PEEK_BYTES = 64 << 10       # bytes read from a table to find its columns and rows
SHOWN_ROWS = 2              # first rows shown per table
CELL_CHARS = 24             # longest cell shown


@dataclass
class Table:
    columns: list[str]
    rows: int                              # data rows (header not counted), -1 when unknown
    first: list[list[str]] = field(default_factory=list)


@dataclass
class Workspace:
    root: Path
    now: dt.datetime
    files: list[tuple[str, int]] = field(default_factory=list)     # (relative path, bytes); dirs end "/"
    tables: dict[str, Table] = field(default_factory=dict)
    more: int = 0                                                  # entries not listed
    memory: list[str] = field(default_factory=list)                # shell.recall's labelled lines

    @classmethod
    def scan(cls, workdir: str | Path, now: dt.datetime | None = None) -> Workspace:
        root = Path(workdir)
        ws = cls(root, now or dt.datetime.now())
        entries: list[tuple[str, int]] = []
        try:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
                rel_dir = os.path.relpath(dirpath, root)
                depth = 0 if rel_dir == "." else rel_dir.count(os.sep) + 1
                if depth > 3:
                    dirnames[:] = []
                    continue
                for d in dirnames:
                    entries.append((os.path.normpath(os.path.join(rel_dir, d)) + "/", 0))
                for f in sorted(filenames):
                    if f.startswith("."):
                        continue
                    p = Path(dirpath) / f
                    try:
                        if p.is_symlink():
                            continue
                        size = p.stat().st_size
                    except OSError:
                        continue
                    entries.append((os.path.normpath(os.path.join(rel_dir, f)), size))
                if len(entries) > 4 * MAX_FILES:
                    break
        except OSError:
            pass
        ws.more = max(0, len(entries) - MAX_FILES)
        ws.files = entries[:MAX_FILES]
        for rel, _size in ws.files:
            if rel.endswith("/"):
                continue
            low = rel.lower()
            if low.endswith(TABLE_SUFFIXES):
                t = _table(root / rel)
                if t is not None:
                    ws.tables[rel] = t
        return ws

    # ── what the schema and the normalizer draw on ─────────────────────────────
    @property
    def paths(self) -> list[str]:
        return [p for p, _ in self.files]

    @property
    def columns(self) -> list[str]:
        seen: list[str] = []
        for t in self.tables.values():
            for c in t.columns:
                if c not in seen:
                    seen.append(c)
        return seen

    def table_of(self, path: str) -> Table | None:
        return self.tables.get(os.path.normpath(path))

    # ── the block the model reads ──────────────────────────────────────────────
    def lines(self, request: str = "", rights: str = "") -> list[str]:
        out = [f"Today: {self.now:%Y-%m-%d} ({self.now:%A}), time {self.now:%H:%M}."]
        if rights:
            out.append(f"Rights: {rights}")
        if not self.files:
            out.append("Files: none (the workspace is empty).")
            return [*out, *self.memory]
        named = set(mentioned(request, self.paths)) if request else set()
        order = sorted(self.files, key=lambda e: (e[0] not in named, e[0]))
        out.append("Files:")
        for rel, size in order:
            if rel.endswith("/"):
                out.append(f"- {rel}")
                continue
            line = f"- {rel} ({_size(size)})"
            t = self.tables.get(rel)
            if t is not None:
                line += f" columns: {', '.join(t.columns)}"
                if t.rows >= 0:
                    line += f"; {t.rows} rows"
                if t.first:
                    line += "; first: " + " | ".join(",".join(r) for r in t.first)
            out.append(line)
        if self.more:
            out.append(f"- ... and {self.more} more")
        return [*out, *self.memory]


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1 << 20:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1 << 20):.1f} MB"


def _cell(v: Any) -> str:
    s = " ".join(str(v).split())
    return s if len(s) <= CELL_CHARS else s[: CELL_CHARS - 1] + "…"


def _table(p: Path) -> Table | None:
    try:
        with open(p, "rb") as f:
            head = f.read(PEEK_BYTES)
            whole = len(head) < PEEK_BYTES
    except OSError:
        return None
    text = head.decode("utf-8", "replace")
    low = p.name.lower()
    try:
        if low.endswith((".csv", ".tsv")):
            rows = list(csv.reader(io.StringIO(text), delimiter="\t" if low.endswith(".tsv") else ","))
            rows = [r for r in rows if any(c.strip() for c in r)]
            if not rows:
                return None
            n = len(rows) - 1 if whole else -1
            return Table([c.strip() for c in rows[0]], n, [[_cell(c) for c in r] for r in rows[1:1 + SHOWN_ROWS]])
        if low.endswith(".jsonl"):
            recs = [json.loads(line) for line in text.splitlines()[:50] if line.strip()][:SHOWN_ROWS + 1]
            n = sum(1 for line in text.splitlines() if line.strip()) if whole else -1
            return _records(recs, n)
        if whole:
            data = json.loads(text)
            if isinstance(data, dict):
                lists = [v for v in data.values() if isinstance(v, list)]
                data = lists[0] if len(lists) == 1 else [data]
            if isinstance(data, list):
                return _records(data, len(data))
    except (ValueError, csv.Error):
        return None
    return None


def _records(recs: list, n: int) -> Table | None:
    recs = [r for r in recs if isinstance(r, dict)]
    if not recs:
        return None
    cols: list[str] = []
    for r in recs[:20]:
        for k in r:
            if k not in cols:
                cols.append(str(k))
    first = [[_cell(r.get(c, "")) for c in cols] for r in recs[:SHOWN_ROWS]]
    return Table(cols, n, first)


# ── names a request names ─────────────────────────────────────────────────────
def _norm(s: str) -> str:
    return re.sub(r"[\s_\-]+", " ", s.lower()).strip()


def is_named(path: str, request: str) -> bool:
    """Whether ``request`` names ``path``: its file name or its stem (3+ characters) as a
    word, or a pattern (``*.tmp``, ``.tmp``) that matches it. A path under a folder the request names is named too."""
    req = request.lower()
    nreq = _norm(request)
    path = path.rstrip("/")
    parts = Path(path).parts
    for i in range(len(parts)):
        name = parts[i]
        stem, ext = os.path.splitext(name)
        if _word_in(name.lower(), req) or (len(stem) >= 3 and _word_in(_norm(stem), nreq)):
            return True
        if i == len(parts) - 1 and ext:
            e = ext.lower()
            if re.search(rf"(?<![\w.]){re.escape(e)}(?!\w)", req):         # ".tmp", "*.tmp"
                return True
    for pat in re.findall(r"[\w.\-/]*[*?][\w.\-*?/]*", request):
        if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(Path(path).name, pat):
            return True
    return False


def _word_in(word: str, text: str) -> bool:
    return bool(word) and re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", text) is not None


def mentioned(request: str, paths: list[str]) -> list[str]:
    """The existing paths the request names (see ``is_named``)."""
    return [p for p in paths if is_named(p, request)]
