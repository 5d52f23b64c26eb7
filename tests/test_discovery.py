"""Static discovery on the fixture sites (served on 127.0.0.1, fetched with urllib) and on
hostile hand-written documents. Discovery does no I/O; URLs in the unit tests are only strings.
"""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from admin.demosite.expected import Expected
from admin.demosite.server import Site
from crawler.discovery import (
    DataImage,
    Discovery,
    FoundImage,
    Limits,
    discover,
    discover_css,
    discover_stylesheet,
    parse_data_image,
    parse_srcset,
    resolve_url,
)
from tests.sites.catalog import (
    BUILDERS,
    canvas_reader,
    json_gallery,
    lazy_gallery,
    open_directory,
    redirect_site,
    ssrf_site,
    static_gallery,
)
from tests.sites.hostile import METADATA_REDIRECT

PAGE = "http://example.test/dir/page.html"
# No proxies: a proxy from the environment must not see loopback requests.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- fetching fixture pages


@dataclass
class Fetched:
    url: str
    body: bytes
    content_type: str | None


def fetch(url: str) -> Fetched:
    # Fixture pages name private addresses: this suite only ever talks to loopback.
    assert urlsplit(url).hostname == "127.0.0.1", url
    with _OPENER.open(url, timeout=10) as response:
        return Fetched(response.url, response.read(), response.headers.get("Content-Type"))


def discover_page(url: str) -> Discovery:
    page = fetch(url)
    return discover(page.body, page.url, content_type=page.content_type)


@dataclass
class StaticCrawl:
    """Everything discovery finds on a site by following its links, as a static spider would."""

    pages: dict[str, Discovery] = field(default_factory=dict)
    css_images: list[FoundImage] = field(default_factory=list)

    @property
    def images(self) -> dict[str, FoundImage]:
        found: dict[str, FoundImage] = {}
        for image in [i for d in self.pages.values() for i in d.images] + self.css_images:
            found.setdefault(image.url, image)
        return found

    @property
    def data_images(self) -> list[DataImage]:
        return [x for d in self.pages.values() for x in d.data_images]

    @property
    def archives(self) -> set[str]:
        return {a for d in self.pages.values() for a in d.archives}


def crawl(site: Site, seeds: Iterator[str] | list[str], max_pages: int = 60) -> StaticCrawl:
    result = StaticCrawl()
    queue = list(seeds)
    seen_css: set[str] = set()
    while queue and len(result.pages) < max_pages:
        url = queue.pop(0)
        parts = urlsplit(url)
        if parts.hostname != "127.0.0.1" or parts.port != site.port or url in result.pages:
            continue
        try:
            page = fetch(url)
        except (urllib.error.URLError, TimeoutError):
            continue  # 404s, redirect loops: a crawler's business, not discovery's
        if not (page.content_type or "").startswith("text/html"):
            continue
        found = discover(page.body, page.url, content_type=page.content_type)
        result.pages[url] = found
        for css in found.stylesheets:
            if css not in seen_css:
                seen_css.add(css)
                result.css_images += discover_css(fetch(css).body, css)
        queue += found.links
    return result


@pytest.fixture(scope="module")
def gallery() -> Iterator[tuple[Site, Expected, StaticCrawl]]:
    site, expected = static_gallery()
    with site:
        yield site, expected, crawl(site, [expected.start_url])


# -- the fixture sites


def test_static_gallery_finds_every_static_image(
    gallery: tuple[Site, Expected, StaticCrawl],
) -> None:
    _, expected, found = gallery
    assert set(found.pages) == expected.pages
    assert expected.static_images <= set(found.images)
    decoded = {base64.b64decode(uri.split(",", 1)[1]) for uri in expected.data_uris}
    assert decoded <= {x.data for x in found.data_images}
    assert [x.mime_type for x in found.data_images] == ["image/png"]


def test_static_gallery_says_how_each_image_was_found(
    gallery: tuple[Site, Expected, StaticCrawl],
) -> None:
    site, _, found = gallery
    sources = {urlsplit(url).path: image.source for url, image in found.images.items()}
    assert sources == {
        "/img/plain.jpg": "img-src",
        "/img/fallback.jpg": "img-src",
        "/img/w320.jpg": "srcset",
        "/img/w640.jpg": "srcset",
        "/img/x1.jpg": "srcset",  # a candidate without descriptor
        "/img/x2.jpg": "srcset",
        "/img/pic-wide.webp": "picture-source",
        "/img/pic-wide-2x.webp": "picture-source",
        "/img/pic.webp": "picture-source",
        "/img/pic.jpg": "img-src",
        "/img/placeholder.gif": "img-src",
        "/img/lazy-src.jpg": "lazy-attr",
        "/img/lazy-lazy-src.jpg": "lazy-attr",
        "/img/lazy-original.jpg": "lazy-attr",
        "/img/lazy-srcset.jpg": "lazy-attr",
        "/img/og.jpg": "og-image",
        "/img/full.png": "link-href",
        "/img/bg-inline.jpg": "css-inline",
        "/img/bg-style.jpg": "css-style-block",
        "/img/bg-css.jpg": "css-stylesheet",  # url(../img/..) against /css/site.css
        "/img/p2-a.jpg": "img-src",
        "/page/2/p2-b.jpg": "img-src",
        "/assets/p3.jpg": "img-src",  # via <base href="/assets/">
    }
    alts = {urlsplit(url).path: image.alt for url, image in found.images.items()}
    assert alts["/img/w640.jpg"] == "widths"
    assert alts["/img/pic.webp"] == "picture"  # the <picture>'s <img> speaks for its sources
    assert alts["/img/lazy-original.jpg"] == "lazy 3"
    assert alts["/img/full.png"] == "Full size (PNG)"
    assert found.data_images[0].alt == "inline"
    assert found.data_images[0].found_in == "img-src"
    assert found.data_images[0].source == "data-uri"
    home = found.pages[site.url("/")]
    assert home.stylesheets == [site.url("/css/site.css")]
    assert home.data_uris == [found.data_images[0].data]


def test_static_gallery_pagination_and_base(gallery: tuple[Site, Expected, StaticCrawl]) -> None:
    site, _, found = gallery
    first, second, third = (found.pages[site.url(p)] for p in ("/", "/page/2/", "/page/3/"))
    assert first.next_page == site.url("/page/2/")  # <link rel=next> and <a rel=next> agree
    assert second.next_page == site.url("/page/3/")  # only <link rel=next> in the head
    assert site.url("/page/3/") in second.links
    assert third.base_url == site.url("/assets/")
    assert third.next_page is None
    assert first.img_count == 9 and first.script_count == 0
    assert first.lazy_markers  # data-src and class=lazyload
    # Images and stylesheets are not pages to follow.
    assert not [link for link in first.links if link.endswith((".jpg", ".png", ".css"))]


def test_lazy_gallery_markers_and_data_src() -> None:
    site, expected = lazy_gallery()
    with site:
        found = discover_page(expected.start_url)
    assert found.lazy_markers
    assert found.script_count == 1 and found.img_count == 8
    assert {i.url for i in found.images} == expected.images
    assert {i.source for i in found.images} == {"lazy-attr"}


def test_lazy_markers_from_script_alone() -> None:
    script = "<script>new IntersectionObserver(() => {});</script><img src=a.jpg>"
    assert discover(script, PAGE).lazy_markers
    assert discover('<script src="/js/lazysizes.min.js"></script>', PAGE).lazy_markers
    assert discover('<img src="a.jpg" loading="lazy">', PAGE).lazy_markers
    assert not discover('<img src="a.jpg"><script>console.log(1)</script>', PAGE).lazy_markers


def test_script_built_pages_name_no_image() -> None:
    for builder in (json_gallery, canvas_reader):
        site, expected = builder()
        with site:
            found = discover_page(expected.start_url)
        assert found.images == [] and found.img_count == 0
        assert found.script_count == 1
        assert not ({i.url for i in found.images} & expected.browser_only)
    assert found.canvas_count == 2


def test_open_directory_listing() -> None:
    site, expected = open_directory()
    with site:
        listing = discover_page(expected.start_url)
        scans = discover_page(site.url("/files/scans/"))
        home = discover_page(site.url("/"))
    assert listing.directory_listing and scans.directory_listing
    assert not home.directory_listing
    assert set(listing.archives) == set(expected.archives)
    assert site.url("/files/Steel%20Garden%20v03.cbz") in listing.archives
    listed = {i.url for i in listing.images + scans.images if i.source == "directory-listing"}
    assert listed == expected.images
    assert site.url("/files/scans/") in listing.links
    assert site.url("/files/readme.txt") in listing.links
    # Sort links re-list the same directory; archives and images are not pages.
    assert not [link for link in listing.links if "C=" in link or link in listing.archives]
    assert home.links == [site.url("/files/")]


def test_redirect_site_meta_refresh() -> None:
    site, expected = redirect_site()
    old = site.url("/old-page.html")
    with site:
        refresh = discover_page(old)
        home = discover_page(expected.start_url)
    assert refresh.refresh_url == expected.redirects[old]
    assert refresh.links == [expected.redirects[old]]
    assert {site.url(p) for p in ("/img/home.jpg", "/img/moved.jpg", "/img/missing.jpg")} == {
        i.url for i in home.images
    }
    assert old in home.links and site.url("/r/1") in home.links


def test_ssrf_page_reports_the_bait_for_netguard_to_refuse() -> None:
    # Discovery does not judge addresses; it must report them all so the guard sees them.
    site, expected = ssrf_site()
    with site:
        found = discover_page(expected.start_url)
    named = {i.url for i in found.images} | set(found.links)
    assert expected.refused - {METADATA_REDIRECT} <= named
    assert site.url("/ssrf/redirect.png") in named


STATIC_SITES = sorted(set(BUILDERS) - {"slow-and-large"})  # its pages are 30 MB and a minute
# Images no HTML names: reached by following an HTTP redirect, or listed only in a sitemap.
NOT_IN_HTML = {"redirects": {"/img/real.jpg"}, "sitemap-only": {"/hidden/img/7-cover.jpg"}}


@pytest.mark.parametrize("name", STATIC_SITES)
def test_every_site_static_images_are_found(name: str) -> None:
    site, expected = BUILDERS[name]()
    with site:
        found = crawl(site, sorted(expected.pages | {expected.start_url}))
        assert site.errors == []
    images = set(found.images)
    wanted = {
        u for u in expected.static_images if urlsplit(u).path not in NOT_IN_HTML.get(name, ())
    }
    assert wanted <= images, sorted(wanted - images)
    for source, target in expected.redirects.items():
        if target in expected.static_images - wanted:
            assert source in images  # the URL the page names, which redirects to the image
    assert set(expected.archives) <= found.archives


# -- URL resolution


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("img/a.jpg", "http://example.test/dir/img/a.jpg"),
        ("/img/a.jpg", "http://example.test/img/a.jpg"),
        ("../../../a.jpg", "http://example.test/a.jpg"),
        ("//cdn.example.test/a.jpg", "http://cdn.example.test/a.jpg"),
        ("  \n /img/a.jpg \t ", "http://example.test/img/a.jpg"),
        ("/img/\na\t.jpg", "http://example.test/img/a.jpg"),
        ("\x00\x01/img/a.jpg\x1f", "http://example.test/img/a.jpg"),
        ("/img/a b.jpg", "http://example.test/img/a%20b.jpg"),
        ("/img/a\x00b.jpg", "http://example.test/img/a%00b.jpg"),
        ("..\\img\\a.jpg", "http://example.test/img/a.jpg"),
        ("http:\\\\cdn.example.test\\a.jpg", "http://cdn.example.test/a.jpg"),
        ("/a.jpg?q=a\\b", "http://example.test/a.jpg?q=a%5Cb"),
        ("HTTP://CDN.Example.TEST:80/A.jpg#frag", "http://cdn.example.test/A.jpg"),
        ("https://cdn.example.test:443/a.jpg", "https://cdn.example.test/a.jpg"),
        ("https://cdn.example.test:8443/a.jpg", "https://cdn.example.test:8443/a.jpg"),
        ("http://b\u00fccher.example/\u00e9.jpg", "http://xn--bcher-kva.example/%C3%A9.jpg"),
        ("http://[::1]:8080/a.jpg", "http://[::1]:8080/a.jpg"),
        ("?page=2", "http://example.test/dir/page.html?page=2"),
        ("javascript:alert(1)", None),
        (" JavaScript:alert(1)", None),
        ("java\nscript:alert(1)", None),
        ("mailto:a@example.test", None),
        ("data:image/png;base64,AAAA", None),
        ("ftp://example.test/a.jpg", None),
        ("http://exa\x00mple.test/a.jpg", None),
        ("http://exa mple.test/a.jpg", None),
        ("http://[::1/a.jpg", None),
        ("http://example.test:99999/a.jpg", None),
        ("", None),
        ("   ", None),
    ],
)
def test_resolve_url(raw: str, expected: str | None) -> None:
    assert resolve_url(raw, PAGE) == expected


def test_query_uses_the_document_encoding() -> None:
    html = '<meta charset="shift_jis"><a href="/search?q=\u6f2b\u753b">x</a>'.encode("shift_jis")
    found = discover(html, PAGE)
    assert found.encoding in ("shift_jis", "cp932")
    assert found.links == ["http://example.test/search?q=%96%9F%89%E6"]


# -- srcset, data: URIs, meta refresh


@pytest.mark.parametrize(
    ("srcset", "urls"),
    [
        ("a.jpg 1x, b.jpg 2x", ["a.jpg", "b.jpg"]),
        ("a.jpg 320w,b.jpg 640w", ["a.jpg", "b.jpg"]),
        ("a.jpg, b.jpg 2x", ["a.jpg", "b.jpg"]),
        ("a.jpg,, ,b.jpg", ["a.jpg", "b.jpg"]),
        ("  a.jpg  ", ["a.jpg"]),
        ("a.jpg 1x (future, syntax), b.jpg", ["a.jpg", "b.jpg"]),
        ("data:image/png;base64,AAAA 1x, b.jpg 2x", ["data:image/png;base64,AAAA", "b.jpg"]),
        ("a.jpg,b.jpg", ["a.jpg,b.jpg"]),  # one URL with a comma, as HTML reads it
        ("", []),
        (",,,", []),
    ],
)
def test_parse_srcset(srcset: str, urls: list[str]) -> None:
    assert parse_srcset(srcset) == urls


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
PNG64 = base64.b64encode(PNG).decode()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (f"data:image/png;base64,{PNG64}", ("image/png", PNG)),
        (f"DATA:Image/PNG;BASE64,{PNG64}", ("image/png", PNG)),
        (f"data:image/png;base64,{PNG64[:20]}\n {PNG64[20:]}", ("image/png", PNG)),
        (f"data:image/png;base64,{PNG64.rstrip('=')}", ("image/png", PNG)),  # no padding
        ("data:image/svg+xml,%3Csvg%2F%3E", ("image/svg+xml", b"<svg/>")),
        ("data:image/png;base64,!!!notbase64", None),
        ("data:image/png;base64,A", None),  # impossible length
        ("data:text/html;base64,PGI+", None),
        ("data:,plain", None),
        ("data:image/png;base64,", None),
        ("data:image/png;base64", None),
        ("http://example.test/a.png", None),
    ],
)
def test_parse_data_image(uri: str, expected: tuple[str, bytes] | None) -> None:
    assert parse_data_image(uri, 1024) == expected


def test_data_uris_are_bounded() -> None:
    big = base64.b64encode(bytes(5000)).decode()
    assert parse_data_image(f"data:image/png;base64,{big}", 4096) is None
    html = "".join(
        f'<img src="data:image/gif;base64,{base64.b64encode(bytes([i]) * 8).decode()}">'
        for i in range(30)
    )
    found = discover(html, PAGE, limits=Limits(max_data_uris=10))
    assert len(found.data_uris) == 10 and found.truncated


def test_meta_refresh_variants() -> None:
    for content, target in [
        ("0; url=/next.html", "http://example.test/next.html"),
        ('5;URL="next.html"', "http://example.test/dir/next.html"),
        ('0, url = "next.html" ', "http://example.test/dir/next.html"),
        ("0;next.html", "http://example.test/dir/next.html"),
        ("3", None),
        ("url=/next.html", None),
        ("0; url=javascript:alert(1)", None),
    ]:
        html = f"<meta http-equiv=Refresh content='{content}'>"
        assert discover(html, PAGE).refresh_url == target, content


# -- element coverage


def _found(html: str, **kwargs: object) -> dict[str, str]:
    return {i.url: i.source for i in discover(html, PAGE, **kwargs).images}  # type: ignore[arg-type]


def test_every_image_element() -> None:
    html = """
    <svg><image href="svg-href.png"/><image xlink:href="svg-xlink.png"/></svg>
    <input type="image" src="button.png"><input type="text" src="not.png">
    <video poster="poster.jpg"><source src="movie.mp4"></video>
    <meta name="twitter:image" content="/tw.jpg">
    <meta property="og:image:secure_url" content="/og.jpg">
    <link rel="image_src" href="/thumb.jpg">
    <link rel="preload" as="image" href="/pre.jpg" imagesrcset="/pre-2x.jpg 2x">
    <link rel="icon" href="/favicon.png">
    <div data-bg="/bg-lazy.jpg"></div><div data-background="url('/bg-lazy-css.jpg')"></div>
    <div data-src="/not-an-image.html"></div><div data-src="/div-lazy.jpg"></div>
    <iframe data-src="/frame.jpg"></iframe>
    <table background="/table-bg.jpg"><tr><td>x</td></tr></table>
    <noscript><img src="/noscript.jpg"></noscript>
    <a href="/big.JPEG?size=full">big</a>
    """
    found = _found(html)
    base = "http://example.test"
    assert found == {
        f"{base}/dir/svg-href.png": "img-src",
        f"{base}/dir/svg-xlink.png": "img-src",
        f"{base}/dir/button.png": "img-src",
        f"{base}/dir/poster.jpg": "img-src",
        f"{base}/tw.jpg": "og-image",
        f"{base}/og.jpg": "og-image",
        f"{base}/thumb.jpg": "link-href",
        f"{base}/pre.jpg": "link-href",
        f"{base}/pre-2x.jpg": "link-href",
        f"{base}/bg-lazy.jpg": "lazy-attr",
        f"{base}/bg-lazy-css.jpg": "lazy-attr",
        f"{base}/div-lazy.jpg": "lazy-attr",
        f"{base}/table-bg.jpg": "css-inline",
        f"{base}/noscript.jpg": "img-src",
        f"{base}/big.JPEG?size=full": "link-href",
    }


def test_links_archives_and_frames() -> None:
    html = """
    <a href="#top">top</a><a href="">empty</a><a href="javascript:void(0)">js</a>
    <a href="mailto:x@example.test">mail</a><a href="tel:123">tel</a>
    <a href="data:text/html,hi">data</a><a href="chapter-2.html#p3">next chapter</a>
    <a href="/vol1.cbz">cbz</a><a href="/vol2.PDF">pdf</a><a href="/vol3.cbr">cbr</a>
    <area href="/area.html"><iframe src="/reader.html"></iframe>
    <a href="chapter-2.html">same again</a>
    """
    found = discover(html, PAGE)
    assert found.links == [
        "http://example.test/dir/chapter-2.html",
        "http://example.test/area.html",
        "http://example.test/reader.html",
    ]
    assert found.archives == [
        "http://example.test/vol1.cbz",
        "http://example.test/vol2.PDF",
        "http://example.test/vol3.cbr",
    ]
    assert found.images == []


def test_base_href_rules() -> None:
    two_bases = '<base href="/first/"><base href="/second/"><img src="a.jpg">'
    assert _found(two_bases) == {"http://example.test/first/a.jpg": "img-src"}
    relative = '<base href="sub/"><img src="a.jpg">'
    assert _found(relative) == {"http://example.test/dir/sub/a.jpg": "img-src"}
    hostile = '<base href="javascript:alert(1)"><img src="a.jpg">'
    assert _found(hostile) == {"http://example.test/dir/a.jpg": "img-src"}
    response_base = discover('<img src="a.jpg">', PAGE, base_url="http://example.test/moved/")
    assert response_base.image_urls == ["http://example.test/moved/a.jpg"]


def test_dedupe_keeps_first_source_and_order() -> None:
    html = """<meta property="og:image" content="/c.jpg">
    <img src="/a.jpg" srcset="/a.jpg 1x, /b.jpg 2x" data-src="/c.jpg">
    <a href="/b.jpg">b</a><div style="background: url(/a.jpg)"></div>"""
    found = discover(html, PAGE)
    assert [(urlsplit(i.url).path, i.source) for i in found.images] == [
        ("/c.jpg", "og-image"),
        ("/a.jpg", "img-src"),
        ("/b.jpg", "srcset"),
    ]


# -- CSS


def test_css_rules() -> None:
    css = b"""
    @charset "utf-8";
    @import url("more.css") screen;
    @import 'print.css';
    @font-face { font-family: X; src: url(fonts/x.woff2) format("woff2"); }
    /* url(commented.png) */
    .a { background: #000 url(a.png) no-repeat; }
    .b { background-image: url( "b.png" ), linear-gradient(red, blue); }
    @media (min-width: 600px) { .c { background-image: url(c.png); } }
    @supports (display: grid) { @media screen { .d { list-style: url(/d.png); } } }
    .e { background-image: image-set("e1.png" 1x, url(e2.png) 2x); }
    .f { --hero: url(f.png); content: url(f-content.png); cursor: url(cursor.cur), auto; }
    .g { background-image: \\75 rl(g.png); }
    .h { .nested & { background: url(h.png); } }
    .i { background: url(data:image/png;base64,iVBORw0KGgo=); }
    .j { background: url(unterminated.png
    """
    result = discover_stylesheet(css, "http://example.test/css/site.css")
    assert [(urlsplit(i.url).path, i.source) for i in result.images] == [
        ("/css/a.png", "css-stylesheet"),
        ("/css/b.png", "css-stylesheet"),
        ("/css/c.png", "css-stylesheet"),
        ("/d.png", "css-stylesheet"),
        ("/css/e1.png", "css-stylesheet"),
        ("/css/e2.png", "css-stylesheet"),
        ("/css/f.png", "css-stylesheet"),
        ("/css/f-content.png", "css-stylesheet"),
        ("/css/g.png", "css-stylesheet"),
        ("/css/h.png", "css-stylesheet"),
        ("/css/unterminated.png", "css-stylesheet"),
    ]
    assert result.imports == [
        "http://example.test/css/more.css",
        "http://example.test/css/print.css",
    ]
    assert [d.data for d in result.data_images] == [b"\x89PNG\r\n\x1a\n"]
    assert [i.url for i in discover_css(css, "http://example.test/css/site.css")] == [
        i.url for i in result.images
    ]


def test_css_in_html_resolves_against_the_document() -> None:
    html = """<style>@import "theme.css"; .x { background: url(x.png) }
    @font-face { src: url(font.woff) }</style>
    <p style="background-image: url('/inline.png'); color: red">x</p>
    <p style="BACKGROUND:URL(/upper.png)">y</p><p style="color: red">z</p>"""
    found = discover(html, PAGE)
    assert [(i.url, i.source) for i in found.images] == [
        ("http://example.test/dir/x.png", "css-style-block"),
        ("http://example.test/inline.png", "css-inline"),
        ("http://example.test/upper.png", "css-inline"),
    ]
    assert found.stylesheets == ["http://example.test/dir/theme.css"]


def test_css_encoding_and_bounds() -> None:
    css = '.a { background: url("\u753b\u50cf.png") }'.encode("shift_jis")
    images = discover_css(b'@charset "shift_jis";' + css, "http://example.test/")
    assert [i.url for i in images] == ["http://example.test/%E7%94%BB%E5%83%8F.png"]
    deep = "@media screen {" * 200 + ".a { background: url(deep.png) }" + "}" * 200
    result = discover_stylesheet(deep, "http://example.test/")
    assert result.images == [] and result.truncated
    many = "".join(f".a{i} {{ background: url(i{i}.png) }}\n" for i in range(500))
    bounded = discover_stylesheet(many, "http://example.test/", limits=Limits(max_images=50))
    assert len(bounded.images) == 50 and bounded.truncated


# -- hostile documents


def _timed(call: Callable[[], Discovery]) -> tuple[Discovery, float]:
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"   \n\t ",
        b"\x00\x00\x00",
        bytes(range(256)) * 64,
        b"<<<>>><img src=<img src=a.jpg",
        b"<html><body><img src='a.jpg\x00b.jpg' alt='\x00\x07bell'></body>",
        b"\xff\xfe<\x00i\x00m\x00g\x00 \x00s\x00r\x00c\x00=\x00a\x00.\x00j\x00p\x00g\x00>\x00",
        b"<img src=\xe9\xe8.jpg>",  # latin-1 bytes in a document that says nothing
        b"<!-- <img src=commented.jpg> --><![CDATA[ <img src=cdata.jpg> ]]>",
        b"<?xml version='1.0'?><!DOCTYPE x SYSTEM 'http://example.test/x.dtd'><img src=a.jpg>",
        b"<img src=a.jpg" + b" x" * 100_000,
        b"<img alt=" + b"A" * 2_000_000 + b">",
        b"<table><tr><td><img src=a.jpg></table></td></tr><p><p><p></div></span>",
    ],
)
def test_hostile_documents_never_crash(document: bytes) -> None:
    found = discover(document, PAGE)
    assert isinstance(found, Discovery)
    for url in found.image_urls + found.links:
        assert url.startswith("http://example.test/")
        assert not any(c in url for c in "\x00\t\n\r ")


def test_lone_surrogates_and_str_nul() -> None:
    found = discover('<img src="a\ud800.jpg" alt="x\udfff"><img src="b\x00.jpg">', PAGE)
    assert len(found.images) == 2


def test_utf16_and_declared_encodings() -> None:
    html = '<meta charset="utf-8"><img src="/\u6f2b\u753b.jpg" alt="\u6f2b\u753b">'
    for data, content_type in [
        (b"\xff\xfe" + html.encode("utf-16-le"), None),
        (html.replace("utf-8", "euc-jp").encode("euc-jp"), None),
        (html.encode("utf-8"), "text/html; charset=UTF-8"),
    ]:
        found = discover(data, PAGE, content_type=content_type)
        assert found.images[0].url == "http://example.test/%E6%BC%AB%E7%94%BB.jpg"
        assert found.images[0].alt == "\u6f2b\u753b"


def test_huge_attribute_values_are_dropped_not_followed() -> None:
    huge = "/" + "a" * 100_000 + ".jpg"
    html = f'<img src="{huge}"><img srcset="{"x.jpg 1x, " * 50_000}"><img src="/ok.jpg">'
    found, seconds = _timed(lambda: discover(html, PAGE))
    assert found.truncated
    assert [urlsplit(u).path for u in found.image_urls] == ["/dir/x.jpg", "/ok.jpg"]
    assert seconds < 2


def test_thousands_of_elements_are_bounded() -> None:
    count = 20_000
    html = "".join(
        f'<div style="background: url(/bg/{i}.jpg)">'
        f'<img src="/img/{i}.jpg" data-src="/lazy/{i}.jpg"><a href="/page/{i}.html">{i}</a></div>'
        for i in range(count)
    )
    limits = Limits(max_images=500, max_links=300)
    found, seconds = _timed(lambda: discover(html, PAGE, limits=limits))
    assert len(found.images) == 500 and len(found.links) == 300
    assert found.truncated and found.img_count == count
    assert seconds < 5
    capped = discover(html, PAGE, limits=Limits(max_elements=1_000))
    assert capped.truncated and capped.img_count < 1_000


def test_deep_nesting_and_long_documents() -> None:
    deep = "<div>" * 20_000 + '<img src="/deep.jpg">' + "</div>" * 20_000
    found, seconds = _timed(lambda: discover(deep, PAGE))
    assert seconds < 5  # libxml2 may give up on the depth: fewer results, never an error
    assert found.image_urls in ([], ["http://example.test/deep.jpg"])
    long = "<p>filler</p>" * 100_000 + '<img src="/late.jpg">'
    cut = discover(long, PAGE, limits=Limits(max_document_chars=100_000))
    assert cut.truncated and cut.images == []
