"""Helpers shared by the builtin tools: schema builders and careful file access.

Map:
- schema builders: ``params(required, **props)``, ``string``, ``integer``, ``number``,
  ``boolean``, ``enum``; ``PATH`` / ``SAVE_TO`` are the usual path arguments.
- ``expand(ctx, pattern, mode)``: a path or glob pattern -> checked paths (sorted).
- ``walk(base, pattern, recursive)``: entries of a folder; links are listed, never followed.
- ``lexical(ctx, path)``: a path whose *last* component is not followed (delete/move a
  link itself), with its parent checked.
- ``read_text(path, limit)`` / ``write_text(path, text, append=)``: bounded reads, writes
  that never follow a symlink in the last component (O_NOFOLLOW).
- ``human_size(n)``.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

from llmos import params as P
from llmos.errors import InvalidArgument, NotFound, PermissionDenied, ToolError
from llmos.tools.registry import PathMode, ToolContext

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


# ── file I/O ────────────────────────────────────────────────────────────────
def read_bytes(path: Path, limit: int = P.TOOL_READ_MAX_BYTES) -> tuple[bytes, int]:
    """Up to ``limit`` bytes of the file and its full size."""
    if not path.exists():
        raise NotFound(f"no such file: {path.name}", hint="files.list shows what is here")
    if path.is_dir():
        raise InvalidArgument(f"{path.name} is a directory, not a file", field="path",
                              expected="a file (use files.list for a directory)")
    size = path.stat().st_size
    with open(path, "rb") as f:
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
    """Write (or append) text or bytes; never through a symlink at ``path``. Returns bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if path.is_symlink():
            raise PermissionDenied(f"{path.name} is a symbolic link; not writing through it",
                                   reason="writes never follow a link") from exc
        raise
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return len(data)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
