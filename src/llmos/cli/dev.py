"""``llmos dev --repo DIR "REQUEST"``: the software-development agent.

Reads the repository, asks the planner-tier model (or ``--model``, e.g. a configured
remote) for edits, applies them to a scratch copy, runs the project's tests in the
sandbox, and edits again on failure (``--tries``, default 3). At the end it shows the
final diff and asks before anything in DIR changes. ``--yes`` applies without asking
only when the tests pass; a run whose tests still fail says so and applies nothing
unless the person answers yes at the prompt. Every model call and every test run is
a syscall of the run's own agent: in the daemon when one serves the state directory,
else in a kernel booted in this process (``cli.daemon``).

Exit codes: 0 applied (or tests pass and the diff was only shown with ``--no-apply``),
1 failed (tests still fail, no usable edit, or an error), 2 the person said no.
With ``--json`` the LAST stdout line is one JSON object (the result, ``applied``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.syntax import Syntax

from llmos import params
from llmos.cli import state
from llmos.errors import InvalidArgument

__all__ = ["register", "dev", "show_diff"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _progress(quiet: bool):
    def on_event(kind: str, data: dict[str, Any]) -> None:
        if quiet:
            return
        if kind == "read":
            err.print(f"[dim]read {data['files']} files; tests: {data['test_cmd']} (from {data['source']})[/]")
        elif kind == "tests":
            mark = "[green]pass[/]" if data["passed"] else "[red]fail[/]"
            err.print(f"  tests {mark} in {data['seconds']:.1f} s: {data['summary']}", markup=True)
        elif kind == "asking":
            err.print(f"[dim]try {data['try']}/{data['of']}: asking the model (shown: "
                      f"{', '.join(data['files']) or 'no files'})…[/]")
        elif kind == "timeout":
            err.print(f"  [yellow]model timed out[/]: {data['reason']}", markup=True)
        elif kind == "rejected":
            err.print(f"  [yellow]edit rejected[/]: {data['reason']}", markup=True)
        elif kind == "edited":
            err.print(f"  edited {', '.join(data['files'])}", markup=False)
    return on_event


def show_diff(diff: str, console: Console | None = None) -> None:
    """The final diff, coloured (rich's diff lexer)."""
    (console or out).print(Syntax(diff, "diff", theme="ansi_dark", background_color="default", word_wrap=True))


async def _develop(repo: Any, request: str, *, model: str | None, tries: int, test_timeout_s: float,
                   priority: int, quiet: bool, edit_format: str = "blocks",
                   model_timeout_s: float = 300.0) -> Any:
    from llmos.cli.daemon import boot_kernel, find_daemon
    from llmos.dev import DevAgent, open_daemon, open_local, scratch_copy

    cfg = state.config()
    scratch = scratch_copy(repo)
    kernel = None
    client = await find_daemon(cfg, notice=None if quiet else lambda s: err.print(f"[dim]{s}[/]"))
    try:
        if client is not None:
            if model is None:
                from llmos.llm.tiers import choose_planner

                model = choose_planner(None, cfg).model.name
            session = await open_daemon(client, scratch, model=model, priority=priority)
            where = f"daemon at {client.base_url}"
        else:
            kernel = await boot_kernel(cfg)
            if model is None:
                from llmos.shell.runner import planner_model

                model, _why = planner_model(kernel)
            session = await open_local(kernel, scratch, model=model, priority=priority)
            where = "in-process kernel"
        if not quiet:
            err.print(f"[dim]llmos dev: {model or 'the default model'} ({where}); working on a copy in "
                      f"{scratch}[/]")
        try:
            return await DevAgent(session, repo, scratch, tries=tries, test_timeout_s=test_timeout_s,
                                  model_timeout_s=model_timeout_s, on_event=_progress(quiet),
                                  edit_format=edit_format).run(request)
        finally:
            await session.close()
    finally:
        if client is not None:
            await client.aclose()
        if kernel is not None:
            await kernel.shutdown()
        shutil.rmtree(scratch.parent, ignore_errors=True)


def dev(
    request: str = typer.Argument(..., help="What to change, in plain words."),
    repo: Path = typer.Option(..., "--repo", "-r", help="The project's directory (changed only after your yes)."),
    tries: int = typer.Option(3, "--tries", "-t", help="Model calls at most (each edit or rejected reply is one)."),
    test_cmd: str = typer.Option(None, "--test-cmd", help="The command that runs the tests (default: "
                                 "detected: make test, npm test, pytest)."),
    test_timeout: int = typer.Option(60, "--test-timeout", min=1, max=120,
                                     help="Seconds one test run may take before it is stopped."),
    model_timeout: float = typer.Option(300.0, "--model-timeout", min=1, max=3600,
                                        help="Seconds one model call may take; past it the generation is "
                                        "stopped and the try is spent."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without asking when the tests pass."),
    no_apply: bool = typer.Option(False, "--no-apply", help="Show the diff; never change DIR."),
    model: str = typer.Option(None, "--model", "-m", help="Model name from `llmos models` (a remote one "
                              "too); default: the planner tier."),
    edit_format: str = typer.Option("blocks", "--edit-format", help="What the model is asked for: "
                                    "blocks (SEARCH/REPLACE) or whole (whole files)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
    priority: int = typer.Option(params.PRIORITY_DEFAULT, "--priority", "-p",
                                 min=params.PRIORITY_MIN, max=params.PRIORITY_MAX),
) -> None:
    """Change a repository as asked: edit by diffs, run its tests in the sandbox, retry on
    failure, then show the diff and ask before changing anything in it.

    Example: llmos dev --repo ~/src/greeter "add a --verbose flag and a test for it"
    """
    from llmos.dev import TRIES_MAX, apply_to_repo, open_repo
    from llmos.shell.runner import check_request

    check_request(request)
    if edit_format not in ("blocks", "whole"):
        raise InvalidArgument(f"--edit-format: expected blocks or whole, got {edit_format!r}",
                              field="edit_format", expected="blocks | whole")
    if not 1 <= tries <= TRIES_MAX:
        raise InvalidArgument(f"--tries: expected 1 to {TRIES_MAX}, got {tries}", field="tries",
                              expected=f"an integer from 1 to {TRIES_MAX}")
    from llmos.config import check_workspace

    r = open_repo(repo, test_cmd)
    check_workspace(state.config(), r.root, field="--repo")
    res = asyncio.run(_develop(r, request, model=model, tries=tries, test_timeout_s=test_timeout,
                               priority=priority, quiet=as_json, edit_format=edit_format,
                               model_timeout_s=model_timeout))
    applied: list[str] = []
    refused = False
    if as_json:
        if res.passed and yes and not no_apply:
            applied = apply_to_repo(res, r)
        typer.echo(json.dumps({**res.to_dict(), "applied": applied}))
        raise typer.Exit(0 if res.passed else 1)
    used = len(res.tries)
    if res.diff:
        out.print(f"[bold]diff[/] ({len(res.changed)} file(s), {used} of {tries} tries, {res.seconds:.0f} s)")
        show_diff(res.diff)
    if res.passed:
        err.print(f"[green]tests pass[/] ({r.test_cmd})")
    elif res.tests.limit:
        err.print(f"[red]tests did not finish[/]: {res.tests.limit}")
    elif res.diff:
        err.print(f"[red]tests still fail after {used} tries[/]: {_last_line(res.tests.output)}")
    else:
        reason = res.tries[-1].reason if res.tries else "no reply"
        err.print(f"[red]no usable edit in {used} tries[/] (last: {reason}); nothing to apply")
        raise typer.Exit(1)
    if no_apply:
        err.print(f"[dim]--no-apply: {r.root} is unchanged[/]")
        raise typer.Exit(0 if res.passed else 1)
    if yes and res.passed:
        applied = apply_to_repo(res, r)
    elif sys.stdin.isatty() or not yes:
        question = "apply this diff to " + str(r.root) + ("?" if res.passed else " although the tests fail?")
        try:
            ok = typer.confirm(question, default=False, err=True)
        except (typer.Abort, EOFError):
            ok = False
        if ok:
            applied = apply_to_repo(res, r)
        else:
            refused = True
    if applied:
        err.print(f"[green]applied[/] to {r.root}: {', '.join(applied)}")
        raise typer.Exit(0 if res.passed else 1)
    err.print(f"{r.root} is unchanged" + (" (the tests fail; --yes applies only passing changes)"
                                          if yes and not res.passed else ""))
    raise typer.Exit(2 if refused and res.passed else 1)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"


def register(app: typer.Typer) -> None:
    app.command(name="dev")(dev)
