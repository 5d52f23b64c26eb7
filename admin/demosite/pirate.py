"""MangaFX, a realistic pirate manga reader on loopback: the demo's crawl target.

Home page with logo, ads and series cards; a page per series listing chapters; a JavaScript
reader per chapter whose page images load lazily from a Referer-checking ``/cdn/``; an art page.
Chapter pages of the sample works are copies as pirates make them: scaled to 70 %, JPEG
quality 60, the site's watermark in the bottom-right corner. Everything else (logo, ads, an
original series, other art) is drawn from titles that are not sample works and must match
nothing. Registers nothing: it only serves.

=================================  ===============================  =====================
URL                                copies                           how
=================================  ===============================  =====================
/cdn/moonlit-harbor/1/01..03.jpg   Moonlit Harbor, Vol. 1 pp.1-3    70 %, q60, watermark
/cdn/moonlit-harbor/2/01..03.jpg   Moonlit Harbor, Vol. 1 pp.4-6    70 %, q60, watermark
/cdn/steel-garden/21/01..05.jpg    Steel Garden, Vol. 3 pp.1-5      70 %, q60, watermark
/covers/moonlit-harbor.jpg         Moonlit Harbor, Vol. 1 p.1       200 px thumbnail, q75
/covers/steel-garden.jpg           Steel Garden, Vol. 3 p.1         200 px thumbnail, q75
/art/last-lantern.jpg              The Last Lantern (illustration)  60 %, q70, watermark
/dl/moonlit-harbor-vol1.cbz#*.jpg  Moonlit Harbor, Vol. 1 pp.1-6    the chapter scans, zipped
=================================  ===============================  =====================

Not copies: ``/cdn/neon-drifters/1/*`` and its cover (an original series), ``/art/fanart-*``,
``/static/logo.png``, ``/static/bg.png`` (from the stylesheet) and ``/ads/*``.
"""

from __future__ import annotations

from dataclasses import dataclass

from admin.demosite import images
from admin.demosite.builder import LANTERN, MOONLIT, STEEL, SiteBuilder
from admin.demosite.expected import Expected, SampleRef
from admin.demosite.handlers import Static, same_site_referer
from admin.demosite.markup import escape, js_const, urlset
from admin.demosite.server import Site

SITE_NAME = "MangaFX"
WATERMARK = "mangafx.test"
PAGE_SCALE = 0.7
PAGE_QUALITY = 60
PAGE_TRANSFORM = f"scaled to 70 %, JPEG q{PAGE_QUALITY}, watermark {WATERMARK!r} bottom-right"


@dataclass(frozen=True)
class Series:
    slug: str
    name: str  # as the site shows it
    source: str  # the title render_page draws it from
    chapters: tuple[tuple[str, tuple[int, ...]], ...]  # (chapter number, source pages)
    registered: bool = True  # False: an original work, not a sample work


SERIES = (
    Series("moonlit-harbor", "Moonlit Harbor", MOONLIT, (("1", (1, 2, 3)), ("2", (4, 5, 6)))),
    Series("steel-garden", "Steel Garden", STEEL, (("21", (1, 2, 3, 4, 5)),)),
    Series(
        "neon-drifters",
        "Neon Drifters",
        "Neon Drifters (an original series, not a sample work)",
        (("1", (1, 2, 3)),),
        registered=False,
    ),
)
ADS = {
    "/ads/banner-casino.png": ("BIG WIN CASINO - 500 FREE SPINS", (728, 90)),
    "/ads/sidebar-vpn.png": ("FAST VPN", (160, 600)),
    "/ads/inline-dating.png": ("Singles near you", (300, 250)),
}
STYLE = """body { font-family: sans-serif; background: #111 url(bg.png); color: #eee; margin: 0; }
header { display: flex; align-items: center; gap: 16px; padding: 8px; background: #222; }
.cards { display: flex; gap: 16px; } .card img { width: 200px; }
#reader img.page { display: block; margin: 0 auto 12px; width: 560px; height: 840px; }
"""
_READER_SCRIPT = """
const reader = document.getElementById("reader");
const io = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    entry.target.src = entry.target.dataset.src;
    io.unobserve(entry.target);
  }
});
PAGES.forEach((src, i) => {
  const img = document.createElement("img");
  img.className = "page";
  img.dataset.src = src;
  img.width = 560;
  img.height = 840;
  img.alt = "Page " + (i + 1);
  reader.appendChild(img);
  io.observe(img);
});
"""


ARCHIVE_SERIES = "moonlit-harbor"
ARCHIVE_PATH = "/dl/moonlit-harbor-vol1.cbz"


def _comic_info(name: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<ComicInfo><Series>'
        f"{escape(name)}</Series><Volume>1</Volume><Manga>YesAndRightToLeft</Manga></ComicInfo>\n"
    )


def _chapter_page(series: Series, number: int) -> bytes:
    img = images.page(series.source, number)
    small = images.scaled(img, round(img.width * PAGE_SCALE))
    return images.encode(images.watermarked(small, WATERMARK), quality=PAGE_QUALITY)


def _layout(b: SiteBuilder, path: str, title: str, main: str, *, head: str = "") -> str:
    header = (
        '<header><a href="/"><img src="/static/logo.png" alt="MangaFX" width="240"></a>\n'
        '<nav><a href="/">Home</a> <a href="/art/">Art</a></nav></header>\n'
        '<a href="https://casino.invalid/"><img src="/ads/banner-casino.png" alt="ad"></a>\n'
    )
    aside = '<aside><img src="/ads/sidebar-vpn.png" alt="ad"></aside>\n'
    return b.page(
        path,
        f"{title} - {SITE_NAME}",
        f"{header}<main>\n{main}\n</main>\n{aside}<footer>Read manga free online</footer>",
        head='<link rel="stylesheet" href="/static/style.css">\n' + head,
    )


def pirate_site(port: int = 0) -> tuple[Site, Expected]:
    """The demo site (see the module docstring for which sample page each copy is).

    Must find: 9 pages (home, 3 series, 4 chapters, art) and every image, including the
    chapter pages, which only the reader's script names (``browser_only``) and which load as
    they scroll into view (from the third page of a chapter on, ``below_fold`` for viewports
    up to 1500 px tall); ``/cdn/`` answers 403 without a Referer from this site. The Moonlit
    Harbor page links the volume as a CBZ of the same scans (``archives``).
    """
    b = SiteBuilder("pirate", port)
    site = b.site
    archives: dict[str, int] = {}
    every: list[str] = []
    pages: list[str] = []
    browser_only: list[str] = []
    below_fold: list[str] = []
    cdn: list[str] = []

    every.append(b.raw("/static/logo.png", images.banner(SITE_NAME, (240, 60)), "image/png"))
    every.append(b.raw("/static/bg.png", images.banner("", (64, 64), seed="bg"), "image/png"))
    b.raw("/static/style.css", STYLE, "text/css")
    for path, (text, size) in ADS.items():
        every.append(b.raw(path, images.banner(text, size), "image/png"))

    cards = []
    for series in SERIES:
        cover_path = f"/covers/{series.slug}.jpg"
        cover = images.encode(images.scaled(images.half_page(series.source, 1), 200), quality=75)
        every.append(b.raw(cover_path, cover, "image/jpeg"))
        if series.registered:
            b.copies[b.url(cover_path)] = SampleRef(series.source, 1, "200 px thumbnail, q75")
        cards.append(
            f'<div class="card"><a href="/manga/{series.slug}/"><img src="{cover_path}" '
            f'alt="{escape(series.name)}"><br>{escape(series.name)}</a></div>'
        )
        chapters = [c for c, _ in series.chapters]
        for index, (chapter, numbers) in enumerate(series.chapters):
            urls = []
            for position, number in enumerate(numbers, start=1):
                path = f"/cdn/{series.slug}/{chapter}/{position:02d}.jpg"
                resource = Static(_chapter_page(series, number), "image/jpeg")
                site.route(path, same_site_referer(resource))
                url = b.url(path)
                urls.append(url)
                if series.registered:
                    b.copies[url] = SampleRef(series.source, number, PAGE_TRANSFORM)
            every += urls
            cdn += urls
            browser_only += urls
            below_fold += urls[2:]
            chapter_path = f"/manga/{series.slug}/chapter-{chapter}/"
            nav = [f'<a href="/manga/{series.slug}/">All chapters</a>']
            head = ""
            if index > 0:
                prev = f"/manga/{series.slug}/chapter-{chapters[index - 1]}/"
                nav.insert(0, f'<a rel="prev" href="{prev}">Previous</a>')
                head += f'<link rel="prev" href="{prev}">\n'
            if index + 1 < len(chapters):
                nxt = f"/manga/{series.slug}/chapter-{chapters[index + 1]}/"
                nav.append(f'<a rel="next" href="{nxt}">Next</a>')
                head += f'<link rel="next" href="{nxt}">\n'
            script = js_const(
                "PAGES",
                [f"/cdn/{series.slug}/{chapter}/{p:02d}.jpg" for p in range(1, len(numbers) + 1)],
            )
            main = (
                f"<h1>{escape(series.name)} - Chapter {chapter}</h1>\n"
                f'<div class="nav">{" | ".join(nav)}</div>\n<div id="reader"></div>\n'
                '<img src="/ads/inline-dating.png" alt="ad">\n'
                f'<div class="nav">{" | ".join(nav)}</div>\n'
                f"<script>{script}\n{_READER_SCRIPT}</script>"
            )
            pages.append(_layout(b, chapter_path, f"{series.name} {chapter}", main, head=head))
        chapter_links = "".join(
            f'<li><a href="/manga/{series.slug}/chapter-{c}/">Chapter {c}</a></li>\n'
            for c in reversed(chapters)
        )
        download = ""
        if series.slug == ARCHIVE_SERIES:
            # The whole volume repackaged as a CBZ: the same scans as the reader's, zipped.
            members = [
                (f"{series.slug}-{position:03d}.jpg", _chapter_page(series, number))
                for position, number in enumerate(
                    (n for _, numbers in series.chapters for n in numbers), start=1
                )
            ]
            archive_url = b.raw(
                ARCHIVE_PATH,
                images.cbz(members, _comic_info(series.name)),
                "application/vnd.comicbook+zip",
            )
            archives[archive_url] = len(members)
            numbers_in_order = [n for _, numbers in series.chapters for n in numbers]
            for (name, _), number in zip(members, numbers_in_order, strict=True):
                b.copies[f"{archive_url}#{name}"] = SampleRef(
                    series.source, number, PAGE_TRANSFORM + ", in a CBZ"
                )
            download = f'<p><a href="{ARCHIVE_PATH}">Download the whole volume (CBZ)</a></p>\n'
        main = (
            f'<h1>{escape(series.name)}</h1>\n<img src="{cover_path}" alt="cover">\n'
            f"<p>Read {escape(series.name)} raw and translated, free.</p>\n"
            f"{download}<ul>\n{chapter_links}</ul>"
        )
        pages.append(_layout(b, f"/manga/{series.slug}/", series.name, main))

    lantern = images.watermarked(images.scaled(images.page(LANTERN, 1), 480), WATERMARK)
    every.append(b.raw("/art/last-lantern.jpg", images.encode(lantern, quality=70), "image/jpeg"))
    b.copies[b.url("/art/last-lantern.jpg")] = SampleRef(LANTERN, 1, "60 %, q70, watermark")
    art = ['<img src="/art/last-lantern.jpg" alt="The Last Lantern">']
    for n in (1, 2):
        other = images.half_page(f"Fan art #{n} (not a sample work)", 1)
        every.append(b.raw(f"/art/fanart-{n}.jpg", images.encode(other, quality=70), "image/jpeg"))
        art.append(f'<img src="/art/fanart-{n}.jpg" alt="Fan art {n}">')
    pages.append(_layout(b, "/art/", "Art", "<h1>Wallpapers</h1>\n" + "\n".join(art)))

    pages.append(
        _layout(
            b, "/", "Home", f'<h1>Latest updates</h1>\n<div class="cards">{"".join(cards)}</div>'
        )
    )
    b.raw(
        "/robots.txt",
        f"User-agent: *\nDisallow: /search\n\nSitemap: {b.url('/sitemap.xml')}\n",
        "text/plain",
    )
    b.raw("/sitemap.xml", urlset([(url, []) for url in sorted(pages)]), "application/xml")
    expected = Expected(
        name="pirate",
        start_url=b.url("/"),
        pages=frozenset(pages),
        images=frozenset(every),
        browser_only=frozenset(browser_only),
        below_fold=frozenset(below_fold),
        hotlinked=frozenset(cdn),
        archives=archives,
        copies=b.copies,
    )
    return b.site, expected
