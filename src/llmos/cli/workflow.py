"""``llmos workflow``: standing orders in plain language.

- ``llmos workflow new "every weekday at 9, summarize the new files in inbox/ into digest.md"``
  compiles the description (trigger + checked plan), shows it once with the rights its
  runs will use, and saves it on the person's yes (``--yes``: without asking).
- ``list`` · ``show NAME`` (its runs, each explained) · ``pause`` · ``resume`` ·
  ``run-now`` · ``delete`` · ``save NAME --from RUN [--when "every monday at 8"]``.

Workflows live in the daemon (``llmos serve`` / ``llmos boot``): the commands go through
its API when one serves the state directory, and there the triggers fire. Without one
they work on ``workflows.db`` in a kernel booted in this process; saved triggers fire
once the daemon runs (a time missed meanwhile fires once then).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llmos.cli import state
from llmos.runs import RunStatus

__all__ = ["register", "workflow_app"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
workflow_app = typer.Typer(name="workflow", no_args_is_help=True, add_completion=False,
                           help="Standing orders: saved, scheduled and triggered plans.\n\n"
                                'Example: llmos workflow new "every weekday at 9, count the lines of log.txt"')
JsonOpt = typer.Option(False, "--json", help="One JSON object.")
NameArg = typer.Argument(..., help="The workflow's name (llmos workflow list shows them).")


# ── one operation, through the daemon or in this process ────────────────────
def _op(op: str, **kw: Any) -> Any:
    from llmos.sdk.discover import discover

    cfg = state.config()
    client = discover(cfg)
    if client is not None:
        with client:
            return _remote(client, op, **kw)
    return asyncio.run(_local(cfg, op, **kw))


_ROUTES = {   # op -> (method, path template, body keys)
    "compile": ("POST", "/api/v1/workflows/compile", ("description", "workdir")),
    "add": ("POST", "/api/v1/workflows", ("name", "proposal")),
    "save": ("POST", "/api/v1/workflows/save", ("name", "run", "when")),
    "list": ("GET", "/api/v1/workflows", ()),
    "show": ("GET", "/api/v1/workflows/{name}", ()),
    "pause": ("POST", "/api/v1/workflows/{name}/pause", ()),
    "resume": ("POST", "/api/v1/workflows/{name}/resume", ()),
    "run": ("POST", "/api/v1/workflows/{name}/run", ()),
    "delete": ("DELETE", "/api/v1/workflows/{name}", ()),
}


def _remote(client: Any, op: str, **kw: Any) -> Any:
    method, path, keys = _ROUTES[op]
    body = {k: kw[k] for k in keys if kw.get(k) is not None} if keys else None
    return client._call(method, path.format(name=kw.get("name", "")), json=body, timeout=600)


async def _local(cfg: Any, op: str, **kw: Any) -> Any:
    from llmos.cli.daemon import boot_kernel
    from llmos.workflows import open_workflows

    kernel = await boot_kernel(cfg)
    svc = open_workflows(kernel, watch=False)
    try:
        if op == "compile":
            return await svc.compile(kw["description"], kw["workdir"])
        if op == "add":
            return svc.add(kw["proposal"], kw["name"]).to_dict()
        if op == "save":
            from llmos.shell.store import ShellStore

            store = ShellStore(cfg.home / "shell.db")
            try:
                rec = store.get_run(kw["run"])
            finally:
                store.close()
            return (await svc.save_from_run(kw["name"], rec, kw.get("when"))).to_dict()
        if op == "list":
            return {"workflows": [w.to_dict() for w in svc.list()]}
        if op == "show":
            return {**svc.get(kw["name"]).to_dict(), "runs": svc.store.runs(kw["name"], 20)}
        if op in ("pause", "resume"):
            return getattr(svc, op)(kw["name"]).to_dict()
        if op == "run":
            return await svc.fire(kw["name"], "run now")
        svc.delete(kw["name"])
        return {"ok": True}
    finally:
        await svc.close()
        await kernel.shutdown()


# ── output ──────────────────────────────────────────────────────────────────
def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch)) if epoch else "-"


def _show_proposal(p: dict[str, Any]) -> None:
    out.print(f"[bold]when:[/] {p['when']}")
    out.print(f"[bold]task:[/] {p['task']}", markup=True)
    out.print(f"[bold]workspace:[/] {p['workdir']}")
    out.print("[bold]plan:[/]")
    for i, s in enumerate(p["steps"], 1):
        out.print(f"  {i}. {s['tool']} {json.dumps(s['args'])[:100]}  [{s['risk']}]", markup=False)
    out.print("[bold]rights its runs use:[/]")
    for r in p["rights"]:
        out.print(f"  - {r}", markup=False)


def _slug(text: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", text.lower())[:4]
    return "-".join(words) or "workflow"


# ── commands ────────────────────────────────────────────────────────────────
@workflow_app.command("new")
def new(description: str = typer.Argument(..., help="The standing order, in plain words."),
        name: str = typer.Option(None, "--name", help="Its name (default: from the task's first words)."),
        workdir: Path = typer.Option(None, "--workdir", "-C", help="Workspace its runs use (default: here)."),
        yes: bool = typer.Option(False, "--yes", "-y", help="Save without asking."),
        as_json: bool = JsonOpt) -> None:
    """Compile a description into a trigger and a checked plan; save it on your yes.

    Example: llmos workflow new "when a CSV lands in drop/, count its rows into counts.txt" --name csv
    """
    wd = str((workdir or Path.cwd()).expanduser().resolve())
    prop = _op("compile", description=description, workdir=wd)
    name = name or _slug(prop["task"])
    if not as_json:
        out.print(f"[bold]workflow {name}[/]")
        _show_proposal(prop)
    if not yes and not typer.confirm("Save this workflow?", default=False, err=True):
        err.print("not saved")
        raise typer.Exit(1)
    wf = _op("add", name=name, proposal=prop)
    if as_json:
        out.print(json.dumps(wf), markup=False)
        return
    nxt = f"; next run {_when(wf['next_due_s'])}" if wf.get("next_due_s") else ""
    out.print(f"saved workflow {name}{nxt}")


@workflow_app.command("list")
def list_(as_json: bool = JsonOpt) -> None:
    """The workflows, with their trigger and next run.

    Example: llmos workflow list
    """
    rows = _op("list")["workflows"]
    if as_json:
        out.print(json.dumps(rows), markup=False)
        return
    if not rows:
        out.print("no workflows")
        return
    t = Table(title="workflows")
    for col in ("name", "state", "trigger", "next", "last", "task"):
        t.add_column(col, overflow="fold")
    for w in rows:
        tr = w["trigger"]
        what = {"time": f"{tr['cron']} ({tr['tz']})", "file": f"{tr['folder']}/{tr['pattern']}",
                "after": f"after {tr['after']}"}.get(tr["kind"], tr["kind"])
        t.add_row(w["name"], w["state"], what, _when(w["next_due_s"]), _when(w["last_fire_s"]), w["task"])
    out.print(t)


@workflow_app.command("show")
def show(name: str = NameArg, as_json: bool = JsonOpt) -> None:
    """One workflow: trigger, plan, rights, and its last runs, each explained.

    Example: llmos workflow show digest
    """
    w = _op("show", name=name)
    if as_json:
        out.print(json.dumps(w), markup=False)
        return
    out.print(f"[bold]{w['name']}[/] ({w['state']}): {w['description']}")
    out.print(f"trigger: {w['trigger']}  next: {_when(w['next_due_s'])}", markup=False)
    for i, s in enumerate(w["plan"].get("steps", []), 1):
        out.print(f"  {i}. {s['tool']} {json.dumps(s.get('args', {}))[:100]}", markup=False)
    for r in w["runs"]:
        out.print(f"run {r['id']} {_when(r['started_s'])} {r['status']}: {r['explain']}", markup=False)


def _simple(op: str, verb: str):
    def cmd(name: str = NameArg) -> None:
        _op(op, name=name)
        out.print(f"workflow {name} {verb}")
    cmd.__doc__ = f"Workflow {verb}."
    return cmd


workflow_app.command("pause", help="Stop it firing until resumed.\n\nExample: llmos workflow pause digest")(
    _simple("pause", "paused"))
workflow_app.command("resume", help="Fire again from now on (missed times are not caught up).\n\n"
                                    "Example: llmos workflow resume digest")(_simple("resume", "resumed"))
workflow_app.command("delete", help="Remove it (its past runs stay in the journal).\n\n"
                                    "Example: llmos workflow delete digest")(_simple("delete", "deleted"))


@workflow_app.command("run-now")
def run_now(name: str = NameArg, as_json: bool = JsonOpt) -> None:
    """Run it once now and show the outcome (journaled like a triggered run).

    Example: llmos workflow run-now digest
    """
    r = _op("run", name=name)
    if as_json:
        out.print(json.dumps(r), markup=False)
        return
    out.print(r["answer"], markup=False)
    err.print(f"[dim]{r['status']} · {r['explain']}[/]")
    if RunStatus.parse(r["status"]) is not RunStatus.SUCCEEDED:
        raise typer.Exit(1)


@workflow_app.command("save")
def save(name: str = typer.Argument(..., help="The new workflow's name."),
         from_: str = typer.Option(..., "--from", help="A past run's id (llmos history shows them)."),
         when: str = typer.Option(None, "--when", help='When it runs, in plain words ("every monday at 8"); '
                                                      "default: only on run-now or its webhook.")) -> None:
    """Turn a past run into a workflow.

    Example: llmos workflow save digest --from r1a2b3c4d --when "every weekday at 9"
    """
    wf = _op("save", name=name, run=from_, when=when)
    out.print(f"saved workflow {name} from run {from_} ({wf['trigger']['kind']})")


def register(app: typer.Typer) -> None:
    app.add_typer(workflow_app, name="workflow")
