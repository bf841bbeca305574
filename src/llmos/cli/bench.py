"""``llmos bench``: run the benchmark scripts in ``bench/`` (one per performance claim).

The scripts ship with the source checkout (they are not part of the installed
package); each prints progress, then one JSON line (../shared/BENCH.md format).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from llmos.errors import ConfigError, NotFound

console = Console()


def bench_dir() -> Path:
    """The checkout's bench/ folder (src/llmos/cli/bench.py -> repo root)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "bench").is_dir() and (parent / "pyproject.toml").exists():
            return parent / "bench"
    raise ConfigError("benchmarks ship with the source checkout; no bench/ folder found",
                      hint="run from a clone of the LLM OS repository (make bench)")


def available() -> list[str]:
    return sorted(p.stem for p in bench_dir().glob("*.py") if not p.name.startswith("_"))


def bench(
    names: list[str] = typer.Argument(None, help="Benchmarks to run (default: all). E.g. engine, priority."),
    quick: bool = typer.Option(False, "--quick", help="The short version (< 60 s each)."),
    list_: bool = typer.Option(False, "--list", help="List the benchmarks and exit."),
) -> None:
    """Run benchmarks and print each one's result line and a summary table.

    Example: llmos bench engine --quick
    """
    known = available()
    if list_:
        for n in known:
            console.print(n)
        return
    names = names or known
    for n in names:
        if n not in known:
            raise NotFound(f"no benchmark {n!r}; known: {', '.join(known)}",
                           hint="llmos bench --list")
    table = Table(title="benchmarks" + (" (quick)" if quick else ""))
    for col in ("bench", "metric", "value", "baseline", "ratio", "target", "ok"):
        table.add_column(col)
    failed = 0
    for n in names:
        console.print(f"[bold]== {n}[/]")
        argv = [sys.executable, str(bench_dir() / f"{n}.py")] + (["--quick"] if quick else [])
        proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        for ln in lines[:-1]:
            console.print(ln, markup=False, highlight=False)
        try:
            res = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:
            res = {}
        if proc.returncode != 0 or not res:
            failed += 1
            table.add_row(n, "-", "-", "-", "-", "-", f"[red]exit {proc.returncode}[/]")
            continue
        print(lines[-1])
        ok = bool(res.get("ok"))
        failed += not ok
        table.add_row(n, str(res.get("metric", "")), str(res.get("value", "")),
                      str(res.get("baseline", "")), str(res.get("ratio", "")),
                      str(res.get("target", "")), "[green]yes[/]" if ok else "[red]no[/]")
    console.print(table)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(bench)
