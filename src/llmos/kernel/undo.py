"""Undo: put back what a run changed, from the versions its file tools kept.

Map:
- ``undo(store, rows, ctx, check, force=)``: the changes of one run, newest first; each
  is put back unless the path changed again since the run (its state now differs
  from the state the run left): that one is reported and left alone unless ``force``;
  one an earlier undo put back is listed as ``already_undone``.
  A move is moved back, and what it replaced at its destination is put back.
- ``restore_version(store, row, ctx, check)``: put back what one change replaced; the
  current entry is kept as a new version first, so nothing is lost.

Both run with ``ctx`` as the current tool context (``registry.using``): every path is
opened under the agent's own roots through descriptors (``tools.versioning``), and
``check(path)`` asks the kernel's access layer first. Whatever they change is recorded
as versions of its own (run ``undo-RUN`` / ``restore-VERSION``), so an undo can be undone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmos.errors import LLMOSError
from llmos.kernel.versions import ABSENT, State, VersionStore

__all__ = ["undo", "restore_version"]


class _Refused(Exception):
    """One change not put back, and why (reported, not raised to the caller)."""


def _before(row: dict[str, Any]) -> State:
    return State(row["before_kind"], row["before_hash"], row["before_mode"])


def _after(row: dict[str, Any]) -> State:
    return State(row["after_kind"], row["after_hash"])


def _describe(s: State) -> str:
    return "absent" if s.kind == "absent" else f"{s.kind} {(s.hash or '?')[:12]}"


def _put_back_one(store: VersionStore, row: dict[str, Any], *, force: bool, compare: bool) -> list[str]:
    """Put back one change; returns what inside it could not be recreated."""
    from llmos.tools.builtin._common import move_path
    from llmos.tools.versioning import put_back, state_of

    path = Path(row["path"])
    after = _after(row)
    if row["op"] == "move":
        dest = Path(row["dest"])
        now, src_now = state_of(dest), state_of(path)
        if not now.same(after) and not force:
            raise _Refused(f"{dest} changed since the move (now {_describe(now)}, the move left "
                           f"{_describe(after)}); not moved back")
        if src_now.kind != "absent" and not force:
            raise _Refused(f"{path} exists again since the move; not moved back")
        if src_now.kind != "absent":
            put_back(path, ABSENT, store)
        if now.kind == "absent":
            raise _Refused(f"{dest} is gone; nothing to move back")
        move_path(dest, path)
        dest_before = State(row["dest_kind"] or "absent", row["dest_hash"], row["dest_mode"])
        if dest_before.kind != "absent":
            if not row["kept"]:
                raise _Refused(f"{dest}: what the move replaced there was not kept (over the version quota)")
            return put_back(dest, dest_before, store)
        return []
    now = state_of(path)
    if compare and not now.same(after) and not force:
        raise _Refused(f"{path} changed since (now {_describe(now)}, the run left {_describe(after)}); "
                       "not restored")
    if not row["kept"]:
        raise _Refused(f"{path}: its previous content was not kept (larger than the version quota)")
    return put_back(path, _before(row), store)


def _one(store: VersionStore, row: dict[str, Any], check: Callable[[str], None], *, force: bool,
         compare: bool) -> tuple[bool, str | None, list[str]]:
    try:
        check(row["path"])
        if row["dest"]:
            check(row["dest"])
        return True, None, _put_back_one(store, row, force=force, compare=compare)
    except _Refused as e:
        return False, str(e), []
    except LLMOSError as e:
        return False, f"{row['path']}: {e.message}", []
    except OSError as e:
        return False, f"{row['path']}: {e.strerror or e}", []


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {"version": row["id"], "op": row["op"], "path": row["path"],
            **({"dest": row["dest"]} if row["dest"] else {})}


def undo(store: VersionStore, rows: list[dict[str, Any]], check: Callable[[str], None], *,
         force: bool = False) -> dict[str, Any]:
    """Put back ``rows`` (one run's changes, in the order made) newest first."""
    restored, refused, earlier = [], [], []
    for row in reversed(rows):
        if row["undone"] is not None:
            earlier.append(_entry(row))
            continue
        ok, why, missed = _one(store, row, check, force=force, compare=True)
        if ok:
            store.mark_undone(row["id"])
            restored.append(_entry(row))
            refused += [{**_entry(row), "reason": m} for m in missed]
        else:
            refused.append({**_entry(row), "reason": why})
    return {"restored": restored, "not_restored": refused, "already_undone": earlier}


def restore_version(store: VersionStore, row: dict[str, Any], check: Callable[[str], None]) -> dict[str, Any]:
    """Put back what change ``row`` replaced (a move: moved back, if its destination is
    as the move left it)."""
    ok, why, missed = _one(store, row, check, force=False, compare=False)
    if ok:
        return {"restored": [_entry(row)], "not_restored": [{**_entry(row), "reason": m} for m in missed]}
    return {"restored": [], "not_restored": [{**_entry(row), "reason": why}]}
