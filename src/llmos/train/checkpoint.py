"""Checkpoints and the job folder: the on-disk format a training job resumes from.

Map:
- ``JobDir(path)``: one job's folder under ``$LLMOS_HOME/train/<name>-<key>/``:
  ``spec.json`` (the normalized spec), ``progress.jsonl`` (one line per step from rank 0:
  step, loss, seconds), ``events.jsonl`` (start, yield, resume, end), ``logs/rank<N>.log``
  (each worker's output) and ``ckpt/``.
- ``Checkpoint``: one complete checkpoint, ``ckpt/step-<8 digits>/`` holding ``meta.json``
  and the tensors (``model.pt``, ``optim.pt``: full, unsharded state dicts, so a job can
  resume on another number of workers).
- ``write_checkpoint(job, step, losses, tensors)``: atomic: files go to ``step-N.tmp/``,
  are fsynced, ``meta.json`` is written last, then the folder is renamed into place and
  the parent fsynced; older checkpoints beyond ``keep`` are removed after that.
- ``latest(job)``: the newest complete checkpoint (a ``.tmp`` folder or one whose
  ``meta.json`` is missing or unreadable is never chosen); ``checkpoints(job)``: all, oldest first.

``meta.json`` (format 1)::

    {"format": 1, "step": 40, "losses": [...40 floats, the global loss of each step...],
     "recipe": "ddp", "world_size": 2, "spec_key": "3f2a...", "saved_s": 1764672000.0,
     "files": {"model.pt": 1234, "optim.pt": 2345}}          # name -> bytes

Torch is needed only to write or read the tensor files (``save`` / ``load_tensors``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["JobDir", "Checkpoint", "FORMAT", "write_checkpoint", "latest", "checkpoints", "read_progress"]

FORMAT = 1
_STEP_RE = re.compile(r"^step-(\d{8})$")


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int                     # optimizer steps done when it was saved
    losses: list[float]           # global loss of steps 1..step
    meta: dict[str, Any]

    def file(self, name: str) -> Path:
        return self.path / name


class JobDir:
    """One training job's folder. Owner: the job's runner (kernel side) and its rank 0."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.ckpt = self.path / "ckpt"
        self.logs = self.path / "logs"
        self.spec_file = self.path / "spec.json"
        self.progress = self.path / "progress.jsonl"
        self.events = self.path / "events.jsonl"

    def create(self, spec: dict[str, Any]) -> None:
        for d in (self.path, self.ckpt, self.logs):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        _atomic_text(self.spec_file, json.dumps(spec, indent=1, sort_keys=True))

    def event(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"t": time.time(), "event": kind, **fields})
        with open(self.events, "a") as f:
            f.write(line + "\n")

    def read_events(self) -> list[dict[str, Any]]:
        return _jsonl(self.events)

    def log(self, rank: int) -> Path:
        return self.logs / f"rank{rank}.log"

    def trim_progress(self, step: int) -> None:
        """Keep the progress lines of steps <= ``step`` (a resume drops what the lost run
        did after its last checkpoint; those steps are run again)."""
        rows = [r for r in _jsonl(self.progress) if isinstance(r.get("step"), int) and r["step"] <= step]
        _atomic_text(self.progress, "".join(json.dumps(r) + "\n" for r in rows))


def checkpoints(job: JobDir) -> list[Checkpoint]:
    """Complete checkpoints, oldest first."""
    out: list[Checkpoint] = []
    if not job.ckpt.is_dir():
        return out
    for d in job.ckpt.iterdir():
        m = _STEP_RE.match(d.name)
        if not m or not d.is_dir():
            continue
        meta = _read_meta(d)
        if meta is None or meta.get("step") != int(m.group(1)):
            continue
        if any(not (d / n).is_file() or (d / n).stat().st_size != size
               for n, size in (meta.get("files") or {}).items()):
            continue
        out.append(Checkpoint(d, meta["step"], [float(x) for x in meta.get("losses", [])], meta))
    out.sort(key=lambda c: c.step)
    return out


def latest(job: JobDir) -> Checkpoint | None:
    cks = checkpoints(job)
    return cks[-1] if cks else None


def write_checkpoint(job: JobDir, step: int, losses: Iterable[float], *, write: Callable[[Path], None],
                     keep: int = 2, **meta: Any) -> Checkpoint:
    """Write one checkpoint atomically. ``write(folder)`` puts the tensor files in ``folder``."""
    final = job.ckpt / f"step-{step:08d}"
    tmp = job.ckpt / f"step-{step:08d}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, mode=0o700)
    write(tmp)
    files = {}
    for f in sorted(tmp.iterdir()):
        _fsync(f)
        files[f.name] = f.stat().st_size
    body = {"format": FORMAT, "step": step, "losses": [float(x) for x in losses], "saved_s": time.time(),
            "files": files, **meta}
    _atomic_text(tmp / "meta.json", json.dumps(body))
    if final.exists():              # the same step saved before a crash: replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(job.ckpt)
    for old in checkpoints(job)[:-keep]:
        shutil.rmtree(old.path, ignore_errors=True)
    return Checkpoint(final, step, body["losses"], body)


def read_progress(job: JobDir) -> list[dict[str, Any]]:
    """Progress lines, one per step (the last line for a step wins)."""
    by_step: dict[int, dict[str, Any]] = {}
    for r in _jsonl(job.progress):
        if isinstance(r.get("step"), int):
            by_step[r["step"]] = r
    return [by_step[s] for s in sorted(by_step)]


# ── helpers ────────────────────────────────────────────────────────────────
def _read_meta(d: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((d / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("step"), int):
        return None
    if not isinstance(meta.get("losses", []), list):
        return None
    return meta


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        text = path.read_text()
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue                 # a line cut by a crash
        if isinstance(r, dict):
            rows.append(r)
    return rows


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync(path)
    except OSError:
        pass
