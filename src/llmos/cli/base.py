"""Foundation commands: ``boot``, ``models``, ``chat``, ``doctor``.

``boot`` (what ``make run`` starts) is the whole LLM OS for a person at a terminal:
the daemon as a child process (``cli.daemon.ChildDaemon``), the dashboard link, and
``llmos shell`` attached to that daemon; leaving the shell stops the daemon it started.
"""

from __future__ import annotations

import asyncio
import platform
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from llmos.cli import state
from llmos.cli.hw import human_bytes
from llmos.errors import InvalidArgument, LLMOSError

console = Console()
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _snapshot():
    """This machine's hardware, read once (the planner tier rule reads memory, cores, GPUs)."""
    from llmos.hal import detect

    hal = detect()
    try:
        return hal.snapshot()
    finally:
        hal.close()


def models() -> None:
    """List the models the registry knows (size, context length, where they live), the
    planner tiers (installed or not, what each needs) and which one plans here, and why.

    Example: llmos models
    """
    from llmos.llm.models import embedded_model_path, list_models
    from llmos.llm.tiers import choose_planner, tier_rows

    cfg = state.config()
    found = list_models(cfg)
    table = Table(title="models")
    for col in ("name", "kind", "size", "context"):
        table.add_column(col, no_wrap=True)
    table.add_column("location", overflow="fold")
    for m in found:
        default = " (default)" if m.name == cfg.model else ""
        where = m.location + (f"  model={m.remote_model}" if m.remote_model else "")
        table.add_row(m.name + default, m.kind, human_bytes(m.size_bytes),
                      str(m.context_length or "-"), where)
    console.print(table)
    if not any(m.kind == "embedded" for m in found):
        embedded_model_path()  # raises the clear "package missing" error
    snap = _snapshot()
    try:
        planner, reason = choose_planner(snap, cfg)
        chosen, line = planner.name, f"planner: {reason}"
    except LLMOSError as e:
        chosen, line = None, f"planner: none: {e.message}" + (f" ({e.hint})" if e.hint else "")
    tiers = Table(title="planner tiers (best first)")
    for col in ("model", "size", "installed", "fits here"):
        tiers.add_column(col, no_wrap=True)
    tiers.add_column("needs", overflow="fold")
    for r in tier_rows(snap, cfg):
        name = r.tier.model + (" (planner)" if r.tier.model == chosen else "")
        tiers.add_row(name, human_bytes(r.size_bytes), "yes" if r.installed else "[red]no[/]",
                      "yes" if r.fits else "[yellow]no[/]", r.tier.requirement)
    console.print(tiers)
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def chat(
    message: str = typer.Argument(None, help="Send one message and exit (default: interactive)."),
    model: str = typer.Option(None, "--model", "-m", help="Model name or .gguf path (a new conversation)."),
    system: str = typer.Option(None, "--system", help="System prompt of a new conversation "
                               "(default: \"You are a helpful assistant.\")."),
    conversation: str = typer.Option(None, "--conversation", "-c",
                                     help="Continue this conversation (its id is printed when it starts)."),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1, help="Most tokens per reply."),
    temperature: float = typer.Option(0.2, "--temperature", min=0.0, max=5.0),
) -> None:
    """Chat with a model through the kernel (the daemon's when one runs), streaming tokens as
    they are generated. The conversation keeps within the model's context: older turns are
    summarized, and every turn stays in its history.

    Example: llmos chat "write a haiku about schedulers"
    """
    from llmos.cli.chat import check_message

    if message is not None:
        check_message(message)
    cfg = state.config()
    asyncio.run(_chat(cfg, message, model, system, conversation, max_tokens, temperature))


async def _chat(cfg, message, model, system, conversation, max_tokens, temperature) -> None:
    from llmos.cli.chat import begin, open_chat

    session = await open_chat(cfg, notice=lambda line: err.print(line, markup=False))
    try:
        conv = await begin(session, model=model, system=system, conversation=conversation)
        where = "daemon" if session.mode == "daemon" else "in-process kernel"
        interactive = message is None
        if interactive:
            console.print(f"[bold]llmos chat[/] — conversation {conv['id']} "
                          f"({conv.get('model') or cfg.model}, {where}). Empty line or Ctrl-D to quit.",
                          highlight=False)
        else:
            err.print(f"conversation {conv['id']} ({where}); continue it with --conversation {conv['id']}")
        while True:
            if interactive:
                try:
                    message = console.input("[bold cyan]you> [/]")
                except EOFError:
                    break
                if not message.strip():
                    break
                console.print("[bold green]llm>[/] ", end="")
            async for piece in session.say(conv["id"], message, max_tokens=max_tokens, temperature=temperature):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            if not interactive:
                break
    finally:
        await session.aclose()


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _checks() -> list[Check]:
    out: list[Check] = []
    v = sys.version_info
    out.append(Check("python", v >= (3, 11), platform.python_version(),
                     "" if v >= (3, 11) else "install Python 3.11 or newer"))
    try:
        cfg = state.config()
        out.append(Check("state directory", True, str(cfg.home)))
    except LLMOSError as e:
        out.append(Check("state directory", False, e.message, e.hint or ""))
        return out
    try:
        from llmos.llm.models import resolve

        info = resolve(None, cfg)
        out.append(Check("model", True, f"{info.name}: {info.location} ({human_bytes(info.size_bytes)})"))
    except LLMOSError as e:
        out.append(Check("model", False, e.message, e.hint or ""))
        info = None
    try:
        from llmos.llm.tiers import choose_planner

        planner, reason = choose_planner(_snapshot(), cfg)
        out.append(Check("planner model", True, reason))
    except LLMOSError as e:
        out.append(Check("planner model", False, e.message, e.hint or ""))
    try:
        import llama_cpp

        out.append(Check("engine", True, f"llama-cpp-python {llama_cpp.__version__}"))
    except Exception as e:  # noqa: BLE001 - any import failure is the finding
        out.append(Check("engine", False, f"llama_cpp does not import: {e}",
                         "run `make run` again to rebuild the venv"))
    try:
        import llguidance  # noqa: F401

        out.append(Check("constrained decoding", True, "llguidance"))
    except Exception as e:  # noqa: BLE001
        out.append(Check("constrained decoding", False, str(e), "pip install llguidance"))
    from llmos.tools.sandbox import default_sandbox

    try:
        info = default_sandbox().info()
        out.append(Check("sandbox", True, f"bubblewrap at {info['bwrap']}; processes limited by "
                                          f"{info['process_limit']}"))
    except LLMOSError as e:
        out.append(Check("sandbox", False, e.message, e.hint or ""))
    fts = True
    try:
        sqlite3.connect(":memory:").execute("CREATE VIRTUAL TABLE t USING fts5(x)")
    except sqlite3.Error:
        fts = False
    out.append(Check("sqlite", fts, f"SQLite {sqlite3.sqlite_version}" + (" with FTS5" if fts else ""),
                     "" if fts else "this Python's SQLite lacks FTS5"))
    return out


def doctor() -> None:
    """Check the set-up (Python, model, engine, sandbox, state directory) and say what to fix.

    Example: llmos doctor
    """
    checks = _checks()
    table = Table(title="llmos doctor")
    for col in ("check", "status", "detail", "fix"):
        table.add_column(col)
    for c in checks:
        table.add_row(c.name, "[green]ok[/]" if c.ok else "[red]FAIL[/]", c.detail, c.fix)
    console.print(table)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


def boot(
    workdir: Path = typer.Option(None, "--workdir", "-C", help="The shell's workspace (default: here)."),
    model: str = typer.Option(None, "--model", "-m", help="Model for the shell's requests (default: "
                                                         "the configured one)."),
    port: int = typer.Option(None, "--port", min=0, max=65535,
                             help="Daemon port (default 8420, a free one if that is busy)."),
) -> None:
    """Boot the whole LLM OS: the daemon, the dashboard, and the shell attached to it.

    Starts `llmos serve` (or reuses the daemon already serving this state directory),
    prints the dashboard link, opens the interactive shell; leaving the shell (exit,
    Ctrl-D, Ctrl-C) stops the daemon it started. This is what `make run` starts.
    Example: llmos boot
    """
    from llmos.api.server import dashboard_url
    from llmos.cli.daemon import ChildDaemon
    from llmos.cli.shell import interactive
    from llmos.llm.models import resolve
    from llmos.sdk.discover import admin_token, daemon_info, discover

    cfg = state.config()
    wd = (workdir or Path.cwd()).expanduser().resolve()
    if not wd.is_dir():
        raise InvalidArgument(f"--workdir: {wd} is not a directory", field="workdir",
                              expected="an existing directory")
    from llmos.config import check_workspace

    check_workspace(cfg, wd, field="--workdir")
    info = resolve(model, cfg)                    # a wrong model name fails here, in one line
    child = None
    running = discover(cfg)
    if running is not None:
        url = running.base_url
        running.close()
        pid = (daemon_info(cfg.home) or {}).get("pid")
        err.print(f"using the LLM OS daemon already running at {url} (pid {pid})", markup=False)
    else:
        err.print(f"[bold]LLM OS[/] booting on {info.name} ({info.kind}); state in {cfg.home}")
        err.print("starting daemon…", markup=False, end="")
        try:
            child = ChildDaemon.start(cfg, config_path=state.CONFIG_PATH, port=port)
        except BaseException:
            err.print("", markup=False)            # the error goes on a line of its own
            raise
        url = child.url
        err.print(f" ready in {child.ready_s:.1f} s (pid {child.pid}; log {child.log_path})"
                  + (f"; {child.note}" if child.note else ""), markup=False)
    try:
        token = admin_token(cfg.home) or ""
        err.print(f"dashboard:  {dashboard_url(url, token)}", markup=False, soft_wrap=True)
        interactive(wd, model, daemon=True, daemon_stops=child is not None)
    finally:
        if child is not None:
            err.print("stopping daemon…", markup=False)
            err.print(child.stop(), markup=False)
        else:
            err.print(f"the daemon at {url} keeps running (this shell did not start it)", markup=False)


def register(app: typer.Typer) -> None:
    app.command()(boot)
    app.command()(models)
    app.command()(chat)
    app.command()(doctor)
