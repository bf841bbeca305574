"""The in-process API for programs: the seeds' TaskManager, done properly.

``Kernel`` inherits ``ProgramAPI``: ``submit`` (``proc.spawn`` that returns a pid or
raises), ``add_task`` (a Python callable as a scheduled, journaled job process),
``run_until_idle`` and ``register_job`` (named job types that survive restarts).
``TaskHandle``: ``await handle`` gives the task's return value or raises its exception.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmos.errors import LLMOSError, PermissionDenied, QuotaExceeded
from llmos.kernel.process import ProcState
from llmos.kernel.specs import JobType
from llmos.kernel.syscall import Call

if TYPE_CHECKING:
    from llmos.kernel.core import Kernel

__all__ = ["ProgramAPI", "TaskHandle"]


class TaskHandle:
    """A process started by ``add_task``/``submit``: ``await handle`` gives its value."""

    def __init__(self, kernel: Kernel, pid: int) -> None:
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


class ProgramAPI:
    """Mixed into ``Kernel``; uses its syscall door, spawn, result and loop."""

    def register_job(self, name: str, fn: Callable[..., Any], *, idempotent: bool = False) -> None:
        """Make ``{"type": name, "args": {...}}`` runnable as a job process (``fn(**args)``)."""
        self.job_types[name] = JobType(name, fn, idempotent)

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
        return (await self.syscall(agent, "proc.spawn", args)).unwrap()["pid"]

    async def add_task(self, fn: Callable[..., Any], *args: Any, name: str | None = None,
                       priority: int = 0, agent: str = "root", **kwargs: Any) -> TaskHandle:
        """Run ``fn(*args, **kwargs)`` as a scheduled, journaled job process.

        Coroutine functions run on the loop, plain ones in the tool pool. The callable
        lives in this process only: after a restart the job is marked failed.
        """
        label = str(name or getattr(fn, "__qualname__", "task"))[:200]
        call = Call(self.agents.get(agent), "proc.spawn")
        err: LLMOSError | None = None
        try:
            call.check(None)
            p, _ = await self.spawn(call, "job", {"type": "call", "args": {}, "name": label},
                                    priority=priority, job_call=functools.partial(fn, *args, **kwargs))
            self._waiter(p.pid)       # keep the raw value for the handle
        except LLMOSError as e:
            err = e
            raise
        finally:
            self.journal.audit(self.clock.time(), agent, "proc.spawn", f"job {label}",
                               err is None or not isinstance(err, (PermissionDenied, QuotaExceeded)),
                               getattr(err, "reason", None) or (err.message if err else call.reason),
                               err.code if err else None)
        return TaskHandle(self, p.pid)

    async def run_until_idle(self, timeout: float | None = None) -> None:
        """Return once nothing is queued or running (waiting processes don't count)."""
        if not self._busy():
            return
        if self.loop is not None and self.loop.running:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return

        async def step_until_idle() -> None:
            while not self._idle.is_set():
                await self.loop.step()
        await asyncio.wait_for(step_until_idle(), timeout)
