"""Hardware and allocation commands: ``llmos hw``, ``llmos alloc``.

Map:
- ``hw``: what the HAL sees (CPU cores/clock/utilization, memory, GPUs) and the
  energy counters with their average power over a short interval, each
  labelled measured or modelled.
- ``alloc FILE``: solve a JSON/YAML allocation problem and explain the answer.
- ``alloc --example seed``: seed 002's worked example under each objective and
  capacity assumption, with where the seed's own assignment is optimal.
- ``register(app)``: adds both commands to the ``llmos`` app.

Errors are project errors (``InvalidArgument``, ``NotFound``, ``AllocError``);
the CLI's ``main`` prints them as one line plus a hint.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llmos.errors import InvalidArgument, NotFound

__all__ = ["register", "hw", "alloc", "load_problem_file", "hw_report"]

PROBLEM_HELP = (
    "Problem file (JSON or YAML) keys: objective (cost, delay, probability, energy, makespan, a mode "
    "throughput/latency/cost/energy, or weights such as {cost: 1, delay: 0.1}); horizon_s (optional: time "
    "budget per lane and power-cap window); resources, each with name, capacity {dim: amount}, lanes, "
    "speed, cost_per_unit, power_w, idle_w, efficiency, max_power_w, p_success, provides; tasks, each "
    "with name, kind, work, demand {dim: amount}, needs, allowed, deadline_s, optional, and per-resource "
    "maps cost, delay, probability, energy.\n\n"
    "Figures a task does not list are derived from the resource: delay = work/speed, cost = work × "
    "cost_per_unit, energy = (power_w − idle_w) × delay or work/efficiency, probability = p_success.\n\n"
    "Example: {objective: cost, resources: [{name: R1, capacity: {tasks: 1}}, {name: R2}], tasks: [{name: T1, "
    "demand: {tasks: 1}, cost: {R1: 1, R2: 2}}]}"
)


def human_bytes(n: int | None) -> str:
    """``n`` bytes as B / KiB / MiB / GiB / TiB; ``-`` for unknown."""
    if n is None:
        return "-"
    v = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if v < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return str(n)


def _num(v: float | None, fmt: str = "{:.0f}", unit: str = "") -> str:
    return "-" if v is None else fmt.format(v) + unit


def hw_report(hal: Any, interval_s: float = 0.5) -> dict:
    """Read the HAL twice, ``interval_s`` apart: devices now, energy as average power in between."""
    first = {r.domain: r for r in hal.read_energy()}
    t0 = time.monotonic()
    if interval_s > 0:
        time.sleep(interval_s)
    snap = hal.snapshot()
    dt = max(time.monotonic() - t0, 1e-9)
    energy = []
    for r in snap.energy:
        before = first.get(r.domain)
        joules = r.joules - before.joules if before else 0.0
        energy.append({"domain": r.domain, "device": r.device, "label": r.label, "method": r.method,
                       "joules": joules, "avg_power_w": joules / dt, "detail": r.detail})
    return {"devices": [asdict(d) for d in snap.devices], "energy": energy, "interval_s": dt,
            "notes": list(snap.notes)}


def hw(
    interval: float = typer.Option(0.5, "--interval", min=0.0, max=60.0,
                                   help="Seconds between the two energy reads."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ray: str = typer.Option(None, "--ray", help="Also list the nodes of a Ray cluster: auto or HOST:PORT."),
) -> None:
    """Show what the hardware layer sees: CPU, memory, GPUs, energy counters.

    Energy shows the average power over --interval, labelled measured (RAPL or NVML)
    or modelled (utilization × a stated power figure).

    Example: llmos hw --interval 1
    """
    from llmos.hal import detect

    hal = detect()
    try:
        rep = hw_report(hal, interval)
    finally:
        hal.close()
    if ray is not None:
        from llmos.cli.cluster import cluster_report

        rep["cluster"] = cluster_report(ray)
    if as_json:
        typer.echo(json.dumps(rep))
        return
    console = Console()
    t = Table(title="devices")
    for col in ("device", "name", "cores", "clock MHz", "util", "memory free / total", "power W"):
        t.add_column(col, no_wrap=col == "device", ratio=2 if col == "name" else 1)
    for d in rep["devices"]:
        dev = "cpu" if d["kind"] == "cpu" else f"{d['kind']}:{d['index']}"
        cores = f"{d['cores']} ({d['physical_cores']} phys)" if d["cores"] else "-"
        clock = _num(d["freq_mhz"]) + (f" / {d['freq_max_mhz']:.0f}" if d["freq_max_mhz"] else "")
        util = _num(d["utilization"] * 100 if d["utilization"] is not None else None, "{:.0f}", " %")
        mem = f"{human_bytes(d['memory_available_bytes'])} / {human_bytes(d['memory_total_bytes'])}"
        power = _num(d["power_w"], "{:.1f}") + (f" / {d['power_limit_w']:.0f}" if d["power_limit_w"] else "")
        t.add_row(dev, d["name"], cores, clock, util, mem, power)
    console.print(t)
    e = Table(title=f"energy (average over {rep['interval_s']:.2f} s)")
    for col in ("domain", "device", "avg W", "joules", "label", "source"):
        e.add_column(col, no_wrap=col not in ("source",))
    for r in rep["energy"]:
        e.add_row(r["domain"], r["device"], f"{r['avg_power_w']:.2f}", f"{r['joules']:.3f}",
                  r["label"], f"{r['method']}: {r['detail']}")
    console.print(e)
    if "cluster" in rep:
        from llmos.cli.cluster import print_nodes

        print_nodes(rep["cluster"], console)
    for n in rep["notes"]:
        console.print(f"note: {n}")


def load_problem_file(path: Path) -> Any:
    """Read a JSON or YAML problem document (by extension; otherwise JSON, then YAML)."""
    import yaml

    if not path.exists():
        raise NotFound(f"no such problem file: {path}")
    try:
        text = path.read_text()
    except OSError as e:
        raise InvalidArgument(f"{path}: cannot read ({e.strerror or e})", field="FILE",
                              expected="a readable JSON or YAML file") from e
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"{path}: not UTF-8 text (byte {e.start})", field="FILE",
                              expected="a JSON or YAML problem document") from e
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return json.loads(text)
        if suffix in (".yaml", ".yml"):
            return yaml.safe_load(text)
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return yaml.safe_load(text)
    except (ValueError, RecursionError, yaml.YAMLError) as e:   # ValueError: JSONDecodeError, huge ints
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InvalidArgument(f"{path}: not valid {'JSON' if suffix == '.json' else 'JSON or YAML'}: {first}",
                              field="FILE", expected="a JSON or YAML problem document") from e


def _solution_dict(sol: Any) -> dict:
    return {"assignment": sol.assignment, "objective": sol.objective.describe(), "value": sol.value,
            "totals": sol.totals, "method": sol.method, "optimal": sol.optimal, "bound": sol.bound,
            "gap": sol.gap, "solve_s": sol.solve_s,
            "binding": [asdict(b) for b in sol.binding], "explanation": sol.explanation}


def _print_seed(as_json: bool, time_limit: float) -> None:
    from llmos.alloc.seed import SEED_ASSIGNMENT, SEED_COST, SEED_DELAY, seed_report

    rep = seed_report(time_limit)
    if as_json:
        typer.echo(json.dumps({
            "interpretation": list(rep.interpretation), "seed_assignment": SEED_ASSIGNMENT,
            "seed_totals": rep.seed_totals, "summary": list(rep.summary),
            "cases": [{"objective": c.objective, "assumption": c.assumption.label,
                       "solution": _solution_dict(c.solution), "optimum_count": c.optimum_count,
                       "seed_status": c.seed_status, "seed_value": c.seed_value} for c in rep.cases]}))
        return
    console = Console()
    console.print("[bold]Seed 002 worked example[/bold]: tasks T1, T2, T3 on resources R1, R2")
    costs = ", ".join(f"{t} = {c['R1']:g} / {c['R2']:g}" for t, c in SEED_COST.items())
    console.print(f"  costs (R1 / R2): {costs}; delays: "
                  + ", ".join(f"{t} = {d:g} s" for t, d in SEED_DELAY.items()))
    console.print("Interpretation:")
    for line in rep.interpretation:
        console.print(f"  - {line}")
    t = Table(title="optimum per objective and capacity assumption (HiGHS; ties counted by enumeration)")
    tasks = " ".join(SEED_COST)
    for col in ("objective", "capacity assumption", f"optimum ({tasks})", "value", "binding",
                "seed's assignment"):
        t.add_column(col, overflow="fold")
    unit = {"cost": "", "delay": " s", "makespan": " s"}
    for c in rep.cases:
        a = " ".join(str(v) for v in c.solution.assignment.values())
        ties = f" (+{c.optimum_count - 1} tied)" if c.optimum_count > 1 else ""
        bind = "; ".join(f"{b.resource} {b.constraint}" for b in c.solution.binding) or "-"
        t.add_row(c.objective, c.assumption.label, a + ties, f"{c.solution.value:g}{unit[c.objective]}", bind,
                  c.seed_status)
    console.print(t)
    console.print("makespan = the busiest resource's total delay (the throughput objective)")
    console.print("Findings:")
    for line in rep.summary:
        console.print(f"  - {line}")


def alloc(
    file: Path = typer.Argument(None, help="Problem file, JSON or YAML (see --help for the format).",
                                show_default=False),
    example: str = typer.Option(None, "--example", help="Solve a built-in example instead: 'seed'."),
    objective: str = typer.Option(None, "--objective", "-o",
                                  help="Override the file's objective: cost, delay, probability, energy, "
                                       "makespan, or a mode (throughput, latency, cost, energy)."),
    time_limit: float = typer.Option(1.0, "--time-limit", min=0.001, help="Solver time limit, seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Solve an allocation problem (tasks on resources) and explain the answer.

    Example: llmos alloc problem.yaml -o energy   (or the built-in one: llmos alloc --example seed)
    """
    from llmos.alloc import Objective, problem_from_dict
    from llmos.alloc.solve import solve

    if example is not None:
        if file is not None or objective is not None:
            raise InvalidArgument("--example: solves its own problem with its own objectives; "
                                  "give FILE / --objective without it", field="--example",
                                  expected="--example alone")
        if example != "seed":
            raise InvalidArgument(f"--example: unknown example {example!r}", field="--example",
                                  expected="seed")
        _print_seed(as_json, time_limit)
        return
    if file is None:
        raise InvalidArgument("alloc: give a problem FILE or --example seed", field="FILE",
                              expected="a JSON/YAML problem file", )
    problem, file_obj = problem_from_dict(load_problem_file(file))
    obj = Objective.of(objective) if objective else file_obj
    if obj is None:
        raise InvalidArgument(f"{file}: no objective in the file and no --objective given",
                              field="objective", expected="e.g. --objective cost")
    sol = solve(problem, obj, time_limit_s=time_limit)
    if as_json:
        typer.echo(json.dumps(_solution_dict(sol)))
        return
    Console().print(sol.explanation, markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(hw)
    app.command(epilog=escape(PROBLEM_HELP))(alloc)
