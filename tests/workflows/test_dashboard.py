"""A fired reminder shows on the dashboard (a toast and a line in the event log), in
Debian's chromium through playwright; skipped with the reason where either is missing."""

from __future__ import annotations

import os
import shutil

import pytest

from llmos.api.server import ServerThread
from llmos.hal.fake import FakeHAL
from llmos.llm.fake import FakeEngine
from llmos.sdk import Client
from llmos.tools.registry import default_registry

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)),
                                reason=f"{CHROMIUM} is missing (apt-get install chromium)")


def test_a_fired_reminder_shows_on_the_dashboard(config):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    srv = ServerThread(config, engines={"fake": FakeEngine(model="fake")}, tools=default_registry(),
                       hal=FakeHAL(), preload_models=False).start()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"{srv.url}/#token={srv.token}")
                sync_api.expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
                with Client(srv.url, token=srv.token) as c:
                    c.set_timer("stretch your legs", in_s=0.5)
                sync_api.expect(page.locator("#toast")).to_contain_text("reminder: stretch your legs",
                                                                         timeout=10_000)
                sync_api.expect(page.locator("#event-log")).to_contain_text("timer → fired: stretch your legs")
                assert not errors, errors
            finally:
                browser.close()
    finally:
        srv.stop()
