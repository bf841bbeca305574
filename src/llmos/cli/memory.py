"""``llmos memory``: what LLM OS remembers, across every agent: list, search, forget.

Each command is one syscall as root with ``everyone`` (or ``owner`` with ``--agent``):
``memory.list``, ``memory.recall``, ``memory.forget``, through the daemon when one serves
the state directory, else in a kernel booted in this process (``cli.kernel._with_kernel``),
as ``llmos undo`` does. Root holds the ``others`` capability, which is what lets the
person see every agent's long-term memory; no agent holds it unless the person gave it.

- ``llmos memory list [--agent A] [--collection C] [--tag T] [--limit N]``
- ``llmos memory search QUERY [-k N] [--agent A] [--collection C]``
- ``llmos memory forget ID`` / ``llmos memory forget --all [--agent A] [--yes]``
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llmos.errors import InvalidArgument

__all__ = ["register", "memory_app"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

TEXT_SHOWN = 120        # characters of a memory shown in a table (--json has all of it)
QUERY_MAX = 1000        # characters in a search (as memory.recall takes)

memory_app = typer.Typer(name="memory", no_args_is_help=True, add_completion=False,
                         help="What LLM OS remembers (every agent's long-term memory): list, search, forget.\n\n"
                              "Example: llmos memory search \"where is the spare key\"")

AgentOpt = typer.Option(None, "--agent", help="Only this agent's memory (default: every agent's).")
CollectionOpt = typer.Option(None, "--collection", help="Only this collection.")
JsonOpt = typer.Option(False, "--json", help="One JSON object.")


def _whose(agent: str | None, collection: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {"owner": agent} if agent else {"everyone": True}
    if collection:
        args["collection"] = collection
    return args


def _call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    from llmos.cli.kernel import _with_kernel

    return _with_kernel(name, args)


def _short(text: str) -> str:
    one = " ".join(text.split())
    return one if len(one) <= TEXT_SHOWN else one[:TEXT_SHOWN - 1] + "…"


def _table(title: str, rows: list[dict[str, Any]], score: bool = False) -> None:
    t = Table(title=title)
    for col in ("id", "when", "agent", "collection", "tags", *(("similarity",) if score else ()), "text"):
        t.add_column(col, overflow="fold")
    for m in rows:
        t.add_row(str(m["id"]), time.strftime("%Y-%m-%d %H:%M", time.localtime(m["created_s"])), m["agent"],
                  m["collection"], ", ".join(m["tags"]),
                  *((f"{m['similarity'] if m.get('similarity') is not None else '-'}",) if score else ()),
                  _short(m["text"]))
    out.print(t)


@memory_app.command("list")
def list_(agent: str = AgentOpt, collection: str = CollectionOpt,
          tag: list[str] = typer.Option(None, "--tag", help="Only memories with this tag (repeatable)."),
          limit: int = typer.Option(50, "--limit", min=1, max=500, help="At most this many, newest first."),
          as_json: bool = JsonOpt) -> None:
    """List remembered texts, newest first.

    Example: llmos memory list --agent run-r1a2b3c4
    """
    res = _call("memory.list", {**_whose(agent, collection), "tags": list(tag or []), "limit": limit})
    if as_json:
        typer.echo(json.dumps(res))
        return
    if not res["memories"]:
        out.print("nothing is remembered" + (f" by agent {agent}" if agent else ""), markup=False)
        return
    _table("remembered", res["memories"])
    u = res["usage"]
    err.print(f"{u['memories']} memories, {u['bytes']} bytes in all; forget one: llmos memory forget ID",
              markup=False)


@memory_app.command("search")
def search(query: str = typer.Argument(..., help="What to look for, in plain words."),
           k: int = typer.Option(10, "-k", min=1, max=50, help="How many to show."),
           agent: str = AgentOpt, collection: str = CollectionOpt, as_json: bool = JsonOpt) -> None:
    """Search remembered texts by meaning and words.

    Example: llmos memory search "which editor do I prefer"
    """
    if not re.search(r"\w", query or ""):
        raise InvalidArgument("QUERY: expected text with at least one word", field="QUERY",
                              expected="what to look for, in plain words")
    if len(query) > QUERY_MAX:
        raise InvalidArgument(f"QUERY: at most {QUERY_MAX} characters, got {len(query)}", field="QUERY",
                              expected=f"at most {QUERY_MAX} characters")
    res = _call("memory.recall", {**_whose(agent, collection), "query": query, "k": k})
    if as_json:
        typer.echo(json.dumps(res))
        return
    if not res["results"]:
        out.print("nothing remembered matches", markup=False)
        return
    _table(f"remembered, nearest {query!r}", res["results"], score=True)


@memory_app.command("forget")
def forget(memory_id: int = typer.Argument(None, metavar="ID", min=1, help="The memory's id (llmos memory list)."),
           all_: bool = typer.Option(False, "--all", help="Forget everything remembered (with --agent: "
                                                          "everything that agent remembers)."),
           agent: str = AgentOpt, collection: str = CollectionOpt,
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before --all."),
           as_json: bool = JsonOpt) -> None:
    """Forget one memory, or everything (--all). Forgotten texts are deleted, not kept.

    Example: llmos memory forget 42
    """
    if (memory_id is None) == (not all_):
        raise InvalidArgument("forget: give an ID or --all (not both)", field="ID",
                              expected="a memory id from `llmos memory list`, or --all",
                              hint="llmos memory list (or search QUERY) shows the ids")
    args = _whose(agent, collection)
    if all_:
        whose = f"agent {agent}'s" if agent else "every agent's"
        what = f"all of {whose} memories" + (f" in collection {collection}" if collection else "")
        if not yes:
            if not sys.stdin.isatty():
                raise InvalidArgument(f"--all: add --yes to forget {what} (no terminal to ask)", field="--yes",
                                      expected="--yes")
            typer.confirm(f"Forget {what}?", abort=True)
        res = _call("memory.forget", {**args, "all": True})
        if as_json:
            typer.echo(json.dumps(res))
            return
        err.print(f"forgot {res['forgotten']} memories ({res['bytes']} bytes)", markup=False)
        return
    res = _call("memory.forget", {**args, "id": memory_id})
    if as_json:
        typer.echo(json.dumps(res))
        return
    err.print(f"forgot memory {res['id']} of agent {res['agent']}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(memory_app, name="memory")
