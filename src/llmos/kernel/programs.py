"""The in-process API for programs: the seeds' TaskManager, done properly.

``Programs`` (a part of the ``Kernel`` facade): ``submit`` (``proc.spawn`` that returns a pid or
raises), ``add_task`` (a Python callable as a scheduled, journaled job process),
``run_until_idle`` and ``register_job`` (named job types that survive restarts).
``TaskHandle``: ``await handle`` gives the task's return value or raises its exception.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from llmos.errors import LLMOSError, PermissionDenied, QuotaExceeded
from llmos.kernel.process import ProcState
from llmos.kernel.specs import JobType
from llmos.kernel.syscall import Call

if TYPE_CHECKING:
    from llmos.kernel.procops import ProcessManager
    from llmos.kernel.result import SyscallResult
    from llmos.kernel.subsystems import Subsystems

__all__ = ["Programs", "TaskHandle"]

Syscall = Callable[[str, str, dict], Awaitable["SyscallResult"]]   # (agent, name, args) -> result


class TaskHandle:
    """A process started by ``add_task``/``submit``: ``await handle`` gives its value."""

    def __init__(self, kernel: Any, pid: int) -> None:
        self.kernel = kernel
        self.pid = pid

    async def result(self, timeout: float | None = None) -> Any:
        return await self.kernel.result(self.pid, timeout_s=timeout, raw=True)

    def __await__(self):
        return self.result().__await__()

    @property
    def state(self) -> ProcState:
        return self.kernel.procs.get(self.pid).state

    def __repr__(self) -> str:
        return f"TaskHandle(pid={self.pid}, state={self.state.name.lower()})"


class Programs:
    """The in-process API; goes through the syscall door and the ``ProcessManager``."""

    def __init__(self, sub: Subsystems, processes: ProcessManager, syscall: Syscall,
                 handle_of: Callable[[int], TaskHandle]) -> None:
        self.sub = sub
        self.processes = processes
        self._syscall = syscall              # the kernel's syscall door
        self._handle = handle_of             # pid -> the TaskHandle programs await

    def register_job(self, name: str, fn: Callable[..., Any], *, idempotent: bool = False) -> None:
        """Make ``{"type": name, "args": {...}}`` runnable as a job process (``fn(**args)``)."""
        self.sub.job_types[name] = JobType(name, fn, idempotent)

    async def submit(self, kind: str, spec: dict | None = None, *, agent: str = "root",
                     priority: int = 0, parent: int | None = None,
                     idempotency_key: str | None = None, confirmed: bool = False) -> int:
        """``proc.spawn`` for programs: returns the pid or raises the error."""
        args: dict[str, Any] = {"kind": kind, "spec": spec or {}, "priority": priority,
                                "confirmed": confirmed}
        if parent is not None:
            args["parent"] = parent
        if idempotency_key is not None:
            args["idempotency_key"] = idempotency_key
        return (await self._syscall(agent, "proc.spawn", args)).unwrap()["pid"]

    async def add_task(self, fn: Callable[..., Any], *args: Any, name: str | None = None,
                       priority: int = 0, agent: str = "root", **kwargs: Any) -> TaskHandle:
        """Run ``fn(*args, **kwargs)`` as a scheduled, journaled job process.

        Coroutine functions run on the loop, plain ones in the tool pool. The callable
        lives in this process only: after a restart the job is marked failed.
        """
        label = str(name or getattr(fn, "__qualname__", "task"))[:200]
        call = Call(self.sub.agents.get(agent), "proc.spawn")
        err: LLMOSError | None = None
        try:
            call.check(None)
            p, _ = await self.processes.spawn(call, "job", {"type": "call", "args": {}, "name": label},
                                    priority=priority, job_call=functools.partial(fn, *args, **kwargs))
            self.processes.waiter(p.pid)       # keep the raw value for the handle
        except LLMOSError as e:
            err = e
            raise
        finally:
            self.sub.journal.audit(self.sub.clock.time(), agent, "proc.spawn", f"job {label}",
                               err is None or not isinstance(err, (PermissionDenied, QuotaExceeded)),
                               getattr(err, "reason", None) or (err.message if err else call.reason),
                               err.code if err else None)
        return self._handle(p.pid)

    async def run_until_idle(self, timeout: float | None = None) -> None:
        """Return once nothing is queued or running (waiting processes don't count)."""
        if not self.processes.busy():
            return
        if self.sub.loop is not None and self.sub.loop.running:
            await asyncio.wait_for(self.processes.idle.wait(), timeout)
            return

        async def step_until_idle() -> None:
            while not self.processes.idle.is_set():
                await self.sub.loop.step()
        await asyncio.wait_for(step_until_idle(), timeout)
