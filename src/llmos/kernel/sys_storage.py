"""Storage syscalls: versions of files and undo (thin decoders).

- ``storage.history(path)``: the versions of a path (changes to it, moves to or from
  it, changes to a folder above it), newest first.
- ``storage.restore(run=... | version=...)``: undo what a run changed, or put back
  what one change replaced (``kernel.undo``).

An agent sees and restores only its own versions (every query names it); an agent
with the ``others`` capability (root, the admin) sees all. Paths are checked by the
access layer (``call.check(PathRef)``), and the restore itself runs under the agent's
own roots.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from llmos.errors import InvalidArgument, KernelError, NotFound, PermissionDenied
from llmos.kernel.access import PathRef, resolve_path
from llmos.kernel.argtypes import Args, text
from llmos.kernel.syscall import Call, KernelView, Syscall

if TYPE_CHECKING:
    from llmos.kernel.versions import VersionStore

__all__ = ["ROWS"]

VersionId = Annotated[int, Field(ge=1, le=1 << 62)]


class HistoryArgs(Args):
    path: text(4096, 1)                  # type: ignore[valid-type]
    limit: int = Field(default=100, ge=1, le=1000)


class RestoreArgs(Args):
    run: text(100, 1) | None = None      # type: ignore[valid-type]
    version: VersionId | None = None
    force: bool = False                  # undo: put back a path that changed again since


def _store(k: KernelView) -> VersionStore:
    store = getattr(k, "versions", None)
    if store is None:
        raise KernelError("this kernel keeps no file versions")
    return store


def _whose(call: Call) -> str | None:
    """Whose versions the caller sees: its own; all with the ``others`` capability."""
    return None if call.agent.caps.others else call.agent.id


def _workdir(k: KernelView, call: Call) -> str:
    from llmos.kernel.specs import default_workdir

    return default_workdir(k, call.agent.id, call.agent.caps.write_roots)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = {"version": row["id"], "ts": row["ts"], "agent": row["agent"], "run": row["run"],
           "op": row["op"], "path": row["path"],
           "before": {"kind": row["before_kind"], "hash": row["before_hash"]},
           "after": {"kind": row["after_kind"], "hash": row["after_hash"]},
           "bytes": row["bytes"], "kept": bool(row["kept"]), "undone": row["undone"] is not None}
    if row["dest"]:
        out["dest"] = row["dest"]
    return out


async def history(k: KernelView, call: Call, a: HistoryArgs) -> dict:
    store = _store(k)
    if "\x00" in a.path:
        raise InvalidArgument("path: contains a NUL byte", field="path", expected="a path")
    ref = PathRef.of(a.path, _workdir(k, call), "r", k.config.state_area())
    call.check(ref)
    rows = await asyncio.to_thread(store.history, ref.path, _whose(call), a.limit)
    return {"path": ref.path, "versions": [_public(r) for r in rows]}


async def restore(k: KernelView, call: Call, a: RestoreArgs) -> dict:
    from llmos.kernel.undo import restore_version, undo
    from llmos.tools.registry import ToolContext, using

    if (a.run is None) == (a.version is None):
        raise InvalidArgument("storage.restore: give exactly one of run or version", field="run",
                              expected="a run id (llmos history) or a version id (llmos history PATH)")
    store, whose = _store(k), _whose(call)
    if a.run is not None:
        rows = store.run_changes(a.run, whose)
        if not rows:
            raise NotFound(f"run {a.run!r}: no file changes of yours are recorded for it",
                           hint="`llmos history` lists runs; `llmos history PATH` lists a file's versions")
        label = f"undo-{a.run}"
    else:
        rows = [store.version(a.version, whose)]
        label = f"restore-{a.version}"
    caps, state = call.agent.caps, k.config.state_area()
    if not caps.write_roots:
        raise PermissionDenied(f"agent {call.agent.id!r} may not write anywhere; nothing can be restored",
                               reason="the agent has no write roots")
    ctx = ToolContext(workdir=_workdir(k, call), agent=call.agent.id, read_roots=caps.read_roots,
                      write_roots=caps.write_roots, state=state,
                      versions=store.bind(call.agent.id, label, None))

    def check(path: str) -> None:
        call.check(PathRef(resolve_path(path), "w", state))

    def run() -> dict:
        with using(ctx):
            if a.run is not None:
                return undo(store, rows, check, force=a.force)
            return restore_version(store, rows[0], check)

    report = await asyncio.to_thread(run)
    return {"run": a.run, "version": a.version, **report}


ROWS = [
    Syscall("storage.history", HistoryArgs, "storage.history", history,
            "the kept versions of a file or folder, newest first (your own; all with 'others')"),
    Syscall("storage.restore", RestoreArgs, "storage.restore", restore,
            "undo a run's file changes (run=) or put back one version (version=)"),
]
