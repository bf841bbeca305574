"""Talk to the daemon when one serves this state directory, else run in-process.

The user never has to know which: both paths run the same ``shell.Runner`` (here, or
in the daemon's run manager), report progress through the same ``(kind, data)``
callbacks and hand back the same ``RunResult``.

Map:
- ``find_daemon(cfg, wait_s=..., notice=...)``: an ``AsyncClient`` for the live daemon of
  ``cfg.home``, or None. While a kernel holds the state directory and no daemon answers
  (a daemon still booting, or another in-process command) it waits up to ``wait_s``.
- ``Confirm``: ``async (step, tool, args, risk) -> bool``, the person's yes or no.
- ``LocalSession``: a kernel booted in this process (``boot_kernel``) driving a Runner.
- ``DaemonSession``: runs submitted to the daemon (``AsyncClient.follow_run``); its SSE
  events become the runner's progress callbacks, a pending step is answered with
  ``confirm``/``reject``, the finished run becomes the same ``RunResult``.
- ``open_session(cfg, ...)``: whichever applies (``daemon=True``: the daemon or an error).
- ``ChildDaemon``: ``llmos serve`` as a child process (``llmos boot``): ``start(cfg)``
  waits until it answers (or reports one error line with the log path); ``stop()``
  sends SIGTERM, waits, and returns a one-line report.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from llmos import params
from llmos.config import Config
from llmos.errors import InvalidArgument, LLMOSError, RemoteUnavailable

__all__ = ["find_daemon", "open_session", "boot_kernel", "result_of", "LocalSession", "DaemonSession",
           "ChildDaemon", "Confirm", "LOCK_WAIT_S", "START_TIMEOUT_S", "STOP_TIMEOUT_S"]

LOCK_WAIT_S = 300.0      # seconds to wait for a kernel that holds the state dir without a daemon
#                          (another in-process `llmos run` finishing its request; said once)
START_TIMEOUT_S = 120.0  # seconds `llmos boot` waits for its daemon to answer
STOP_TIMEOUT_S = 25.0    # seconds between SIGTERM and SIGKILL (the daemon drains streams for 15 s)
POLL_S = 0.05            # seconds between readiness probes

Confirm = Callable[[int, str, dict, str], Awaitable[bool]]
OnEvent = Callable[[str, dict], None]


# ── which path ──────────────────────────────────────────────────────────────
async def find_daemon(cfg: Config, *, wait_s: float = LOCK_WAIT_S,
                      notice: Callable[[str], None] | None = None) -> Any:
    """The daemon's ``AsyncClient``, or None when this command should boot the kernel."""
    from llmos.kernel.storage import StateLock
    from llmos.sdk.discover import async_discover

    deadline = time.monotonic() + wait_s
    told = False
    while True:
        client = await async_discover(cfg)
        if client is not None:
            return client
        holder = StateLock(cfg.home).holder()
        if holder is None or holder == os.getpid() or time.monotonic() >= deadline:
            return None            # free (boot here), or the boot will name who holds it
        if not told and notice is not None:
            notice(f"waiting for the kernel (pid {holder}) that holds {cfg.home}…")
            told = True
        await asyncio.sleep(0.2)


async def boot_kernel(cfg: Config) -> Any:
    """The in-process kernel on the state directory (tests replace this)."""
    from llmos.kernel import Kernel
    from llmos.tools.registry import default_registry

    return await Kernel.boot(cfg, tools=default_registry())


def result_of(run: dict[str, Any]) -> Any:
    """A finished daemon run (the API's JSON) as the ``RunResult`` the in-process runner
    returns, with the statuses that runner ends with."""
    from llmos.runs import Run, RunRecord, RunStatus
    from llmos.shell.runner import RunResult

    said = run.get("status") or "failed"
    try:
        status: RunStatus | None = RunStatus.parse(said)
    except InvalidArgument:             # a status this CLI does not know
        status = None
    rec = RunRecord.from_run(Run.from_dict({**run, "status": status or RunStatus.FAILED}))
    if status is RunStatus.REJECTED:    # the runner's own word for "you said no"
        rec.status = RunStatus.NEEDS_CONFIRMATION
    elif status is RunStatus.CANCELLED:
        rec.status, rec.answer = RunStatus.FAILED, rec.answer or "Failed: the daemon stopped before the run finished."
    elif status is None or not status.finished:
        rec.status, rec.answer = RunStatus.FAILED, rec.answer or f"Failed: the run ended in state {said!r}."
    return RunResult.of(rec)


# ── sessions ────────────────────────────────────────────────────────────────
class LocalSession:
    """Runs in this process: the kernel booted here, shut down by ``aclose``."""

    mode = "in-process"

    def __init__(self, kernel: Any, store: Any, runner: Any) -> None:
        self.kernel = kernel          # owned: shut down by aclose
        self.store = store            # owned: closed by aclose
        self.runner = runner
        self.current: str | None = None   # never set: an interrupted local run dies with us

    @classmethod
    async def open(cls, cfg: Config, *, model: str | None, priority: int, confirm: Confirm | None,
                   on_event: OnEvent, ask: Callable[[str], Any] | None = None) -> LocalSession:
        from llmos.shell.runner import Runner
        from llmos.shell.store import ShellStore

        store = ShellStore(cfg.home / "shell.db")
        try:
            kernel = await boot_kernel(cfg)
        except BaseException:
            store.close()
            raise

        async def ask_step(i: int, step: Any, risk: Any) -> bool:
            return await confirm(i, step.tool, step.args, risk.name.lower())

        if model is None:
            from llmos.shell.runner import planner_model

            model, _why = planner_model(kernel)
        runner = Runner(kernel, store=store, model=model, priority=priority,
                        confirm=ask_step if confirm is not None else None, on_event=on_event, ask=ask)
        return cls(kernel, store, runner)

    @property
    def registry(self) -> Any:
        return self.kernel.tools

    async def run(self, request: str, *, workdir: Path, yes: bool = False, dry_run: bool = False,
                  yes_all: bool = False) -> Any:
        return await self.runner.run(request, workdir=workdir, yes=yes, yes_all=yes_all, dry_run=dry_run)

    async def aclose(self) -> None:
        try:
            await self.kernel.shutdown()
        finally:
            self.store.close()


class DaemonSession:
    """Runs in the daemon: submitted over HTTP, followed over SSE."""

    mode = "daemon"

    def __init__(self, client: Any, *, model: str | None, priority: int, confirm: Confirm | None,
                 on_event: OnEvent) -> None:
        self.client = client          # AsyncClient, owned: closed by aclose
        self.model = model
        self.priority = priority
        self.confirm = confirm
        self.on_event = on_event
        self.current: str | None = None   # the daemon's id of the run being followed
        self._registry: Any = None

    @property
    def url(self) -> str:
        return self.client.base_url

    @property
    def registry(self) -> Any:
        """The tool registry (for habit learning when rating); the daemon's has the same tools."""
        if self._registry is None:
            from llmos.tools.registry import default_registry

            self._registry = default_registry()
        return self._registry

    async def run(self, request: str, *, workdir: Path, yes: bool = False, dry_run: bool = False,
                  yes_all: bool = False) -> Any:
        final: dict | None = None
        pending: int | None = None
        self.current = None
        try:
            async for ev in self.client.follow_run(
                    request, workdir=str(workdir), yes=yes, yes_all=yes_all, dry_run=dry_run, model=self.model,
                    priority=self.priority, ask=self.confirm is not None):
                kind = str(ev.get("type", ""))[4:]
                if kind == "submitted":
                    self.current = ev["run_id"]
                elif kind in ("planning", "plan", "step"):
                    self.on_event(kind, ev.get("data") or {})
                elif kind == "pending" and self.confirm is not None:
                    p = (ev.get("run") or {}).get("pending") or {}
                    pending = p.get("step")
                    yes_ = await self.confirm(int(p.get("step", 0)), str(p.get("tool", "?")),
                                              p.get("args") or {}, str(p.get("risk", "")))
                    decide = self.client.confirm if yes_ else self.client.reject
                    await decide(self.current, step=pending)
                    pending = None
                elif kind == "finished":
                    final = ev.get("run") or {}
        except asyncio.CancelledError:
            if self.current is not None:     # Ctrl-C: the daemon stops the run too
                try:
                    await asyncio.shield(self.client.cancel_run(self.current))
                except LLMOSError:           # it finished meanwhile, or the daemon went away
                    pass
            raise
        if final is None:
            raise RemoteUnavailable(f"the daemon stopped before run {self.current} finished",
                                    hint="`llmos history` lists the runs it recorded")
        self.current = None
        return result_of(final)

    async def aclose(self) -> None:
        await self.client.aclose()


async def open_session(cfg: Config, *, model: str | None = None,
                       priority: int = params.PRIORITY_DEFAULT, confirm: Confirm | None = None,
                       on_event: OnEvent | None = None, daemon: bool = False,
                       notice: Callable[[str], None] | None = None,
                       ask: Callable[[str], Any] | None = None) -> LocalSession | DaemonSession:
    """The daemon's session when one serves ``cfg.home``, else an in-process one.
    ``daemon=True``: the daemon's, or ``RemoteUnavailable``. ``ask``: the person's answer
    to a clarifying question (in-process sessions; the daemon's runs end with the
    question instead)."""
    on_event = on_event or (lambda kind, data: None)
    client = await find_daemon(cfg, notice=notice)
    if client is not None:
        return DaemonSession(client, model=model, priority=priority, confirm=confirm, on_event=on_event)
    if daemon:
        raise RemoteUnavailable(f"no daemon answers for {cfg.home}", hint="start one with `llmos serve`")
    return await LocalSession.open(cfg, model=model, priority=priority, confirm=confirm, on_event=on_event,
                                   ask=ask)


# ── the daemon as a child process (llmos boot) ──────────────────────────────
def _llmos_argv() -> list[str]:
    script = Path(sys.executable).with_name("llmos")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from llmos.cli import entry; sys.argv[0] = 'llmos'; entry()"]


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as uvicorn binds
            s.bind((host, port))
        return True
    except OSError:
        return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the daemon gets SIGTERM if `llmos boot` dies without stopping it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _log_tail(path: Path, offset: int) -> tuple[str | None, str | None]:
    """(the daemon's ``error:`` line, its ``hint:`` line) written since ``offset``."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None, None
    error = next((ln[6:].strip() for ln in reversed(lines) if ln.startswith("error:")), None)
    hint = next((ln[5:].strip() for ln in reversed(lines) if ln.startswith("hint:")), None)
    if error is None:
        error = next((ln.strip() for ln in reversed(lines) if ln.strip()), None)
    return error, hint


class ChildDaemon:
    """``llmos serve`` started by this process, in its own session (Ctrl-C at the shell
    does not reach it), output appended to ``$LLMOS_HOME/logs/daemon.log``."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, log_file: Any, url: str,
                 ready_s: float, note: str = "") -> None:
        self.proc = proc              # owned: stopped by stop()
        self.log_path = log_path
        self._log_file = log_file
        self.url = url                # where it listens
        self.ready_s = ready_s        # seconds from spawn to its first answer
        self.note = note              # e.g. "port 8420 is busy; it took a free one"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    def start(cls, cfg: Config, *, timeout_s: float = START_TIMEOUT_S, config_path: str | None = None,
              port: int | None = None) -> ChildDaemon:
        from llmos.sdk.discover import daemon_info

        host = cfg.api.host
        port = cfg.api.port if port is None else port
        note = ""
        if port and not _port_free(host, port):
            note = f"port {port} is busy; the daemon took a free one"
            port = 0
        log_path = cfg.home / "logs" / "daemon.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, "ab")  # noqa: SIM115 - held open for the child's lifetime
        offset = log_file.seek(0, os.SEEK_END)
        log_file.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} llmos boot starts the daemon\n".encode())
        log_file.flush()
        argv = _llmos_argv() + ["--home", str(cfg.home)]
        if config_path:
            argv += ["--config", config_path]
        argv += ["serve", "--host", host, "--port", str(port)]
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                    start_new_session=True,
                                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        except OSError as e:
            log_file.close()
            raise LLMOSError(f"the daemon did not start: {e} (log: {log_path})") from e
        try:
            while True:
                rc = proc.poll()
                if rc is not None:
                    error, hint = _log_tail(log_path, offset)
                    raise LLMOSError(f"the daemon did not start: {error or f'it exited with code {rc}'} "
                                     f"(log: {log_path})", hint=hint)
                info = daemon_info(cfg.home)
                if info is not None and info.get("pid") == proc.pid and _answers(info["url"], proc.pid):
                    return cls(proc, log_path, log_file, info["url"], time.monotonic() - t0, note)
                if time.monotonic() - t0 > timeout_s:
                    raise LLMOSError(f"the daemon did not start: no answer within {timeout_s:.0f} s "
                                     f"(log: {log_path})")
                time.sleep(POLL_S)
        except BaseException:         # not ready (or Ctrl-C while waiting): leave nothing behind
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log_file.close()
            raise

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> str:
        """SIGTERM, wait, SIGKILL after ``timeout_s``; one line saying what happened."""
        try:
            if self.proc.poll() is not None:
                return (f"the daemon (pid {self.pid}) had already stopped, exit code "
                        f"{self.proc.returncode} (log: {self.log_path})")
            t0 = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return (f"the daemon (pid {self.pid}) did not stop within {timeout_s:.0f} s; killed it "
                        f"(log: {self.log_path})")
            took = time.monotonic() - t0
            if rc == 0:
                return f"daemon stopped (pid {self.pid}) in {took:.1f} s"
            return f"the daemon (pid {self.pid}) exited with code {rc} while stopping (log: {self.log_path})"
        finally:
            self._log_file.close()


def _answers(url: str, pid: int) -> bool:
    import httpx

    try:
        r = httpx.get(url + "/api/v1/health", timeout=1.0)
        return r.status_code == 200 and r.json().get("pid") == pid
    except (httpx.HTTPError, ValueError):
        return False
