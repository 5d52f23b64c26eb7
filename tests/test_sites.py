"""The fixture sites themselves, checked with plain urllib on 127.0.0.1.

Browser behaviour (lazy loading, scrolling, canvases) is the crawler tests' business; here we
prove that the server answers what each site's ``Expected`` promises, and that delays, streams,
hotlink protection, validators and redirects behave as documented.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import io
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from email.message import Message
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit
from xml.etree import ElementTree

import pytest
from PIL import Image, ImageChops, ImageStat
from pypdf import PdfReader

from admin.demosite import images
from admin.demosite.expected import NOT_FOUND, SampleRef
from admin.demosite.handlers import Response, delayed
from admin.demosite.server import Site
from tests.sites.catalog import (
    BUILDERS,
    canvas_reader,
    hotlink_site,
    incremental_edit,
    incremental_site,
    infinite_scroll,
    open_directory,
    redirect_site,
    sitemap_only,
    slow_and_large_site,
    ssrf_site,
)
from tests.sites.hostile import METADATA_REDIRECT, MIB

Fetched = tuple[int, Message, bytes]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


# No proxies: a proxy from the environment must not see (or break) loopback requests.
NO_REDIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
FOLLOW = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    method: str = "GET",
    follow: bool = False,
) -> Fetched:
    """Status, headers and body of one request; redirects are answers unless ``follow``."""
    # The SSRF site names private addresses: this suite itself only ever talks to loopback.
    assert urlsplit(url).hostname == "127.0.0.1", url
    request = urllib.request.Request(url, headers=dict(headers or {}), method=method)
    opener = FOLLOW if follow else NO_REDIRECT
    try:
        with opener.open(request, timeout=20) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


class _Links(HTMLParser):
    def __init__(self, tags: frozenset[str] | None) -> None:
        super().__init__()
        self.tags = tags
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.tags is None or tag in self.tags:
            self.urls += [v for k, v in attrs if k in ("href", "src") and v]


def links(html: bytes, tags: frozenset[str] | None = None) -> list[str]:
    """``href`` and ``src`` values, of every element or of ``tags`` only."""
    parser = _Links(tags)
    parser.feed(html.decode())
    return parser.urls


def difference(data: bytes, ref: SampleRef) -> float:
    """Mean grey-level difference between an image and the sample page, both shrunk."""
    size = (40, 60)
    seen = Image.open(io.BytesIO(data)).convert("L").resize(size, Image.Resampling.BOX)
    original = images.half_page(ref.title, ref.page).convert("L").resize(size, Image.Resampling.BOX)
    return float(ImageStat.Stat(ImageChops.difference(seen, original)).mean[0])


# ------------------------------------------------------------------------ the server itself


def test_routes_log_and_lifecycle() -> None:
    site = Site("unit")
    site.add("/hello", "hi", "text/plain")
    site.route("/echo*", lambda r: Response(200, r.target.encode(), "text/plain"))
    assert not site.is_running()
    with site:
        assert site.is_running()
        assert fetch(site.url("/hello"))[::2] == (200, b"hi")
        assert fetch(site.url("/echo/a b?x=1"))[2] == b"/echo/a b?x=1"
        status, _, body = fetch(site.url("/nowhere"))
        assert status == 404 and b"Not Found" in body
        fetch(site.url("/hello"), {"Referer": site.url("/"), "User-Agent": "fixture-test/1"})
    assert not site.is_running()
    with pytest.raises(urllib.error.URLError):
        FOLLOW.open(site.url("/hello"), timeout=2).close()

    first, *_, last = site.requests
    assert (first.method, first.path, first.query) == ("GET", "/hello", "")
    assert last.headers["referer"] == site.url("/")  # case-insensitive lookup
    assert last.headers.get_all("USER-AGENT") == ["fixture-test/1"]
    assert site.requests.paths() == ["/hello", "/echo/a b", "/nowhere", "/hello"]
    assert site.requests.requested(site.url("/echo/a%20b"))
    assert not site.requests.requested("/never")
    assert site.errors == []


def test_keep_alive_and_head() -> None:
    site = Site("keep-alive")
    site.add("/a", "alpha", "text/plain")
    site.add("/b", "bravo", "text/plain")
    with site:
        conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=5)
        try:
            for path, body in (("/a", b"alpha"), ("/b", b"bravo")):
                conn.request("GET", path)
                response = conn.getresponse()
                assert response.read() == body
            conn.request("HEAD", "/a")
            response = conn.getresponse()
            assert response.getheader("Content-Length") == "5"
            assert response.read() == b""
        finally:
            conn.close()


def test_unsized_stream_to_an_http10_client_ends_with_the_connection() -> None:
    site = Site("http10")
    site.add_stream("/s", 1000, "text/plain", declare_length=False)
    with site, socket.create_connection(("127.0.0.1", site.port), timeout=5) as conn:
        conn.sendall(b"GET /s HTTP/1.0\r\n\r\n")
        received = b""
        while data := conn.recv(65536):
            received += data
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower() and len(body) == 1000


def test_handler_failure_is_a_500_and_recorded() -> None:
    site = Site("broken")

    def boom(request: object) -> Response:
        raise RuntimeError("fixture bug")

    site.route("/boom", boom)
    with site:
        assert fetch(site.url("/boom"))[0] == 500
    assert "fixture bug" in site.errors[0]


# ------------------------------------------------------------ every site keeps its promises


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_site_serves_what_it_expects(name: str) -> None:
    site, expected = BUILDERS[name]()
    with site:
        on_site = [expected.start_url, *expected.pages, *expected.images, *expected.copies]
        assert all(u.startswith(site.base_url) or u.startswith("data:") for u in on_site)
        for url in {expected.start_url, *expected.pages}:
            status, headers, _ = fetch(url)
            assert status == 200, url
            assert headers.get_content_type() == "text/html", url
        # Every copy must be a picture (archive members are checked in their own test).
        pictures = {u for u in [*expected.images, *expected.copies] if "#" not in u}
        for url in pictures - expected.data_uris:
            status, headers, body = fetch(url, {"Referer": expected.start_url})
            assert status == 200, url
            assert headers.get_content_maintype() == "image", url
            Image.open(io.BytesIO(body)).verify()
        for uri in expected.data_uris:
            assert uri.startswith("data:image/png;base64,")
            assert uri in fetch(expected.start_url)[2].decode()
        # Each copy shows the sample page it claims to (the matcher will be held to this).
        for url, ref in expected.copies.items():
            if "#" in url:
                continue
            if url.startswith("data:"):
                data = base64.b64decode(url.split(",", 1)[1])
            else:
                data = fetch(url, {"Referer": expected.start_url})[2]
            assert difference(data, ref) < 10, url
        for url, kind in expected.errors.items():
            if kind == NOT_FOUND:
                assert fetch(url)[0] == 404, url
        for url in expected.archives:
            assert fetch(url)[0] == 200
    assert site.errors == []


def test_static_gallery_names_every_image_in_its_markup() -> None:
    site, expected = BUILDERS["static-gallery"]()
    with site:
        pages = {u: fetch(u)[2].decode() for u in sorted(expected.pages)}
        css = fetch(site.url("/css/site.css"))[2].decode()
    text = "".join(pages.values()) + css
    for url in expected.images:
        # Each appears by name (absolute, relative or via <base>), never only by chance.
        assert urlsplit(url).path.rsplit("/", 1)[1] in text, url
    # Page 3 is reachable only through page 2's <link rel=next>.
    assert '<link rel="next" href="/page/3/">' in pages[site.url("/page/2/")]
    anchors = [links(html.encode(), frozenset({"a"})) for html in pages.values()]
    assert all("/page/3/" not in found for found in anchors)


# ---------------------------------------------------------------------- delays and streams


def test_slow_page_does_not_block_others() -> None:
    default, expected = slow_and_large_site()
    default.stop()
    assert expected.slow[default.url("/slow.html")] == 5.0

    delay = 0.6
    site, expected = slow_and_large_site(delay=delay)
    result: list[tuple[int, float]] = []

    def slow() -> None:
        started = time.monotonic()
        status = fetch(site.url("/slow.html"))[0]
        result.append((status, time.monotonic() - started))

    with site:
        thread = threading.Thread(target=slow)
        thread.start()
        assert site.requests.wait_for("/slow.html", timeout=2) is not None
        started = time.monotonic()
        assert fetch(site.url("/fast.html"))[0] == 200
        assert fetch(site.url("/img/fast.jpg"))[0] == 200
        assert not result, "the fast page had to wait for the slow one"
        assert time.monotonic() - started < delay
        thread.join(timeout=5)
    assert result and result[0][0] == 200 and result[0][1] >= delay


def test_stop_wakes_waiting_handlers() -> None:
    site = Site("stopping")
    site.route("/forever", delayed(60, lambda r: Response()))
    statuses: list[int] = []
    with site:
        thread = threading.Thread(target=lambda: statuses.append(fetch(site.url("/forever"))[0]))
        thread.start()
        assert site.requests.wait_for("/forever", timeout=2) is not None
        started = time.monotonic()
    thread.join(timeout=5)
    assert time.monotonic() - started < 2
    assert statuses == [503]


def test_huge_responses_stream() -> None:
    site, expected = slow_and_large_site()
    with site:
        assert expected.large[site.url("/huge.html")] == 30 * MIB
        # Declared length, abandoned after 1 MiB, as a size-limited crawler would.
        with NO_REDIRECT.open(site.url("/huge.html"), timeout=10) as response:
            assert response.headers["Content-Length"] == str(30 * MIB)
            assert response.read(MIB).startswith(b"<!DOCTYPE html>")
        # No length at all: only counting tells the size.
        total = 0
        with NO_REDIRECT.open(site.url("/huge-chunked.html"), timeout=10) as response:
            assert response.headers["Transfer-Encoding"] == "chunked"
            assert "Content-Length" not in response.headers
            while chunk := response.read(MIB):
                total += len(chunk)
        assert total == 30 * MIB
        status, headers, body = fetch(site.url("/img/huge.jpg"), method="HEAD")
        assert (status, headers["Content-Length"], body) == (200, str(50 * MIB), b"")
        with NO_REDIRECT.open(site.url("/img/huge.jpg"), timeout=10) as response:
            assert response.read(4)[:2] == b"\xff\xd8"
        # The server is still fine after clients hung up mid-body.
        assert fetch(site.url("/fast.html"))[0] == 200
    assert site.errors == []


# ------------------------------------------------------------------ Referer and validators


def test_hotlink_protection_needs_a_same_site_referer() -> None:
    site, expected = hotlink_site()
    with site:
        image = site.url("/protected/1.jpg")
        assert fetch(image)[0] == 403
        assert fetch(image, {"Referer": "http://evil.example/page.html"})[0] == 403
        status, headers, body = fetch(image, {"Referer": site.url("/gallery.html")})
        assert (status, headers["Content-Type"]) == (200, "image/jpeg")
        Image.open(io.BytesIO(body)).verify()
        # The swap image answers either way, but with different pictures.
        swapped = site.url("/swap/5.jpg")
        bare, proper = fetch(swapped)[2], fetch(swapped, {"Referer": site.url("/")})[2]
        assert bare != proper and Image.open(io.BytesIO(bare)).format == "PNG"
    assert image in expected.hotlinked
    referers = [r.headers.get("Referer") for r in site.requests.for_path("/protected/1.jpg")]
    assert referers == [None, "http://evil.example/page.html", site.url("/gallery.html")]


def test_conditional_get_and_edits() -> None:
    site, expected = incremental_site()
    with site:
        _, headers, _ = fetch(site.url("/both.html"))
        etag, modified = headers["ETag"], headers["Last-Modified"]
        assert etag and modified
        assert fetch(site.url("/both.html"), {"If-None-Match": etag})[::2] == (304, b"")
        assert fetch(site.url("/both.html"), {"If-None-Match": f"W/{etag}"})[0] == 304
        assert fetch(site.url("/both.html"), {"If-Modified-Since": modified})[0] == 304
        # If-None-Match wins over If-Modified-Since when both are sent.
        both = {"If-None-Match": '"other"', "If-Modified-Since": modified}
        assert fetch(site.url("/both.html"), both)[0] == 200

        assert "Last-Modified" not in fetch(site.url("/etag.html"))[1]
        assert "ETag" not in fetch(site.url("/modified.html"))[1]
        plain = fetch(site.url("/plain.html"))[1]
        assert "ETag" not in plain and "Last-Modified" not in plain

        incremental_edit(site, "/both.html")
        status, headers, body = fetch(site.url("/both.html"), {"If-None-Match": etag})
        assert status == 200 and b"Revision 1" in body and headers["ETag"] != etag
        assert fetch(site.url("/both.html"), {"If-Modified-Since": modified})[0] == 200
        assert fetch(site.url("/both.html"), {"If-None-Match": headers["ETag"]})[0] == 304
    assert expected.validators[site.url("/plain.html")] == "none"


# ------------------------------------------------------------------------------ redirects


def test_redirect_chain_loop_and_limits() -> None:
    site, expected = redirect_site()
    with site:
        with FOLLOW.open(site.url("/r/1"), timeout=5) as response:
            assert response.url == expected.redirects[site.url("/r/1")]
        assert site.requests.paths() == ["/r/1", "/r/2", "/r/3", "/final.html"]
        assert [fetch(site.url(f"/r/{n}"))[0] for n in (1, 2, 3)] == [301, 302, 307]
        for path in ("/loop/a", "/loop/self", "/hop/25"):
            with pytest.raises(urllib.error.HTTPError) as caught:
                FOLLOW.open(site.url(path), timeout=5).close()
            caught.value.close()
            assert "redirect" in str(caught.value.msg) or "infinite loop" in str(caught.value.msg)
        with FOLLOW.open(site.url("/hop/3"), timeout=5) as response:
            assert response.url == site.url("/hop/0")
        assert fetch(site.url("/loop/a"))[1]["Location"] == "/loop/b"
        assert fetch(site.url("/missing.html"))[0] == 404
        meta = fetch(site.url("/old-page.html"))[2]
        assert b'http-equiv="refresh" content="0; url=/new-page.html"' in meta


def test_ssrf_bait_is_only_html() -> None:
    site, expected = ssrf_site()
    with site:
        html = fetch(expected.start_url)[2]
        status, headers, _ = fetch(site.url("/ssrf/redirect.png"))  # never followed
    assert (status, headers["Location"]) == (302, METADATA_REDIRECT)
    named = set(links(html)) | set(re.findall(r"url\(([^)]+)\)", html.decode()))
    assert expected.refused - {METADATA_REDIRECT} <= named
    hosts = {urlsplit(u).hostname for u in expected.refused}
    assert {"10.0.0.1", "169.254.169.254", "::1", "localhost", "0.0.0.0"} <= hosts
    for url in expected.not_fetched:
        assert not site.requests.requested(url)


# ------------------------------------------------------------ archives, sitemaps, scripts


def test_open_directory_archives() -> None:
    site, expected = open_directory()
    with site:
        listing = fetch(site.url("/files/"))[2]
        hrefs = [urljoin(site.url("/files/"), h) for h in links(listing)]
        assert set(expected.archives) <= set(hrefs)  # "%20" in the link names the archive
        cbz_url = next(u for u in expected.archives if u.endswith(".cbz"))
        pdf_url = next(u for u in expected.archives if u.endswith(".pdf"))
        cbz, pdf = fetch(cbz_url)[2], fetch(pdf_url)[2]
        scans = [urljoin(site.url("/files/scans/"), h) for h in links(fetch(hrefs[-1])[2])]
    with zipfile.ZipFile(io.BytesIO(cbz)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        pngs = [n for n in names if n.endswith(".png")]
        assert len(pngs) == expected.archives[cbz_url] == 3 and "ComicInfo.xml" in names
        for name in pngs:
            data = archive.read(name)
            assert Image.open(io.BytesIO(data)).format == "PNG"
            assert difference(data, expected.copies[f"{cbz_url}#{name}"]) < 10
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == expected.archives[pdf_url] == 2
    for number, page in enumerate(reader.pages, start=1):
        (picture,) = page.images
        assert difference(picture.data, expected.copies[f"{pdf_url}#page={number}"]) < 10
    assert expected.images <= {*hrefs, *scans}


def test_sitemap_chain_reaches_the_hidden_pages() -> None:
    site, expected = sitemap_only()
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    img = "{http://www.google.com/schemas/sitemap-image/1.1}loc"
    with site:
        robots = fetch(site.url("/robots.txt"))[2].decode()
        index_url = robots.split("Sitemap: ", 1)[1].strip()
        index = ElementTree.fromstring(fetch(index_url)[2])
        pages: set[str] = set()
        pictures: set[str] = set()
        for loc in index.iterfind("s:sitemap/s:loc", ns):
            data = fetch(loc.text or "")[2]
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            sitemap = ElementTree.fromstring(data)
            pages |= {e.text or "" for e in sitemap.iterfind("s:url/s:loc", ns)}
            pictures |= {e.text or "" for e in sitemap.iter(img)}
        home = fetch(expected.start_url)[2]
    assert pages == expected.pages
    assert pictures == expected.images
    assert not any("hidden" in u for u in links(home))


def test_infinite_scroll_feed_ends() -> None:
    site, expected = infinite_scroll()
    found: list[str] = []
    with site:
        batch: int | None = 1
        while batch is not None:
            data = json.loads(fetch(site.url(f"/api/feed?batch={batch}"))[2])
            found += [site.url(u) for u in data["images"]]
            batch = data["next"]
        assert fetch(site.url("/api/feed?batch=4"))[0] == 404
    assert set(found) == expected.browser_only and len(found) == 12


def test_canvas_tiles_reassemble_into_the_page() -> None:
    site, expected = canvas_reader()
    with site:
        html = fetch(expected.start_url)[2].decode()
        scrambled = fetch(site.url("/reader/p2.jpg"))[2]
    match = re.search(r"const PAGES = (.*?);\n", html)
    assert match is not None
    spec = json.loads(match.group(1))[1]
    # The reader's script, in Python: tile ``src`` of the download goes to position ``dst``.
    tiles = Image.open(io.BytesIO(scrambled)).convert("RGB")
    cols, rows = spec["grid"]
    tw, th = tiles.width // cols, tiles.height // rows
    shown = Image.new("RGB", tiles.size)
    for dst, src in enumerate(spec["order"]):
        box = ((src % cols) * tw, (src // cols) * th, (src % cols + 1) * tw, (src // cols + 1) * th)
        shown.paste(tiles.crop(box), ((dst % cols) * tw, (dst // cols) * th))
    ref = expected.canvases[expected.start_url][1]
    original = images.page(ref.title, ref.page).resize(tiles.size)
    assert max(ImageStat.Stat(ImageChops.difference(shown, original)).mean) < 4
    assert max(ImageStat.Stat(ImageChops.difference(tiles, original)).mean) > 20
