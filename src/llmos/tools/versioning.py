"""Versions of what file tools change: snapshot before, record after, put back on undo.

Map:
- ``changing(path, op, dest=None)``: a context manager around one change a file helper
  makes (``write_text``, ``copy_bytes``, ``move_path``, ``remove_path``): the previous
  entry (a file, a link, a whole folder) is kept as blobs first, and on exit the change
  is recorded with the state it left. Does nothing outside a tool call or when the
  call's ``ToolContext.versions`` is None. Nested changes inside an outer one on the
  same tree are covered by it and not recorded again.
- ``made_dir(path)``: a folder a helper created on the way (``mkdir -p``).
- ``state_of(path)``: the entry's ``State`` now (hash only, nothing kept).
- ``put_back(path, state, store)``: recreate a kept entry at ``path`` (the old entry
  there removed first), under the root's descriptors.

NOTE: every read and write here goes through descriptors: the folder holding the
entry is walked from its root with O_NOFOLLOW (``_common.parent_fd``), and everything
below is opened relative to its folder with O_NOFOLLOW, so a link is recorded as a
link and never followed. A hard-linked file (more than one name) is never read into a
blob (it may name a file outside the workspace): it is recorded as kind ``other`` and
reported as not restorable; so is an entry this process cannot read.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from llmos.kernel.versions import ABSENT, State, VersionStore, manifest, read_manifest
from llmos.tools.registry import current_context

__all__ = ["changing", "made_dir", "state_of", "put_back", "snapshot"]

log = logging.getLogger(__name__)
_local = threading.local()      # .active: paths of the changes open in this thread


def _active() -> list[Path]:
    if not hasattr(_local, "active"):
        _local.active = []
    return _local.active


def _covered(path: Path) -> bool:
    return any(path == a or a in path.parents for a in _active())


def _recorder():
    ctx = current_context()
    return getattr(ctx, "versions", None) if ctx is not None else None


# ── reading entries ─────────────────────────────────────────────────────────
def _file_state(fd: int, st: os.stat_result, store: VersionStore | None, blobs: list[str]) -> State:
    mode = stat.S_IMODE(st.st_mode)
    if store is not None:
        h, _ = store.put_stream(lambda n: os.read(fd, n))
        blobs.append(h)
        return State("file", h, mode)
    sha = hashlib.sha256()
    while chunk := os.read(fd, 1 << 20):
        sha.update(chunk)
    return State("file", sha.hexdigest(), mode)


def _state_at(dirfd: int, name: str, store: VersionStore | None, blobs: list[str]) -> State:
    """The entry ``name`` in folder ``dirfd``; its blobs kept in ``store`` when given."""
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return ABSENT
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        target = os.fsencode(os.readlink(name, dir_fd=dirfd))
        if store is not None:
            h, _ = store.put_bytes(target)
            blobs.append(h)
        else:
            h = hashlib.sha256(target).hexdigest()
        return State("link", h, mode)
    if stat.S_ISREG(st.st_mode):
        if st.st_nlink > 1:
            return State("other", None, mode)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dirfd)
        except PermissionError:          # a file this process may write but not read
            return State("other", None, mode)
        try:
            fst = os.fstat(fd)
            if not stat.S_ISREG(fst.st_mode) or fst.st_nlink > 1:
                return State("other", None, mode)
            return _file_state(fd, fst, store, blobs)
        finally:
            os.close(fd)
    if stat.S_ISDIR(st.st_mode):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
        except PermissionError:
            return State("other", None, mode)
        try:
            entries = [(n, _state_at(fd, n, store, blobs)) for n in sorted(os.listdir(fd))]
        finally:
            os.close(fd)
        data = manifest(entries)
        if store is not None:
            h, _ = store.put_bytes(data)
            blobs.append(h)
        else:
            h = hashlib.sha256(data).hexdigest()
        return State("dir", h, mode)
    return State("other", None, mode)


def snapshot(path: Path, store: VersionStore | None) -> tuple[State, list[str]]:
    """The entry at checked ``path`` (not following a final link) and the blobs kept."""
    from llmos.tools.builtin._common import parent_fd

    blobs: list[str] = []
    try:
        with parent_fd(path, "w") as (fd, name):
            return _state_at(fd, name, store, blobs), blobs
    except (FileNotFoundError, NotADirectoryError):
        return ABSENT, blobs


def state_of(path: Path) -> State:
    return snapshot(path, None)[0]


# ── recording ───────────────────────────────────────────────────────────────
@contextlib.contextmanager
def changing(path: Path, op: str, *, dest: Path | None = None) -> Iterator[None]:
    """Keep what ``path`` (and a move's ``dest``) held, run the change, record it."""
    rec = _recorder()
    if rec is None or _covered(path) and (dest is None or _covered(dest)):
        yield
        return
    store = rec.store
    before, blobs = snapshot(path, None if op == "move" else store)
    dest_before = None
    if dest is not None:
        dest_before, more = snapshot(dest, store)
        blobs += more
    active = _active()
    active.extend(p for p in (path, dest) if p is not None)
    recorded = False
    try:
        yield
    finally:
        del active[len(active) - (2 if dest is not None else 1):]
        after = state_of(dest if dest is not None else path)
        changed = (not state_of(path).same(before)) if dest is not None else not after.same(before)
        if changed:
            try:
                rec.record(op=op, path=str(path), before=before, after=after, blobs=blobs,
                           dest=str(dest) if dest is not None else None, dest_before=dest_before)
                recorded = True
            except (OSError, sqlite3.Error) as e:   # the change is made: say so, do not fail it
                log.error("versions: %s of %s was made but not recorded: %s", op, path, e)
        if not recorded:
            store.release(blobs)


def made_dir(path: Path) -> None:
    """Record a folder a helper just created (nothing was there before)."""
    rec = _recorder()
    if rec is None or _covered(path):
        return
    rec.record(op="mkdir", path=str(path), before=ABSENT, after=State("dir", hashlib.sha256(
        manifest([])).hexdigest()))


# ── putting back ────────────────────────────────────────────────────────────
def _remove_at(dirfd: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dirfd)
    else:
        os.unlink(name, dir_fd=dirfd)


def _create_at(dirfd: int, name: str, state: State, store: VersionStore, missed: list[str],
               shown: str) -> None:
    if state.kind == "absent":
        return
    if state.kind == "file":
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dirfd)
        try:
            with store.open_blob(state.hash or "") as src:
                while chunk := src.read(1 << 20):
                    os.write(fd, chunk)
            os.fchmod(fd, state.mode if state.mode is not None else 0o644)
        finally:
            os.close(fd)
    elif state.kind == "link":
        os.symlink(os.fsdecode(store.read_blob(state.hash or "")), name, dir_fd=dirfd)
    elif state.kind == "dir":
        entries = read_manifest(store.read_blob(state.hash or ""))
        os.mkdir(name, 0o700, dir_fd=dirfd)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
        try:
            for child, s in entries:
                _create_at(fd, child, s, store, missed, f"{shown}/{child}")
            os.fchmod(fd, state.mode if state.mode is not None else 0o755)
        finally:
            os.close(fd)
    else:
        missed.append(f"{shown}: a {'hard-linked file' if state.kind == 'other' else state.kind} "
                      "was not kept")


def put_back(path: Path, state: State, store: VersionStore) -> list[str]:
    """Replace the entry at checked ``path`` with kept ``state`` (recorded as a
    ``restore`` change when the call records versions). Returns what could not be
    recreated (entries that were never kept)."""
    from llmos.tools.builtin._common import parent_fd

    missed: list[str] = []
    with changing(path, "restore"), parent_fd(path, "w", create=state.kind != "absent") as (fd, name):
        _remove_at(fd, name)
        _create_at(fd, name, state, store, missed, str(path))
    return missed
