"""The person's answers: ``llmos pending``, ``llmos confirm``, ``llmos reject``.

Map:
- ``pending``: runs whose step waits for a yes (daemon runs: from ``llmos mcp``, the API,
  the SDK) and processes that wait for a person after a restart (``needs_confirmation``).
- ``confirm REF`` / ``reject REF``: a run id (``r...``) answers its pending step through
  the daemon; a pid re-runs (``proc.confirm``) or kills a waiting process.

These commands act with the admin token (read from the state directory), which is
what makes them the person's act: an agent's token cannot approve (issue 12).
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llmos.cli import state
from llmos.errors import InvalidArgument, RemoteUnavailable

__all__ = ["register", "pending", "confirm", "reject"]

console = Console()


def _daemon() -> Any:
    from llmos.sdk.discover import discover

    client = discover(state.config())
    if client is None:
        raise RemoteUnavailable("no daemon serves this state directory, so no run waits for an answer",
                                hint="runs from `llmos mcp`, the API or the dashboard live in the daemon "
                                     "(`llmos serve`)")
    return client


def _pid(ref: str) -> int | None:
    return int(ref) if ref.isdigit() else None


def _waiting_procs() -> list[dict]:
    from llmos.cli.kernel import _with_kernel

    try:
        out = _with_kernel("proc.list", {"state": "waiting", "limit": 1000})
    except RemoteUnavailable:
        return []
    rows = out.get("processes", out) if isinstance(out, dict) else out
    return [p for p in rows or [] if str(p.get("reason", "")).startswith("needs_confirmation")]


def pending(as_json: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
    """Steps and processes that wait for your yes or no.

    Example: llmos pending
    """
    from llmos.sdk.discover import discover

    runs: list[dict] = []
    client = discover(state.config())
    if client is not None:
        with client:
            runs = [r for r in client.runs(limit=500) if r.get("pending")]
    procs = _waiting_procs() if client is None else [
        p for p in _daemon_procs() if str(p.get("reason", "")).startswith("needs_confirmation")]
    if as_json:
        typer.echo(json.dumps({"runs": runs, "processes": procs}))
        return
    if not runs and not procs:
        console.print("nothing waits for you")
        return
    if runs:
        t = Table(title="runs waiting for your answer")
        for col in ("run", "agent", "step", "tool", "risk", "arguments", "request"):
            t.add_column(col)
        for r in runs:
            p = r["pending"]
            t.add_row(r["id"], r.get("owner", "?"), str(p.get("step")), str(p.get("tool")),
                      str(p.get("risk")), json.dumps(p.get("args"))[:80], str(r.get("request", ""))[:60])
        console.print(t)
    if procs:
        t = Table(title="processes waiting for your answer")
        for col in ("pid", "agent", "kind", "why"):
            t.add_column(col)
        for p in procs:
            t.add_row(str(p["pid"]), str(p.get("owner")), str(p.get("kind")), str(p.get("reason"))[:80])
        console.print(t)
    console.print("answer with `llmos confirm <id>` or `llmos reject <id>`")


def _daemon_procs() -> list[dict]:
    with _daemon() as client:
        return list(client.ps(state="waiting", limit=1000))


def confirm(ref: str = typer.Argument(..., help="Run id (r...) or process id."),
            step: int = typer.Option(None, "--step", min=1, help="The step you approve (default: the pending one).")) -> None:
    """Approve a run's pending step, or re-run a process that waits for you.

    Example: llmos confirm r1a2b3c4
    """
    pid = _pid(ref)
    if pid is not None:
        from llmos.cli.kernel import _with_kernel

        out = _with_kernel("proc.confirm", {"pid": pid})
        console.print(f"pid {out.get('pid', pid)}: {out.get('state', 'queued')}")
        return
    _check_run_id(ref)
    with _daemon() as client:
        run = client.confirm(ref, step)
    console.print(f"run {run['id']}: approved; now {run['status']}")


def reject(ref: str = typer.Argument(..., help="Run id (r...) or process id."),
           reason: str = typer.Option(None, "--reason", help="Why (kept with the run).")) -> None:
    """Refuse a run's pending step (nothing of its plan runs), or kill a waiting process.

    Example: llmos reject r1a2b3c4
    """
    pid = _pid(ref)
    if pid is not None:
        from llmos.cli.kernel import _with_kernel

        out = _with_kernel("proc.kill", {"pid": pid, "reason": reason or "rejected by the person"})
        console.print(f"pid {out['pid']}: {out['state']}")
        return
    _check_run_id(ref)
    with _daemon() as client:
        run = client.reject(ref, None, reason)
    console.print(f"run {run['id']}: rejected; now {run['status']}")


def _check_run_id(ref: str) -> None:
    if not ref or len(ref) > 64 or not all(c.isalnum() or c in "-_" for c in ref):
        raise InvalidArgument(f"ref: expected a run id (r...) or a process id, got {ref!r}", field="ref",
                              expected="a run id such as r1a2b3c4, or a pid")


def register(app: typer.Typer) -> None:
    app.command()(pending)
    app.command()(confirm)
    app.command()(reject)
