"""Tokens and agents' access: ``llmos tokens list|create|revoke`` and ``llmos disable``.

Map:
- ``tokens list [AGENT]``: every bearer token of the state directory (ids, never the
  tokens), from the one token store (``kernel.tokens``): those ``agent.create`` gave out
  and those made later.
- ``tokens create AGENT [--label] [--metrics]``: a new token, printed once; ``--metrics``
  makes a token that opens ``/metrics`` only (for a Prometheus scraper).
- ``tokens revoke ID``: the token stops working at once (the daemon re-reads the store).
- ``disable AGENT``: ``agent.disable`` as root (through the daemon when one runs):
  the agent and those it made lose their tokens and may do nothing more.

The store is a file in the state directory that only its owner can read, so these
commands are the person's (like the admin token they sit next to).
"""

from __future__ import annotations

import json
import time

import typer
from rich.console import Console
from rich.table import Table

from llmos.cli import state
from llmos.errors import NotFound

__all__ = ["register", "tokens_list", "tokens_create", "tokens_revoke", "disable"]

console = Console()
tokens_app = typer.Typer(help="Bearer tokens: list, create, revoke.", no_args_is_help=True)


def _store():
    from llmos.kernel.tokens import TokenStore

    return TokenStore(state.config().home)


def _known_agents() -> set[str]:
    from llmos.cli.kernel import _reader

    _cfg, reader = _reader()
    try:
        return {"root"} | {a for (a,) in reader.query("SELECT id FROM agents")}
    except Exception:  # noqa: BLE001 - no journal yet: only root exists
        return {"root"}


@tokens_app.command("list")
def tokens_list(agent: str = typer.Argument(None, help="Only this agent's tokens."),
                as_json: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
    """List bearer tokens (their ids; a token itself is shown only when made).

    Example: llmos tokens list alice
    """
    store = _store()
    rows = store.list(agent)
    if as_json:
        typer.echo(json.dumps({"tokens": rows, "disabled": sorted(store.disabled())}))
        return
    if not rows:
        console.print("no tokens" + (f" for {agent}" if agent else ""))
        return
    t = Table(title="tokens")
    for col in ("id", "agent", "scope", "label", "created"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["id"], r["agent"], r.get("scope", "all"), r.get("label", ""),
                  time.strftime("%Y-%m-%d %H:%M", time.localtime(r.get("created", 0))))
    console.print(t)


@tokens_app.command("create")
def tokens_create(agent: str = typer.Argument(..., help="The agent the token acts for."),
                  label: str = typer.Option("", "--label", help="What it is for (shown in the list)."),
                  metrics: bool = typer.Option(False, "--metrics", help="Open /metrics only.")) -> None:
    """Make a bearer token for an agent; it is printed once.

    Example: llmos tokens create alice --label laptop
    """
    if agent not in _known_agents():
        raise NotFound(f"no agent named {agent!r}", hint="list them with `llmos agents`")
    token, tid = _store().issue(agent, label=label, scope="metrics" if metrics else "all")
    typer.echo(token)
    console.print(f"token {tid} for {agent}" + (" (metrics only)" if metrics else "") + ": shown once, keep it",
                  style="dim", highlight=False)


@tokens_app.command("revoke")
def tokens_revoke(token_id: str = typer.Argument(..., help="The token's id (from `llmos tokens list`).")) -> None:
    """Revoke a token: it stops working at once.

    Example: llmos tokens revoke 3f2a9c0d1e2b4a5c
    """
    agent = _store().revoke(token_id)
    console.print(f"revoked token {token_id} of {agent}")


def disable(agent: str = typer.Argument(..., help="The agent to disable."),
            reason: str = typer.Option(None, "--reason", help="Why (kept in the store).")) -> None:
    """Disable an agent and the agents it made: tokens revoked, processes killed, no more calls.

    Example: llmos disable alice --reason "leaked token"
    """
    from llmos.cli.kernel import _with_kernel

    out = _with_kernel("agent.disable", {"name": agent, **({"reason": reason} if reason else {})})
    console.print(f"disabled {', '.join(out['disabled'])}"
                  + (f"; killed {len(out['killed'])} process(es)" if out.get("killed") else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(tokens_app, name="tokens")
    app.command()(disable)
