"""The Playwright path: render a page in Chromium and collect every image a reader would see.

scrapy-playwright is driven through :func:`playwright_meta` and :func:`page_of` only, so its
string meta keys live in this module and nowhere else. Each rendered request gets a
:class:`RenderSession` that:

- guards every request the browser makes with :func:`crawler.netguard.check_url` in a
  ``page.route`` handler (the browser resolves names itself, so Scrapy's resolver never sees
  them). Chromium follows redirects without asking the route again, so sub-resources are
  fetched through ``route.fetch(max_redirects=0)`` and each hop is checked before it is
  followed; the main document is the URL Scrapy already fetched through netguard. What stays
  unchecked: the address a *name* resolves to inside the browser (a public name pointing at a
  private address); responses whose reported server address is refused are dropped;
- records each image response the browser received (bytes and headers);
- waits for the network to settle, scrolls step by step to the bottom (bounded in steps and
  time) so lazy loaders and infinite scroll fetch what they hold back;
- reads ``<canvas>`` pixels (``toDataURL``), or screenshots the element when the canvas is
  tainted by cross-origin pixels; takes a full-page screenshot for the evidence.

The spider closes the page in its callback and in its errback, always: an unclosed page holds
a slot of the context's page limit and enough of them hang the crawl.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urljoin, urlsplit

from crawler.netguard import AddressPolicy, BlockedAddress, check_resolved, check_url

if TYPE_CHECKING:
    from playwright.async_api import Page, Route
    from playwright.async_api import Request as BrowserRequest
    from playwright.async_api import Response as BrowserResponse

    from crawler.config import CrawlConfig

__all__ = ["BrowserImage", "CanvasImage", "RenderSession", "page_of", "playwright_meta"]

logger = logging.getLogger(__name__)

# scrapy-playwright's request meta keys: here and nowhere else.
_PLAYWRIGHT: Final = "playwright"
_INCLUDE_PAGE: Final = "playwright_include_page"
_PAGE: Final = "playwright_page"
_CONTEXT: Final = "playwright_context"
_INIT_CALLBACK: Final = "playwright_page_init_callback"
_EVENT_HANDLERS: Final = "playwright_page_event_handlers"
_GOTO_KWARGS: Final = "playwright_page_goto_kwargs"

_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_CANVAS_SCRIPT: Final = """
(minSide) => Array.from(document.querySelectorAll("canvas")).map((canvas, index) => {
  if (canvas.width < minSide || canvas.height < minSide) return {index, skipped: true};
  try {
    return {index, url: canvas.toDataURL("image/png")};
  } catch (error) {
    return {index, error: String(error)};
  }
})
"""
_SCROLL_SCRIPT: Final = """
() => { window.scrollBy(0, Math.max(200, Math.floor(window.innerHeight * 0.9))); }
"""
_MEASURE_SCRIPT: Final = """
() => {
  const root = document.scrollingElement || document.documentElement;
  return [window.scrollY + window.innerHeight, root.scrollHeight];
}
"""
_MIN_CANVAS_SIDE: Final = 32


def playwright_meta(session: RenderSession) -> dict[str, Any]:
    """Request meta that renders the request with Playwright under ``session``."""
    return {
        _PLAYWRIGHT: True,
        _INCLUDE_PAGE: True,
        _CONTEXT: "default",
        _INIT_CALLBACK: session.init_page,
        _EVENT_HANDLERS: {
            "request": session.on_request,
            "requestfinished": session.on_request_done,
            "requestfailed": session.on_request_done,
            "response": session.on_response,
        },
        _GOTO_KWARGS: {"wait_until": "load"},
    }


def page_of(meta: dict[str, Any]) -> Page | None:
    """The Playwright page a rendered request holds (callback or errback), if any."""
    page = meta.get(_PAGE)
    return page if page is not None and hasattr(page, "close") else None


@dataclass
class BrowserImage:
    url: str
    data: bytes
    headers: dict[str, list[str]]
    media_type: str | None
    ip_address: str | None


@dataclass
class CanvasImage:
    index: int  # 1-based, document order
    data: bytes
    how: str  # "toDataURL" or "screenshot" (tainted canvas)


@dataclass
class RenderSession:
    """State of one rendered page: the guard, the image recorder and the page actions."""

    config: CrawlConfig
    policy: AddressPolicy
    page_url: str
    robots_allows: Callable[[str], bool] = lambda url: True
    images: dict[str, BrowserImage] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)
    image_bytes: int = 0
    _inflight: int = 0
    _last_activity: float = field(default_factory=time.monotonic)

    # -- set-up (scrapy-playwright calls this before navigating)

    async def init_page(self, page: Page, request: Any) -> None:
        await page.route("**/*", self.guard)
        if self.config.cookies:
            parts = urlsplit(self.page_url)
            await page.context.add_cookies(
                [
                    {"name": k, "value": v, "url": f"{parts.scheme}://{parts.netloc}/"}
                    for k, v in self.config.cookies.items()
                ]
            )

    # -- network

    def on_request(self, request: BrowserRequest) -> None:
        self._inflight += 1
        self._last_activity = time.monotonic()

    def on_request_done(self, request: BrowserRequest) -> None:
        self._inflight = max(0, self._inflight - 1)
        self._last_activity = time.monotonic()

    def _allowed(self, url: str) -> bool:
        try:
            check_url(url, self.policy)
        except BlockedAddress as exc:
            self.blocked.append(f"{exc.reason}: {url}")
            return False
        if not self.robots_allows(url):
            self.blocked.append(f"robots: {url}")
            return False
        return True

    async def guard(self, route: Route, request: BrowserRequest) -> None:
        from playwright.async_api import Error as PlaywrightError

        url = request.url
        if not url.startswith(("http://", "https://")):
            await route.fallback()
            return
        if not self._allowed(url):
            await route.abort("blockedbyclient")
            return
        frame = request.frame if request.is_navigation_request() else None
        if frame is not None and frame.parent_frame is None:
            await route.fallback()  # the document itself: already fetched through netguard
            return
        target = url
        try:
            for _ in range(self.config.max_redirects + 1):
                response = await route.fetch(
                    url=target, max_redirects=0, timeout=self.config.page_timeout_seconds * 1000
                )
                location = response.headers.get("location")
                if response.status in _REDIRECTS and location:
                    target = urljoin(target, location)
                    if not self._allowed(target):
                        await route.abort("blockedbyclient")
                        return
                    continue
                body = await response.body()
                self._record(target, response.status, response.headers, body, None)
                await route.fulfill(response=response, body=body)
                return
            await route.abort("failed")  # too many redirects
        except PlaywrightError:
            with contextlib.suppress(PlaywrightError):
                await route.abort("failed")

    def _record(
        self, url: str, status: int, headers: dict[str, str], body: bytes, ip: str | None
    ) -> None:
        media_type = (headers.get("content-type") or "").split(";")[0].strip().lower()
        if status != 200 or not media_type.startswith("image/") or url in self.images:
            return
        if not body or len(body) > self.config.max_image_bytes:
            return
        if len(self.images) >= self.config.max_browser_images:
            return
        self.image_bytes += len(body)
        self.images[url] = BrowserImage(
            url, body, {k: [v] for k, v in headers.items()}, media_type, ip
        )

    async def on_response(self, response: BrowserResponse) -> None:
        """Images the guard did not fetch itself (none while it routes every request; kept
        for responses a future Playwright serves without routing, such as from its cache)."""
        from playwright.async_api import Error as PlaywrightError

        if response.url in self.images or response.status != 200:
            return
        try:
            headers = await response.all_headers()
            if not (headers.get("content-type") or "").lower().startswith("image/"):
                return
            address = await response.server_addr()
            ip = address["ipAddress"] if address else None
            if ip:
                try:
                    check_resolved(urlsplit(response.url).hostname or "", [ip], self.policy)
                except BlockedAddress:
                    self.blocked.append(f"address: {response.url}")
                    return
            body = await response.body()
        except PlaywrightError:
            return  # the page navigated or closed meanwhile: the image is gone with it
        self._record(response.url, response.status, headers, body, ip)

    # -- page actions

    async def settle(
        self, page: Page, *, cap: float | None = None, quiet: float | None = None
    ) -> None:
        """Wait until no request has been in flight for ``quiet`` seconds (default
        ``settle_seconds``), at most ``cap`` (default ``max_settle_seconds``)."""
        deadline = time.monotonic() + (cap if cap is not None else self.config.max_settle_seconds)
        quiet = self.config.settle_seconds if quiet is None else quiet
        while time.monotonic() < deadline:
            idle_for = time.monotonic() - self._last_activity
            if self._inflight == 0 and idle_for >= quiet:
                return
            await asyncio.sleep(0.05)

    async def scroll(self, page: Page) -> int:
        """Scroll to the bottom step by step until the page stops growing; return the steps.

        Positions are measured after the network settles, so the growth a scroll caused (an
        infinite feed's next batch) counts; the end is the bottom reached twice at one height.
        """
        started = time.monotonic()
        bottom_height = -1
        steps = 0
        for steps in range(1, self.config.scroll_max_steps + 1):  # noqa: B007
            if time.monotonic() - started > self.config.scroll_max_seconds:
                break
            await page.evaluate(_SCROLL_SCRIPT)
            # Observers fire within a frame or two of a scroll: a short quiet spell per step,
            # the full one (in the caller) once at the bottom.
            await self.settle(page, cap=2.0, quiet=min(0.15, self.config.settle_seconds))
            position, height = await page.evaluate(_MEASURE_SCRIPT)
            if position >= height - 2:
                if height == bottom_height:
                    # A loaded machine may start the next batch's fetch late: one full quiet
                    # spell before believing the feed has ended.
                    await self.settle(page, cap=3.0)
                    position, height = await page.evaluate(_MEASURE_SCRIPT)
                    if height == bottom_height:
                        break
                bottom_height = height
        return steps

    async def canvases(self, page: Page) -> list[CanvasImage]:
        found: list[CanvasImage] = []
        results = await page.evaluate(_CANVAS_SCRIPT, _MIN_CANVAS_SIDE)
        for entry in results:
            index = int(entry["index"])
            if entry.get("skipped"):
                continue
            url = entry.get("url")
            if isinstance(url, str) and url.startswith("data:image/png;base64,"):
                data = base64.b64decode(url.split(",", 1)[1])
                if data:
                    found.append(CanvasImage(index + 1, data, "toDataURL"))
                continue
            # Tainted by cross-origin pixels: the browser still shows them; so does a screenshot.
            with contextlib.suppress(Exception):
                shot = await page.locator("canvas").nth(index).screenshot(type="png")
                found.append(CanvasImage(index + 1, shot, "screenshot"))
        return found

    async def screenshot(self, page: Page) -> bytes | None:
        from playwright.async_api import Error as PlaywrightError

        try:
            await page.evaluate("() => window.scrollTo(0, 0)")
            return await page.screenshot(full_page=True, type="png", timeout=15_000)
        except PlaywrightError:
            return None
