"""Find a running daemon through the daemon file in the state directory.

Map:
- the file itself (``DAEMON_FILE``, ``daemon_info``, ``admin_token``, and the server's
  ``write_daemon_file`` / ``remove_daemon_file``) is ``llmos.daemonfile``, which the
  server imports too; re-exported here for SDK users.
- ``discover(config) -> Client | None``: a ``Client`` carrying the admin token when a
  live daemon answers ``/api/v1/health`` with the same pid, else None. The CLI calls
  it to decide between "talk to the daemon" and "run in-process".
"""

from __future__ import annotations

import httpx

from llmos.config import Config
from llmos.daemonfile import (
    DAEMON_FILE,
    admin_token,
    daemon_info,
    remove_daemon_file,
    write_daemon_file,
)

__all__ = ["DAEMON_FILE", "daemon_info", "discover", "async_discover", "write_daemon_file",
           "remove_daemon_file", "admin_token"]

PROBE_TIMEOUT_S = 5.0        # seconds a health probe may take before "no daemon" (a refused
                             # connection answers at once; a busy machine answered past 1 s)


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
