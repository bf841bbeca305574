"""``llmos hw --ray``: the nodes of a Ray cluster, as a table or JSON.

Map:
- ``cluster_report(address)``: join the cluster (``executor.ray_connect.connect``;
  ``auto`` starts a local head when none runs, stopped again before returning), read
  its ``ClusterView``, leave it.
- ``print_nodes(report, console)``: one row per node: CPUs, GPUs, memory (free / total),
  whether it is this machine, energy when reported (Ray reports none).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["cluster_report", "print_nodes"]


def cluster_report(address: str) -> dict[str, Any]:
    from llmos.executor.ray_connect import connect

    conn = connect(address)
    try:
        rep = conn.view.report()
        rep["started_head"] = conn.started_head
        return rep
    finally:
        conn.close()


def _bytes(n: int | None) -> str:
    from llmos.cli.hw import human_bytes

    return human_bytes(n)


def _free(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def print_nodes(rep: dict[str, Any], console: Console) -> None:
    t = Table(title=f"ray nodes ({rep['address']}"
              + (", a local head started for this listing" if rep.get("started_head") else "") + ")")
    for col in ("node", "address", "state", "CPUs free / total", "GPUs free / total", "memory free / total",
                "energy"):
        t.add_column(col, no_wrap=col in ("node", "address"))
    for n in rep["nodes"]:
        state = ("alive" if n["alive"] else "gone") + (", head" if n["head"] else "") + \
            (", this machine" if n["this_machine"] else "")
        gpus = f"{_free(n['gpus_free'])} / {n['gpus']:g}" + (f" ({n['gpu_type']})" if n["gpu_type"] else "")
        energy = "see energy table" if n["this_machine"] else "not reported"
        t.add_row(n["name"], n["address"], state, f"{_free(n['cpus_free'])} / {n['cpus']:g}", gpus,
                  f"{_bytes(n['memory_free_bytes'])} / {_bytes(n['memory_bytes'])}", energy)
    console.print(t)
    tot = rep["totals"]
    console.print(f"cluster: {len([n for n in rep['nodes'] if n['alive']])} live nodes, {tot['cpus']:g} CPUs, "
                  f"{tot['gpus']:g} GPUs, {_bytes(int(tot['memory_bytes']))} memory for tasks")
