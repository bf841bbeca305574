"""The LLM OS kernel: the public surface other layers code against.

    from llmos.kernel import Kernel, SyscallResult, ProcState, Agent, Capabilities

    kernel = await Kernel.boot(config, engines=None, tools=None, clock=None, hal=None)
    res = await kernel.syscall("root", "proc.spawn", {"kind": "tool", "spec": {...}})
    async for ev in kernel.syscall_stream("root", "llm.generate", {"prompt": "hi", "stream": True}): ...
    async for ev in kernel.events(): ...
    await kernel.shutdown()

Module map (boot order in ``boot.py``):
  result.py     SyscallResult (value or error, never a raise)
  syscall.py    the syscall table (name, argument schema, capability, handler) and dispatch
  sys_*.py      thin decoders, one per subsystem
  access.py     agents, capabilities, ``may(agent, call, resource)``
  agents.py     the agent registry (journaled)
  process.py    ProcState (ordered), Process, ProcessTable (one journaled transition fn)
  storage.py    the SQLite journal (WAL, synchronous=FULL, group commit, migrations)
  loop.py       asyncio loop: schedule -> executor.run -> update; backpressure; shutdown
  recovery.py   replay the journal at boot
  timers.py     durable reminders
  memory.py     per-agent context + long-term notes with full-text search
  longterm.py   long-term memory by meaning (remember / recall / forget), per agent, in collections
  memshare.py   collection names and the shares of long-term memory between agents
  memtext.py    long-term memory's text: limits, chunks, recalled memory as prompt text
  signatures.py the sign-bit scan of an agent's memory chunks (recall's candidates)
  core.py       Kernel: a small facade over the parts below; boot/shutdown, syscalls, events
  subsystems.py Subsystems: the shared subsystems every part reads (one record)
  procops.py    ProcessManager: proc.* operations; owns waiters, sinks, live tokens, ends
  stepping.py   LoopHooks: place (allocator), claim, fold an Outcome; quota guard
  metering.py   Meter: joules on the transition path, placed joules; energy_by_agent(), stats()
  placement.py  Placer: the bridge to llmos.alloc (processes as allocation tasks, placed each step)
  energy.py     EnergyMeter: joules per process and agent, measured or modelled
  programs.py   Programs: the in-process API (submit, add_task, run_until_idle, register_job)
  sync.py       SyncKernel: the same API for programs without an event loop
  specs.py      what each process kind's spec must say (checked at admission)
  consent.py    who may run a risky tool step (may.risky, mcp.<tool>) and whose yes counts
  tokens.py     the one token store (admin token, agents' tokens, disabled agents)
  accounting.py per-agent usage (tokens/min window, CPU s, joules of finished work)
  engines.py    given engines + engines built on first use; live renice into the step policy
  events.py     the event bus (bounded per subscriber)
  argtypes.py   argument types shared by the syscall schemas
  boot.py       the ordered boot list
  sched/        scheduling policies (separate owner)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmos.kernel.access import ROOT_ID, Agent, Capabilities, Decision, Quotas, may
from llmos.kernel.process import Process, ProcState
from llmos.kernel.result import SyscallResult

if TYPE_CHECKING:
    from llmos.kernel.core import Kernel, TaskHandle
    from llmos.kernel.sync import SyncKernel, SyncTaskHandle

__all__ = ["Kernel", "TaskHandle", "SyncKernel", "SyncTaskHandle", "SyscallResult", "ProcState", "Process", "Agent",
           "Capabilities", "Quotas", "Decision", "may", "ROOT_ID", "SYSCALLS"]


def __getattr__(name: str) -> Any:
    # Kernel pulls in pydantic, the executor and the scheduler: import it on first use,
    # so `import llmos.kernel` stays cheap for code that needs only the value types.
    if name in ("Kernel", "TaskHandle"):
        from llmos.kernel import core

        return getattr(core, name)
    if name in ("SyncKernel", "SyncTaskHandle"):
        from llmos.kernel import sync

        return getattr(sync, name)
    if name == "SYSCALLS":
        from llmos.kernel.table import TABLE

        return TABLE
    raise AttributeError(f"module 'llmos.kernel' has no attribute {name!r}")
