"""Running the daemon: uvicorn around ``create_app``, the pid/port file, a thread helper.

Map:
- ``check_bind(host, allow_remote)``: refuse a non-loopback address unless allowed.
- ``serve(config, *, allow_remote, on_ready)``: run until SIGINT/SIGTERM (uvicorn's
  handlers trigger the lifespan's graceful shutdown, which shuts the kernel down);
  writes ``$LLMOS_HOME/daemon.json`` once listening and removes it at exit.
- ``dashboard_url(url, token)``: the link that carries the admin token in its fragment
  (never sent to the server, stored by the page in localStorage).
- ``ServerThread``: a daemon on a free loopback port in a background thread, for tests,
  benchmarks and ``make run``'s shell: ``with ServerThread(config, engines=...) as s: s.url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn

from llmos.api.app import create_app
from llmos.api.auth import TokenStore
from llmos.config import Config, ensure_home
from llmos.daemonfile import daemon_info, remove_daemon_file, write_daemon_file
from llmos.errors import ConfigError, LLMOSError
from llmos.kernel.storage import check_journal

__all__ = ["serve", "check_bind", "dashboard_url", "ServerThread", "free_port", "KEEP_ALIVE_S"]

KEEP_ALIVE_S = 5           # idle keep-alive connections close after this many seconds
SHUTDOWN_TIMEOUT_S = 15    # open connections (event streams) get this long at exit
BACKLOG = 2048             # pending connections (the load bench opens hundreds at once)


def check_bind(host: str, allow_remote: bool) -> None:
    if host == "localhost":
        return
    try:
        loop = ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise ConfigError(f"api.host: expected an IP address, got {host!r}",
                          hint="use 127.0.0.1 (default) or ::1") from None
    if not loop and not allow_remote:
        raise ConfigError(f"refusing to listen on {host}: the daemon is loopback-only by default",
                          hint="pass --allow-remote if other machines should reach it "
                               "(they still need a bearer token)")


def dashboard_url(url: str, token: str) -> str:
    return f"{url}/#token={token}"


def _own_signals(server: uvicorn.Server) -> None:
    """SIGINT/SIGTERM stop the server gracefully (a second one forces it), and the
    process then returns normally: uvicorn's own handling would re-raise the signal
    after shutdown and skip our clean-up."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True

    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)


def _listening_port(server: uvicorn.Server, fallback: int) -> int:
    for s in getattr(server, "servers", []) or []:
        for sock in getattr(s, "sockets", []) or []:
            return int(sock.getsockname()[1])
    return fallback


async def _serve(config: Config, *, allow_remote: bool, on_ready: Callable[[str, str], None] | None,
                 app_kwargs: dict[str, Any], box: dict | None = None) -> None:
    host, port = config.api.host, config.api.port
    app = create_app(config, allow_remote=allow_remote, **app_kwargs)
    ucfg = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                          timeout_keep_alive=KEEP_ALIVE_S, backlog=BACKLOG, access_log=False,
                          timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S)
    server = uvicorn.Server(ucfg)
    if box is not None:           # for ServerThread: reach the server, app and loop from outside
        box.update(server=server, app=app, loop=asyncio.get_running_loop())
    if threading.current_thread() is threading.main_thread():
        _own_signals(server)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():
        task.result()           # raises what uvicorn raised
        raise LLMOSError(f"the daemon could not listen on {host}:{port}",
                         hint=f"is the port in use? try --port {port + 1}")
    real = _listening_port(server, port)
    write_daemon_file(config.home, host, real)
    try:
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        url = f"http://[{shown}]:{real}" if ":" in shown else f"http://{shown}:{real}"
        if on_ready is not None:
            on_ready(url, TokenStore(config.home).admin_token())
        await task
    finally:
        remove_daemon_file(config.home)


def serve(config: Config, *, allow_remote: bool = False,
          on_ready: Callable[[str, str], None] | None = None, **app_kwargs: Any) -> None:
    """Run the daemon in this process until it is told to stop."""
    ensure_home(config.home)
    check_bind(config.api.host, allow_remote)
    check_journal(config.db_path)          # a damaged journal: one line now, not a lifespan traceback
    running = daemon_info(config.home)
    if running is not None:
        raise LLMOSError(f"a daemon already serves {config.home} at {running['url']} (pid {running['pid']})",
                         hint="stop it first, or use another --home")
    run_loop(_serve(config, allow_remote=allow_remote, on_ready=on_ready, app_kwargs=app_kwargs))


def run_loop(coro: Any) -> Any:
    """``asyncio.run`` on uvloop when it is installed (about a third less per-request
    overhead here), on the standard loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerThread:
    """A daemon in a background thread on a free loopback port (its own event loop)."""

    def __init__(self, config: Config, *, port: int | None = None, start_timeout_s: float = 60.0,
                 **app_kwargs: Any) -> None:
        from llmos.config import ApiConfig

        self.config = config.replace(api=ApiConfig(host="127.0.0.1", port=port or free_port()))
        self._kwargs = app_kwargs
        self._timeout = start_timeout_s
        self._ready = threading.Event()
        self._box: dict = {}                 # server, app, loop: filled by _serve
        self._error: BaseException | None = None
        self.url = ""
        self.token = ""
        self._thread = threading.Thread(target=self._main, name="llmos-daemon", daemon=True)

    def _main(self) -> None:
        def ready(url: str, token: str) -> None:
            self.url, self.token = url, token
            self._ready.set()

        try:
            run_loop(_serve(self.config, allow_remote=False, on_ready=ready,
                            app_kwargs=self._kwargs, box=self._box))
        except BaseException as e:  # noqa: BLE001 - handed to the starting thread
            self._error = e
            self._ready.set()

    def start(self) -> ServerThread:
        ensure_home(self.config.home)
        self._thread.start()
        if not self._ready.wait(self._timeout) or self._error is not None:
            self.stop()
            raise LLMOSError(f"the daemon did not start: {self._error or 'timed out'}") from self._error
        return self

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The daemon's event loop (the kernel lives there; use run_coroutine_threadsafe)."""
        return self._box["loop"]

    def app_services(self) -> Any:
        """The app's Services (kernel, hub, tokens...) while it runs."""
        return self._box["app"].state.svc

    def stop(self) -> None:
        if "server" in self._box:
            self._box["server"].should_exit = True
        self._thread.join(SHUTDOWN_TIMEOUT_S + 10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
