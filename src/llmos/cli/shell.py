"""Shell commands: ``run``, ``shell``, ``history``, ``explain``, ``rate``, ``habits``.

``llmos run "REQUEST"`` runs the request through ``shell.Runner``: in the daemon when
one serves the state directory, else in a kernel booted in this process (the embedded
engine loads on the first generation); ``cli.daemon`` hides which. It prints the answer;
with ``--json`` the LAST stdout line is one JSON object ``{"status", "answer", "steps",
"run"}`` (progress goes to stderr). ``llmos shell`` attaches the same way.
Exit codes: 0 succeeded (or planned with --dry-run), 1 failed, 2 needs confirmation,
3 denied.

``llmos explain RUN`` prints a run's record (plan, reasons, risks, results, timings,
habits applied) and the kernel's account of its processes (every state change with
the scheduler's reason); given a number it explains that kernel process instead.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llmos import params
from llmos.cli import state
from llmos.config import check_workspace
from llmos.errors import InvalidArgument, LLMOSError
from llmos.runs import RunStatus, StepStatus

__all__ = ["register", "run", "shell", "interactive", "history", "explain", "rate", "habits", "EXIT_CODES"]

out = Console(highlight=False, soft_wrap=True)   # answers are never broken into lines
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_CODES = {RunStatus.SUCCEEDED: 0, RunStatus.PLANNED: 0, RunStatus.FAILED: 1,
              RunStatus.NEEDS_CONFIRMATION: 2, RunStatus.DENIED: 3}     # any other status: 1
_COLORS = {RunStatus.SUCCEEDED: "green", RunStatus.PLANNED: "cyan", RunStatus.NEEDS_CONFIRMATION: "yellow"}
_CHANGES = ("write", "destructive", "exec")      # risks of steps that may have changed files


def _store(cfg: Any) -> Any:
    from llmos.shell.store import ShellStore

    return ShellStore(cfg.home / "shell.db")


def _progress(quiet: bool):
    def on_event(kind: str, data: dict) -> None:
        if quiet:
            return
        if kind == "planning":
            err.print("[dim]planning…[/]")
        elif kind == "plan":
            from llmos.shell.render import plan_lines

            err.print("[bold]plan[/]")
            for line in plan_lines(data["steps"]):
                err.print("  " + line, markup=False)
        elif kind == "step" and (status := StepStatus.parse(data["status"])) is not StepStatus.RUNNING:
            mark = "[green]✓[/]" if status is StepStatus.SUCCEEDED else f"[red]{status.label}[/]"
            err.print(f"  {mark} step {data['index']} {data['tool']}: " + (data.get("summary") or ""),
                      markup=True)
    return on_event


def _notice(text: str) -> None:
    err.print(f"[dim]{text}[/]")


async def _run_one(request: str, workdir: Path, yes: bool, dry_run: bool, model: str | None,
                   priority: int, quiet: bool, box: dict, yes_all: bool = False) -> Any:
    from llmos.cli.daemon import open_session

    session = await open_session(state.config(), model=model, priority=priority,
                                 on_event=_progress(quiet), notice=None if quiet else _notice)
    box["session"] = session
    try:
        return await session.run(request, workdir=workdir, yes=yes, dry_run=dry_run, yes_all=yes_all)
    finally:
        await session.aclose()


def _interrupted(box: dict, *, daemon_stops: bool = False) -> None:
    """After Ctrl-C: say what happens to a run the daemon was doing for us."""
    if getattr(box.get("session"), "current", None) is None:
        err.print("interrupted", markup=False)
    elif daemon_stops:
        err.print("interrupted; the run stops with the daemon", markup=False)
    else:
        err.print("interrupted; the run was cancelled in the daemon", markup=False)


def run(
    request: str = typer.Argument(..., help="What you want done, in plain words."),
    workdir: Path = typer.Option(None, "--workdir", "-C", help="The agent's workspace (default: here)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Approve destructive, exec and network steps."),
    yes_all: bool = typer.Option(False, "--yes-all", help="Also approve changing files the request does not "
                                 "name and commands filled in from file content."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
    model: str = typer.Option(None, "--model", "-m", help="Model name from `llmos models`, or a .gguf path."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Plan only; run nothing."),
    priority: int = typer.Option(params.PRIORITY_DEFAULT, "--priority", "-p",
                                 min=params.PRIORITY_MIN, max=params.PRIORITY_MAX,
                                 help="Nice-like priority: -20 most urgent .. 19 least."),
) -> None:
    """Run one request: plan it, check its risks, run the steps, say the result.

    Runs in the daemon when one serves this state directory, else in this process.
    Example: llmos run --workdir ~/data "what is the total amount in sales.csv?"
    """
    wd = (workdir or Path.cwd()).expanduser()
    box: dict = {}
    try:
        if not wd.is_dir():
            raise InvalidArgument(f"--workdir: {wd} is not a directory", field="workdir",
                                  expected="an existing directory")
        check_workspace(state.config(), wd, field="--workdir")
        res = asyncio.run(_run_one(request, wd.resolve(), yes or yes_all, dry_run, model, priority,
                                   quiet=as_json, box=box, yes_all=yes_all))
    except KeyboardInterrupt:
        _interrupted(box)
        raise typer.Exit(130) from None
    except LLMOSError as e:
        if not as_json:
            raise
        typer.echo(json.dumps({"status": RunStatus.FAILED, "answer": f"Failed: {e.message}", "steps": [],
                               "run": None, "error": e.to_dict()}))
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(res.to_json())
    else:
        color = _COLORS.get(res.status, "red")
        out.print(res.answer, markup=False)
        err.print(f"[{color}]{res.status.label}[/]  run {res.run}  (llmos explain {res.run})")
        if any(s.risk in _CHANGES and s.status is StepStatus.SUCCEEDED for s in res.steps):
            err.print(f"[dim]files changed: llmos undo {res.run} puts them back[/]")
    raise typer.Exit(EXIT_CODES.get(res.status, 1))


def shell(
    workdir: Path = typer.Option(None, "--workdir", "-C", help="The agent's workspace (default: here)."),
    model: str = typer.Option(None, "--model", "-m", help="Model name or .gguf path."),
    priority: int = typer.Option(params.PRIORITY_DEFAULT, "--priority", "-p",
                                 min=params.PRIORITY_MIN, max=params.PRIORITY_MAX),
) -> None:
    """An interactive session: type requests; see each plan, approve risky steps, watch progress.

    Inside: `history`, `explain [RUN]`, `rate good|bad [note]` (the last run), `quit`.
    Attaches to the daemon when one serves this state directory, else runs in this process.
    Example: llmos shell --workdir ~/projects/notes
    """
    wd = (workdir or Path.cwd()).expanduser().resolve()
    if not wd.is_dir():
        raise InvalidArgument(f"--workdir: {wd} is not a directory", field="workdir",
                              expected="an existing directory")
    check_workspace(state.config(), wd, field="--workdir")
    interactive(wd, model, priority)


def interactive(wd: Path, model: str | None, priority: int = params.PRIORITY_DEFAULT, *,
                daemon: bool = False, daemon_stops: bool = False) -> None:
    """The shell's loop until exit, Ctrl-D or Ctrl-C. ``llmos boot`` calls it with
    ``daemon=True`` (attached to the daemon, or an error) and ``daemon_stops`` (its
    daemon stops when the shell ends)."""
    box: dict = {}
    try:
        asyncio.run(_shell(wd, model, priority, daemon=daemon, box=box))
    except KeyboardInterrupt:
        err.print("")
        if getattr(box.get("session"), "current", None):
            _interrupted(box, daemon_stops=daemon_stops)


async def _ask(prompt: str) -> str:
    """``input(prompt)`` on a daemon thread, so Ctrl-C leaves without waiting for a line."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[str] = loop.create_future()

    def settle(value: str | None, exc: BaseException | None) -> None:
        if not fut.done():
            fut.set_exception(exc) if exc is not None else fut.set_result(value or "")

    def read() -> None:
        try:
            value, exc = input(prompt), None
        except BaseException as e:  # noqa: BLE001 - EOFError and the like go to the awaiting task
            value, exc = None, e
        try:
            loop.call_soon_threadsafe(settle, value, exc)
        except RuntimeError:        # the loop closed while we waited (Ctrl-C)
            pass

    threading.Thread(target=read, name="llmos-input", daemon=True).start()
    return await fut


async def _confirm(i: int, tool: str, args: dict, risk: str) -> bool:
    answer = await _ask(f"  step {i} {tool} is {risk} ({json.dumps(args)[:80]}). Run it? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


async def _clarify(question: str) -> str | None:
    """The planner's one clarifying question, answered at the prompt (empty: no answer)."""
    answer = await _ask(f"  {question} ")
    return answer.strip() or None


async def _shell(wd: Path, model: str | None, priority: int, *, daemon: bool = False,
                 box: dict | None = None) -> None:
    from llmos.cli.daemon import open_session
    from llmos.shell import feedback
    from llmos.shell.render import explain_text

    box = box if box is not None else {}
    cfg = state.config()
    store = _store(cfg)
    try:
        session = await open_session(cfg, model=model, priority=priority, confirm=_confirm,
                                     on_event=_progress(False), daemon=daemon, notice=_notice,
                                     ask=_clarify)
    except BaseException:
        store.close()
        raise
    box["session"] = session
    from llmos.cli.reminders import follow
    reminders = asyncio.ensure_future(follow(session, lambda text: err.print(f"\n{text}", markup=False)))
    _line_editing()
    last: str | None = None
    err.print(f"[bold]llmos shell[/] in {wd} — type a request; `help` for commands, `quit` to leave.")
    try:
        while True:
            try:
                line = (await _ask("llmos> ")).strip()
            except EOFError:            # Ctrl-D: end the prompt's line, then leave
                out.print("")
                break
            if not line:
                continue
            word, _, rest = line.partition(" ")
            if word in ("quit", "exit"):
                break
            if word == "help":
                err.print("commands: history | explain [RUN] | rate good|bad [note] | quit; "
                          "anything else is a request")
                continue
            try:
                if word == "history":
                    _history_table(store.list_runs(20))
                elif word == "explain":
                    out.print(explain_text(store.get_run(rest.strip() or last or "last")), markup=False)
                elif word == "rate" and rest.split()[:1] and rest.split()[0] in ("good", "bad"):
                    verdict, _, note = rest.partition(" ")
                    feedback.rate(store, last or "last", verdict == "good", note or None,
                                  registry=session.registry)
                    err.print(f"rated {verdict}")
                else:
                    res = await session.run(line, workdir=wd)
                    last = res.run
                    out.print(res.answer, markup=False)
                    err.print(f"[dim]{res.status.label} · run {res.run}[/]")
            except LLMOSError as e:
                err.print(f"[red]error:[/] {e.message}" + (f"\nhint: {e.hint}" if e.hint else ""),
                          markup=True)
    finally:
        reminders.cancel()
        store.close()
        await session.aclose()


def _line_editing() -> None:
    """Arrow keys and history at the prompt when stdin is a terminal."""
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401 - importing it is what turns line editing on
        except ImportError:
            pass


def _history_table(rows: list[Any]) -> None:
    table = Table(title="runs")
    for col in ("run", "when", "status", "rating", "request", "answer"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r.id, time.strftime("%m-%d %H:%M", time.localtime(r.created)), r.status.label,
                      r.rating or "", r.request[:60], (r.answer or "")[:60])
    out.print(table)


def history(path: str = typer.Argument(None, help="A file or folder: list its kept versions instead."),
            limit: int = typer.Option(20, "--limit", "-n", min=1, max=10000, help="Most runs to show."),
            as_json: bool = typer.Option(False, "--json", help="One JSON list.")) -> None:
    """The most recent runs: id, status, rating, request and answer; with a PATH, the
    kept versions of that file (what each run changed; `llmos undo RUN` puts them back).

    Example: llmos history -n 5; llmos history notes.txt
    """
    if path is not None:
        from llmos.cli.storage import path_history

        path_history(path, limit, as_json)
        return
    store = _store(state.config())
    rows = store.list_runs(limit)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in rows]))
    else:
        _history_table(rows)


def explain(ref: str = typer.Argument("last", help="Run id (or a unique prefix, or 'last'); "
                                                     "a number explains a kernel process."),
            as_json: bool = typer.Option(False, "--json", help="The raw record as JSON.")) -> None:
    """Why a run did what it did: plan, reasons, risks, results, timings, habits, kernel decisions.

    Example: llmos explain last
    """
    from llmos.shell.render import explain_text

    if ref.isdigit():
        from llmos.cli.kernel import explain as explain_pid

        explain_pid(int(ref))
        return
    cfg = state.config()
    rec = _store(cfg).get_run(ref)
    if as_json:
        typer.echo(json.dumps({**rec.to_dict(), "rating": rec.rating, "note": rec.note}, default=str))
        return
    out.print(explain_text(rec), markup=False)
    pids = [rec.pid] + [p for s in rec.steps for p in s.pids]
    pids += [c.get("pid") for c in rec.llm_calls]
    pids = [p for p in pids if isinstance(p, int)]
    if pids and cfg.db_path.exists():
        try:
            from llmos.cli.kernel import explain_lines
            from llmos.kernel.storage import Reader

            reader = Reader(cfg.db_path)
            out.print("kernel account (scheduler decisions):", markup=False)
            for pid in pids:
                for line in explain_lines(reader, pid):
                    out.print("  " + line, markup=False)
        except LLMOSError as e:
            out.print(f"  (kernel journal unavailable: {e.message})", markup=False)


def rate(ref: str = typer.Argument(..., help="Run id (or prefix, or 'last')."),
         verdict: str = typer.Argument(..., help="good or bad."),
         note: str = typer.Option(None, "--note", help="Why, in a few words.")) -> None:
    """Rate a run. Good plans become examples for similar requests; bad ones are never reused.

    Example: llmos rate last good --note "exactly what I wanted"
    """
    if verdict not in ("good", "bad"):
        raise InvalidArgument(f"verdict: expected good or bad, got {verdict!r}", field="verdict",
                              expected="good | bad")
    from llmos.shell import feedback
    from llmos.tools.registry import default_registry

    store = _store(state.config())
    rec, evidence = feedback.rate(store, ref, verdict == "good", note, registry=default_registry())
    msg = f"rated run {rec.run} {verdict}"
    if verdict == "good":
        msg += "; its plan is now an example for similar requests"
        if evidence:
            msg += "; habit evidence: " + ", ".join(evidence)
    else:
        msg += "; its plan will not be used again for this request"
    err.print(msg, markup=False)


def habits(action: str = typer.Argument("list", help="list | set | forget"),
           key: str = typer.Argument(None, help="output_dir, or arg:TOOL.ARG (e.g. arg:plot.chart.kind)."),
           value: str = typer.Argument(None, help="The value to set.")) -> None:
    """Show, set or forget your habits (applied to plans; `llmos explain` says when).

    Example: llmos habits set output_dir reports
    """
    import getpass

    from llmos.shell.feedback import active_habits

    store = _store(state.config())
    user = getpass.getuser()
    if action == "set":
        if not key or value is None:
            raise InvalidArgument("habits set: expected KEY and VALUE", field="key", expected="KEY VALUE")
        store.set_habit(user, key, value)
    elif action == "forget":
        if not key:
            raise InvalidArgument("habits forget: expected KEY", field="key", expected="a habit key")
        store.set_habit(user, key, None)
    elif action != "list":
        raise InvalidArgument(f"action: expected list, set or forget, got {action!r}", field="action",
                              expected="list | set | forget")
    active = active_habits(store, user)
    table = Table(title=f"habits of {user}")
    for col in ("key", "value", "evidence", "active"):
        table.add_column(col)
    for h in store.habits(user):
        on = active.get(h["key"], (None,))[0] == h["value"]
        table.add_row(h["key"], h["value"], "explicit" if h["evidence"] >= 1000 else str(h["evidence"]),
                      "yes" if on else "")
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(shell)
    app.command()(history)
    app.command()(explain)
    app.command()(rate)
    app.command()(habits)


