"""Versions of what file tools change: snapshot before, record after, put back on undo.

Map:
- ``changing(path, op, dest=None)``: a context manager around one change a file helper
  makes (``write_text``, ``copy_bytes``, ``move_path``, ``remove_path``): the previous
  entry (a file, a link, a whole folder) is kept as blobs first, and on exit the change
  is recorded with the state it left. Does nothing outside a tool call or when the
  call's ``ToolContext.versions`` is None. Nested changes inside an outer one on the
  same tree are covered by it and not recorded again.
- ``changing_tree(root, op, max_bytes=)``: around a program that writes under ``root``
  itself (``python.run``, ``shell.run``): the tree is kept first (files untouched since
  the last look are not read again), and one change is recorded per entry that differs.
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
import time
from collections.abc import Iterator
from pathlib import Path

from llmos.errors import LLMOSError
from llmos.kernel.versions import ABSENT, State, VersionStore, manifest, read_manifest
from llmos.tools.registry import current_context

__all__ = ["changing", "changing_tree", "made_dir", "state_of", "put_back", "snapshot"]

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
_CACHE: dict[tuple[int, ...], str] = {}    # (dev, ino, size, mtime_ns, ctime_ns) -> sha256
_CACHE_MAX = 100_000
_SETTLED_NS = 2_000_000_000                 # a file untouched this long hashes the same again


def _file_state(fd: int, st: os.stat_result, store: VersionStore | None, blobs: list[str]) -> State:
    """A regular file's state; with ``cache`` a file untouched for a while (by its mtime
    and ctime: any write moves ctime) is not read again when its blob is already kept."""
    mode = stat.S_IMODE(st.st_mode)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    known = _CACHE.get(key)
    if known is not None and (store is None or store.hold(known)):
        if store is not None:
            blobs.append(known)
        return State("file", known, mode)
    if store is not None:
        h, _ = store.put_stream(lambda n: os.read(fd, n))
        blobs.append(h)
    else:
        sha = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            sha.update(chunk)
        h = sha.hexdigest()
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _SETTLED_NS:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[key] = h
    return State("file", h, mode)


def _state_at(dirfd: int, name: str, store: VersionStore | None, blobs: list[str],
              manifests: dict[str, bytes] | None = None) -> State:
    """The entry ``name`` in folder ``dirfd``; its blobs kept in ``store`` when given,
    folder manifests collected by hash in ``manifests`` when given."""
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
        except FileNotFoundError:        # removed meanwhile
            return ABSENT
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
        except FileNotFoundError:
            return ABSENT
        try:
            return _dir_state(fd, mode, store, blobs, manifests)
        finally:
            os.close(fd)
    return State("other", None, mode)


def _dir_state(fd: int, mode: int, store: VersionStore | None, blobs: list[str],
               manifests: dict[str, bytes] | None) -> State:
    entries = [(n, _state_at(fd, n, store, blobs, manifests)) for n in sorted(os.listdir(fd))]
    data = manifest(entries)
    if store is not None:
        h, _ = store.put_bytes(data)
        blobs.append(h)
    else:
        h = hashlib.sha256(data).hexdigest()
    if manifests is not None:
        manifests[h] = data
    return State("dir", h, mode)


def snapshot(path: Path, store: VersionStore | None) -> tuple[State, list[str]]:
    """The entry at checked ``path`` (not following a final link) and the blobs kept."""
    from llmos.tools.builtin._common import parent_fd

    blobs: list[str] = []
    try:
        with parent_fd(path, "w") as (fd, name):
            return _state_at(fd, name, store, blobs), blobs
    except (FileNotFoundError, NotADirectoryError):
        return ABSENT, blobs
    except BaseException:
        if store is not None:
            store.release(blobs)
        raise


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
    try:
        yield
    finally:
        del active[len(active) - (2 if dest is not None else 1):]
        try:
            after = state_of(dest if dest is not None else path)
            changed = (not state_of(path).same(before)) if dest is not None else not after.same(before)
            if changed:
                rec.record(op=op, path=str(path), before=before, after=after, blobs=blobs,
                           dest=str(dest) if dest is not None else None, dest_before=dest_before)
        except (OSError, sqlite3.Error, LLMOSError) as e:   # the change is made: say so, do not fail it
            log.error("versions: %s of %s was made but not recorded: %s", op, path, e)
        finally:
            store.release(blobs)


def _tree_bytes(root: Path, limit: int) -> int | None:
    """Bytes of regular files under ``root`` (links not followed); None past ``limit``."""
    total, stack = 0, [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                    elif e.is_file(follow_symlinks=False):
                        total += e.stat(follow_symlinks=False).st_size
                        if total > limit:
                            return None
        except OSError:
            continue
    return total


def _root_state(root: Path, store: VersionStore | None, blobs: list[str],
                manifests: dict[str, bytes]) -> State:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return _dir_state(fd, stat.S_IMODE(os.fstat(fd).st_mode), store, blobs, manifests)
    finally:
        os.close(fd)


def _held(s: State, manifests: dict[str, bytes]) -> list[str]:
    """Every blob state ``s`` needs (a folder: its manifest and all below)."""
    if s.hash is None or s.kind not in ("file", "link", "dir"):
        return []
    if s.kind != "dir":
        return [s.hash]
    out = [s.hash]
    for _, child in read_manifest(manifests[s.hash]):
        out += _held(child, manifests)
    return out


def _diff(before: State, after: State, bm: dict[str, bytes], am: dict[str, bytes],
          at: Path) -> Iterator[tuple[Path, State, State]]:
    """The entries under ``at`` that differ, at the highest level that differs."""
    b, a = dict(read_manifest(bm[before.hash or ""])), dict(read_manifest(am[after.hash or ""]))
    for name in sorted(set(b) | set(a)):
        bs, as_ = b.get(name, ABSENT), a.get(name, ABSENT)
        if bs.same(as_):
            continue
        if bs.kind == as_.kind == "dir":
            yield from _diff(bs, as_, bm, am, at / name)
        else:
            yield at / name, bs, as_


@contextlib.contextmanager
def changing_tree(root: Path, op: str, *, max_bytes: int) -> Iterator[None]:
    """Around a program that writes under folder ``root`` itself (``python.run``,
    ``shell.run``): keep the tree first, then record one change per entry that differs.
    A tree over ``max_bytes`` is not kept (said in the log)."""
    rec = _recorder()
    if rec is None:
        yield
        return
    if _tree_bytes(root, max_bytes) is None:
        log.warning("versions: %s holds more than %d bytes; what this %s changes is not kept",
                    root, max_bytes, op)
        yield
        return
    store, blobs, bm = rec.store, [], {}
    try:
        before = _root_state(root, store, blobs, bm)
    except OSError as e:      # the program still runs; what it changes is not kept
        store.release(blobs)
        log.warning("versions: %s could not be kept before this %s (%s); its changes are not kept",
                    root, op, e)
        yield
        return
    try:
        yield
    finally:
        am: dict[str, bytes] = {}
        try:
            after = _root_state(root, None, [], am)
            for path, b, a in ([] if after.same(before) else _diff(before, after, bm, am, root)):
                rec.record(op=op, path=str(path), before=b, after=a, blobs=_held(b, bm))
        except (OSError, sqlite3.Error) as e:
            log.error("versions: what a %s changed under %s was not recorded: %s", op, root, e)
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
