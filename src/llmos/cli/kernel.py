"""Kernel commands: ``ps``, ``kill``, ``nice``, ``agents``, ``top``, ``explain``.

Reading commands (ps, agents, top, explain) go through the kernel's syscalls
(``proc.list``, ``proc.get``, ``agent.list``, and ``GET /system`` for the engines) as
root when a daemon serves the state directory, like every other command. With no
daemon they read the journal directly: opened read-only, never created or migrated
(a journal of another schema version is named, not changed), so they also work on a
stopped system or while an in-process command holds the kernel. Changing commands
(kill, nice) make their syscall through the daemon when one answers; otherwise they
boot the kernel in-process without starting its loop, make the syscall and shut down.
While a kernel that is not a daemon owns the state directory they say so instead.

Both sources give the same records: processes as ``proc.list``'s dicts (state by
name, spec as JSON), agents as ``{id, capabilities, creator, tokens, cpu_s, joules,
joules_label, live, total}``, ``top``'s data in ``Kernel.stats()``'s shape
(``top_data(reader)`` from the journal, ``daemon_top_data(client)`` from a daemon,
``top_frame(kernel.stats())`` for a program running the kernel in-process), and
``explain`` one renderer over a process record with its history. Joules carry their
label (measured / modelled / mixed).
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
NO_USAGE = {"tokens": 0, "cpu_s": 0.0, "joules": None, "joules_label": None, "live": 0, "total": 0}
PROC_SCAN_MAX = 10_000   # processes one proc.list reads for the per-agent totals (its own limit)


class _EmptyJournal:
    """The journal of a state directory where nothing has run yet: every query is empty."""

    def query(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        return []

    def close(self) -> None:
        pass


def open_journal(cfg: Any) -> Reader | _EmptyJournal:
    """The state directory's journal, read-only. Never creates or migrates it: a journal
    of another schema version raises StateDirError saying which and what to do."""
    if not cfg.db_path.exists():
        return _EmptyJournal()
    r = Reader(cfg.db_path)
    version = r.query("PRAGMA user_version")[0][0]
    if version == SCHEMA_VERSION:
        return r
    r.close()
    if version < SCHEMA_VERSION:
        raise StateDirError(f"the journal at {cfg.db_path} has schema version {version}, older than this "
                            f"llmos's {SCHEMA_VERSION}; reading commands never migrate it",
                            hint="start the kernel once (`llmos serve`, or `llmos run ...`) to migrate it")
    raise StateDirError(f"the journal at {cfg.db_path} has schema version {version}, newer than this "
                        f"llmos understands ({SCHEMA_VERSION})",
                        hint="read it with the llmos that wrote it, or upgrade this one")


def _reader() -> tuple[Any, Reader | _EmptyJournal]:
    cfg = state.config()
    return cfg, open_journal(cfg)


def _daemon(cfg: Any) -> Any:
    """A Client for the daemon serving ``cfg.home`` (as root), or None when none answers."""
    from llmos.sdk.discover import discover

    return discover(cfg)


def _rows(reader: Reader | _EmptyJournal, where: str = "", args: tuple = (), limit: int = 50) -> list[dict]:
    """Processes from the journal as ``proc.list`` gives them (state by name, spec parsed)."""
    sql = f"SELECT {', '.join(PROC_COLUMNS)} FROM processes {where} ORDER BY pid DESC LIMIT ?"
    rows = [dict(zip(PROC_COLUMNS, r, strict=True)) for r in reader.query(sql, (*args, limit))]
    for r in rows:
        r["state"] = S(r["state"]).name.lower()
        r["spec"] = json.loads(r["spec"]) if isinstance(r["spec"], str) else r["spec"]
        for k in ("result", "error"):
            r[k] = json.loads(r[k]) if isinstance(r[k], str) else r[k]
        r["joules_label"] = energy_label(r["joules"], r["joules_modelled"])
    return rows


PS_FIELDS = tuple(c for c in PROC_COLUMNS if c not in ("result", "error", "began"))   # ``ps --json``


def _what(r: dict) -> str:
    spec = json.loads(r["spec"]) if isinstance(r["spec"], str) else (r["spec"] or {})
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
    cfg = state.config()
    client = _daemon(cfg)
    if client is not None:
        with client:
            args: dict[str, Any] = {"limit": limit, **({} if all_ else {"state": "live"}),
                                    **({"owner": agent} if agent else {})}
            rows = client.syscall("proc.list", args)["processes"]
    else:
        conds, params = [], []
        if not all_:
            conds.append(f"state < {int(S.SUCCEEDED)}")
        if agent:
            conds.append("owner = ?")
            params.append(agent)
        rows = _rows(open_journal(cfg), ("WHERE " + " AND ".join(conds)) if conds else "", tuple(params), limit)
    if as_json:
        typer.echo(json.dumps({"processes": [{k: r.get(k) for k in PS_FIELDS} for r in rows]}))
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


def _agent_usage(reader: Reader | _EmptyJournal) -> dict[str, dict]:
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
    cfg = state.config()
    client = _daemon(cfg)
    if client is not None:
        with client:
            rows, usage = _daemon_agents(client)
    else:
        reader = open_journal(cfg)
        usage = _agent_usage(reader)
        rows = [("root", {"syscalls": ["*"], "read_roots": ["/"], "write_roots": ["/"], "network": True,
                          "others": True, "quotas": {}}, None)]
        rows += [(a, json.loads(c), cr)
                 for a, c, cr in reader.query("SELECT id, caps, creator FROM agents ORDER BY id")]
    if as_json:
        typer.echo(json.dumps({"agents": [{"id": a, "capabilities": c, "creator": cr, **NO_USAGE,
                                           **usage.get(a, {})} for a, c, cr in rows]}))
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


def _daemon_agents(client: Any) -> tuple[list[tuple[str, dict, str | None]], dict[str, dict]]:
    """``agent.list`` (and one ``proc.list`` for the process totals) in the journal's shape."""
    listed = client.syscall("agent.list")["agents"]
    totals: dict[str, int] = {}
    for p in client.syscall("proc.list", {"limit": PROC_SCAN_MAX})["processes"]:
        totals[p["owner"]] = totals.get(p["owner"], 0) + 1
    order = sorted(listed, key=lambda a: (a["id"] != "root", a["id"]))
    rows = [(a["id"], a.get("capabilities") or {}, a.get("creator")) for a in order]
    usage = {a["id"]: {"tokens": a.get("tokens_total", 0), "cpu_s": a.get("cpu_s", 0.0),
                       "joules": a.get("joules"), "joules_label": a.get("joules_label"),
                       "live": a.get("live_procs", 0), "total": totals.get(a["id"], 0)} for a in listed}
    return rows, usage


def top_data(reader: Reader | _EmptyJournal, *, engines: list[dict] | None = None) -> dict[str, Any]:
    """``Kernel.stats()``'s shape from the journal. ``engines``: live engine stats when the
    caller has them; without them tok/s counts generations finished in the last TOP_WINDOW_S."""
    now = time.time()
    counts = {S(st).name.lower(): n for st, n in reader.query("SELECT state, COUNT(*) FROM processes GROUP BY state")}
    if engines is not None:
        tok_s, source = sum(float(e.get("tokens_per_s") or 0) for e in engines), "engines, live"   # a daemon's
    else:
        recent = reader.query("SELECT SUM(tokens_out) FROM processes WHERE finished_s >= ?", (now - TOP_WINDOW_S,))
        tok_s = ((recent[0][0] if recent else 0) or 0) / TOP_WINDOW_S
        source = f"finished in the last {TOP_WINDOW_S:.0f} s"
    agents = {a: {**u, "processes": u["total"], "tokens_total": u["tokens"]}
              for a, u in _agent_usage(reader).items()}
    return {"processes": counts, "queue_depth": counts.get("new", 0) + counts.get("queued", 0),
            "tokens_per_s": tok_s, "tokens_per_s_source": source, "engines": engines or [],
            "agents": agents, "live": _rows(reader, f"WHERE state < {int(S.SUCCEEDED)}", (), 25)}


def daemon_top_data(client: Any) -> dict[str, Any]:
    """``top_data``'s shape through a daemon: ``GET /system`` (engines, processes per state),
    ``agent.list`` and ``proc.list`` (the live processes), as root."""
    system = client.system()
    engines = list(system.get("engines") or [])
    counts = {s.name.lower(): 0 for s in S} | dict(system.get("process_counts") or {})
    rows, usage = _daemon_agents(client)
    agents = {a: {**u, "processes": u["total"], "tokens_total": u["tokens"]} for a, u in usage.items()}
    live = client.syscall("proc.list", {"state": "live", "limit": 25})["processes"]
    return {"processes": counts, "queue_depth": counts.get("new", 0) + counts.get("queued", 0),
            "tokens_per_s": sum(float(e.get("tokens_per_s") or 0) for e in engines),
            "tokens_per_s_source": "engines, live", "engines": engines, "agents": agents, "live": live}


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


def _top_frame(cfg: Any) -> Group:
    """One frame: through the daemon when one answers, else from the journal (read-only)."""
    client = _daemon(cfg)
    if client is not None:
        try:
            with client:
                return top_frame(daemon_top_data(client))
        except LLMOSError:       # it stopped between frames: the journal has the rest
            pass
    reader = open_journal(cfg)
    try:
        return top_frame(top_data(reader))
    finally:
        reader.close()


def top(interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between refreshes."),
        once: bool = typer.Option(False, "--once", help="Print one frame and exit.")) -> None:
    """A live view: processes, queue depth, tok/s, per-agent usage, energy.

    Example: llmos top
    """
    cfg = state.config()
    if once:
        console.print(_top_frame(cfg))
        return
    with Live(_top_frame(cfg), console=console, refresh_per_second=max(1, int(1 / interval))) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(_top_frame(cfg))
        except KeyboardInterrupt:
            pass


def _journal_record(reader: Reader | _EmptyJournal, pid: int) -> tuple[dict, list[tuple[int, str]]]:
    """Process ``pid`` from the journal with its history, and its children's states."""
    rows = _rows(reader, "WHERE pid = ?", (pid,), 1)
    if not rows:
        raise LLMOSError(f"no process with pid {pid}", hint="run `llmos ps --all` to list them")
    r = rows[0]
    r["history"] = [{"ts": ts, "from": None if frm is None else S(frm).name.lower(), "to": S(to).name.lower(),
                     "reason": why}
                    for ts, frm, to, why in reader.query("SELECT ts, from_state, to_state, reason FROM transitions "
                                                         "WHERE pid = ? ORDER BY id", (pid,))]
    kids = [(c, S(st).name.lower())
            for c, st in reader.query("SELECT pid, state FROM processes WHERE parent = ? ORDER BY pid", (pid,))]
    return r, kids


def _daemon_record(client: Any, pid: int) -> tuple[dict, list[tuple[int, str]]]:
    """Process ``pid`` through the daemon (``proc.get`` with history), and its children's states."""
    r = client.syscall("proc.get", {"pid": pid, "history": True})
    kids = client.syscall("proc.list", {"parent": pid, "limit": PROC_SCAN_MAX})["processes"] if r.get("children") else []
    return r, sorted((c["pid"], c["state"]) for c in kids)


def explain_record(r: dict, children: list[tuple[int, str]]) -> list[str]:
    """The kernel's account of one process record (``proc.get`` with ``history``, or the
    journal's): what, who, every transition with its reason (scheduler decisions
    included), usage and outcome."""
    pid, st = r["pid"], _state(r["state"])
    out = [f"pid {pid}: {r['kind']} '{_what(r)}' by agent {r['owner']}, priority {r['priority']}, "
           f"now {st}" + (f" (parent {r['parent']})" if r.get("parent") else "")]
    for h in r.get("history") or []:
        ts = h["ts"]
        clock = time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"
        move = h["to"] if h.get("from") is None else f"{h['from']} -> {h['to']}"
        out.append(f"  {clock}  {move:<22} {h.get('reason') or ''}")
    usage = f"tokens in/out {r['tokens_in']}/{r['tokens_out']}, cpu {r['cpu_s']:.2f} s, wall {r['wall_s']:.2f} s"
    if r.get("joules") is not None:
        usage += f", {_joules(r['joules'], energy_label(r['joules'], r.get('joules_modelled')))}"
    if r.get("placed_on"):
        out.append(f"  placed on: {r['placed_on']} (the allocator's reason is in the dispatch line above)")
    out.append(f"  usage: {usage}, attempts {r['attempts']}")
    err = r.get("error")
    if err:
        out.append(f"  error: {err.get('message')}" + (f" (hint: {err['hint']})" if err.get("hint") else ""))
    if st == "waiting" and (r.get("reason") or "").startswith("needs_confirmation"):
        out.append(f"  waiting for a person: confirm with the API (proc.confirm {pid}) or `llmos kill {pid}`")
    if children:
        out.append("  children: " + ", ".join(f"{c} ({cs})" for c, cs in children))
    return out


def explain_lines(reader: Reader | _EmptyJournal, pid: int) -> list[str]:
    """``explain_record`` for process ``pid`` read from the journal (the shell's
    ``llmos explain RUN`` calls this for each process of a run)."""
    return explain_record(*_journal_record(reader, pid))


def explain(pid: int = typer.Argument(..., help="Process id.")) -> None:
    """Why a process is where it is: its state history, the scheduler's and the allocator's reasons.

    Example: llmos explain 42
    """
    cfg = state.config()
    client = _daemon(cfg)
    if client is not None:
        with client:
            lines = explain_record(*_daemon_record(client, pid))
    else:
        lines = explain_lines(open_journal(cfg), pid)
    for line in lines:
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
