"""Fixture sites that test the crawler's manners, limits and safety rather than discovery:
robots.txt, redirects, 404s, slow and huge responses, hotlink protection, SSRF bait and
conditional requests. Each builder returns ``(site, expected)``, the site bound but not started.
"""

from __future__ import annotations

from admin.demosite import images
from admin.demosite.builder import SiteBuilder
from admin.demosite.expected import (
    NOT_FOUND,
    REDIRECT_LOOP,
    TOO_MANY_REDIRECTS,
    Expected,
)
from admin.demosite.handlers import HTML, Request, Response, Static, same_site_referer, stream
from admin.demosite.markup import document
from admin.demosite.server import Site

MIB = 1024 * 1024


def robots_site(port: int = 0) -> tuple[Site, Expected]:
    """``robots.txt`` disallows ``/private/``; the home page links and embeds things under it.

    Public: ``/``, ``/public.html`` and their two images. Disallowed: ``/private/`` and
    ``/private/chapter.html`` (linked), ``/private/img/teaser.jpg`` (an ``<img>`` on the home
    page), ``/private/img/full.jpg`` (a link), and the images on the private pages. Obeying
    robots.txt, none of ``disallowed`` is requested; with the site's robots policy off, all of
    it is found. Reuse one site for both runs with ``site.requests.clear()`` in between.
    """
    b = SiteBuilder("robots", port)
    b.raw("/robots.txt", "User-agent: *\nDisallow: /private/\n", "text/plain")
    public = [b.copy("/img/public-1.jpg"), b.copy("/img/public-2.jpg")]
    private_images = [
        b.copy(f"/private/img/{name}.jpg") for name in ("teaser", "full", "secret-1", "secret-2")
    ]
    b.page(
        "/",
        "Home",
        '<img src="/img/public-1.jpg" alt="">\n<img src="/private/img/teaser.jpg" alt="">\n'
        '<ul><li><a href="/public.html">Public chapter</a></li>\n'
        '<li><a href="/private/">Members area</a></li>\n'
        '<li><a href="/private/chapter.html">Leaked chapter</a></li>\n'
        '<li><a href="/private/img/full.jpg">Full-size leak</a></li></ul>',
    )
    b.page("/public.html", "Public", '<img src="/img/public-2.jpg" alt="">')
    b.page(
        "/private/",
        "Members",
        '<img src="/private/img/secret-1.jpg" alt="">\n<a href="chapter.html">Chapter</a>',
    )
    b.page("/private/chapter.html", "Chapter", '<img src="/private/img/secret-2.jpg" alt="">')
    expected = Expected(
        name="robots",
        start_url=b.url("/"),
        pages=frozenset({b.url("/"), b.url("/public.html")}),
        images=frozenset(public),
        disallowed=frozenset([b.url("/private/"), b.url("/private/chapter.html"), *private_images]),
        copies=b.copies,
    )
    return b.site, expected


#: More hops than Scrapy's and Chromium's default limit (20).
LONG_CHAIN = 25


def redirect_site(port: int = 0) -> tuple[Site, Expected]:
    """Redirect chains, loops, 404s and a meta refresh, all linked from ``/``.

    - ``/r/1`` -> 301 (absolute Location) ``/r/2`` -> 302 ``/r/3`` -> 307 ``/final.html``.
    - ``/loop/a`` <-> ``/loop/b``, and ``/loop/self`` redirecting to itself.
    - ``/hop/25`` -> ``/hop/24`` -> ... -> ``/hop/0`` (a page): longer than any sane limit.
    - ``/missing.html`` and ``<img src=/img/missing.jpg>``: 404.
    - ``/old-page.html`` has ``<meta http-equiv=refresh content="0; url=/new-page.html">``.
    - ``<img src=/img/moved.jpg>`` -> 301 ``/img/real.jpg``.
    """
    b = SiteBuilder("redirects", port)
    site = b.site
    site.add_redirect("/r/1", b.url("/r/2"), 301)
    site.add_redirect("/r/2", "/r/3", 302)
    site.add_redirect("/r/3", "/final.html", 307)
    site.add_redirect("/loop/a", "/loop/b")
    site.add_redirect("/loop/b", "/loop/a")
    site.add_redirect("/loop/self", "/loop/self")
    site.add_redirect("/img/moved.jpg", "/img/real.jpg", 301)

    def hop(request: Request) -> Response:
        n = request.path.removeprefix("/hop/")
        if n == "0":
            return Response(200, document("End of the chain", "<p>Made it.</p>").encode())
        if not n.isdigit():
            return Response(404, b"no such hop", "text/plain")
        return Response(302, b"", HTML, [("Location", f"/hop/{int(n) - 1}")])

    site.route("/hop/*", hop)
    images_found = [b.copy("/img/home.jpg"), b.copy("/img/final.jpg"), b.copy("/img/new.jpg")]
    images_found.append(b.copy("/img/real.jpg"))
    b.page(
        "/",
        "Links",
        '<img src="/img/home.jpg" alt="">\n<img src="/img/moved.jpg" alt="">\n'
        '<img src="/img/missing.jpg" alt="">\n<ul>\n'
        '<li><a href="/r/1">Chapter (moved)</a></li>\n'
        '<li><a href="/loop/a">Loop</a></li>\n<li><a href="/loop/self">Self loop</a></li>\n'
        f'<li><a href="/hop/{LONG_CHAIN}">Long chain</a></li>\n'
        '<li><a href="/missing.html">Gone</a></li>\n'
        '<li><a href="/old-page.html">Old page</a></li>\n</ul>',
    )
    b.page("/final.html", "Final", '<img src="/img/final.jpg" alt="">')
    b.page(
        "/old-page.html",
        "Moved",
        "<p>This page has moved.</p>",
        head='<meta http-equiv="refresh" content="0; url=/new-page.html">\n',
    )
    b.page("/new-page.html", "New", '<img src="/img/new.jpg" alt="">')
    expected = Expected(
        name="redirects",
        start_url=b.url("/"),
        pages=frozenset(b.url(p) for p in ("/", "/final.html", "/new-page.html")),
        images=frozenset(images_found),
        redirects={
            b.url("/r/1"): b.url("/final.html"),
            b.url("/old-page.html"): b.url("/new-page.html"),
            b.url("/img/moved.jpg"): b.url("/img/real.jpg"),
        },
        errors={
            b.url("/missing.html"): NOT_FOUND,
            b.url("/img/missing.jpg"): NOT_FOUND,
            b.url("/loop/a"): REDIRECT_LOOP,
            b.url("/loop/self"): REDIRECT_LOOP,
            b.url(f"/hop/{LONG_CHAIN}"): TOO_MANY_REDIRECTS,
        },
        copies=b.copies,
    )
    return b.site, expected


def slow_and_large_site(
    port: int = 0,
    *,
    delay: float = 5.0,
    html_size: int = 30 * MIB,
    image_size: int = 50 * MIB,
    trickle_seconds: int = 60,
) -> tuple[Site, Expected]:
    """Pages that must not stall a crawl, linked from ``/`` beside a normal page.

    - ``/slow.html`` answers after ``delay`` seconds (its image ``/img/slow.jpg`` is found only
      by a crawler that waits that long; other requests are served meanwhile).
    - ``/huge.html``: ``html_size`` bytes of HTML with a Content-Length; ``/huge-chunked.html``:
      the same without one (chunked), so only counting bytes can stop it.
    - ``/trickle.html``: 1 KiB per second for ``trickle_seconds``: a time-per-page limit case.
    - ``/img/huge.jpg`` (linked): ``image_size`` bytes that start like a JPEG.
    All are generated while sending; none is held in memory.
    """
    b = SiteBuilder("slow-and-large", port)
    site = b.site
    home, fast = b.copy("/img/home.jpg"), b.copy("/img/fast.jpg")
    b.copy("/img/slow.jpg")
    b.page(
        "/",
        "Links",
        '<img src="/img/home.jpg" alt="">\n<ul>\n<li><a href="/fast.html">Fast</a></li>\n'
        '<li><a href="/slow.html">Slow</a></li>\n<li><a href="/huge.html">Huge</a></li>\n'
        '<li><a href="/huge-chunked.html">Huge, chunked</a></li>\n'
        '<li><a href="/trickle.html">Trickle</a></li>\n'
        '<li><a href="/img/huge.jpg">Huge image</a></li>\n</ul>',
    )
    b.page("/fast.html", "Fast", '<img src="/img/fast.jpg" alt="">')
    b.page("/slow.html", "Slow", '<img src="/img/slow.jpg" alt="">', delay=delay)
    head = b"<!DOCTYPE html><html><head><title>Huge</title></head><body>\n"
    filler = b'<p class="x">All chapters, free, no registration, updated daily.</p>\n'
    site.add_stream("/huge.html", html_size, HTML, head=head, filler=filler)
    site.add_stream(
        "/huge-chunked.html", html_size, HTML, head=head, filler=filler, declare_length=False
    )
    site.route(
        "/trickle.html",
        stream(trickle_seconds * 1024, HTML, head=head, chunk_size=1024, interval=1.0),
    )
    # A real JPEG's opening bytes, so sniffing the start does not give the game away.
    jpeg_head = images.rendition(*b.next_sample(), 64)[:-2]
    site.add_stream("/img/huge.jpg", image_size, "image/jpeg", head=jpeg_head, filler=b"\x55")
    expected = Expected(
        name="slow-and-large",
        start_url=b.url("/"),
        pages=frozenset({b.url("/"), b.url("/fast.html")}),
        images=frozenset({home, fast}),
        slow={b.url("/slow.html"): delay, b.url("/trickle.html"): float(trickle_seconds)},
        large={
            b.url("/huge.html"): html_size,
            b.url("/huge-chunked.html"): html_size,
            b.url("/img/huge.jpg"): image_size,
        },
        copies=b.copies,
    )
    return b.site, expected


def hotlink_site(port: int = 0) -> tuple[Site, Expected]:
    """Images that answer only when the Referer is a page of this site.

    ``/protected/1-4.jpg`` answer 403 without such a Referer (1-3 are ``<img>``, 4 is a link
    from ``/gallery.html``). ``/swap/5.jpg`` answers 200 either way but, without the Referer,
    sends a "no hotlinking" banner instead of the page: only its match proves the Referer.
    """
    b = SiteBuilder("hotlink", port)

    def swap(request: Request) -> Response:
        return Response(200, images.banner("NO HOTLINKING", (240, 360)), "image/png")

    protected = [b.copy(f"/protected/{n}.jpg", wrap=same_site_referer) for n in (1, 2, 3, 4)]
    swapped = b.copy("/swap/5.jpg", wrap=lambda h: same_site_referer(h, denied=swap))
    b.page(
        "/",
        "Gallery",
        '<img src="/protected/1.jpg" alt="">\n<img src="/protected/2.jpg" alt="">\n'
        '<p><a href="/gallery.html">More</a></p>',
    )
    b.page(
        "/gallery.html",
        "More",
        '<img src="/protected/3.jpg" alt="">\n<img src="/swap/5.jpg" alt="">\n'
        '<p><a href="/protected/4.jpg">Full size</a></p>',
    )
    hotlinked = frozenset([*protected, swapped])
    expected = Expected(
        name="hotlink",
        start_url=b.url("/"),
        pages=frozenset({b.url("/"), b.url("/gallery.html")}),
        images=hotlinked,
        hotlinked=hotlinked,
        copies=b.copies,
    )
    return b.site, expected


#: Private, link-local and loopback targets named by the SSRF page that are not this server.
#: Nothing here ever connects to them: they only appear in HTML.
OFFSITE_PRIVATE = (
    "http://10.0.0.1/x.png",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]:1/x.png",
    "http://10.0.0.1/admin/",
    "http://192.168.0.1/bg.png",
)
METADATA_REDIRECT = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


def ssrf_site(port: int = 0) -> tuple[Site, Expected]:
    """A page that baits the crawler into private addresses.

    ``<img>`` on 10.0.0.1, 169.254.169.254 (cloud metadata), ``[::1]:1``; a link to
    ``http://10.0.0.1/admin/``; a CSS background on 192.168.0.1; and aliases of this very
    server that a name or address check must catch after resolution: ``localhost``,
    ``[::ffff:127.0.0.1]``, ``2130706433`` (127.0.0.1 as one number) and ``0.0.0.0``, each on a
    path of its own that really serves an image or page, so a slip shows in ``site.requests``
    (``not_fetched``). ``/ssrf/redirect.png`` on the start host redirects to the metadata
    address: the redirect target must be refused too. ``/img/ok.jpg`` is a normal image.

    The start page is itself on 127.0.0.1: a test allows that host explicitly (a site may) and
    expects every alias to be refused all the same.
    """
    b = SiteBuilder("ssrf", port)
    site = b.site
    ok = b.copy("/img/ok.jpg")
    aliases = {
        "localhost": b.site.url("/ssrf/localhost.png", host="localhost"),
        "mapped": b.site.url("/ssrf/mapped.png", host="[::ffff:127.0.0.1]"),
        "decimal": b.site.url("/ssrf/decimal.png", host="2130706433"),
        "zero": b.site.url("/ssrf/zero.png", host="0.0.0.0"),
        "page": b.site.url("/ssrf/page.html", host="localhost"),
    }
    for name in ("localhost", "mapped", "decimal", "zero"):
        b.copy(f"/ssrf/{name}.png", fmt="PNG")
    b.page("/ssrf/page.html", "Internal", '<img src="/ssrf/localhost.png" alt="">')
    site.add_redirect("/ssrf/redirect.png", METADATA_REDIRECT)
    offsite = dict(zip(("ten", "metadata", "ipv6", "admin", "bg"), OFFSITE_PRIVATE, strict=True))
    b.page(
        "/",
        "Free chapters",
        f"""<img src="/img/ok.jpg" alt="">
<img src="{offsite["ten"]}" alt="">
<img src="{offsite["metadata"]}" alt="">
<img src="{offsite["ipv6"]}" alt="">
<img src="{aliases["localhost"]}" alt="">
<img src="{aliases["mapped"]}" alt="">
<img src="{aliases["decimal"]}" alt="">
<img src="{aliases["zero"]}" alt="">
<img src="/ssrf/redirect.png" alt="">
<div style="background-image: url({offsite["bg"]}); height: 10px"></div>
<p><a href="{offsite["admin"]}">Admin</a> <a href="{aliases["page"]}">Internal</a></p>""",
    )
    refused = frozenset([*OFFSITE_PRIVATE, METADATA_REDIRECT, *aliases.values()])
    expected = Expected(
        name="ssrf",
        start_url=b.url("/"),
        pages=frozenset({b.url("/")}),
        images=frozenset({ok}),
        refused=refused,
        not_fetched=frozenset(aliases.values()),
        copies={ok: b.copies[ok]},
    )
    return b.site, expected


#: Incremental site pages: path -> (sends ETag, sends Last-Modified).
INCREMENTAL_PAGES = {
    "/etag.html": (True, False),
    "/modified.html": (False, True),
    "/both.html": (True, True),
    "/plain.html": (False, False),
}


def _incremental_page(name: str, revision: int) -> str:
    note = f"<p>Revision {revision}.</p>" if revision else ""
    return document(name, f'<img src="/img/{name}.jpg" alt="">{note}')


def incremental_site(port: int = 0) -> tuple[Site, Expected]:
    """Pages with each kind of validator, for incremental recrawl.

    ``/etag.html`` sends only an ETag, ``/modified.html`` only Last-Modified, ``/both.html``
    both, ``/plain.html`` neither (only a content hash can tell it is unchanged). Each shows one
    image (which sends both). A second crawl should send If-None-Match / If-Modified-Since and
    get 304 (see ``site.requests``); :func:`incremental_edit` changes a page between crawls.
    """
    b = SiteBuilder("incremental", port)
    names = [path.strip("/").removesuffix(".html") for path in INCREMENTAL_PAGES]
    links = "".join(f'<li><a href="/{n}.html">{n}</a></li>\n' for n in names)
    b.page("/", "Chapters", f"<ul>\n{links}</ul>")
    pics = [b.copy(f"/img/{n}.jpg") for n in names]
    for path in INCREMENTAL_PAGES:
        incremental_edit(b.site, path, revision=0)
    labels = {(True, False): "etag", (False, True): "last-modified", (True, True): "both"}
    expected = Expected(
        name="incremental",
        start_url=b.url("/"),
        pages=frozenset([b.url("/"), *(b.url(p) for p in INCREMENTAL_PAGES)]),
        images=frozenset(pics),
        validators={b.url(p): labels.get(v, "none") for p, v in INCREMENTAL_PAGES.items()},
        copies=b.copies,
    )
    return b.site, expected


def incremental_edit(site: Site, path: str, revision: int = 1) -> Static:
    """(Re)write one page of the incremental site: a new ETag and a later Last-Modified, each
    sent only if that page sends it at all."""
    etag, last_modified = INCREMENTAL_PAGES[path]
    name = path.strip("/").removesuffix(".html")
    return site.add(
        path, _incremental_page(name, revision), HTML, etag=etag, last_modified=last_modified
    )
