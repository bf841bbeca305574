"""A managed local OpenAI-compatible server: a supervised child process.

Map:
- ``ServerState``: lifecycle of the child (ordered; ``finished`` = STOPPED or FAILED).
- ``ManagedServer``: starts a command, waits until a health URL answers 200, restarts the
  child when it dies (a bounded number of times per window), stops it on ``stop()``.
- ``llama_server_command`` / ``ManagedServer.for_gguf``: the command that serves a GGUF
  file: llama.cpp's ``llama-server`` binary when it is on PATH, else llama-cpp-python's
  server (``python -m llmos.llm.server ARGS``, see ``serve_llama_cpp_python``) when its
  ``[server]`` extra is installed, else a clear error naming what to install.

The remote engine (``openai.OpenAIEngine(server=...)``) starts and stops the server with
itself, and waits for a restart instead of failing while the child comes back.

NOTE (supervision): ``start()`` spawns the child and polls ``health_paths`` until one
answers 200 (llama-server answers 503 while it loads the model), the child exits
(error with the tail of its log), or ``startup_timeout_s`` passes (child killed, error).
A supervisor task then waits on the child; an exit that ``stop()`` did not ask for is
a crash: after ``restart_backoff_s`` the child is started again the same way. More than
``max_restarts`` crashes within ``restart_window_s`` leaves the server FAILED; every
waiter in ``wait_ready()`` then gets the error. The child's stdout and stderr go to
``log_path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import importlib.util
import os
import shutil
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from llmos.errors import EngineError

if TYPE_CHECKING:
    from llmos.config import Config

__all__ = ["ServerState", "ManagedServer", "llama_server_command", "missing_server_packages",
           "free_port"]

# ── named defaults (seconds unless named otherwise) ──────────────────────────
SERVER_STARTUP_TIMEOUT_S = 120.0     # model load included
SERVER_STOP_GRACE_S = 5.0            # SIGTERM → SIGKILL
SERVER_MAX_RESTARTS = 3              # crashes tolerated per window
SERVER_RESTART_WINDOW_S = 300.0
SERVER_RESTART_BACKOFF_S = 1.0
SERVER_HEALTH_POLL_S = 0.1           # first poll interval; grows to 0.5 s
LOG_TAIL_LINES = 12

# llama-cpp-python's `[server]` extra: import name → pip name
SERVER_PACKAGES = {"uvicorn": "uvicorn", "fastapi": "fastapi", "sse_starlette": "sse-starlette",
                   "starlette_context": "starlette-context", "pydantic_settings": "pydantic-settings"}


class ServerState(enum.IntEnum):
    """Lifecycle of a managed server. Finished is anything >= STOPPED."""

    NEW = 0          # never started
    STARTING = 1     # child spawned, not healthy yet
    READY = 2        # health check passed
    RESTARTING = 3   # child died unasked; a new one is being started
    STOPPED = 4      # stop() ran
    FAILED = 5       # could not start, or crashed too often

    @property
    def finished(self) -> bool:
        return self >= ServerState.STOPPED


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def missing_server_packages() -> list[str]:
    """pip names of llama-cpp-python's ``[server]`` extra that are not importable."""
    return [pip for mod, pip in SERVER_PACKAGES.items() if importlib.util.find_spec(mod) is None]


def llama_server_command(model_path: str | Path, *, host: str, port: int, n_ctx: int,
                         parallel: int = 1, threads: int = 0, n_gpu_layers: int = 0,
                         alias: str | None = None,
                         prefer: Literal["auto", "binary", "python"] = "auto",
                         ) -> tuple[list[str], dict[str, Any]]:
    """(argv, engine options) serving ``model_path`` on ``host:port``.

    Engine options say how the remote engine should talk to that server: llama-server
    runs ``parallel`` slots and takes OpenAI's ``json_schema``; llama-cpp-python's server
    runs one request at a time and takes ``json_object`` + ``schema``."""
    path = str(model_path)
    if not Path(path).is_file():
        raise EngineError(f"model file {path} does not exist", hint="give the path of a .gguf file")
    binary = shutil.which("llama-server") if prefer in ("auto", "binary") else None
    if binary:
        argv = [binary, "-m", path, "--host", host, "--port", str(port), "-c", str(n_ctx),
                "-np", str(parallel), "-ngl", str(n_gpu_layers)]
        if threads:
            argv += ["-t", str(threads)]
        if alias:
            argv += ["--alias", alias]
        # llama-server splits the context evenly between its slots
        return argv, {"max_in_flight": parallel, "response_format": "json_schema",
                      "context_length": max(1, n_ctx // max(1, parallel))}
    if prefer == "binary":
        raise EngineError("no llama-server binary on PATH",
                          hint="install llama.cpp (it ships llama-server) or add its bin/ to PATH")
    missing = missing_server_packages()
    if importlib.util.find_spec("llama_cpp") is None:
        missing.insert(0, "llama-cpp-python")
    if missing:
        raise EngineError(
            f"a managed llama.cpp server needs llama-server on PATH or llama-cpp-python's server "
            f"extra; missing: {', '.join(missing)}",
            hint="pip install 'llama-cpp-python[server]==0.3.36' (or put llama.cpp's llama-server on PATH)")
    argv = [sys.executable, "-m", "llmos.llm.server", "--model", path, "--host", host,
            "--port", str(port), "--n_ctx", str(n_ctx), "--n_gpu_layers", str(n_gpu_layers),
            "--interrupt_requests", "false"]   # queue concurrent requests instead of aborting one
    if threads:
        argv += ["--n_threads", str(threads)]
    if alias:
        argv += ["--model_alias", alias]
    return argv, {"max_in_flight": 1, "response_format": "json_object", "context_length": n_ctx}


class ManagedServer:
    """One supervised child process that serves the OpenAI API on ``host:port``."""

    def __init__(self, command: Sequence[str], *, port: int, host: str = "127.0.0.1",
                 api_prefix: str = "/v1", health_paths: Sequence[str] = ("/health", "/v1/models"),
                 env: Mapping[str, str] | None = None, log_path: str | Path | None = None,
                 startup_timeout_s: float = SERVER_STARTUP_TIMEOUT_S,
                 stop_grace_s: float = SERVER_STOP_GRACE_S, max_restarts: int = SERVER_MAX_RESTARTS,
                 restart_window_s: float = SERVER_RESTART_WINDOW_S,
                 restart_backoff_s: float = SERVER_RESTART_BACKOFF_S,
                 engine_options: Mapping[str, Any] | None = None, name: str = "server") -> None:
        if not command:
            raise EngineError("managed server: expected a non-empty command")
        self.command = list(command)
        self.host, self.port = host, port
        self.base_url = f"http://{host}:{port}{api_prefix}"
        self.name = name
        self.engine_options = dict(engine_options or {})   # hints for OpenAIEngine(**...)
        self._health = [f"http://{host}:{port}{p}" for p in health_paths]
        self._env = {**os.environ, **dict(env or {})}
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix=f"llmos-{name}-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        self._startup_timeout_s = startup_timeout_s
        self._stop_grace_s = stop_grace_s
        self._max_restarts = max_restarts
        self._restart_window_s = restart_window_s
        self._restart_backoff_s = restart_backoff_s
        self.state = ServerState.NEW              # owner: this object; changed only by _set
        self.restarts = 0                         # crashes recovered from, in total
        self.error: EngineError | None = None     # why it FAILED
        self._proc: asyncio.subprocess.Process | None = None
        self._crashes: deque[float] = deque()    # monotonic s of recent crashes
        self._supervisor: asyncio.Task | None = None
        self._changed: asyncio.Condition | None = None
        self._lock: asyncio.Lock | None = None

    @classmethod
    def for_gguf(cls, model_path: str | Path, config: Config | None = None, *, port: int = 0,
                 host: str = "127.0.0.1", parallel: int | None = None, alias: str | None = None,
                 prefer: Literal["auto", "binary", "python"] = "auto", **kw: Any) -> ManagedServer:
        """A llama.cpp server for a local GGUF, sized from ``config.engine``."""
        from llmos.config import EngineConfig

        eng = config.engine if config is not None else EngineConfig()
        port = port or free_port(host)
        argv, opts = llama_server_command(
            model_path, host=host, port=port, n_ctx=eng.n_ctx,
            parallel=parallel or eng.n_seq_max, threads=eng.threads,
            n_gpu_layers=eng.n_gpu_layers, alias=alias, prefer=prefer)
        if config is not None and "log_path" not in kw:
            config.log_dir.mkdir(parents=True, exist_ok=True)
            kw["log_path"] = config.log_dir / f"llama-server-{port}.log"
        return cls(argv, port=port, host=host, engine_options=opts, name="llama-server", **kw)

    # ── public ─────────────────────────────────────────────────────────────
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def start(self) -> None:
        """Spawn the child and wait until it is healthy. Idempotent while it runs."""
        self._sync_init()
        assert self._lock is not None
        async with self._lock:
            if self.state in (ServerState.READY, ServerState.STARTING, ServerState.RESTARTING):
                return
            self._crashes.clear()
            self.error = None
            try:
                await self._launch(ServerState.STARTING)
            except EngineError as e:
                if self.state != ServerState.STOPPED:   # not a stop() that cut the start short
                    await self._set(ServerState.FAILED, e)
                raise
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        """Return once the server is READY; raise EngineError if it FAILED or stopped,
        or did not become ready within ``timeout_s``."""
        self._sync_init()
        assert self._changed is not None
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: self.state in (
                    ServerState.READY, ServerState.FAILED, ServerState.STOPPED, ServerState.NEW))
        except TimeoutError:
            raise EngineError(f"{self.name} at {self.base_url} not ready within {timeout_s:g} s "
                              f"(state {self.state.name.lower()})",
                              hint=f"see its log: {self.log_path}") from None
        if self.state != ServerState.READY:
            raise self.error or EngineError(f"{self.name} at {self.base_url} is not running "
                                            f"({self.state.name.lower()})", hint="start it first")

    async def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL after the grace period). Idempotent."""
        self._sync_init()
        sup, self._supervisor = self._supervisor, None
        if self.state != ServerState.FAILED:
            await self._set(ServerState.STOPPED)
        if sup is not None:
            sup.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sup
        await self._kill()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    # ── internals ──────────────────────────────────────────────────────────
    def _sync_init(self) -> None:
        if self._changed is None:   # asyncio primitives bind to the loop at first use
            self._changed = asyncio.Condition()
            self._lock = asyncio.Lock()

    async def _set(self, state: ServerState, error: EngineError | None = None) -> None:
        assert self._changed is not None
        async with self._changed:
            self.state = state
            if error is not None:
                self.error = error
            self._changed.notify_all()

    async def _launch(self, state: ServerState) -> None:
        """Spawn the child and wait for health; on failure the child is gone and this raises."""
        await self._set(state)
        with self.log_path.open("ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: "
                      f"{' '.join(self.command)}\n".encode())
            log.flush()
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *self.command, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                    stderr=asyncio.subprocess.STDOUT, env=self._env, start_new_session=True)
            except OSError as e:
                raise EngineError(f"{self.name}: cannot run {self.command[0]} ({e.strerror or e})",
                                  hint="check that the program exists and is executable") from e
        try:
            await self._wait_healthy(self._proc)
        except BaseException:
            await self._kill()
            raise
        await self._set(ServerState.READY)

    async def _wait_healthy(self, proc: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + self._startup_timeout_s
        delay = SERVER_HEALTH_POLL_S
        async with httpx.AsyncClient(timeout=httpx.Timeout(2.0, connect=1.0)) as client:
            while True:
                if self.state == ServerState.STOPPED:
                    raise EngineError(f"{self.name} was stopped while starting")
                if proc.returncode is not None:
                    raise EngineError(
                        f"{self.name} exited with code {proc.returncode} while starting: "
                        f"{self.log_tail(3).splitlines()[-1] if self.log_tail(3) else 'no output'}",
                        hint=f"full log: {self.log_path}")
                for url in self._health:
                    try:
                        resp = await client.get(url)
                    except httpx.HTTPError:
                        break          # not listening yet
                    if resp.status_code == 200:
                        return
                    if resp.status_code != 404:
                        break          # e.g. 503 while the model loads: try again later
                if time.monotonic() >= deadline:
                    raise EngineError(
                        f"{self.name} at {self.base_url} not healthy within {self._startup_timeout_s:g} s",
                        hint=f"a large model may need a longer startup_timeout_s; log: {self.log_path}")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(proc.wait()), delay)
                delay = min(0.5, delay * 1.5)

    async def _supervise(self) -> None:
        while True:
            proc = self._proc
            if proc is None:
                return
            code = await proc.wait()
            if self.state.finished:
                return
            now = time.monotonic()
            while self._crashes and now - self._crashes[0] > self._restart_window_s:
                self._crashes.popleft()
            if len(self._crashes) >= self._max_restarts:
                await self._set(ServerState.FAILED, EngineError(
                    f"{self.name} at {self.base_url} crashed {len(self._crashes) + 1} times within "
                    f"{self._restart_window_s:g} s (last exit code {code}); not restarting",
                    hint=f"see its log: {self.log_path}"))
                return
            self._crashes.append(now)
            await self._set(ServerState.RESTARTING)
            await asyncio.sleep(self._restart_backoff_s)
            if self.state.finished:
                return
            try:
                await self._launch(ServerState.RESTARTING)
                self.restarts += 1
            except EngineError:
                continue   # the failed child is gone: counted as another crash next turn

    async def _kill(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), self._stop_grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def serve_llama_cpp_python(argv: Sequence[str]) -> None:
    """Run llama-cpp-python's OpenAI server (in the child process) with ``argv``.

    Its models load with llama.cpp's CPU "extra buffer" types (AMX / repacked
    weights), whose decode path segfaults on the first multi-token batch on
    the Sapphire Rapids machines this was built on; like the embedded engine
    (``_llama.Model``), the managed server loads with plain buffers instead."""
    import llama_cpp.llama_cpp as C

    default_params = C.llama_model_default_params

    def plain_buffers() -> Any:
        p = default_params()
        p.use_extra_bufts = False
        return p

    C.llama_model_default_params = plain_buffers
    from llama_cpp.server.__main__ import main

    sys.argv = ["llama_cpp.server", *argv]
    main()


if __name__ == "__main__":
    serve_llama_cpp_python(sys.argv[1:])
