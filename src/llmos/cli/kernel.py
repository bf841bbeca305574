"""Kernel commands: ``ps``, ``kill``, ``nice``, ``agents``, ``top``, ``explain``.

Reading commands (ps, agents, top, explain) read the journal directly (read-only), so
they work whether or not a kernel is running. Changing commands (kill, nice) make
their syscall as root through the daemon when one serves the state directory (it
holds the kernel); otherwise they boot the kernel in-process without starting its
loop, make the syscall and shut down. While a kernel that is not a daemon (another
in-process command) owns the state directory they say so instead.

``top`` renders one data shape (``Kernel.stats()``'s) from either source:
``top_data(reader)`` builds it from the journal, with tok/s from the engines' live
stats when a daemon answers (else from generations finished in the last seconds);
``top_frame(kernel.stats())`` is the same view for a program running the kernel
in-process. Joules carry their label (measured / modelled / mixed).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from llmos.cli import state
from llmos.errors import LLMOSError, StateDirError
from llmos.kernel.process import ProcState, energy_label
from llmos.kernel.storage import PROC_COLUMNS, SCHEMA_VERSION, Reader, StateLock

__all__ = ["register", "ps", "kill", "nice", "agents", "top", "explain", "explain_lines", "top_data",
           "top_frame"]

console = Console()
S = ProcState
TOP_WINDOW_S = 10.0      # tok/s is measured over processes that finished this recently


def _reader() -> tuple[Any, Reader]:
    cfg = state.config()
    fresh = not cfg.db_path.exists()  # a fresh state directory: an empty journal, not an error
    if not fresh:
        r = Reader(cfg.db_path)
        old = r.query("PRAGMA user_version")[0][0] < SCHEMA_VERSION
        if not old:
            return cfg, r
        r.close()
    if fresh or StateLock(cfg.home).holder() is None:   # (a running kernel migrated it already)
        from llmos.kernel.storage import Journal

        Journal(cfg.db_path).close()  # creates or migrates the schema
    return cfg, Reader(cfg.db_path)


def _rows(reader: Reader, where: str = "", args: tuple = (), limit: int = 50) -> list[dict]:
    sql = f"SELECT {', '.join(PROC_COLUMNS)} FROM processes {where} ORDER BY pid DESC LIMIT ?"
    return [dict(zip(PROC_COLUMNS, r, strict=True)) for r in reader.query(sql, (*args, limit))]


def _what(r: dict) -> str:
    spec = json.loads(r["spec"]) if isinstance(r["spec"], str) else r["spec"]
    if r["kind"] == "tool":
        return spec.get("tool", "?")
    if r["kind"] == "llm":
        text = spec.get("prompt") or next((m.get("content", "") for m in reversed(spec.get("messages") or [])
                                           if m.get("role") == "user"), "")
        return text.replace("\n", " ")[:40]
    if r["kind"] == "job":
        return spec.get("name") or spec.get("type", "?")
    return (spec.get("title") or spec.get("request") or "")[:40]


def _age(ts: float | None) -> str:
    if not ts:
        return "-"
    d = max(0.0, time.time() - ts)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if d >= n:
            return f"{d / n:.0f}{unit}"
    return f"{d:.0f}s"


def _state(v: int | str) -> str:
    return S(v).name.lower() if isinstance(v, int) else str(v)


def _joules(j: float | None, label: str | None) -> str:
    """``12.3 J measured``; ``-`` when never metered."""
    if j is None:
        return "-"
    return f"{j:.1f} J" + (f" {label}" if label and label != "none" else "")


def _proc_table(rows: list[dict], title: str, *, energy: bool = False) -> Table:
    t = Table(title=title, expand=False)
    cols = ("pid", "agent", "kind", "state", "prio", "tokens") + (("joules",) if energy else ()) + ("age", "what")
    for col in cols:
        t.add_column(col, no_wrap=True)
    t.add_column("reason", overflow="fold", max_width=48)
    for r in rows:
        st = _state(r["state"])
        style = {"running": "green", "failed": "red", "killed": "red", "waiting": "yellow"}.get(st, "")
        cells = [str(r["pid"]), r["owner"], r["kind"], Text(st, style=style), str(r["priority"]),
                 str(r["tokens_in"] + r["tokens_out"])]
        if energy:
            cells.append(_joules(r.get("joules"), r.get("joules_label") or
                                 energy_label(r.get("joules"), r.get("joules_modelled"))))
        t.add_row(*cells, _age(r["created_s"]), _what(r), r["reason"] or "")
    return t


def ps(all_: bool = typer.Option(False, "--all", "-a", help="Include finished processes."),
       agent: str = typer.Option(None, "--agent", help="Only this agent's processes."),
       limit: int = typer.Option(50, "--limit", "-n", min=1, help="Most rows."),
       as_json: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
    """List processes (live ones; --all for finished too).

    Example: llmos ps --all --agent root
    """
    _, reader = _reader()
    conds, args = [], []
    if not all_:
        conds.append(f"state < {int(S.SUCCEEDED)}")
    if agent:
        conds.append("owner = ?")
        args.append(agent)
    rows = _rows(reader, ("WHERE " + " AND ".join(conds)) if conds else "", tuple(args), limit)
    if as_json:
        for r in rows:
            r["state"] = S(r["state"]).name.lower()
            r["spec"] = json.loads(r["spec"])
            r.pop("result", None)
            r.pop("error", None)
        typer.echo(json.dumps({"processes": rows}))
        return
    if not rows:
        console.print("no processes" + ("" if all_ else " running (use --all to see finished ones)"))
        return
    console.print(_proc_table(rows, "processes"))


def _with_kernel(name: str, args: dict) -> dict:
    """One root syscall: through the daemon when one answers, else in-process (no loop)."""
    from llmos.kernel import Kernel
    from llmos.sdk.discover import discover

    cfg = state.config()
    client = discover(cfg)
    if client is not None:
        with client:
            return client.syscall(name, args)
    holder = StateLock(cfg.home).holder()
    if holder is not None:
        raise StateDirError(f"a kernel (pid {holder}) is running on {cfg.home} and no daemon answers for it",
                            hint="wait for that command to finish, or run the LLM OS as a daemon "
                                 "(`llmos serve`, `make run`) so other commands can reach it")

    async def go() -> dict:
        k = await Kernel.boot(cfg, run_loop=False)
        try:
            return (await k.syscall("root", name, args)).unwrap()
        finally:
            await k.shutdown()
    return asyncio.run(go())


def kill(pid: int = typer.Argument(..., help="Process id."),
         reason: str = typer.Option(None, "--reason", help="Why (kept in the history).")) -> None:
    """Kill a process and its live children.

    Example: llmos kill 42
    """
    out = _with_kernel("proc.kill", {"pid": pid, **({"reason": reason} if reason else {})})
    console.print(f"pid {out['pid']}: {out['state']}")


def nice(pid: int = typer.Argument(..., help="Process id."),
         priority: int = typer.Argument(..., help="New priority, -20 (urgent) .. 19 (idle).")) -> None:
    """Change a process's priority (lower runs first).

    Example: llmos nice 42 -5
    """
    out = _with_kernel("proc.nice", {"pid": pid, "priority": priority})
    console.print(f"pid {out['pid']}: priority {out['priority']}")


def _agent_usage(reader: Reader) -> dict[str, dict]:
    rows = reader.query(f"SELECT owner, SUM(tokens_in + tokens_out), SUM(cpu_s), SUM(joules), "
                        f"SUM(joules_modelled), SUM(state < {int(S.SUCCEEDED)}), COUNT(*) "
                        f"FROM processes GROUP BY owner")
    return {o: {"tokens": t or 0, "cpu_s": c or 0.0, "joules": j, "joules_label": energy_label(j, jm),
                "live": lv or 0, "total": n}
            for o, t, c, j, jm, lv, n in rows}


def agents(as_json: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
    """List agents with their capabilities and usage.

    Example: llmos agents
    """
    _, reader = _reader()
    usage = _agent_usage(reader)
    rows = [("root", {"syscalls": ["*"], "read_roots": ["/"], "write_roots": ["/"], "network": True,
                      "others": True, "quotas": {}}, None)]
    rows += [(a, json.loads(c), cr) for a, c, cr in reader.query("SELECT id, caps, creator FROM agents ORDER BY id")]
    if as_json:
        typer.echo(json.dumps({"agents": [{"id": a, "capabilities": c, "creator": cr, **usage.get(a, {})}
                                          for a, c, cr in rows]}))
        return
    t = Table(title="agents")
    for col in ("agent", "syscalls", "read", "write", "net", "quotas", "live", "procs", "tokens", "cpu s"):
        t.add_column(col, overflow="fold")
    for a, c, _ in rows:
        u = usage.get(a, {})
        q = ", ".join(f"{k}={v}" for k, v in (c.get("quotas") or {}).items() if v is not None) or "-"
        t.add_row(a, ", ".join(c.get("syscalls") or []) or "-", ", ".join(c.get("read_roots") or []) or "-",
                  ", ".join(c.get("write_roots") or []) or "-", "yes" if c.get("network") else "no", q,
                  str(u.get("live", 0)), str(u.get("total", 0)), str(u.get("tokens", 0)),
                  f"{u.get('cpu_s', 0.0):.1f}")
    console.print(t)


def _live_engines(cfg: Any) -> list[dict] | None:
    """The daemon's engines (live stats) when one serves this state directory, else None."""
    try:
        from llmos.sdk.discover import discover

        client = discover(cfg)
        if client is None:
            return None
        with client:
            return list(client.system().get("engines") or [])
    except Exception:  # noqa: BLE001 - top falls back to the journal's figure
        return None


def top_data(reader: Reader, *, engines: list[dict] | None = None) -> dict[str, Any]:
    """``Kernel.stats()``'s shape from the journal. ``engines``: live engine stats (a
    daemon's); without them tok/s counts generations finished in the last TOP_WINDOW_S."""
    now = time.time()
    counts = {S(st).name.lower(): n for st, n in reader.query("SELECT state, COUNT(*) FROM processes GROUP BY state")}
    if engines is not None:
        tok_s, source = sum(float(e.get("tokens_per_s") or 0) for e in engines), "engines, live"   # a daemon's
    else:
        recent = reader.query("SELECT SUM(tokens_out) FROM processes WHERE finished_s >= ?", (now - TOP_WINDOW_S,))
        tok_s, source = (recent[0][0] or 0) / TOP_WINDOW_S, f"finished in the last {TOP_WINDOW_S:.0f} s"
    agents = {a: {**u, "processes": u["total"], "tokens_total": u["tokens"]}
              for a, u in _agent_usage(reader).items()}
    return {"processes": counts, "queue_depth": counts.get("new", 0) + counts.get("queued", 0),
            "tokens_per_s": tok_s, "tokens_per_s_source": source, "engines": engines or [],
            "agents": agents, "live": _rows(reader, f"WHERE state < {int(S.SUCCEEDED)}", (), 25)}


def top_frame(data: dict[str, Any]) -> Group:
    """One ``llmos top`` frame from ``top_data(reader)`` or ``Kernel.stats()``."""
    c = data.get("processes", {})
    agents = data.get("agents", {})
    known = [a for a in agents.values() if a.get("joules") is not None]
    total_j = sum(a["joules"] for a in known) if known else None
    labels = {a.get("joules_label") for a in known} - {None, "none"}
    label = labels.pop() if len(labels) == 1 else ("mixed" if labels else None)
    head = Text.assemble(
        ("llmos top  ", "bold"), f"running {c.get('running', 0)}  ", f"queued {c.get('queued', 0)}  ",
        f"waiting {c.get('waiting', 0)}  ", f"preempted {c.get('preempted', 0)}\n",
        f"tok/s {data.get('tokens_per_s', 0.0):.1f} ({data.get('tokens_per_s_source', 'engines, live')})  ",
        "energy " + (_joules(total_j, label) if total_j is not None else "n/a"))
    per = Table(title="per agent")
    for col in ("agent", "live", "processes", "tokens", "cpu s", "joules"):
        per.add_column(col)
    for a, u in sorted(agents.items()):
        per.add_row(a, str(u.get("live", 0)), str(u.get("processes", "-")), str(u.get("tokens_total", 0)),
                    f"{u.get('cpu_s', 0.0):.1f}")
    parts: list[Any] = [head, _proc_table(list(data.get("live", []))[:25], "live processes", energy=True), per]
    if data.get("engines"):
        eng = Table(title="engines")
        for col in ("engine", "model", "tok/s", "active", "waiting", "kv used"):
            eng.add_column(col)
        for e in data["engines"]:
            eng.add_row(str(e.get("name")), str(e.get("model", "")), f"{float(e.get('tokens_per_s') or 0):.1f}",
                        str(e.get("active", 0)), str(e.get("waiting", 0)),
                        f"{e.get('kv_used_tokens', 0)}/{e.get('kv_total_tokens', 0)}")
        parts.append(eng)
    return Group(*parts)


def _top_frame(cfg: Any, reader: Reader) -> Group:
    return top_frame(top_data(reader, engines=_live_engines(cfg)))


def top(interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between refreshes."),
        once: bool = typer.Option(False, "--once", help="Print one frame and exit.")) -> None:
    """A live view: processes, queue depth, tok/s, per-agent usage, energy.

    Example: llmos top
    """
    cfg, reader = _reader()
    if once:
        console.print(_top_frame(cfg, reader))
        return
    with Live(_top_frame(cfg, reader), console=console, refresh_per_second=max(1, int(1 / interval))) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(_top_frame(cfg, reader))
        except KeyboardInterrupt:
            pass


def explain_lines(reader: Reader, pid: int) -> list[str]:
    """The kernel's account of one process: what, who, every transition with its reason
    (scheduler decisions included), usage and outcome. Shared with ``llmos explain``."""
    rows = _rows(reader, "WHERE pid = ?", (pid,), 1)
    if not rows:
        raise LLMOSError(f"no process with pid {pid}", hint="run `llmos ps --all` to list them")
    r = rows[0]
    st = S(r["state"]).name.lower()
    out = [f"pid {pid}: {r['kind']} '{_what(r)}' by agent {r['owner']}, priority {r['priority']}, "
           f"now {st}" + (f" (parent {r['parent']})" if r["parent"] else "")]
    for ts, frm, to, why in reader.query("SELECT ts, from_state, to_state, reason FROM transitions "
                                         "WHERE pid = ? ORDER BY id", (pid,)):
        clock = time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"
        move = S(to).name.lower() if frm is None else f"{S(frm).name.lower()} -> {S(to).name.lower()}"
        out.append(f"  {clock}  {move:<22} {why}")
    usage = f"tokens in/out {r['tokens_in']}/{r['tokens_out']}, cpu {r['cpu_s']:.2f} s, wall {r['wall_s']:.2f} s"
    if r["joules"] is not None:
        usage += f", {_joules(r['joules'], energy_label(r['joules'], r['joules_modelled']))}"
    if r["placed_on"]:
        out.append(f"  placed on: {r['placed_on']} (the allocator's reason is in the dispatch line above)")
    out.append(f"  usage: {usage}, attempts {r['attempts']}")
    if r["error"]:
        e = json.loads(r["error"])
        out.append(f"  error: {e.get('message')}" + (f" (hint: {e['hint']})" if e.get("hint") else ""))
    if st == "waiting" and (r["reason"] or "").startswith("needs_confirmation"):
        out.append(f"  waiting for a person: confirm with the API (proc.confirm {pid}) or `llmos kill {pid}`")
    kids = reader.query("SELECT pid, state FROM processes WHERE parent = ? ORDER BY pid", (pid,))
    if kids:
        out.append("  children: " + ", ".join(f"{c} ({S(s).name.lower()})" for c, s in kids))
    return out


def explain(pid: int = typer.Argument(..., help="Process id.")) -> None:
    """Why a process is where it is: its state history, the scheduler's and the allocator's reasons.

    Example: llmos explain 42
    """
    _, reader = _reader()
    for line in explain_lines(reader, pid):
        console.print(line, highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    taken = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    app.command()(ps)
    app.command()(kill)
    app.command(context_settings={"ignore_unknown_options": True})(nice)   # `nice 42 -5`
    app.command()(agents)
    app.command()(top)
    if "explain" not in taken:     # the shell may register a richer `explain` that calls explain_lines
        app.command()(explain)
