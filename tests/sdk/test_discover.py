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
