"""The generic site spider: every page of a site within its policy, every image on them.

Pages come from the start URLs, links (within the allowed domains, depth and URL patterns),
``rel=next``, meta refresh and sitemaps (``Sitemap:`` lines of robots.txt and
``/sitemap.xml``; indexes, gzipped sitemaps, ``<image:image>`` entries). Each page is fetched
by Scrapy first: that response is the HTML *as served* (the evidence), gives the validators
for the next crawl, and is what :mod:`crawler.discovery` reads. Pages that need JavaScript
(``rendering=always``, or ``auto`` when the static HTML shows lazy loading, a script-built
gallery or a canvas reader) are then rendered by Chromium (:mod:`crawler.render`); what the
browser finds is added to what the static pass found, never instead of it.

Images are fetched once per URL per crawl, with the page that named them as Referer, and
handed to the pipeline as :class:`crawler.items.ImageItem`; stylesheets and archives are
fetched too (CSS images, CBZ/ZIP and PDF pages). Every failure is counted by kind
(``mamoru/errors/<kind>`` in the stats); none ends the crawl.

The spider does its own duplicate filtering (requests are ``dont_filter``): a redirect loop
must run into the redirect limit and be reported as a loop, not vanish in Scrapy's filter.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

import scrapy
from lxml import etree  # type: ignore[import-untyped]
from protego import Protego
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.http import Request, Response
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.error import DNSLookupError
from twisted.internet.error import TimeoutError as TwistedTimeoutError
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure

from crawler import render
from crawler.archives import ArchiveLimits, archive_pages
from crawler.config import CrawlConfig
from crawler.discovery import Discovery, FoundImage, discover, discover_stylesheet, resolve_url
from crawler.items import ImageItem, PageCapture, headers_dict, utc_now
from crawler.pipeline import STAT_PREFIX, ResourceState, UnchangedPage
from matcher.errors import InputError
from store.db import Database

__all__ = ["SiteSpider", "error_kind", "needs_rendering"]

logger = logging.getLogger(__name__)

_HTML_TYPES: Final = ("text/html", "application/xhtml+xml")
_SITEMAP_NS: Final = "http://www.sitemaps.org/schemas/sitemap/0.9"
_IMAGE_NS: Final = "http://www.google.com/schemas/sitemap-image/1.1"
_MAX_SITEMAP_DEPTH: Final = 4
_MAX_SITEMAP_ENTRIES: Final = 50_000
_BYTES_CACHE: Final = 64 * 1024 * 1024
# Markup of readers that build their pages in script (checked only when scripts are present).
_READER_MARKERS: Final = (
    b'createElement("img")',
    b"createElement('img')",
    b"new Image(",
    b"fetch(",
    b"XMLHttpRequest",
    b"drawImage",
)
_FEW_IMAGES: Final = 3


def needs_rendering(found: Discovery, body: bytes) -> bool:
    """``auto`` mode: whether the static HTML suggests a browser would see more images."""
    if found.canvas_count or found.lazy_markers:
        return True
    if found.script_count == 0:
        return False
    if found.img_count <= _FEW_IMAGES and len(found.images) <= _FEW_IMAGES:
        return True
    return any(marker in body for marker in _READER_MARKERS)


def error_kind(failure: Failure) -> str:
    """A short, stable name for why a request failed (stats keys, summaries)."""
    exc = failure.value
    request: Request | None = getattr(failure, "request", None)
    if isinstance(exc, HttpError):
        return f"http_{exc.response.status}"
    if isinstance(exc, IgnoreRequest):
        message = str(exc)
        if message.startswith("netguard"):
            return "refused"
        if "robots.txt" in message:
            return "robots"
        if "redirections" in message and request is not None:
            urls = [*request.meta.get("redirect_urls", []), request.url]
            return "redirect_loop" if len(set(urls)) < len(urls) else "too_many_redirects"
        return "ignored"
    if isinstance(exc, DownloadCancelledError):
        return "too_large"
    if isinstance(exc, DownloadTimeoutError | TwistedTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, CannotResolveHostError | DNSLookupError):
        return "dns"
    if isinstance(exc, DownloadConnectionRefusedError | ConnectionRefusedError):
        return "connection_refused"
    if isinstance(exc, ResponseDataLossError):
        return "data_loss"
    name = type(exc).__name__
    if "Timeout" in name:
        return "timeout"
    if "Connection" in name or "Connect" in name:
        return "connection"
    return f"other_{name}"


@dataclass
class _Known:
    """What the last finished crawl stored for a URL (its ``stats["incremental"]``)."""

    etag: str | None
    last_modified: str | None
    content_sha256: bytes | None
    found: dict[str, list[str]]


@dataclass
class _ImageState:
    """One image URL in this crawl: pages waiting for it, then what it turned out to be."""

    waiting: list[tuple[PageCapture, str]] = field(default_factory=list)
    sha256: bytes | None = None
    media_type: str | None = None
    headers: dict[str, list[str]] = field(default_factory=dict)
    ip_address: str | None = None
    fetched_at: datetime | None = None
    final_url: str | None = None  # where the bytes came from, after redirects
    failed: bool = False


class SiteSpider(scrapy.Spider):
    name = "mamoru-site"

    def __init__(
        self, config: CrawlConfig, crawl_id: int, database_url: str, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.crawl_id = crawl_id
        self.database_url = database_url
        # NetguardMiddleware reads the policy from here.
        self.netguard_policy = config.policy
        self._include = [re.compile(p) for p in config.include_patterns]
        self._exclude = [re.compile(p) for p in config.exclude_patterns]
        self._pages: set[str] = set()  # page URLs requested (static fetch)
        self._other: set[str] = set()  # stylesheets, archives, sitemaps requested
        self._images: dict[str, _ImageState] = {}
        self._sighted: set[tuple[str, str]] = set()
        self._bytes: OrderedDict[str, bytes] = OrderedDict()
        self._bytes_size = 0
        self._robots: dict[str, Protego] = {}
        self._known: dict[str, _Known] = {}
        self._known_raw: dict[str, Any] = {}
        self._archive_limits = ArchiveLimits(
            max_members=config.max_archive_members,
            max_member_bytes=config.max_image_bytes,
            pdf_dpi=config.pdf_dpi,
            max_pixels=config.max_image_pixels,
        )

    # -- bookkeeping

    def _inc(self, key: str, count: int = 1) -> None:
        if self.crawler.stats is not None:
            self.crawler.stats.inc_value(f"{STAT_PREFIX}/{key}", count)

    def _load_known(self) -> None:
        db = Database(self.database_url, min_size=0, max_size=1)
        try:
            with db.connection() as conn:
                row = conn.execute(
                    """
                    select stats -> 'incremental' from crawls
                    where site_id = %s and state = 'finished' and stats ? 'incremental'
                    order by id desc limit 1
                    """,
                    (self.config.site_id,),
                ).fetchone()
        finally:
            db.close()
        self._known_raw = dict(row[0]) if row and isinstance(row[0], dict) else {}
        for url, entry in self._known_raw.items():
            sha = entry.get("sha256")
            self._known[url] = _Known(
                entry.get("etag"),
                entry.get("last_modified"),
                bytes.fromhex(sha) if sha else None,
                entry.get("found") or {},
            )

    def known_resources(self) -> dict[str, Any]:
        """What the last crawl stored per URL, as stored (carried into this crawl's state)."""
        return dict(self._known_raw)

    def _conditional(self, url: str) -> dict[str, str]:
        known = self._known.get(url)
        headers: dict[str, str] = {}
        if known is not None and known.content_sha256 is not None:
            if known.etag:
                headers["If-None-Match"] = known.etag
            if known.last_modified:
                headers["If-Modified-Since"] = known.last_modified
        return headers

    def _in_scope(self, url: str) -> bool:
        if not self.config.is_site_host(urlsplit(url).hostname or ""):
            return False
        if self._include and not any(p.search(url) for p in self._include):
            return False
        return not any(p.search(url) for p in self._exclude)

    def _robots_allows(self, url: str) -> bool:
        if not self.config.obey_robots:
            return True
        parts = urlsplit(url)
        parser = self._robots.get(f"{parts.scheme}://{parts.netloc}")
        return parser is None or bool(parser.can_fetch(url, "Mamoru"))

    # -- requests

    def _page_request(self, url: str, depth: int) -> Request | None:
        if url in self._pages or not self._in_scope(url):
            return None
        if len(self._pages) >= self.config.max_pages:
            self._inc("pages_over_limit")
            return None
        self._pages.add(url)
        return Request(
            url,
            callback=self.parse_page,
            errback=self.failed,
            dont_filter=True,
            headers=self._conditional(url),
            meta={
                "mamoru_kind": "page",
                "mamoru_depth": depth,
                "handle_httpstatus_list": [304],
                "download_maxsize": self.config.max_page_bytes,
            },
        )

    def _origins(self) -> list[str]:
        origins: list[str] = []
        for url in self.config.start_urls:
            parts = urlsplit(url)
            origin = f"{parts.scheme}://{parts.netloc}"
            if origin not in origins:
                origins.append(origin)
        return origins

    async def start(self) -> AsyncIterator[Any]:
        await maybe_deferred_to_future(deferToThread(self._load_known))
        for origin in self._origins():
            yield Request(
                f"{origin}/robots.txt",
                callback=self.parse_robots,
                errback=self.quiet_failure,
                dont_filter=True,
                priority=20,
                meta={"mamoru_kind": "robots", "dont_obey_robotstxt": True},
            )
        for url in self.config.start_urls:
            request = self._page_request(url, 0)
            if request is not None:
                yield request

    def _sitemap_request(self, url: str, depth: int) -> Request | None:
        if url in self._other or depth > _MAX_SITEMAP_DEPTH:
            return None
        self._other.add(url)
        return Request(
            url,
            callback=self.parse_sitemap,
            errback=self.quiet_failure,
            dont_filter=True,
            priority=15,
            meta={
                "mamoru_kind": "sitemap",
                "mamoru_sitemap_depth": depth,
                "download_maxsize": self.config.max_page_bytes,
            },
        )

    # -- robots.txt and sitemaps

    def parse_robots(self, response: Response) -> Iterator[Request]:
        origin = response.url.rsplit("/robots.txt", 1)[0]
        sitemaps: list[str] = []
        if response.status == 200:
            text = response.body[: self.config.max_page_bytes].decode("utf-8", "replace")
            self._robots[origin] = Protego.parse(text)
            for line in text.splitlines():
                key, _, value = line.partition(":")
                if key.strip().lower() == "sitemap" and value.strip():
                    url = resolve_url(value.strip(), response.url)
                    if url is not None:
                        sitemaps.append(url)
        sitemaps.append(f"{origin}/sitemap.xml")
        for url in sitemaps:
            request = self._sitemap_request(url, 0)
            if request is not None:
                yield request

    def parse_sitemap(self, response: Response) -> Iterator[Any]:
        if response.status != 200:
            return
        body = response.body
        if body[:2] == b"\x1f\x8b":
            try:
                body = _gunzip(body, self.config.max_page_bytes)
            except (OSError, EOFError, ValueError):
                self._inc("errors/sitemap_invalid")
                return
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, huge_tree=False, recover=True
        )
        try:
            root = etree.fromstring(body, parser=parser)
        except (etree.XMLSyntaxError, ValueError):
            root = None
        if root is None:
            return  # /sitemap.xml probes often answer with an HTML page
        self._inc("sitemaps")
        depth = int(response.meta.get("mamoru_sitemap_depth", 0))
        tag = etree.QName(root).localname
        if tag == "sitemapindex":
            for loc in root.iter(f"{{{_SITEMAP_NS}}}loc"):
                url = resolve_url((loc.text or "").strip(), response.url)
                request = self._sitemap_request(url, depth + 1) if url else None
                if request is not None:
                    yield request
            return
        if tag != "urlset":
            return
        for count, entry in enumerate(root.iter(f"{{{_SITEMAP_NS}}}url")):
            if count >= _MAX_SITEMAP_ENTRIES:
                break
            loc = entry.find(f"{{{_SITEMAP_NS}}}loc")
            page_url = (
                resolve_url((loc.text or "").strip(), response.url) if loc is not None else None
            )
            if page_url is None:
                continue
            request = self._page_request(page_url, 1)
            if request is not None:
                yield request
            images = [
                url
                for node in entry.iter(f"{{{_IMAGE_NS}}}loc")
                if (url := resolve_url((node.text or "").strip(), page_url)) is not None
            ]
            if images and self._in_scope(page_url):
                # The sitemap is the document that names these images for this page.
                capture = self._capture(response, url=page_url)
                yield from self._image_requests(
                    capture, [FoundImage(u, "link-href") for u in images], source="sitemap"
                )

    # -- pages

    def _capture(self, response: Response, *, url: str | None = None) -> PageCapture:
        content_type = _content_type(response)
        return PageCapture(
            url=url or response.url,
            status=response.status,
            headers=headers_dict(response.headers),
            ip_address=str(response.ip_address) if response.ip_address else None,
            fetched_at=utc_now(),
            html=response.body,
            media_type=content_type.split(";")[0].strip() or "text/html",
        )

    def parse_page(self, response: Response) -> Iterator[Any]:
        url = response.request.url if response.request else response.url
        depth = int(response.meta.get("mamoru_depth", 0))
        known = self._known.get(url)
        if response.status == 304 and known is not None:
            self._inc("pages_not_modified")
            yield from self._unchanged(response, known, depth)
            return
        content_type = _content_type(response).lower()
        if content_type.startswith("image/"):
            # A link that turned out to be an image: the linking page was its page.
            yield from self._image_response(response)
            return
        if not any(content_type.startswith(t) for t in _HTML_TYPES) and content_type:
            self._inc("pages_not_html")
            return
        body_sha = hashlib.sha256(response.body).digest()
        if known is not None and known.content_sha256 == body_sha and response.url == url:
            self._inc("pages_unchanged")
            yield from self._unchanged(response, known, depth)
            return
        self._inc("pages")
        found = discover(
            response.body,
            response.url,
            content_type=content_type or None,
        )
        capture = self._capture(response)
        yield from self._follow(found.links, found.archives, found.stylesheets, capture, depth)
        yield ResourceState(
            url,
            "page",
            response.status,
            _header(response, b"ETag"),
            _header(response, b"Last-Modified"),
            body_sha,
            {"links": found.links, "archives": found.archives, "stylesheets": found.stylesheets},
        )
        render_it = self.config.rendering == "always" or (
            self.config.rendering == "auto" and needs_rendering(found, response.body)
        )
        if render_it:
            yield self._render_request(capture, found, depth)
            return
        yield from self._data_images(capture, found)
        yield from self._image_requests(capture, found.images)

    def _unchanged(self, response: Response, known: _Known, depth: int) -> Iterator[Any]:
        """A page as the last crawl saw it: its sightings are seen again, its links followed
        and its archives asked again (conditionally) from what that crawl stored."""
        yield UnchangedPage(response.url)
        found = known.found
        yield from self._follow_links(found.get("links", []), depth)
        archives = found.get("archives", [])
        if archives:
            # An archive that changed behind an unchanged page is read, and its pages are
            # sighted on the page that links it (not at the archive's own URL), asked for with
            # that page as Referer. This response is the page's capture: the same bytes as last
            # time, or a 304 without a body (the previous crawl's evidence holds the HTML).
            yield from self._archive_requests(archives, self._capture(response))

    def _follow(
        self,
        links: Iterable[str],
        archives: Iterable[str],
        stylesheets: Iterable[str],
        capture: PageCapture,
        depth: int,
    ) -> Iterator[Request]:
        yield from self._follow_links(links, depth)
        yield from self._archive_requests(archives, capture)
        yield from self._stylesheet_requests(stylesheets, capture)

    def _follow_links(self, links: Iterable[str], depth: int) -> Iterator[Request]:
        if depth < self.config.max_depth:
            for link in links:
                request = self._page_request(link, depth + 1)
                if request is not None:
                    yield request

    def _archive_requests(self, archives: Iterable[str], capture: PageCapture) -> Iterator[Request]:
        for url in archives:
            if url in self._other:
                continue
            self._other.add(url)
            yield Request(
                url,
                callback=self.parse_archive,
                errback=self.failed,
                dont_filter=True,
                headers=self._referer(capture, url),
                meta={
                    "mamoru_kind": "archive",
                    "mamoru_page": capture,
                    "handle_httpstatus_list": [304],
                    "download_maxsize": self.config.max_archive_bytes,
                    "download_warnsize": 0,
                },
            )

    def _stylesheet_requests(
        self, stylesheets: Iterable[str], capture: PageCapture
    ) -> Iterator[Request]:
        for url in stylesheets:
            if url in self._other:
                continue
            self._other.add(url)
            yield Request(
                url,
                callback=self.parse_stylesheet,
                errback=self.failed,
                dont_filter=True,
                headers={"Referer": capture.url},
                meta={"mamoru_kind": "stylesheet", "mamoru_page": capture},
            )

    def _referer(self, capture: PageCapture, url: str) -> dict[str, str]:
        headers = self._conditional(url)
        headers["Referer"] = capture.url
        return headers

    def parse_stylesheet(self, response: Response) -> Iterator[Any]:
        capture: PageCapture = response.meta["mamoru_page"]
        content_type = _content_type(response)
        found = discover_stylesheet(response.body, response.url, content_type=content_type)
        for data_image in found.data_images:
            yield self._data_item(capture, data_image.data, data_image.mime_type)
        yield from self._image_requests(capture, found.images)

    # -- images

    def _data_images(self, capture: PageCapture, found: Discovery) -> Iterator[ImageItem]:
        for data_image in found.data_images:
            item = self._data_item(capture, data_image.data, data_image.mime_type)
            if item is not None:
                yield item

    def _data_item(self, capture: PageCapture, data: bytes, mime_type: str) -> ImageItem | None:
        digest = hashlib.sha256(data).digest()
        # A data: URI is named by its content: the URI itself may be megabytes long.
        image_url = f"data:{mime_type};sha256={digest.hex()[:16]}"
        if (capture.url, image_url) in self._sighted:
            return None
        self._sighted.add((capture.url, image_url))
        return ImageItem(
            page=capture,
            image_url=image_url,
            source="data-uri",
            data=data,
            sha256=digest,
            media_type=mime_type,
        )

    def _image_requests(
        self, capture: PageCapture, found: Iterable[FoundImage], *, source: str | None = None
    ) -> Iterator[Any]:
        for image in found:
            url = image.url
            key = (capture.url, url)
            if key in self._sighted:
                continue
            self._sighted.add(key)
            state = self._images.get(url)
            if state is None:
                self._images[url] = _ImageState(waiting=[(capture, source or image.source)])
                yield Request(
                    url,
                    callback=self._image_response,
                    errback=self.image_failed,
                    dont_filter=True,
                    priority=10,
                    headers=self._referer(capture, url),
                    meta={
                        "mamoru_kind": "image",
                        "mamoru_image": url,
                        "handle_httpstatus_list": [304],
                        "download_maxsize": self.config.max_image_bytes,
                        "download_warnsize": 0,
                    },
                )
            elif state.sha256 is not None:
                yield self._image_item(capture, source or image.source, url, state)
            elif not state.failed:
                state.waiting.append((capture, source or image.source))

    def _image_item(
        self, capture: PageCapture, source: str, url: str, state: _ImageState
    ) -> ImageItem:
        return ImageItem(
            page=capture,
            image_url=state.final_url or url,
            source=source,
            data=self._bytes.get(url),
            sha256=state.sha256,
            media_type=state.media_type,
            headers=state.headers,
            ip_address=state.ip_address,
            fetched_at=state.fetched_at or utc_now(),
            referer=capture.url,
        )

    def _remember_bytes(self, url: str, data: bytes) -> None:
        # Pages that name an image after its fetch get its bytes from here while the first
        # item may still be in the pipeline; bounded, oldest dropped.
        self._bytes[url] = data
        self._bytes_size += len(data)
        while self._bytes_size > _BYTES_CACHE and self._bytes:
            _, dropped = self._bytes.popitem(last=False)
            self._bytes_size -= len(dropped)

    def _image_response(self, response: Response) -> Iterator[Any]:
        url = response.meta.get("mamoru_image") or response.url
        state = self._images.setdefault(url, _ImageState())
        if not state.waiting and response.meta.get("mamoru_kind") == "page":
            return  # an image linked as a page with no page to attribute it to
        known = self._known.get(url)
        state.headers = headers_dict(response.headers)
        state.ip_address = str(response.ip_address) if response.ip_address else None
        state.fetched_at = utc_now()
        state.final_url = response.url
        content_type = _content_type(response)
        state.media_type = content_type.split(";")[0].strip().lower() or None
        if response.status == 304 and known is not None and known.content_sha256 is not None:
            self._inc("images_not_modified")
            state.sha256 = known.content_sha256
        else:
            state.sha256 = hashlib.sha256(response.body).digest()
            self._remember_bytes(url, response.body)
            yield ResourceState(
                url,
                "image",
                response.status,
                _header(response, b"ETag"),
                _header(response, b"Last-Modified"),
                state.sha256,
            )
        waiting, state.waiting = state.waiting, []
        for capture, source in waiting:
            yield self._image_item(capture, source, url, state)

    # -- archives

    async def parse_archive(self, response: Response) -> AsyncIterator[Any]:
        # The page that links the archive: its pages are sighted there.
        capture: PageCapture = response.meta["mamoru_page"]
        url = response.request.url if response.request else response.url
        if response.status == 304:
            self._inc("archives_not_modified")
            return
        self._inc("archives")
        name = url
        try:
            pages = await maybe_deferred_to_future(
                deferToThread(archive_pages, response.body, name, self._archive_limits)
            )
        except InputError as exc:
            logger.info("archive refused: %s", exc)
            self._inc("errors/archive_invalid")
            return
        yield ResourceState(
            url,
            "archive",
            response.status,
            _header(response, b"ETag"),
            _header(response, b"Last-Modified"),
            hashlib.sha256(response.body).digest(),
        )
        for page in pages:
            self._inc("archive_pages")
            yield ImageItem(
                page=capture,
                image_url=f"{url}#{page.fragment}",
                source="archive",
                data=page.data,
                loader=page.loader,
                media_type=page.media_type,
                headers=headers_dict(response.headers),
                ip_address=str(response.ip_address) if response.ip_address else None,
                referer=capture.url,
            )

    # -- rendering

    def _render_request(self, capture: PageCapture, found: Discovery, depth: int) -> Request:
        session = render.RenderSession(
            self.config, self.config.policy, capture.url, robots_allows=self._robots_allows
        )
        return Request(
            capture.url,
            callback=self.parse_rendered,
            errback=self.render_failed,
            dont_filter=True,
            priority=5,
            meta={
                **render.playwright_meta(session),
                "mamoru_kind": "render",
                "mamoru_page": capture,
                "mamoru_found": found,
                "mamoru_depth": depth,
                "mamoru_session": session,
            },
        )

    async def parse_rendered(self, response: Response) -> AsyncIterator[Any]:
        capture: PageCapture = response.meta["mamoru_page"]
        found: Discovery = response.meta["mamoru_found"]
        session: render.RenderSession = response.meta["mamoru_session"]
        depth = int(response.meta.get("mamoru_depth", 0))
        page = render.page_of(response.meta)
        canvases: list[render.CanvasImage] = []
        dom: Discovery | None = None
        try:
            if page is not None:
                try:
                    await asyncio.wait_for(
                        self._drive(session, page), timeout=self.config.render_timeout_seconds
                    )
                except TimeoutError:
                    self._inc("errors/render_timeout")
                canvases = await session.canvases(page)
                capture.screenshot = await session.screenshot(page)
                dom = discover(await page.content(), page.url)
        except Exception as exc:  # the page crashed or closed: keep what the static pass had
            logger.info("rendering %s failed: %s", capture.url, exc)
            self._inc("errors/render_failed")
        finally:
            if page is not None:
                await page.close()
        capture.rendered = True
        self._inc("pages_rendered")
        self._inc("render_blocked", len(session.blocked))
        for item in self._data_images(capture, found):
            yield item
        for request_or_item in self._image_requests(capture, found.images):
            yield request_or_item
        for image in session.images.values():
            for item in self._browser_image(capture, image):
                yield item
        for canvas in canvases:
            yield ImageItem(
                page=capture,
                image_url=f"{capture.url}#canvas-{canvas.index}",
                source=f"canvas-{canvas.how}",
                data=canvas.data,
                media_type="image/png",
                ip_address=capture.ip_address,
                referer=capture.url,
            )
        if dom is not None:
            for item in self._data_images(capture, dom):
                yield item
            for request_or_item in self._image_requests(capture, dom.images):
                yield request_or_item
            for request in self._follow(dom.links, dom.archives, (), capture, depth):
                yield request

    async def _drive(self, session: render.RenderSession, page: Any) -> None:
        await session.settle(page)
        await session.scroll(page)
        await session.settle(page)

    def _browser_image(self, capture: PageCapture, image: render.BrowserImage) -> Iterator[Any]:
        key = (capture.url, image.url)
        if key in self._sighted:
            return
        self._sighted.add(key)
        state = self._images.get(image.url)
        if state is None:
            state = self._images[image.url] = _ImageState()
        if state.sha256 is None:
            state.sha256 = hashlib.sha256(image.data).digest()
            state.media_type = image.media_type
            state.headers = image.headers
            state.ip_address = image.ip_address
            state.fetched_at = utc_now()
            self._remember_bytes(image.url, image.data)
        self._inc("images_from_browser")
        item = self._image_item(capture, "browser", image.url, state)
        if item.data is None:
            item.data = image.data
        yield item
        waiting, state.waiting = state.waiting, []
        for other, source in waiting:
            yield self._image_item(other, source, image.url, state)

    async def render_failed(self, failure: Failure) -> AsyncIterator[Any]:
        request: Request = failure.request  # type: ignore[attr-defined]
        page = render.page_of(request.meta)
        if page is not None:
            await page.close()
        self._inc(f"errors/render_{error_kind(failure)}")
        capture: PageCapture = request.meta["mamoru_page"]
        found: Discovery = request.meta["mamoru_found"]
        # The static pass still stands: its images are processed as if never rendered.
        for item in self._data_images(capture, found):
            yield item
        for request_or_item in self._image_requests(capture, found.images):
            yield request_or_item

    # -- failures

    def failed(self, failure: Failure) -> None:
        kind = error_kind(failure)
        request: Request | None = getattr(failure, "request", None)
        if kind == "robots":
            self._inc("robots_forbidden")
            return
        self._inc(f"errors/{kind}")
        if request is not None:
            logger.info("%s: %s", kind, request.url)

    def image_failed(self, failure: Failure) -> None:
        request: Request | None = getattr(failure, "request", None)
        if request is not None:
            state = self._images.get(request.meta.get("mamoru_image", request.url))
            if state is not None:
                state.failed = True
                state.waiting.clear()
        self.failed(failure)

    def quiet_failure(self, failure: Failure) -> None:
        """robots.txt and sitemap probes: a missing one is normal, not an error."""
        self._inc("probes_failed")


def _content_type(response: Response) -> str:
    value = response.headers.get(b"Content-Type")
    return value.decode("latin-1") if value else ""


def _header(response: Response, name: bytes) -> str | None:
    value = response.headers.get(name)
    return value.decode("latin-1") if value else None


def _gunzip(data: bytes, max_size: int) -> bytes:
    # Read at most one byte past the limit: a gzip bomb is cut off, not inflated.
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
        out = stream.read(max_size + 1)
    if len(out) > max_size:
        raise ValueError("decompressed sitemap over the size limit")
    return out
