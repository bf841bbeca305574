"""The ``llmos`` command line: one typer app, sub-commands registered by area.

Map:
- ``app``: the typer app; global options ``--debug``, ``--config``, ``--home``.
- ``main()``: entry point; turns every error into one line plus a hint on stderr,
  with the full traceback in ``$LLMOS_HOME/logs/llmos.log`` (shown only with --debug).
- Sub-command modules each export ``register(app)``: ``base`` (version, models, chat,
  doctor), ``kernel`` (ps, kill, nice, agents, top, explain), ``shell`` (run, shell,
  history, explain, rate), ``storage`` (undo; history PATH), ``memory`` (list, search, forget), ``hw`` (hw, alloc), ``serve`` (serve, mcp), ``bench``, ``dev``.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback

import typer

from llmos import __version__
from llmos.cli import state
from llmos.errors import LLMOSError, map_foreign

__all__ = ["app", "main"]

app = typer.Typer(
    name="llmos",
    help="LLM OS: run plain-language tasks and many LLM agents as managed processes.\n\n"
         "Example: llmos run \"how many lines are in poem.txt?\"",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmos {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    config: str = typer.Option(None, "--config", help="Config file (default $LLMOS_HOME/config.toml)."),
    home: str = typer.Option(None, "--home", help="State directory (default $LLMOS_HOME or ~/.local/share/llmos)."),
) -> None:
    state.DEBUG = debug
    state.CONFIG_PATH = config
    state.HOME = home


# Sub-command modules, in help order. Each exports register(app).
_MODULES = ("base", "shell", "storage", "memory", "kernel", "approve", "tokens", "hw", "serve", "train", "bench",
            "workflow", "reminders", "dev")
for _name in _MODULES:
    try:
        _mod = importlib.import_module(f"llmos.cli.{_name}")
    except ModuleNotFoundError as _e:  # an area not built yet; never hides an inner import error
        if _e.name != f"llmos.cli.{_name}":
            raise
        continue
    _mod.register(app)


def _log_exception(exc: BaseException) -> str | None:
    """Append the traceback to $LLMOS_HOME/logs/llmos.log; return the log path."""
    try:
        from llmos.config import default_home

        log_dir = (state.HOME and os.path.expanduser(state.HOME)) or str(default_home())
        path = os.path.join(log_dir, "logs", "llmos.log")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", errors="backslashreplace") as f:   # argv may hold undecodable bytes
            f.write("".join(traceback.format_exception(exc)))
        return path
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (errors are one line + hint)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        rc = app(args=argv, standalone_mode=False)   # a command's typer.Exit(code) comes back here
        return rc if isinstance(rc, int) and not isinstance(rc, bool) else 0
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except typer.TyperException as e:    # a usage error (typer's public base of its click errors)
        show = getattr(e, "show", None)
        if show is not None:
            show()
        else:
            typer.echo(f"error: {e.format_message()}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as e:  # the boundary: every error becomes one line
        err = e if isinstance(e, LLMOSError) else map_foreign(e)
        log = _log_exception(e)
        if state.DEBUG:
            traceback.print_exception(e)
        typer.secho(f"error: {err.message}", fg="red", err=True)
        if err.hint:
            typer.echo(f"hint: {err.hint}", err=True)
        elif log and not state.DEBUG:
            typer.echo(f"hint: details in {log} (or re-run with --debug)", err=True)
        return 1


def entry() -> None:  # pragma: no cover
    sys.exit(main())
