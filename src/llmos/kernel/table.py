"""The syscall table: every row, from the ``ROWS`` of each ``sys_*`` module (xv6's
``syscalls[]``). ``core.Kernel`` holds it as ``syscalls`` and ``syscall.dispatch`` looks
calls up there; the decoders import ``syscall``, never this module or ``core``.
"""

from __future__ import annotations

from llmos.kernel import (
    sys_agent,
    sys_alloc,
    sys_conversation,
    sys_llm,
    sys_memory,
    sys_proc,
    sys_storage,
    sys_timer,
    sys_tool,
)
from llmos.kernel.syscall import Syscall

__all__ = ["TABLE", "MODULES"]

MODULES = (sys_proc, sys_llm, sys_tool, sys_timer, sys_agent, sys_memory, sys_conversation, sys_alloc,
           sys_storage)


def _build() -> dict[str, Syscall]:
    table: dict[str, Syscall] = {}
    for mod in MODULES:
        for row in mod.ROWS:
            if row.name in table:
                raise RuntimeError(f"syscall {row.name} defined twice")
            table[row.name] = row
    return table


TABLE: dict[str, Syscall] = _build()
