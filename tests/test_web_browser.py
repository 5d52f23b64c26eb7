"""The admin in a real browser: Debian's Chromium driven by Playwright against the app served
on 127.0.0.1, with CSRF protection on and the static script doing uploads and keyboard review.

The screenshots of the main screens are written to ``docs/screenshots/`` (the README shows
them), so each run refreshes them from what the browser actually rendered.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect, sync_playwright
from werkzeug.serving import BaseWSGIServer, make_server

from admin.web import resources
from crawler.config import CHROMIUM_ARGS, find_chromium
from store.config import get_settings
from store.db import Database
from tests.web_fixtures import EMAILS, PASSWORD, World, make_app, page_png
from tests.web_showcase import showcase

pytestmark = pytest.mark.slow

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
VIEWPORT = {"width": 1440, "height": 1000}


@dataclass
class Served:
    url: str
    world: World


@pytest.fixture
def served(db: Database, db_url: str, tmp_path: Path) -> Iterator[Served]:
    world = showcase(db, db_url, tmp_path)
    app: Flask = make_app(db_url, WTF_CSRF_ENABLED=True)
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{server.server_port}", world)
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        resources.close(app)


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = find_chromium(get_settings().chromium_path)
    if executable is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield launched
        finally:
            launched.close()


def sign_in(page: Page, base: str, role: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#email", EMAILS[role])
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def shot(page: Page, name: str) -> None:
    # Lazy images load only once scrolled into view; a full-page screenshot needs them all.
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_load_state("networkidle")
    page.evaluate("window.scrollTo(0, 0)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_admin_in_chromium(served: Served, browser: Browser, tmp_path: Path) -> None:
    base, world = served.url, served.world
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    script_errors: list[str] = []
    page.on("pageerror", lambda exc: script_errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: script_errors.append(msg.text) if msg.type == "error" else None,
    )

    sign_in(page, base, "admin")
    expect(page.locator("h1")).to_have_text("Dashboard")
    expect(page.locator(".chart svg rect.bar").first).to_be_visible()
    shot(page, "dashboard")

    # Upload a work: three pages through the script's XHR upload, then the work's page.
    files = [page_png(tmp_path / f"upload-{n}.png", "Browser Upload", n) for n in (1, 2, 3)]
    page.goto(f"{base}/works/new")
    page.select_option("#publisher_id", str(world.publishers["a"]))
    page.fill("#title", "Gamma Tales, Vol. 1")
    page.set_input_files("#files", [str(f) for f in files])
    page.click("form[data-upload] button[type=submit]")
    page.wait_for_url(re.compile(r"/works/\d+$"))
    expect(page.locator(".flash-success")).to_contain_text("3 page(s) added")
    expect(page.locator(".page-card")).to_have_count(3)
    page.goto(f"{base}/works")
    expect(page.locator("table")).to_contain_text("Gamma Tales, Vol. 1")
    shot(page, "works")

    # Review with the keyboard: a approves and the next match loads; j and k move.
    page.goto(f"{base}/review")
    shot(page, "review-queue")
    page.click("text=Start reviewing")
    page.wait_for_url(re.compile(r"/review/\d+"))
    first = int(re.search(r"/review/(\d+)", page.url).group(1))  # type: ignore[union-attr]
    expect(page.locator(".compare img")).to_have_count(2)
    heights = page.eval_on_selector_all(
        ".compare .frame img", "imgs => imgs.map(i => Math.round(i.getBoundingClientRect().height))"
    )
    assert len(set(heights)) == 1, f"images not at the same display height: {heights}"
    shot(page, "review")
    elsewhere = re.compile(rf"/review/(?!{first}\b)\d+")
    page.keyboard.press("j")
    page.wait_for_url(elsewhere)
    page.keyboard.press("k")
    page.wait_for_url(re.compile(rf"/review/{first}\b"))
    page.keyboard.press("a")
    page.wait_for_url(elsewhere)
    expect(page.locator(".flash-success")).to_contain_text(f"Approved match {first}")
    with world.db.connection() as conn:
        row = conn.execute(
            "select m.review_state, u.email from matches m join users u on u.id = m.reviewed_by"
            " where m.id = %s",
            (first,),
        ).fetchone()
    assert row == ("approved", EMAILS["admin"])

    # A notice: details, timeline and the rendered body in its sandboxed frame.
    page.goto(f"{base}/notices")
    page.click(f"a[href='/notices/{world.notices['showcase']}'] >> nth=0")
    expect(page.locator("h1")).to_contain_text(f"Notice #{world.notices['showcase']}")
    expect(page.locator(".timeline li")).not_to_have_count(0)
    frame = page.frame_locator("iframe.notice-html")
    expect(frame.locator("body")).to_contain_text("512(c)")
    shot(page, "notice")

    assert script_errors == []
    context.close()
