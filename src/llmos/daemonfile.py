"""The daemon-file protocol: how a running daemon tells other processes where it listens.

Map:
- ``DAEMON_FILE``: ``$LLMOS_HOME/daemon.json``, ``{"pid", "host", "port", "url",
  "started"}``, mode 0600, written atomically by ``llmos serve`` once it listens
  (``write_daemon_file``) and removed when it stops (``remove_daemon_file``, only
  while it still names this process).
- ``daemon_info(home)``: that file's contents when its process is alive, else None.
- ``admin_token(home)``: the admin token the daemon's clients present (``admin.token``).

The writer is the server (``api.server``), the readers the SDK (``sdk.discover``) and
the CLI; all of them import this module, so the server never imports the SDK. It
needs the standard library only.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["DAEMON_FILE", "ADMIN_TOKEN_FILE", "write_daemon_file", "remove_daemon_file",
           "daemon_info", "admin_token"]

DAEMON_FILE = "daemon.json"
ADMIN_TOKEN_FILE = "admin.token"      # the same name as kernel.tokens.ADMIN_TOKEN_FILE


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
    """The daemon file's contents when it is well formed and its process lives, else None."""
    try:
        data = json.loads((Path(home) / DAEMON_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int) or not data.get("url"):
        return None
    return data if _alive(data["pid"]) else None


def admin_token(home: Path) -> str | None:
    try:
        return (Path(home) / ADMIN_TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None
