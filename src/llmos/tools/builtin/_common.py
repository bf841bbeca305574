"""Helpers shared by the builtin tools: schema builders and careful file access.

Map:
- schema builders: ``params(required, **props)``, ``string``, ``integer``, ``number``,
  ``boolean``, ``enum``; ``PATH`` / ``SAVE_TO`` are the usual path arguments.
- ``expand(ctx, pattern, mode)``: a path or glob pattern -> checked paths (sorted).
- ``walk(base, pattern, recursive)``: entries of a folder; links are listed, never followed.
- ``lexical(ctx, path)``: a path whose *last* component is not followed (delete/move a
  link itself), with its parent checked.
- ``open_beneath(path, flags, mode)``: open a checked path under its root's directory
  handle, so nothing swapped in between the check and the open can lead outside
  (``openat2`` with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS where the kernel has it, else a
  walk of O_NOFOLLOW opens from the root's descriptor); hard-linked files are refused.
- ``read_text(path, limit)`` / ``write_text(path, text, append=)``: bounded reads and
  writes through ``open_beneath``; writes count against the workspace byte quota.
- every change (write, copy, move, delete, a folder made) keeps the previous entry
  first when the call records versions (``tools.versioning.changing``).
- ``human_size(n)``.

NOTE: the roots come from the tool call's context (``registry.current_context()``, set
by ``ToolRegistry.call``); a helper called outside a call walks from ``/``. Paths given
to these helpers are already checked and resolved (``ctx.resolve``), so a link met while
opening can only be one planted after the check: it is refused (ELOOP/EXDEV), never
followed. A hard link in the workspace can name any file of the same file system, so a
regular file with more than one name is refused for reading and writing.
"""

from __future__ import annotations

import ctypes
import errno
import fnmatch
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from llmos import params as P
from llmos.errors import InvalidArgument, NotFound, PermissionDenied, QuotaExceeded, ToolError
from llmos.tools.registry import PathMode, ToolContext, current_context
from llmos.tools.versioning import changing, made_dir

PATH_MAX_CHARS = 1024          # longest path argument
GLOB_MAX_MATCHES = 10_000      # most paths one pattern may expand to
TEXT_MAX_CHARS = 1_000_000     # longest text a tool may write in one call


# ── schema builders ─────────────────────────────────────────────────────────
def params(required: tuple[str, ...] | list[str] = (), **props: dict) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required),
            "additionalProperties": False}


def string(desc: str, max_length: int = PATH_MAX_CHARS, default: str | None = None,
           min_length: int = 0) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "string", "description": desc, "maxLength": max_length}
    if min_length:
        s["minLength"] = min_length
    if default is not None:
        s["default"] = default
    return s


def integer(desc: str, lo: int, hi: int, default: int | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "integer", "description": desc, "minimum": lo, "maximum": hi}
    if default is not None:
        s["default"] = default
    return s


def number(desc: str, lo: float, hi: float, default: float | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "number", "description": desc, "minimum": lo, "maximum": hi}
    if default is not None:
        s["default"] = default
    return s


def boolean(desc: str, default: bool = False) -> dict[str, Any]:
    return {"type": "boolean", "description": desc, "default": default}


def enum(desc: str, values: list[str], default: str | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "string", "enum": values, "description": desc}
    if default is not None:
        s["default"] = default
    return s


PATH = string("file path, relative to the workspace", min_length=1)
SAVE_TO = string("optional file to save the result in", min_length=1)


# ── paths ───────────────────────────────────────────────────────────────────
def has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def expand(ctx: ToolContext, pattern: str, mode: PathMode, *, field: str = "path",
           must_match: bool = False) -> list[Path]:
    """``pattern`` (a path or a glob such as ``*.tmp`` or ``data/**/*.csv``) -> the checked
    paths it names: resolved for ``"r"``; for ``"w"`` the entry itself (see ``lexical``).
    Names starting with a dot match only a pattern that asks for them."""
    if not has_magic(pattern):
        return [ctx.resolve(pattern, "r", field=field) if mode == "r" else lexical(ctx, pattern, field=field)]
    parts = Path(pattern).parts
    first = next(i for i, p in enumerate(parts) if has_magic(p))
    base = ctx.resolve(str(Path(*parts[:first])) if first else ".", mode, field=field)
    rest = str(Path(*parts[first:]))
    hidden_ok = any(p.startswith(".") for p in parts[first:])
    out: list[Path] = []
    for m in base.glob(rest):
        rel_parts = m.relative_to(base).parts
        if not hidden_ok and any(p.startswith(".") for p in rel_parts):
            continue
        # reads follow a matched link (and check where it leads); writes act on the link
        # itself, but the directories above it may be links too: check its parent
        if mode == "r" or m.name in ("", ".", ".."):
            out.append(ctx.resolve(str(m), mode, field=field))
        else:
            out.append(ctx.resolve(str(m.parent), "w", field=field) / m.name)
        if len(out) > GLOB_MAX_MATCHES:
            raise InvalidArgument(f"{field}: {pattern!r} matches more than {GLOB_MAX_MATCHES} paths",
                                  field=field, expected="a narrower pattern")
    if must_match and not out:
        raise NotFound(f"no file matches {pattern!r}")
    return sorted(set(out))


def walk(base: Path, pattern: str = "*", recursive: bool = False) -> list[Path]:
    """Entries under folder ``base`` whose name matches ``pattern``, sorted. Links are
    listed as entries but never descended into; hidden names only when asked for."""
    hidden_ok = pattern.startswith(".")
    out: list[Path] = []
    stack = [base]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.name.startswith(".") and not hidden_ok:
                    continue
                p = Path(e.path)
                if fnmatch.fnmatchcase(e.name, pattern):
                    out.append(p)
                if recursive and e.is_dir(follow_symlinks=False):
                    stack.append(p)
        if len(out) > GLOB_MAX_MATCHES:
            raise InvalidArgument(f"more than {GLOB_MAX_MATCHES} entries under {base.name or base}",
                                  field="path", expected="a smaller folder or a narrower pattern")
    return sorted(out)


def lexical(ctx: ToolContext, path: str, *, field: str = "path") -> Path:
    """The path itself, not what a final symlink points to; the parent is checked (write)."""
    p = Path(os.path.expanduser(path)) if path.startswith("~") else Path(path)
    name = p.name
    if name in ("", ".", ".."):
        return ctx.resolve(path, "w", field=field)
    parent = ctx.resolve(str(p.parent), "w", field=field)
    return parent / name


def forbid_root(ctx: ToolContext, path: Path, what: str, field: str = "path") -> None:
    if any(path == r for r in ctx.write_roots + ctx.read_roots):
        raise PermissionDenied(f"{what} the workspace itself is not allowed",
                               reason=f"{path} is a root of the agent's workspace")
    if ctx.state is not None and path.is_dir() and not path.is_symlink() and ctx.state.inside(str(path)):
        raise PermissionDenied(f"{what} {ctx.rel(path)} is not allowed: it holds LLM OS's state",
                               reason=f"{path} holds the state directory {ctx.state.home}")


# ── opening under a directory handle ────────────────────────────────────────
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_NR_OPENAT2 = 437                # same number on x86_64 and the generic table (aarch64)
_openat2_ok: bool | None = None  # None: not tried yet; False: this kernel lacks it


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _openat2(dirfd: int, rel: str, flags: int, perm: int) -> int | None:
    """``openat2(dirfd, rel, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)``; None when unavailable."""
    global _openat2_ok
    if _openat2_ok is False:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        _openat2_ok = False
        return None
    how = _OpenHow(flags | os.O_CLOEXEC, perm if flags & os.O_CREAT else 0,
                   RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
    fd = libc.syscall(ctypes.c_long(_NR_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(os.fsencode(rel)),
                      ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EPERM) and _openat2_ok is None:   # EPERM: a seccomp filter
            _openat2_ok = False
            return None
        raise OSError(err, os.strerror(err), rel)
    _openat2_ok = True
    return fd


def _walk(dirfd: int, parts: list[str], *, create: bool, at: Path | None = None) -> int:
    """A descriptor for folder ``parts`` under ``dirfd``, one O_NOFOLLOW open per part
    (made when missing and ``create``; each one made is recorded as a version when ``at``,
    the path of ``dirfd``, is given). The caller closes it."""
    fd = os.dup(dirfd)
    try:
        for i, part in enumerate(parts):
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                    if at is not None:
                        made_dir(at.joinpath(*parts[:i + 1]))
                except FileExistsError:
                    pass
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _root_and_rel(path: Path, mode: PathMode) -> tuple[Path, list[str]]:
    ctx = current_context()
    root = ctx.root_of(path, mode) if ctx is not None else Path("/")
    return root, list(path.relative_to(root).parts)


def _refused(path: Path, exc: OSError) -> PermissionDenied:
    if path.is_symlink():
        return PermissionDenied(f"{path.name} is a symbolic link; not following it",
                                reason="file tools never follow a link met while opening")
    return PermissionDenied(f"{path.name}: the path changed while it was opened (a link or a "
                            "folder swapped in); not following it",
                            reason=f"opening {path} met a link: {exc.strerror}",
                            hint="retry; links inside the workspace are resolved before opening")


def open_beneath(path: Path, flags: int, mode: PathMode = "r", *, perm: int = 0o644,
                 make_parents: bool = False) -> int:
    """Open resolved, checked ``path`` relative to its root's descriptor (see the NOTE).
    O_TRUNC is applied only after the hard-link check. Returns a descriptor."""
    root, parts = _root_and_rel(path, mode)
    if not parts:
        raise InvalidArgument(f"{path} is a folder, not a file", field="path", expected="a file")
    trunc = flags & os.O_TRUNC
    flags = (flags & ~os.O_TRUNC) | os.O_NOFOLLOW | os.O_CLOEXEC
    rootfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parent = _walk(rootfd, parts[:-1], create=True, at=root) if make_parents else None
        try:
            base, rel = (parent, parts[-1]) if parent is not None else (rootfd, "/".join(parts))
            fd = _openat2(base, rel, flags, perm)
            if fd is None:
                pfd = parent if parent is not None else _walk(rootfd, parts[:-1], create=False)
                try:
                    fd = os.open(parts[-1], flags, perm, dir_fd=pfd)
                finally:
                    if pfd is not parent:
                        os.close(pfd)
        finally:
            if parent is not None:
                os.close(parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EXDEV, errno.ENOTDIR) and (
                exc.errno != errno.ENOTDIR or _has_link(root, parts)):
            raise _refused(path, exc) from exc
        raise
    finally:
        os.close(rootfd)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            raise PermissionDenied(
                f"{path.name} is a hard-linked file ({st.st_nlink} names); not opening it",
                reason="a hard link can name a file outside the workspace",
                hint="copy the file's content to a new file instead of linking it")
        if trunc:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


class parent_fd:
    """``with parent_fd(path, mode, create=) as (fd, name)``: a descriptor for the folder
    holding resolved ``path`` (walked from its root with O_NOFOLLOW, made when ``create``)
    and the last name, for ``*at`` calls (rename, unlink, mkdir) that cannot be redirected."""

    def __init__(self, path: Path, mode: PathMode = "w", *, create: bool = False) -> None:
        self.path, self.mode, self.create = path, mode, create
        self.fd: int | None = None

    def __enter__(self) -> tuple[int, str]:
        root, parts = _root_and_rel(self.path, self.mode)
        if not parts:
            raise PermissionDenied(f"{self.path} is a root of the workspace",
                                   reason="a root itself is never renamed or removed")
        rootfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.fd = _walk(rootfd, parts[:-1], create=self.create, at=root)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _refused(self.path, exc) from exc
            raise
        finally:
            os.close(rootfd)
        return self.fd, parts[-1]

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)


def make_dirs(path: Path) -> None:
    """``mkdir -p`` of resolved, checked ``path``, one O_NOFOLLOW step at a time."""
    root, parts = _root_and_rel(path, "w")
    rootfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.close(_walk(rootfd, parts, create=True, at=root))
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _has_link(root, parts):
            raise _refused(path, exc) from exc
        raise
    finally:
        os.close(rootfd)


def move_path(src: Path, dest: Path) -> None:
    """Rename ``src`` (the entry itself) to ``dest`` through their folders' descriptors;
    across file systems, a copy under the handles then a removal (``shutil.move``). The
    move and what it replaced at ``dest`` are kept as a version."""
    with changing(src, "move", dest=dest):
        with parent_fd(src, "w") as (sfd, sname), parent_fd(dest, "w", create=True) as (dfd, dname):
            try:
                os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
                return
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
        shutil.move(str(src), str(dest))


def remove_path(path: Path) -> None:
    """Delete the entry ``path`` (a folder with everything in it) through its folder's
    descriptor; a link is removed, never followed. What it held is kept as a version."""
    with changing(path, "delete"), parent_fd(path, "w") as (fd, name):
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)


def _has_link(root: Path, parts: list[str]) -> bool:
    p = root
    for part in parts:
        p = p / part
        if p.is_symlink():
            return True
    return False


def workspace_usage(roots: tuple[Path, ...], limit: int) -> int:
    """Bytes in regular files under ``roots`` (links not followed); stops past ``limit``."""
    total, seen = 0, set()
    stack = [r for r in roots if r.is_dir()]
    while stack and total <= limit:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(Path(e.path))
                    elif e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        if (st.st_dev, st.st_ino) not in seen:
                            seen.add((st.st_dev, st.st_ino))
                            total += st.st_size
        except OSError:
            continue
    return total


def check_quota(path: Path, adding: int, *, replacing: bool) -> None:
    """QuotaExceeded when writing ``adding`` bytes to ``path`` (replacing its content or
    appending) would take the agent's write roots past ``ToolContext.workspace_bytes``."""
    ctx = current_context()
    if ctx is None or ctx.workspace_bytes is None:
        return
    quota = ctx.workspace_bytes
    used = workspace_usage(ctx.write_roots, quota + adding)
    old = 0
    if replacing:
        try:
            st = path.lstat()
            old = st.st_size if stat.S_ISREG(st.st_mode) else 0
        except OSError:
            old = 0
    after = used - old + adding
    if after > quota:
        raise QuotaExceeded(f"{path.name}: writing {human_size(adding)} would take the workspace to "
                            f"{human_size(after)}; quota workspace_bytes={quota}",
                            hint="delete files the agent no longer needs, or ask for a larger quota")


# ── file I/O ────────────────────────────────────────────────────────────────
def open_read(path: Path) -> Any:
    """A binary file object for checked ``path``, opened under its root (``open_beneath``)."""
    if not path.exists():
        raise NotFound(f"no such file: {path.name}", hint="files.list shows what is here")
    if path.is_dir():
        raise InvalidArgument(f"{path.name} is a directory, not a file", field="path",
                              expected="a file (use files.list for a directory)")
    try:
        fd = open_beneath(path, os.O_RDONLY, "r")
    except FileNotFoundError:
        raise NotFound(f"no such file: {path.name}", hint="files.list shows what is here") from None
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise InvalidArgument(f"{path.name} is a directory, not a file", field="path",
                              expected="a file (use files.list for a directory)")
    return os.fdopen(fd, "rb")


def read_bytes(path: Path, limit: int = P.TOOL_READ_MAX_BYTES) -> tuple[bytes, int]:
    """Up to ``limit`` bytes of the file and its full size."""
    with open_read(path) as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(limit)
    return data, size


def read_text(path: Path, limit: int = P.TOOL_READ_MAX_BYTES) -> tuple[str, bool]:
    """The file's text (UTF-8, bad bytes replaced) and whether it was cut at ``limit``."""
    data, size = read_bytes(path, limit)
    if b"\x00" in data[:8192]:
        raise ToolError(f"{path.name} is a binary file, not text",
                        hint="files.list shows its size; data.load reads tables")
    return data.decode("utf-8", errors="replace"), size > len(data)


def write_text(path: Path, text: str | bytes, *, append: bool = False) -> int:
    """Write (or append) text or bytes under the root's handle (``open_beneath``), making
    missing folders; never through a link, never past the workspace byte quota. Returns
    bytes written."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    data = text.encode("utf-8") if isinstance(text, str) else text
    check_quota(path, len(data), replacing=not append)
    with changing(path, "append" if append else "write"):
        try:
            fd = open_beneath(path, flags, "w", make_parents=True)
        except OSError as exc:
            if path.is_symlink():
                raise PermissionDenied(f"{path.name} is a symbolic link; not writing through it",
                                       reason="writes never follow a link") from exc
            raise
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return len(data)


def copy_bytes(src: Path, dest: Path) -> int:
    """Copy regular file ``src`` to ``dest`` (replaced), both opened under their roots."""
    with open_read(src) as f:
        size = os.fstat(f.fileno()).st_size
        check_quota(dest, size, replacing=True)
        with changing(dest, "copy"):
            fd = open_beneath(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "w", make_parents=True)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(f, out)
    return size


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
