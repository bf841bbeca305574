"""``SyncKernel``: the kernel for programs without an event loop.

The seeds' TaskManager, done properly: tasks are journaled processes, scheduled by
the configured policy, with priorities, results and errors::

    with SyncKernel(config) as k:
        t = k.add_task(resize, "a.png", priority=-5)
        k.run_until_idle()
        print(t.result())

The kernel runs on its own event loop in a background thread; every method here
hands a coroutine to that loop and waits for the answer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from llmos.config import Config
from llmos.errors import KernelError
from llmos.kernel.core import Kernel
from llmos.kernel.result import SyscallResult

__all__ = ["SyncKernel", "SyncTaskHandle"]


async def _on_loop(fn: Callable[[], Any]) -> Any:
    return fn()


class SyncTaskHandle:
    def __init__(self, owner: SyncKernel, pid: int) -> None:
        self._owner = owner
        self.pid = pid

    def result(self, timeout: float | None = None) -> Any:
        """The task's return value, or raise the exception it raised."""
        return self._owner._run(self._owner.kernel.result(self.pid, timeout_s=timeout, raw=True))

    @property
    def state(self) -> str:
        return self._owner.kernel.procs.get(self.pid).state.name.lower()

    def __repr__(self) -> str:
        return f"SyncTaskHandle(pid={self.pid}, state={self.state})"


class SyncKernel:
    def __init__(self, config: Config | None = None, **boot_kw: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="llmos-kernel",
                                        daemon=True)
        self._thread.start()
        try:
            self.kernel: Kernel = self._run(Kernel.boot(config, **boot_kw))
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        if self._loop.is_closed():
            coro.close()
            raise KernelError("this SyncKernel is closed", hint="open a new one")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def syscall(self, agent_id: str, name: str, args: dict | None = None) -> SyscallResult:
        return self._run(self.kernel.syscall(agent_id, name, args))

    def submit(self, kind: str, spec: dict | None = None, **kw: Any) -> int:
        return self._run(self.kernel.submit(kind, spec, **kw))

    def add_task(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> SyncTaskHandle:
        """Run ``fn(*args, **kwargs)`` as a job process; keyword-only options ``name``,
        ``priority`` and ``agent`` are the kernel's, the rest go to ``fn``."""
        handle = self._run(self.kernel.add_task(fn, *args, **kwargs))
        return SyncTaskHandle(self, handle.pid)

    def wait(self, pid: int, timeout: float | None = None) -> dict:
        p, _ = self._run(self.kernel.wait(pid, timeout))
        return self.kernel.view(p)

    def run_until_idle(self, timeout: float | None = None) -> None:
        self._run(self.kernel.run_until_idle(timeout))

    def stats(self) -> dict[str, Any]:
        """``Kernel.stats()``, read on the kernel's loop (processes, tok/s, energy, load)."""
        return self._run(_on_loop(self.kernel.stats))

    def energy_by_agent(self) -> dict[str, dict[str, Any]]:
        """``Kernel.energy_by_agent()``, read on the kernel's loop."""
        return self._run(_on_loop(self.kernel.energy_by_agent))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self.kernel.shutdown())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
