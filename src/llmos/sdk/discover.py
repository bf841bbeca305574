"""Find a running daemon: the pid/port file in the state directory.

Map:
- ``DAEMON_FILE``: ``$LLMOS_HOME/daemon.json``, written by ``llmos serve`` once it
  listens (``write_daemon_file``) and removed when it stops (``remove_daemon_file``):
  ``{"pid", "host", "port", "url", "started"}``.
- ``daemon_info(home)``: that file's contents when its process is alive, else None.
- ``discover(config) -> Client | None``: a ``Client`` carrying the admin token when a
  live daemon answers ``/api/v1/health`` with the same pid, else None. The CLI calls
  it to decide between "talk to the daemon" and "run in-process".
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx

from llmos.config import Config

__all__ = ["DAEMON_FILE", "daemon_info", "discover", "async_discover", "write_daemon_file",
           "remove_daemon_file", "admin_token"]

DAEMON_FILE = "daemon.json"
PROBE_TIMEOUT_S = 1.0        # seconds a health probe may take before "no daemon"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # exists, owned by someone else
        return True
    return True


def write_daemon_file(home: Path, host: str, port: int) -> Path:
    """Record this process as the daemon of ``home`` (mode 0600, atomic)."""
    path = Path(home) / DAEMON_FILE
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    data = {"pid": os.getpid(), "host": host, "port": port, "url": f"http://{shown}:{port}",
            "started": time.time()}
    tmp = path.with_name(DAEMON_FILE + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)
    return path


def remove_daemon_file(home: Path) -> None:
    """Remove the file if it still names this process."""
    path = Path(home) / DAEMON_FILE
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def daemon_info(home: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(home) / DAEMON_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int) or not data.get("url"):
        return None
    return data if _alive(data["pid"]) else None


def admin_token(home: Path) -> str | None:
    try:
        return (Path(home) / "admin.token").read_text().strip() or None
    except OSError:
        return None


def discover(config: Config, *, timeout: float = PROBE_TIMEOUT_S):
    """A ``Client`` for the live daemon of ``config.home``, or None when there is none."""
    from llmos.sdk.client import Client

    info = daemon_info(config.home)
    if info is None:
        return None
    try:
        r = httpx.get(info["url"] + "/api/v1/health", timeout=timeout)
        if r.status_code != 200 or r.json().get("pid") != info["pid"]:
            return None
    except (httpx.HTTPError, ValueError):
        return None
    return Client(info["url"], token=admin_token(config.home))


async def async_discover(config: Config, *, timeout: float = PROBE_TIMEOUT_S):
    """Like ``discover`` but returns an ``AsyncClient``."""
    from llmos.sdk.client import AsyncClient

    info = daemon_info(config.home)
    if info is None:
        return None
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            r = await http.get(info["url"] + "/api/v1/health")
        if r.status_code != 200 or r.json().get("pid") != info["pid"]:
            return None
    except (httpx.HTTPError, ValueError):
        return None
    return AsyncClient(info["url"], token=admin_token(config.home))
