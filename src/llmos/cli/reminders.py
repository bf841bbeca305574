"""``llmos reminders``: the person's reminders — list, add (once or repeating), cancel —
and ``follow(session, show)``, which an open ``llmos shell`` runs so a fired reminder
shows at its prompt at once (the kernel's events in-process, the daemon's SSE otherwise).

- ``llmos reminders [list] [--all]`` · ``llmos reminders add MESSAGE --in 10m [--every 1d]``
- ``llmos reminders cancel ID``

Each command is one root syscall (``timer.list`` / ``timer.set`` / ``timer.cancel``)
through the daemon when one serves the state directory, else in-process.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llmos.errors import InvalidArgument, LLMOSError

__all__ = ["register", "reminders_app", "follow", "line", "seconds"]

log = logging.getLogger(__name__)
out = Console(highlight=False, soft_wrap=True)
reminders_app = typer.Typer(name="reminders", add_completion=False, invoke_without_command=True,
                            help="Reminders: list, add (once or repeating), cancel.\n\n"
                                 'Example: llmos reminders add "send the timesheet" --in 1h --every 7d')
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def seconds(text: str, field: str) -> float:
    """'90', '90s', '10m', '2h', '1d', '1w' -> seconds; one clear line otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise InvalidArgument(f"{field}: {text!r} is not a duration", field=field,
                              expected="a number with s, m, h, d or w, e.g. 10m or 1d")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def line(ev: dict[str, Any]) -> str:
    """How a fired reminder reads at the shell's prompt."""
    late = " (late)" if ev.get("late") else ""
    again = f" · repeats every {_span(ev['every_s'])}" if ev.get("every_s") else ""
    return f"⏰ reminder{late}: {ev.get('message', '')}{again}"


def _span(s: float) -> str:
    for unit in ("w", "d", "h", "m"):
        if s >= _UNITS[unit] and s % _UNITS[unit] == 0:
            return f"{int(s // _UNITS[unit])}{unit}"
    return f"{s:g}s"


async def follow(session: Any, show: Callable[[str], None]) -> None:
    """Show every reminder fired for the person while the shell is open (ends quietly
    when the event stream does: the daemon stopped)."""
    try:
        await _follow(session, show)
    except LLMOSError as e:
        log.info("reminders: the event stream ended: %s", e)


async def _follow(session: Any, show: Callable[[str], None]) -> None:
    kernel = getattr(session, "kernel", None)
    if kernel is not None:
        async for ev in kernel.events():
            if ev.get("type") == "timer":
                show(line(ev))
        return
    client = getattr(session, "client", None)
    if client is not None:
        async for ev in client.events(["timer"]):
            if ev.get("type") == "timer":
                show(line(ev))


def _call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    from llmos.cli.kernel import _with_kernel

    return _with_kernel(name, args)


@reminders_app.callback()
def main(ctx: typer.Context, all_: bool = typer.Option(False, "--all", help="Fired and cancelled ones too."),
         as_json: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
    """List reminders (pending ones, soonest first)."""
    if ctx.invoked_subcommand is None:
        _list(all_, as_json)


@reminders_app.command("list")
def list_cmd(all_: bool = typer.Option(False, "--all", help="Fired and cancelled ones too."),
             as_json: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
    """List reminders (pending ones, soonest first).

    Example: llmos reminders list --all
    """
    _list(all_, as_json)


def _list(all_: bool, as_json: bool) -> None:
    rows = _call("timer.list", {"all": all_})["timers"]
    if as_json:
        out.print(json.dumps({"reminders": rows}), markup=False)
        return
    if not rows:
        out.print("no reminders" + ("" if all_ else " pending"))
        return
    t = Table(title="reminders")
    for col in ("id", "due", "repeats", "state", "message"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(str(r["id"]), time.strftime("%Y-%m-%d %H:%M", time.localtime(r["due_s"])),
                  _span(r["every_s"]) if r.get("every_s") else "-", r["state"] + (" (late)" if r.get("late") else ""),
                  r["message"])
    out.print(t)


@reminders_app.command("add")
def add(message: str = typer.Argument(..., help="What to remind you of."),
        in_: str = typer.Option(..., "--in", help="When, from now: 90s, 10m, 2h, 1d."),
        every: str = typer.Option(None, "--every", help="Repeat this often: 1d, 1w ...")) -> None:
    """Set a reminder, once or repeating.

    Example: llmos reminders add "send the timesheet" --in 1h --every 1w
    """
    args: dict[str, Any] = {"in_s": seconds(in_, "--in"), "message": message}
    if every:
        args["every_s"] = seconds(every, "--every")
    t = _call("timer.set", args)
    out.print(f"reminder {t['id']} at {time.strftime('%Y-%m-%d %H:%M', time.localtime(t['due_s']))}"
              + (f", every {_span(t['every_s'])}" if t.get("every_s") else ""))


@reminders_app.command("cancel")
def cancel(reminder_id: int = typer.Argument(..., min=1, help="The reminder's id (llmos reminders shows it).")) -> None:
    """Cancel a pending reminder.

    Example: llmos reminders cancel 3
    """
    _call("timer.cancel", {"id": reminder_id})
    out.print(f"reminder {reminder_id} cancelled")


def register(app: typer.Typer) -> None:
    app.add_typer(reminders_app, name="reminders")
