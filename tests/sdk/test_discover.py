"""``discover``: a live daemon is found through its pid/port file; anything else is None."""

from __future__ import annotations

import json
import os

from llmos.config import load_config
from llmos.sdk import Client, daemon_info, discover
from llmos.sdk.discover import DAEMON_FILE, remove_daemon_file, write_daemon_file


def test_no_daemon(config):
    assert discover(config) is None


def test_stale_file_is_ignored(config):
    (config.home / DAEMON_FILE).write_text(json.dumps({"pid": 2**22 + 12345, "url": "http://127.0.0.1:1"}))
    assert daemon_info(config.home) is None and discover(config) is None
    (config.home / DAEMON_FILE).write_text("garbage")
    assert discover(config) is None


def test_live_pid_but_no_answer(config):
    write_daemon_file(config.home, "127.0.0.1", 9)   # our own pid, nothing listening on port 9
    assert daemon_info(config.home)["pid"] == os.getpid()
    assert discover(config) is None
    remove_daemon_file(config.home)
    assert not (config.home / DAEMON_FILE).exists()


def test_running_daemon_is_found(daemon):
    cfg = load_config(env={"LLMOS_HOME": str(daemon.config.home)})
    info = daemon_info(cfg.home)
    assert info["url"] == daemon.url and oct((cfg.home / DAEMON_FILE).stat().st_mode & 0o777) == "0o600"
    client = discover(cfg)
    assert isinstance(client, Client)
    with client:
        assert client.health()["pid"] == os.getpid()
        assert client.syscall("proc.list")["processes"] is not None


def test_the_daemon_file_protocol_lives_outside_the_sdk(tmp_path):
    """The server writes the file through llmos.daemonfile (never the SDK); the SDK reads it
    through the same module. No API module but the MCP bridge (an SDK client by design)
    imports the SDK."""
    import ast
    import importlib
    import os
    from pathlib import Path

    import llmos
    from llmos import daemonfile
    sdk_discover = importlib.import_module("llmos.sdk.discover")

    path = daemonfile.write_daemon_file(tmp_path, "0.0.0.0", 8420)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    info = sdk_discover.daemon_info(tmp_path)
    assert info["pid"] == os.getpid() and info["url"] == "http://127.0.0.1:8420"
    daemonfile.remove_daemon_file(tmp_path)
    assert not path.exists() and sdk_discover.daemon_info(tmp_path) is None
    api_dir = Path(llmos.__file__).parent / "api"
    users = []
    for f in api_dir.rglob("*.py"):
        for n in ast.walk(ast.parse(f.read_text())):
            mods = [a.name for a in n.names] if isinstance(n, ast.Import) else \
                [n.module or ""] if isinstance(n, ast.ImportFrom) else []
            if any(m == "llmos.sdk" or m.startswith("llmos.sdk.") for m in mods):
                users.append(f.name)
    assert sorted(set(users)) == ["mcp_server.py"]
