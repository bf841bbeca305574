"""The builtin tools, one module per group; ``all_tools()`` lists every one.

    files      files.list/read/write/append/move/copy/delete/mkdir/search/count
    text       text.sort/unique/numbers/replace
    data       data.load/describe/filter/sort/groupby/stat/compute/count_rows/write (pandas)
    plot       plot.chart (matplotlib, Agg)
    calc       calc.eval (exact, from the AST; never eval)
    code       python.run, python.run_file, shell.run (in the sandbox)
    assistant  timer.set, todo.add/list/done, calendar.add/list
    net        net.fetch (httpx; needs the network capability)
    decide     data.rank (weighted criteria), tasks.choose (max Σ p on HiGHS)
    report     report.write (Markdown + HTML + PNG charts)

Heavy libraries (pandas, matplotlib, httpx) load inside the tools, on first use.
"""

from __future__ import annotations

from llmos.tools.registry import Tool

__all__ = ["all_tools"]

_MODULES = ("files", "text", "data", "plot", "calc", "code", "assistant", "net", "decide", "report")


def all_tools() -> list[Tool]:
    import importlib

    tools: list[Tool] = []
    for name in _MODULES:
        tools += importlib.import_module(f"llmos.tools.builtin.{name}").TOOLS
    return tools
