"""The dashboard in a real headless browser (Debian's chromium driven by playwright).

Load the page with the admin token, see a process appear live, kill it, confirm a run's
pending step from the page, and check a screenshot. Skipped, with the reason, where
chromium or playwright is missing (``make test`` installs chromium when run as root).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from llmos.sdk import Client

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
PLAN = json.dumps({"steps": [{"tool": "files.delete", "args": {"path": "old.txt"},
                              "why": "remove the old file"}], "answer": "Deleted old.txt."})

pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)),
                                reason=f"{CHROMIUM} is missing (apt-get install chromium)")


@pytest.fixture
def script():
    return PLAN


@pytest.fixture
def page():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            pg = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.errors = errors
            yield pg
        finally:
            browser.close()


def test_dashboard_live_actions_and_screenshot(daemon, page, tmp_path):
    from playwright.sync_api import expect

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "old.txt").write_text("bye")
    page.goto(f"{daemon.url}/#token={daemon.token}")
    expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
    expect(page.locator("#who")).to_contain_text("root")
    assert "token=" not in page.url                              # the token left the address bar
    expect(page.locator("#cpu-detail")).to_contain_text("Fake CPU")

    with Client(daemon.url, token=daemon.token) as c:
        # a process appears without reloading the page
        pid = c.spawn("run", {"title": "watched from the browser"})["pid"]
        row = page.locator(f"#proc-rows tr[data-pid='{pid}']")
        expect(row).to_be_visible(timeout=10_000)
        expect(row.locator("td.state")).to_have_text("waiting")       # a run waits for its steps
        row.locator("input[type=number]").fill("-6")
        row.locator("button.nice").click()
        expect(row.locator("td").nth(4)).to_have_text("-6", timeout=10_000)
        assert c.get_process(pid)["priority"] == -6
        row.locator("button.kill").click()
        expect(row.locator("td.state")).to_have_text("killed", timeout=10_000)
        assert c.get_process(pid)["state"] == "killed"

        # a run waits for a yes; the person confirms it on the page
        run = c.submit_run("delete old.txt", workdir=str(ws))
        card = page.locator(f".run[data-run='{run['id']}']")
        expect(card.locator(".pending-step")).to_be_visible(timeout=10_000)
        expect(card.locator(".pending-step")).to_contain_text("files.delete")
        assert (ws / "old.txt").exists()
        card.locator("button.confirm").click()
        expect(card.locator(".head .status")).to_have_text("succeeded", timeout=10_000)
        expect(card.locator(".answer")).to_contain_text("Deleted")
        assert not (ws / "old.txt").exists()
        assert c.get_run(run["id"])["status"] == "succeeded"

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("LLMOS_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["LLMOS_KEEP_SCREENSHOT"])
    import matplotlib.image as mpimg

    img = mpimg.imread(str(shot))
    assert img.shape[1] == 1280 and img.shape[0] >= 900
    assert float(img[..., :3].std()) > 0.05                      # not a blank page
    assert not page.errors, page.errors


def test_dashboard_asks_for_a_token(daemon, page):
    from playwright.sync_api import expect

    page.goto(daemon.url + "/")
    expect(page.locator("#login")).to_be_visible(timeout=10_000)
    page.fill("#token", "llmos-wrong")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_contain_text("refused", timeout=10_000)
    page.fill("#token", daemon.token)
    page.click("#login-form button")
    expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
