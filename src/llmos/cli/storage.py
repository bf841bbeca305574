"""Storage commands: ``undo RUN`` and ``history PATH`` (versions of a file).

Both make their syscall as root (``storage.restore``, ``storage.history``) through the
daemon when one serves the state directory, else in a kernel booted in this process
(``cli.kernel._with_kernel``). ``llmos history`` without a path lists runs (``cli.shell``).

``llmos undo RUN`` puts back what a run's file tools changed, newest first, and says
what it did not: a file changed again since the run is left alone unless ``--force``.
Exit codes: 0 everything put back, 1 something was not.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llmos.cli import state
from llmos.errors import InvalidArgument, NotFound

__all__ = ["register", "undo", "path_history", "run_id"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

RUN_MAX_CHARS = 100


def run_id(ref: str) -> str:
    """A run reference as the version store knows it: a pid as given; a shell run id,
    unique prefix or ``last`` through the shell's run store; anything else as given."""
    ref = ref.strip()
    if not ref or len(ref) > RUN_MAX_CHARS:
        raise InvalidArgument(f"RUN: expected a run id of 1..{RUN_MAX_CHARS} characters, got {ref[:20]!r}",
                              field="RUN", expected="a run id (llmos history), 'last', or a tool pid")
    if ref.isdigit():
        return ref
    from llmos.shell.store import ShellStore

    cfg = state.config()
    path = cfg.home / "shell.db"
    if not path.exists():
        return ref
    try:
        return ShellStore(path).get_run(ref).run
    except NotFound:
        if ref == "last":
            raise
        return ref


def _show(report: dict[str, Any]) -> None:
    for r in report["restored"]:
        where = f"{r['path']} -> {r['dest']}" if r.get("dest") else r["path"]
        out.print(f"restored  {r['op']:<8} {where}", markup=False)
    for r in report["not_restored"]:
        out.print(f"NOT restored  {r['path']}: {r['reason']}", markup=False)


def undo(ref: str = typer.Argument(None, help="Run id (or a unique prefix, or 'last'); a number is the "
                                              "pid of a single tool call."),
         version: int = typer.Option(None, "--version", min=1, help="Put back what one version replaced "
                                                                     "(from llmos history PATH) instead."),
         force: bool = typer.Option(False, "--force", help="Also put back files changed again since the "
                                                            "run (what they hold now is kept as a version)."),
         as_json: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
    """Undo what a run changed in files: every write, move and delete, newest first.

    Example: llmos undo last
    """
    from llmos.cli.kernel import _with_kernel

    if (ref is None) == (version is None):
        raise InvalidArgument("undo: give a RUN or --version N (not both)", field="RUN",
                              expected="a run id from `llmos history`, or --version from `llmos history PATH`")
    args: dict[str, Any] = {"version": version} if version is not None else {"run": run_id(ref), "force": force}
    report = _with_kernel("storage.restore", args)
    if as_json:
        typer.echo(json.dumps(report))
    else:
        _show(report)
        changed = any("changed since" in r["reason"] or "exists again" in r["reason"]
                      for r in report["not_restored"])
        n, m = len(report["restored"]), len(report["not_restored"])
        if report.get("already_undone"):
            err.print(f"{len(report['already_undone'])} change(s) were undone before", markup=False)
        what = f"run {report['run']}" if report.get("run") else f"version {report['version']}"
        err.print(f"{what}: {n} change{'s' * (n != 1)} undone"
                  + (f", {m} not" if m else ""), markup=False)
        if changed and not force:
            err.print("hint: llmos undo --force puts those back too (their current content is kept "
                      "as a version)", markup=False)
    if report["not_restored"]:
        raise typer.Exit(1)


def path_history(path: str, limit: int, as_json: bool) -> None:
    """``llmos history PATH``: the kept versions of a file or folder, newest first."""
    from llmos.cli.kernel import _with_kernel

    if "\x00" in path:
        raise InvalidArgument("PATH: contains a NUL byte", field="PATH", expected="a path")
    full = os.path.abspath(os.path.expanduser(path))
    res = _with_kernel("storage.history", {"path": full, "limit": min(limit, 1000)})
    if as_json:
        typer.echo(json.dumps(res))
        return
    if not res["versions"]:
        out.print(f"no versions of {res['path']} are kept", markup=False)
        return
    table = Table(title=f"versions of {res['path']}")
    for col in ("version", "when", "run", "agent", "op", "path", "before", "after", "note"):
        table.add_column(col, overflow="fold")
    for v in res["versions"]:
        where = f"{v['path']} -> {v['dest']}" if v.get("dest") else v["path"]
        note = ", ".join(n for n, on in (("undone", v["undone"]), ("not kept", not v["kept"])) if on)
        table.add_row(str(v["version"]), time.strftime("%m-%d %H:%M:%S", time.localtime(v["ts"])), v["run"],
                      v["agent"], v["op"], where, _state(v["before"]), _state(v["after"]), note)
    out.print(table)
    err.print("put back: llmos undo RUN (a whole run) or llmos undo --version N (one version)", markup=False)


def _state(s: dict[str, Any]) -> str:
    return "absent" if s["kind"] == "absent" else f"{s['kind']} {(s['hash'] or '')[:10]}"


def register(app: typer.Typer) -> None:
    app.command()(undo)
