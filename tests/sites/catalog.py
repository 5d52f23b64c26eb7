"""Fixture sites, one per discovery path of the crawler issue; each builder returns
``(site, expected)``. The site is bound but not started: use it as ``with site: ...``.

This module holds the discovery sites (static markup, scripts, archives, sitemaps); the sites
that test the crawler's limits and safety live in ``hostile`` and the demo site in ``pirate``.
All are re-exported here, and ``BUILDERS`` names every one of them.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable

from admin.demosite import images
from admin.demosite.builder import LANTERN, MOONLIT, STEEL, SiteBuilder
from admin.demosite.expected import Expected, SampleRef
from admin.demosite.handlers import Request, Response
from admin.demosite.markup import apache_index, escape, js_const, sitemap_index, urlset
from admin.demosite.pirate import pirate_site
from admin.demosite.server import Site
from tests.sites.hostile import (
    hotlink_site,
    incremental_edit,
    incremental_site,
    redirect_site,
    robots_site,
    slow_and_large_site,
    ssrf_site,
)

__all__ = [
    "BUILDERS",
    "canvas_reader",
    "hotlink_site",
    "incremental_edit",
    "incremental_site",
    "infinite_scroll",
    "json_gallery",
    "lazy_gallery",
    "open_directory",
    "pirate_site",
    "redirect_site",
    "robots_site",
    "sitemap_only",
    "slow_and_large_site",
    "ssrf_site",
    "static_gallery",
]


def static_gallery(port: int = 0) -> tuple[Site, Expected]:
    """Every static way to name an image, over three pages chained by ``rel=next``.

    Page 1 (``/``): ``<img src>``; ``srcset`` with width and density descriptors (every
    candidate counts, including one with no descriptor); ``<picture><source type=image/webp>``;
    ``data-src``, ``data-lazy-src``, ``data-original`` and ``data-srcset`` (the ``src`` is a 1x1
    placeholder GIF); ``og:image``; a link to a PNG; CSS ``background-image`` inline, in a
    ``<style>`` element and in a linked stylesheet (``url(../img/..)`` resolves against the
    stylesheet); a ``data:`` PNG. Page 2 is reached by ``<a rel=next>`` and uses relative URLs;
    page 3 only by ``<link rel=next>`` in page 2's head, and resolves its image via
    ``<base href>``. Every image except the placeholder copies a sample page.
    """
    b = SiteBuilder("static-gallery", port)
    css = b.url("/css/site.css")
    img: dict[str, str] = {}
    for name in (
        "plain.jpg", "fallback.jpg", "w320.jpg", "w640.jpg", "x1.jpg", "x2.jpg", "pic.jpg",
        "lazy-src.jpg", "lazy-lazy-src.jpg", "lazy-original.jpg", "lazy-srcset.jpg", "og.jpg",
        "bg-inline.jpg", "bg-style.jpg", "bg-css.jpg", "p2-a.jpg",
    ):  # fmt: skip
        img[name] = b.copy(f"/img/{name}")
    for name in ("pic.webp", "pic-wide.webp", "pic-wide-2x.webp"):
        img[name] = b.copy(f"/img/{name}", fmt="WEBP")
    img["full.png"] = b.copy("/img/full.png", fmt="PNG", width=400)
    img["p2-b.jpg"] = b.copy("/page/2/p2-b.jpg")
    img["p3.jpg"] = b.copy("/assets/p3.jpg")
    img["placeholder.gif"] = b.raw("/img/placeholder.gif", images.tiny_gif(), "image/gif")

    inline_title, inline_number = b.next_sample()
    inline = images.data_uri(images.rendition(inline_title, inline_number, 120, "PNG"), "image/png")
    b.copies[inline] = SampleRef(inline_title, inline_number, "120px wide PNG in a data: URI")

    b.raw(
        "/css/site.css",
        ".panel { background-image: url(../img/bg-css.jpg); height: 200px; }\n"
        ".hero, .banner, .panel { background-repeat: no-repeat; }\n",
        "text/css",
    )
    b.page(
        "/",
        "Gallery, page 1",
        head=(
            f'<link rel="stylesheet" href="{css}">\n'
            f'<meta property="og:image" content="{img["og.jpg"]}">\n'
            '<link rel="next" href="/page/2/">\n'
            '<style>.banner { background: #000 url("/img/bg-style.jpg") no-repeat; '
            "height: 200px; }</style>\n"
        ),
        body=f"""<h1>Gallery</h1>
<img src="/img/plain.jpg" alt="plain">
<img src="/img/fallback.jpg" srcset="/img/w320.jpg 320w, /img/w640.jpg 640w"
     sizes="(max-width: 600px) 320px, 640px" alt="widths">
<img srcset="/img/x1.jpg, /img/x2.jpg 2x" alt="densities">
<picture>
  <source type="image/webp" media="(min-width: 1200px)"
          srcset="/img/pic-wide.webp 1x, /img/pic-wide-2x.webp 2x">
  <source type="image/webp" srcset="/img/pic.webp">
  <img src="/img/pic.jpg" alt="picture">
</picture>
<img class="lazyload" src="/img/placeholder.gif" data-src="/img/lazy-src.jpg" alt="lazy 1">
<img class="lazy" data-lazy-src="/img/lazy-lazy-src.jpg" alt="lazy 2">
<img class="lazy" data-original="/img/lazy-original.jpg" alt="lazy 3">
<img class="lazyload" data-srcset="/img/lazy-srcset.jpg 1x" alt="lazy 4">
<p><a href="/img/full.png">Full size (PNG)</a></p>
<div class="hero" style="background-image: url('/img/bg-inline.jpg'); height: 200px"></div>
<div class="banner"></div>
<div class="panel"></div>
<img src="{inline}" alt="inline">
<p><a href="/page/2/" rel="next">Next page</a></p>""",
    )
    b.page(
        "/page/2/",
        "Gallery, page 2",
        head='<link rel="prev" href="/">\n<link rel="next" href="/page/3/">\n',
        body='<img src="../../img/p2-a.jpg" alt="a">\n<img src="p2-b.jpg" alt="b">\n'
        '<p><a href="/">First page</a></p>',
    )
    b.page(
        "/page/3/",
        "Gallery, page 3",
        head='<base href="/assets/">\n<link rel="prev" href="/page/2/">\n',
        body='<img src="p3.jpg" alt="last">',
    )
    expected = Expected(
        name="static-gallery",
        start_url=b.url("/"),
        pages=frozenset(b.url(p) for p in ("/", "/page/2/", "/page/3/")),
        images=frozenset(img.values()),
        data_uris=frozenset({inline}),
        copies=b.copies,
    )
    return b.site, expected


_LAZY_SCRIPT = """
const io = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    const img = entry.target;
    img.src = img.dataset.src;
    img.classList.remove("lazy");
    io.unobserve(img);
  }
});
document.querySelectorAll("img.lazy").forEach((img) => io.observe(img));
"""
_LAZY_STYLE = (
    "<style>img.lazy, img.loaded { display: block; width: 240px; height: 360px; "
    "background: #ddd; } .spacer { height: 2000px; } .row { display: flex; gap: 8px; }</style>\n"
)


def lazy_gallery(port: int = 0) -> tuple[Site, Expected]:
    """A tall page whose images load only when scrolled into view (IntersectionObserver).

    Eight ``<img class=lazy data-src>`` with no ``src``: two side by side at the top, then six
    each after a 2000 px spacer, so below the fold for any viewport up to 2000 px tall. The
    URLs are in the markup (a static crawler can read ``data-src``), but a browser requests the
    last six only after scrolling (``below_fold``).
    """
    b = SiteBuilder("lazy-gallery", port)
    urls = [b.copy(f"/img/lazy-{i}.jpg") for i in range(1, 9)]

    def tag(i: int) -> str:
        return f'<img class="lazy" data-src="/img/lazy-{i}.jpg" width="240" height="360" alt="">'

    body = f'<div class="row">{tag(1)}{tag(2)}</div>\n'
    body += "".join(f'<div class="spacer"></div>\n{tag(i)}\n' for i in range(3, 9))
    b.page("/", "Lazy gallery", body + f"<script>{_LAZY_SCRIPT}</script>", head=_LAZY_STYLE)
    expected = Expected(
        name="lazy-gallery",
        start_url=b.url("/"),
        pages=frozenset({b.url("/")}),
        images=frozenset(urls),
        below_fold=frozenset(urls[2:]),
        copies=b.copies,
    )
    return b.site, expected


_JSON_SCRIPT = """
fetch("/api/pages.json")
  .then((response) => response.json())
  .then((data) => {
    const gallery = document.getElementById("gallery");
    for (const page of data.pages) {
      const img = document.createElement("img");
      img.src = page.src;
      img.alt = page.alt;
      gallery.appendChild(img);
    }
    document.body.dataset.ready = "1";
  });
"""


def json_gallery(port: int = 0, *, api_delay: float = 0.3) -> tuple[Site, Expected]:
    """Images that exist only after a script fetches ``/api/pages.json`` and builds ``<img>``.

    The JSON answers after ``api_delay`` seconds, so a crawler must wait for the page to settle,
    not just for ``load``. Static HTML names no image at all: all five are ``browser_only``. One
    entry is an absolute URL, the others are root-relative.
    """
    b = SiteBuilder("json-gallery", port)
    urls = [b.copy(f"/img/js-{i}.jpg") for i in range(1, 6)]
    pages = [{"src": f"/img/js-{i}.jpg", "alt": f"page {i}"} for i in range(1, 6)]
    pages[2]["src"] = urls[2]
    b.site.add("/api/pages.json", json.dumps({"pages": pages}), "application/json", delay=api_delay)
    b.page("/", "Reader", f'<div id="gallery"></div>\n<script>{_JSON_SCRIPT}</script>')
    expected = Expected(
        name="json-gallery",
        start_url=b.url("/"),
        pages=frozenset({b.url("/")}),
        images=frozenset(urls),
        browser_only=frozenset(urls),
        copies=b.copies,
    )
    return b.site, expected


_FEED_SCRIPT = """
let next = 1;
let loading = false;
async function more() {
  if (loading || next === null) return;
  loading = true;
  const data = await (await fetch("/api/feed?batch=" + next)).json();
  const feed = document.getElementById("feed");
  for (const src of data.images) {
    const img = document.createElement("img");
    img.src = src;
    img.className = "item";
    feed.appendChild(img);
  }
  next = data.next;
  loading = false;
  if (next === null) document.body.dataset.done = "1";
}
window.addEventListener("scroll", () => {
  if (window.innerHeight + window.scrollY >= document.body.scrollHeight - 400) more();
});
"""
FEED_BATCHES = 3
FEED_BATCH_SIZE = 4


def infinite_scroll(port: int = 0) -> tuple[Site, Expected]:
    """A feed that appends a batch of images each time the reader scrolls near the bottom.

    Four images are in the HTML; scrolling fetches ``/api/feed?batch=1..3`` (four more each),
    and the third batch says there is no next one, so a crawler's scrolling must stop by
    itself. Items are 450 px tall, so every batch needs a further scroll. The twelve batch
    images are ``browser_only`` (they are in JSON, not in the page).
    """
    b = SiteBuilder("infinite-scroll", port)
    total = FEED_BATCH_SIZE * (FEED_BATCHES + 1)
    urls = [b.copy(f"/feed/{i}.jpg") for i in range(1, total + 1)]

    def feed(request: Request) -> Response:
        batch = request.query.removeprefix("batch=")
        if not batch.isdigit() or not 1 <= int(batch) <= FEED_BATCHES:
            return Response(404, b'{"error": "no such batch"}', "application/json")
        n = int(batch)
        first = n * FEED_BATCH_SIZE + 1
        items = [f"/feed/{i}.jpg" for i in range(first, first + FEED_BATCH_SIZE)]
        data = {"images": items, "next": n + 1 if n < FEED_BATCHES else None}
        return Response(200, json.dumps(data).encode(), "application/json")

    b.site.route("/api/feed", feed)
    initial = "".join(
        f'<img class="item" src="/feed/{i}.jpg" alt="">\n' for i in range(1, FEED_BATCH_SIZE + 1)
    )
    b.page(
        "/",
        "Feed",
        f'<div id="feed">\n{initial}</div>\n<script>{_FEED_SCRIPT}</script>',
        head="<style>.item { display: block; width: 300px; height: 450px; "
        "margin-bottom: 20px; }</style>\n",
    )
    expected = Expected(
        name="infinite-scroll",
        start_url=b.url("/"),
        pages=frozenset({b.url("/")}),
        images=frozenset(urls),
        browser_only=frozenset(urls[FEED_BATCH_SIZE:]),
        below_fold=frozenset(urls[FEED_BATCH_SIZE:]),
        copies=b.copies,
    )
    return b.site, expected


_CANVAS_SCRIPT = """
async function draw(page) {
  const response = await fetch(page.url);
  const bitmap = await createImageBitmap(await response.blob());
  const canvas = document.getElementById(page.canvas);
  const ctx = canvas.getContext("2d");
  if (!page.order) {
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  } else {
    const [cols, rows] = page.grid;
    const tw = canvas.width / cols, th = canvas.height / rows;
    page.order.forEach((src, dst) => {
      const sx = (src % cols) * tw, sy = Math.floor(src / cols) * th;
      const dx = (dst % cols) * tw, dy = Math.floor(dst / cols) * th;
      ctx.drawImage(bitmap, sx, sy, tw, th, dx, dy, tw, th);
    });
  }
  canvas.dataset.ready = "1";
}
Promise.all(PAGES.map(draw)).then(() => { document.body.dataset.ready = "1"; });
"""
CANVAS_SIZE = (384, 576)  # 4x4 tiles of 96x144: multiples of 8, so JPEG blocks stay in a tile
CANVAS_GRID = (4, 4)


def canvas_reader(port: int = 0) -> tuple[Site, Expected]:
    """A reader that draws pages on ``<canvas>`` from images its script fetches.

    Canvas ``#page-1`` shows Steel Garden p.4, fetched as a plain JPEG. Canvas ``#page-2``
    shows Steel Garden p.5, but the server sends its 4x4 tiles shuffled and the script puts
    them back: only the canvas pixels match the work, the fetched bytes do not (so the
    scrambled URL is in ``images`` but not in ``copies``). Both fetches are ``browser_only``.
    """
    b = SiteBuilder("canvas-reader", port)
    plain_ref, scrambled_ref = SampleRef(STEEL, 4), SampleRef(STEEL, 5)
    plain = b.copy("/reader/p1.jpg", (STEEL, 4), width=CANVAS_SIZE[0], quality=90)
    order = list(range(CANVAS_GRID[0] * CANVAS_GRID[1]))
    random.Random(5).shuffle(order)
    tiles = images.scrambled(images.page(STEEL, 5).resize(CANVAS_SIZE), CANVAS_GRID, order)
    scrambled = b.raw("/reader/p2.jpg", images.encode(tiles, quality=90), "image/jpeg")
    pages = [
        {"canvas": "page-1", "url": "/reader/p1.jpg"},
        {"canvas": "page-2", "url": "/reader/p2.jpg", "grid": CANVAS_GRID, "order": order},
    ]
    w, h = CANVAS_SIZE
    body = (
        f'<canvas id="page-1" width="{w}" height="{h}"></canvas>\n'
        f'<canvas id="page-2" width="{w}" height="{h}"></canvas>\n'
        f"<script>{js_const('PAGES', pages)}\n{_CANVAS_SCRIPT}</script>"
    )
    b.page("/", "Chapter 1 - reader", body)
    expected = Expected(
        name="canvas-reader",
        start_url=b.url("/"),
        pages=frozenset({b.url("/")}),
        images=frozenset({plain, scrambled}),
        browser_only=frozenset({plain, scrambled}),
        copies={plain: SampleRef(STEEL, 4, f"{w}px wide JPEG")},
        canvases={b.url("/"): (plain_ref, scrambled_ref)},
    )
    return b.site, expected


CBZ_NAME = "Steel Garden v03.cbz"
PDF_NAME = "moonlit-harbor-v01.pdf"
_COMIC_INFO = """<?xml version="1.0" encoding="utf-8"?>
<ComicInfo xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <Series>Steel Garden</Series><Volume>3</Volume><PageCount>3</PageCount>
  <Publisher>Sample Comics K.K.</Publisher><Manga>YesAndRightToLeft</Manga>
</ComicInfo>
"""


def open_directory(port: int = 0) -> tuple[Site, Expected]:
    """An Apache-style open directory with archives and loose scans.

    ``/files/`` lists ``Steel Garden v03.cbz`` (a space in the name, ``%20`` in the link; a zip
    of Steel Garden pp.1-3 as PNG plus ComicInfo.xml), ``moonlit-harbor-v01.pdf`` (Moonlit
    Harbor pp.1-2), ``cover.jpg`` (Steel Garden p.4), ``readme.txt`` and ``scans/``, whose
    listing holds Moonlit Harbor pp.3-5. Sort links (``?C=N;O=D``) answer the same listing;
    directory icons under ``/icons/`` are served but not expected.
    """
    b = SiteBuilder("open-directory", port)
    b.page("/", "Files", '<p>Our mirror: <a href="/files/">/files/</a></p>')
    for icon in ("back", "blank", "folder", "image2", "compressed"):
        b.raw(f"/icons/{icon}.gif", images.tiny_gif(), "image/gif")

    cbz_pages = [(f"page-{n:03d}.png", images.rendition(STEEL, n, 400, "PNG")) for n in (1, 2, 3)]
    cbz_url = b.raw(
        f"/files/{CBZ_NAME}", images.cbz(cbz_pages, _COMIC_INFO), "application/vnd.comicbook+zip"
    )
    pdf_pages = [images.half_page(MOONLIT, n) for n in (1, 2)]
    pdf_url = b.raw(f"/files/{PDF_NAME}", images.pdf(pdf_pages), "application/pdf")
    for n, (name, _) in enumerate(cbz_pages, start=1):
        b.copies[f"{cbz_url}#{name}"] = SampleRef(STEEL, n, "400px wide PNG in a CBZ")
    for n in (1, 2):
        b.copies[f"{pdf_url}#page={n}"] = SampleRef(MOONLIT, n, "400px wide page of a PDF")
    cover = b.copy("/files/cover.jpg", (STEEL, 4), width=300)
    scans = [b.copy(f"/files/scans/{n:03d}.jpg", (MOONLIT, n + 2), width=300) for n in (1, 2, 3)]
    b.raw("/files/readme.txt", "Uploaded by anon. Enjoy!\n", "text/plain")

    b.raw(
        "/files/",
        apache_index(
            "/files/",
            [
                (CBZ_NAME, "2024-03-02 21:14", "1.1M"),
                ("cover.jpg", "2024-03-02 21:10", " 20K"),
                (PDF_NAME, "2024-03-01 08:55", "310K"),
                ("readme.txt", "2024-03-01 08:50", "  25"),
                ("scans/", "2024-03-02 21:20", "  - "),
            ],
        ),
        "text/html;charset=UTF-8",
    )
    b.raw(
        "/files/scans/",
        apache_index(
            "/files/scans/", [(f"{n:03d}.jpg", "2024-03-02 21:20", " 19K") for n in (1, 2, 3)]
        ),
        "text/html;charset=UTF-8",
    )
    expected = Expected(
        name="open-directory",
        start_url=b.url("/files/"),
        pages=frozenset(b.url(p) for p in ("/files/", "/files/scans/")),
        images=frozenset([cover, *scans]),
        archives={cbz_url: 3, pdf_url: 2},
        copies=b.copies,
    )
    return b.site, expected


def sitemap_only(port: int = 0) -> tuple[Site, Expected]:
    """Two chapter pages no link reaches: only ``/sitemap.xml`` (also named in robots.txt).

    ``/sitemap.xml`` is a sitemap index naming ``/sitemaps/chapters.xml`` and the gzipped
    ``/sitemaps/archive.xml.gz``. The first lists ``/hidden/chapter-7.html`` with three
    ``<image:image>`` entries, one of them (``7-cover.jpg``) on no page at all; the second lists
    ``/hidden/chapter-8.html`` and its image. The home page links nowhere.
    """
    b = SiteBuilder("sitemap-only", port)
    b.page("/", "Welcome", "<p>Nothing to see here.</p>")
    ch7 = [b.copy(f"/hidden/img/7-{n}.jpg") for n in (1, 2)]
    cover = b.copy("/hidden/img/7-cover.jpg", (LANTERN, 1))
    ch8 = [b.copy("/hidden/img/8-1.jpg")]
    for number, pics in ((7, ch7), (8, ch8)):
        tags = "".join(f'<img src="{escape(u)}" alt="">\n' for u in pics)
        b.page(f"/hidden/chapter-{number}.html", f"Chapter {number}", tags)
    chapters = urlset([(b.url("/"), []), (b.url("/hidden/chapter-7.html"), [*ch7, cover])])
    archive = urlset([(b.url("/hidden/chapter-8.html"), ch8)])
    b.raw("/sitemaps/chapters.xml", chapters, "application/xml")
    b.raw("/sitemaps/archive.xml.gz", gzip.compress(archive.encode(), mtime=0), "application/gzip")
    index = sitemap_index([b.url("/sitemaps/chapters.xml"), b.url("/sitemaps/archive.xml.gz")])
    b.raw("/sitemap.xml", index, "application/xml")
    b.raw(
        "/robots.txt",
        f"User-agent: *\nAllow: /\n\nSitemap: {b.url('/sitemap.xml')}\n",
        "text/plain",
    )
    expected = Expected(
        name="sitemap-only",
        start_url=b.url("/"),
        pages=frozenset(
            b.url(p) for p in ("/", "/hidden/chapter-7.html", "/hidden/chapter-8.html")
        ),
        images=frozenset([*ch7, cover, *ch8]),
        copies=b.copies,
    )
    return b.site, expected


#: Every fixture site by name (the names ``Expected.name`` carries).
BUILDERS: dict[str, Callable[..., tuple[Site, Expected]]] = {
    "static-gallery": static_gallery,
    "lazy-gallery": lazy_gallery,
    "json-gallery": json_gallery,
    "infinite-scroll": infinite_scroll,
    "canvas-reader": canvas_reader,
    "open-directory": open_directory,
    "sitemap-only": sitemap_only,
    "robots": robots_site,
    "redirects": redirect_site,
    "slow-and-large": slow_and_large_site,
    "hotlink": hotlink_site,
    "ssrf": ssrf_site,
    "incremental": incremental_site,
    "pirate": pirate_site,
}
