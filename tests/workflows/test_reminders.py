"""Reminders reach the person: an open shell's follower, a webhook (a local HTTP server),
repeating reminders (one late firing after downtime, not a burst)."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading

import pytest

from llmos.cli import reminders
from llmos.clock import FakeClock
from llmos.config import load_config
from llmos.kernel import Kernel
from llmos.kernel.timers import Delivery


async def _settle():
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.fixture
def hook():
    got: list[dict] = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the stdlib's name
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", got
    srv.shutdown()
    srv.server_close()


async def test_a_fired_reminder_shows_in_the_shell_and_on_the_webhook(config, hook):
    url, got = hook
    clock = FakeClock()
    k = await Kernel.boot(config, clock=clock)
    k.timers.delivery = Delivery(webhook=url, notify=False)
    shown: list[str] = []

    class Session:               # what the shell's follower reads: an in-process session's kernel
        kernel = k
    follower = asyncio.ensure_future(reminders.follow(Session(), shown.append))
    try:
        await _settle()
        res = await k.syscall("root", "timer.set", {"in_s": 60, "message": "send the timesheet"})
        assert res.ok
        clock.advance(59)
        await _settle()
        assert shown == [] and got == []
        clock.advance(2)
        await _settle()
        assert shown == ["⏰ reminder: send the timesheet"]
        await k.timers.delivery.idle()
        assert len(got) == 1 and got[0]["type"] == "reminder" and got[0]["message"] == "send the timesheet"
    finally:
        follower.cancel()
        await k.shutdown()


async def test_the_config_files_webhook_gets_the_reminder(home, hook):
    """``[reminders] webhook`` in config.toml (no environment variable) is where a fired
    reminder is POSTed."""
    url, got = hook
    (home / "config.toml").write_text(f'[reminders]\nwebhook = "{url}"\n')
    cfg = load_config(env={"LLMOS_HOME": str(home)})
    clock = FakeClock()
    k = await Kernel.boot(cfg, clock=clock)
    try:
        assert k.timers.delivery.webhook == url
        k.timers.delivery.notify = False                  # no desktop toasts from a test
        res = await k.syscall("root", "timer.set", {"in_s": 5, "message": "water the plants"})
        assert res.ok
        clock.advance(5)
        await _settle()
        await k.timers.delivery.idle()
        assert [(g["type"], g["message"]) for g in got] == [("reminder", "water the plants")]
    finally:
        await k.shutdown()


async def test_a_repeating_reminder_fires_each_time_and_once_after_downtime(config):
    clock = FakeClock()
    k = await Kernel.boot(config, clock=clock)
    k.timers.delivery = Delivery(notify=False)
    fired: list[dict] = []

    async def watch():
        async for ev in k.events():
            if ev["type"] == "timer":
                fired.append(ev)
    w = asyncio.ensure_future(watch())
    try:
        await _settle()
        res = await k.syscall("root", "timer.set", {"in_s": 10, "every_s": 100, "message": "stretch"})
        assert res.ok and res.value["every_s"] == 100
        tid = res.value["id"]
        for _ in range(3):
            clock.advance(100)
            await _settle()
        assert len(fired) == 3 and all(e["message"] == "stretch" for e in fired)
        listed = (await k.syscall("root", "timer.list", {})).value["timers"]
        assert [t["id"] for t in listed] == [tid] and listed[0]["state"] == "pending"
        bad = await k.syscall("root", "timer.set", {"in_s": 10, "every_s": 0, "message": "x"})
        assert not bad.ok and "every_s" in bad.error.message
    finally:
        w.cancel()
        await k.shutdown()
    clock.advance(1000)                                   # ten firings missed while down
    k = await Kernel.boot(config, clock=clock)
    try:
        rows = (await k.syscall("root", "timer.list", {"all": True})).value["timers"]
        t = next(r for r in rows if r["id"] == tid)
        assert t["late"] and t["state"] == "pending" and t["due_s"] > clock.time()
        res = await k.syscall("root", "timer.cancel", {"id": tid})
        assert res.ok and res.value["state"] == "cancelled"
    finally:
        await k.shutdown()


def test_durations_read_and_bad_ones_are_one_line():
    assert reminders.seconds("10m", "--in") == 600 and reminders.seconds("1w", "--every") == 604800
    with pytest.raises(Exception, match=r"--in: 'soon' is not a duration"):
        reminders.seconds("soon", "--in")


async def test_the_shell_follower_reads_the_daemons_events(config):
    from llmos.api.server import ServerThread
    from llmos.hal.fake import FakeHAL
    from llmos.sdk.client import AsyncClient

    srv = await asyncio.to_thread(lambda: ServerThread(config, hal=FakeHAL(), preload_models=False).start())
    shown: list[str] = []

    class Session:               # what the shell's follower reads: a daemon session's client
        client = AsyncClient(srv.url, token=srv.token)
    follower = asyncio.ensure_future(reminders.follow(Session(), shown.append))
    try:
        await asyncio.sleep(0.3)                            # subscribed
        await Session.client.set_timer("drink water", in_s=0.2)
        for _ in range(100):
            if shown:
                break
            await asyncio.sleep(0.05)
        assert shown == ["⏰ reminder: drink water"]
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await Session.client.aclose()
        await asyncio.to_thread(srv.stop)
