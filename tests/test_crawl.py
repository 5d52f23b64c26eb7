"""The crawler end to end: real Scrapy, real Chromium, real PostgreSQL, fixture sites on
127.0.0.1 (``tests.sites``). Each crawl runs in its own child process, as in production.

Sample works are registered first so copies on the fixture sites match; assertions are on
what was found (sightings, matches, evidence, requests the sites received), not only on the
crawl having run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from click.testing import CliRunner

from admin.cli import cli
from admin.demosite import images
from admin.demosite.builder import STEEL, SiteBuilder
from admin.demosite.expected import Expected
from admin.demosite.handlers import HTML, Handler, Static
from admin.demosite.handlers import Request as FixtureRequest
from admin.demosite.handlers import Response as FixtureResponse
from admin.demosite.markup import document
from admin.demosite.server import Site
from admin.publishers import add_publisher
from admin.samples import SAMPLE_PUBLISHER, SAMPLE_WORKS, slug, write_sample_work
from crawler.evidence import EvidenceStore
from crawler.run import CrawlAlreadyActive, CrawlSummary, run_crawl
from crawler.sites import SitePolicy, add_site
from matcher.registry import register_work
from matcher.sources import expand_paths
from store.config import load_settings
from store.db import Database
from tests.sites import catalog

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("samples")
    for work in SAMPLE_WORKS:
        write_sample_work(work, folder / slug(work.title))
    return folder


@pytest.fixture
def registered(db: Database, sample_dir: Path) -> dict[tuple[str, int], int]:
    """Registers the sample works; returns (title, page number) -> page id."""
    add_publisher(db, SAMPLE_PUBLISHER)
    for work in SAMPLE_WORKS:
        paths = sorted((sample_dir / slug(work.title)).glob("page-*.png"))
        register_work(db, publisher=SAMPLE_PUBLISHER, title=work.title, sources=expand_paths(paths))
    with db.connection() as conn:
        rows = conn.execute(
            "select w.title, p.page_number, p.id from pages p join works w on w.id = p.work_id"
        ).fetchall()
    return {(r[0], int(r[1])): int(r[2]) for r in rows}


class Crawls:
    """Runs crawls of fixture sites against this test's database."""

    def __init__(self, db: Database, data_dir: Path) -> None:
        self.db = db
        self.data_dir = data_dir
        self.settings = load_settings(data_dir=data_dir, database_url=db.url)

    def site(self, expected: Expected, name: str | None = None, **policy: Any) -> Any:
        values: dict[str, Any] = {
            "start_urls": [expected.start_url],
            "rendering": "never",
            "delay_seconds": 0.0,
            "concurrency": 8,
            "max_depth": 5,
        }
        values.update(policy)
        return add_site(self.db, name or expected.name, SitePolicy(**values))

    def run(self, site_row: Any, **overrides: Any) -> CrawlSummary:
        config: dict[str, Any] = {
            "allowed_hosts": {"127.0.0.1"},
            "page_timeout_seconds": 3.0,
            "retry_times": 0,
            "max_page_bytes": 2 * 1024 * 1024,
            "max_image_bytes": 8 * 1024 * 1024,
        }
        config.update(overrides)
        summary = run_crawl(self.db, site_row, self.settings, overrides=config)
        assert summary.state == "finished", (summary.error, summary.stats)
        return summary

    @property
    def evidence(self) -> EvidenceStore:
        return EvidenceStore(self.data_dir / "evidence")

    def sightings(self, site_id: int) -> dict[tuple[str, str], dict[str, Any]]:
        with self.db.connection() as conn:
            rows = conn.execute(
                """
                select s.page_url, s.image_url, s.image_sha256, s.evidence_ref,
                       coalesce(array_agg(m.page_id) filter (where m.id is not null), '{}')
                from sightings s left join matches m on m.sighting_id = s.id
                where s.site_id = %s group by s.id
                """,
                (site_id,),
            ).fetchall()
        return {
            (r[0], r[1]): {"sha256": bytes(r[2]), "evidence": r[3], "pages": set(r[4])}
            for r in rows
        }


@pytest.fixture
def crawls(db: Database, tmp_path: Path) -> Crawls:
    return Crawls(db, tmp_path / "data")


def served(site: Site) -> Iterator[Site]:
    with site:
        yield site


def image_urls(sightings: dict[tuple[str, str], dict[str, Any]]) -> set[str]:
    return {image for _, image in sightings}


def matched(
    sightings: dict[tuple[str, str], dict[str, Any]], pages: dict[tuple[str, int], int]
) -> dict[str, set[tuple[str, int]]]:
    by_id = {v: k for k, v in pages.items()}
    out: dict[str, set[tuple[str, int]]] = {}
    for (_, image), row in sightings.items():
        if row["pages"]:
            out.setdefault(image, set()).update(by_id[p] for p in row["pages"])
    return out


def test_static_gallery(crawls: Crawls, registered: dict[tuple[str, int], int]) -> None:
    site, expected = catalog.static_gallery()
    with site:
        row = crawls.site(expected)
        summary = crawls.run(row)
    found = crawls.sightings(row.id)
    urls = image_urls(found)
    assert expected.static_images <= urls, sorted(expected.static_images - urls)
    assert summary.pages == 3
    assert any(u.startswith("data:image/png;sha256=") for u in urls)
    hits = matched(found, registered)
    for url, ref in expected.copies.items():
        if url.startswith("data:"):
            continue
        assert (ref.title, ref.page) in hits.get(url, set()), url
    assert summary.matches >= len(expected.copies) - 1


@pytest.mark.parametrize("builder", ["lazy-gallery", "json-gallery", "infinite-scroll"])
def test_rendered_sites(
    crawls: Crawls, registered: dict[tuple[str, int], int], builder: str
) -> None:
    site, expected = catalog.BUILDERS[builder]()
    with site:
        row = crawls.site(expected, rendering="auto")
        summary = crawls.run(row)
    found = crawls.sightings(row.id)
    urls = image_urls(found)
    assert expected.images <= urls, sorted(expected.images - urls)
    assert summary.stats["pages_rendered"] == 1
    # Found by the browser, not only read from markup: it requested the lazy ones.
    for url in expected.below_fold | expected.browser_only:
        assert site.requests.requested(url), url
    hits = matched(found, registered)
    for url, ref in expected.copies.items():
        assert (ref.title, ref.page) in hits.get(url, set()), url
    # A rendered page's matches carry a full-page screenshot in their evidence.
    refs = {row["evidence"] for row in found.values() if row["evidence"]}
    assert refs
    manifest = crawls.evidence.manifest(next(iter(refs)))
    assert manifest["page"]["screenshot"] is not None


def test_canvas_reader(crawls: Crawls, registered: dict[tuple[str, int], int]) -> None:
    site, expected = catalog.canvas_reader()
    with site:
        row = crawls.site(expected, rendering="auto")
        crawls.run(row)
    found = crawls.sightings(row.id)
    hits = matched(found, registered)
    for page_url, refs in expected.canvases.items():
        for number, ref in enumerate(refs, start=1):
            # The scrambled page matches only as the reader draws it, on the canvas.
            assert (ref.title, ref.page) in hits.get(f"{page_url}#canvas-{number}", set())
    assert expected.images <= image_urls(found)


def test_open_directory_archives(crawls: Crawls, registered: dict[tuple[str, int], int]) -> None:
    site, expected = catalog.open_directory()
    with site:
        row = crawls.site(expected)
        summary = crawls.run(row)
    found = crawls.sightings(row.id)
    assert expected.images <= image_urls(found)
    hits = matched(found, registered)
    for url, ref in expected.copies.items():
        assert (ref.title, ref.page) in hits.get(url, set()), url
    assert summary.stats["archives"] == len(expected.archives)
    assert summary.stats["archive_pages"] == sum(expected.archives.values())


def test_sitemap_only(crawls: Crawls, registered: dict[tuple[str, int], int]) -> None:
    site, expected = catalog.sitemap_only()
    with site:
        row = crawls.site(expected)
        summary = crawls.run(row)
    found = crawls.sightings(row.id)
    assert expected.images <= image_urls(found)
    assert {page for page, _ in found} >= expected.pages - {expected.start_url}
    assert summary.pages == len(expected.pages)
    assert summary.stats["sitemaps"] >= 3  # the index, a plain and a gzipped sitemap
    hits = matched(found, registered)
    for url, ref in expected.copies.items():
        assert (ref.title, ref.page) in hits.get(url, set()), url


def test_robots_obeyed_then_overridden(
    crawls: Crawls, registered: dict[tuple[str, int], int]
) -> None:
    site, expected = catalog.robots_site()
    with site:
        obeying = crawls.site(expected)
        crawls.run(obeying)
        requested = set(site.requests.paths())
        site.requests.clear()
        ignoring = crawls.site(expected, name="robots-ignored", obey_robots=False)
        crawls.run(ignoring)
    for url in expected.disallowed:
        path = url.split(f":{site.port}", 1)[1]
        assert path not in requested, path
        assert site.requests.requested(url), url
    assert expected.images <= image_urls(crawls.sightings(obeying.id))
    overridden = image_urls(crawls.sightings(ignoring.id))
    assert expected.images | expected.disallowed_images <= overridden


def test_redirects_and_errors(crawls: Crawls, registered: dict[tuple[str, int], int]) -> None:
    site, expected = catalog.redirect_site()
    with site:
        row = crawls.site(expected)
        summary = crawls.run(row)
    found = crawls.sightings(row.id)
    assert expected.images <= image_urls(found)
    assert expected.pages <= {page for page, _ in found}
    errors = summary.errors
    wanted: dict[str, int] = {}
    for kind in expected.errors.values():
        wanted[kind] = wanted.get(kind, 0) + 1
    assert errors.get("http_404", 0) >= wanted["http_404"]
    assert errors.get("redirect_loop", 0) >= wanted["redirect_loop"]
    assert errors.get("too_many_redirects", 0) >= wanted["too_many_redirects"]


def test_slow_and_large(crawls: Crawls, registered: dict[tuple[str, int], int]) -> None:
    site, expected = catalog.slow_and_large_site(html_size=8 * 1024 * 1024)
    with site:
        row = crawls.site(expected)
        summary = crawls.run(
            row, page_timeout_seconds=1.5, max_page_bytes=1024 * 1024, max_image_bytes=2**21
        )
    found = crawls.sightings(row.id)
    assert expected.images <= image_urls(found)
    errors = summary.errors
    assert errors.get("too_large", 0) >= 2, errors  # huge.html and the huge image
    assert errors.get("timeout", 0) >= 2, errors  # slow.html and trickle.html
    assert summary.stats["duration_seconds"] < 10
    assert summary.stats["bytes"] < 8 * 1024 * 1024


def test_hotlink_referer(crawls: Crawls, registered: dict[tuple[str, int], int]) -> None:
    site, expected = catalog.hotlink_site()
    with site:
        row = crawls.site(expected)
        crawls.run(row)
    found = crawls.sightings(row.id)
    hits = matched(found, registered)
    for url in expected.hotlinked:
        ref = expected.copies[url]
        assert (ref.title, ref.page) in hits.get(url, set()), url
        request = site.requests.for_path(url)[0]
        assert request.headers.get("Referer", "").startswith(site.base_url)


@pytest.mark.parametrize("rendering", ["never", "always"])
def test_ssrf_refused(
    crawls: Crawls, registered: dict[tuple[str, int], int], rendering: str
) -> None:
    site, expected = catalog.ssrf_site()
    with site:
        row = crawls.site(expected, rendering=rendering, allow_private_addresses=False)
        # A dead proxy for everything but 127.0.0.1: should the guard fail, the browser
        # still reaches no other address.
        summary = crawls.run(row, browser_args=("--proxy-server=http://127.0.0.1:9",))
    found = crawls.sightings(row.id)
    assert expected.images <= image_urls(found)
    not_fetched = set(expected.not_fetched)
    if rendering == "always":
        # Chromium rewrites http://2130706433/ to http://127.0.0.1/ before any handler sees
        # the URL: inside the browser it *is* the allowed host. Without a host exception (any
        # real site) loopback is refused in every spelling.
        not_fetched = {u for u in not_fetched if "2130706433" not in u}
    for url in not_fetched:
        assert not site.requests.requested(url), url
    assert not image_urls(found) & expected.refused
    if rendering == "never":
        assert summary.errors.get("refused", 0) >= 8, summary.errors
    else:
        assert summary.stats["render_blocked"] >= 5, summary.stats


def test_pirate_site_evidence(crawls: Crawls, registered: dict[tuple[str, int], int]) -> None:
    site, expected = catalog.pirate_site()
    with site:
        row = crawls.site(expected, rendering="auto")
        summary = crawls.run(row)
    found = crawls.sightings(row.id)
    urls = image_urls(found)
    assert expected.images <= urls, sorted(expected.images - urls)
    hits = matched(found, registered)
    for url, ref in expected.copies.items():
        assert hits.get(url) == {(ref.title, ref.page)}, url
    for url in expected.images - set(expected.copies):
        assert url not in hits, url
    store = crawls.evidence
    for (page_url, image_url), sighting in found.items():
        if not sighting["pages"]:
            assert sighting["evidence"] is None
            continue
        ref = sighting["evidence"]
        raw = store.read(ref)
        assert hashlib.sha256(raw).hexdigest() == ref
        manifest = json.loads(raw)
        assert manifest["page_url"] == page_url and manifest["image_url"] == image_url
        assert manifest["page"]["ip_address"] == "127.0.0.1"
        for digest in manifest["artefacts"]:
            assert hashlib.sha256(store.read(digest)).hexdigest() == digest
        image = manifest["image"]["artefact"]
        assert hashlib.sha256(store.read(image["sha256"])).digest() == sighting["sha256"]
    assert summary.stats["pages_rendered"] >= 4


def test_incremental_recrawl(crawls: Crawls, registered: dict[tuple[str, int], int]) -> None:
    site, expected = catalog.incremental_site()
    with site:
        row = crawls.site(expected)
        first = crawls.run(row)
        site.requests.clear()
        second = crawls.run(row)
        second_requests = site.requests.snapshot()
        catalog.incremental_edit(site, "/etag.html", revision=1)
        site.requests.clear()
        third = crawls.run(row)
    assert first.pages == len(expected.pages)
    stats = second.stats
    assert stats["pages"] == 0
    assert stats["pages_not_modified"] + stats["pages_unchanged"] == len(expected.pages)
    assert stats["images"] == 0 and stats["images_decoded"] == 0
    assert not any(r.path.startswith("/img/") for r in second_requests)
    conditional = {
        r.path
        for r in second_requests
        if "If-None-Match" in r.headers or "If-Modified-Since" in r.headers
    }
    for url, validators in expected.validators.items():
        path = url.split(f":{site.port}", 1)[1]
        assert (path in conditional) == (validators != "none"), path
    assert stats["sightings_seen_again"] >= len(expected.images)
    assert third.pages == 1 and third.stats["images_reused"] == 1
    assert third.stats["images_decoded"] == 0


@pytest.mark.parametrize("validators", ["etag", "none"])
def test_recrawl_sights_a_changed_archive_on_the_page_that_links_it(
    crawls: Crawls, registered: dict[tuple[str, int], int], validators: str
) -> None:
    # The page is unchanged on the recrawl (a 304 to its ETag, or without validators the same
    # bytes), so its links come from the stored crawl state; the CBZ it links was re-uploaded
    # with one more page.
    b = SiteBuilder("archive-recrawl")
    page = b.url("/volumes.html")
    markup = document("Volumes", '<p><a href="/dl/steel-v01.cbz">Steel Garden, Vol. 1</a></p>')
    tagged = validators == "etag"
    b.site.add("/volumes.html", markup, HTML, etag=tagged, last_modified=tagged)
    archive = b.url("/dl/steel-v01.cbz")

    def upload(pages: tuple[int, ...]) -> None:
        members = [(f"p{n:03d}.png", images.rendition(STEEL, n, 400, "PNG")) for n in pages]
        b.raw("/dl/steel-v01.cbz", images.cbz(members, "<ComicInfo/>"), "application/zip")

    upload((1, 2))
    with b.site:
        row = crawls.site(Expected(name="archive-recrawl", start_url=page))
        crawls.run(row)
        upload((1, 2, 3))
        b.site.requests.clear()
        second = crawls.run(row)
        [asked] = b.site.requests.for_path(archive)
    stats = second.stats
    assert stats["pages"] == 0 and stats["archives"] == 1 and stats["archive_pages"] == 3
    assert stats.get("pages_not_modified" if tagged else "pages_unchanged") == 1
    assert asked.headers.get("Referer") == page
    found = crawls.sightings(row.id)
    members = {(p, i): v for (p, i), v in found.items() if i.startswith(archive + "#")}
    # Every sighting of the archive's pages is on the page that links it, the new one too.
    assert {p for p, _ in members} == {page}
    assert {i for _, i in members} == {f"{archive}#p{n:03d}.png" for n in (1, 2, 3)}
    new = members[(page, f"{archive}#p003.png")]
    assert new["pages"] == {registered[(STEEL, 3)]}
    manifest = crawls.evidence.manifest(new["evidence"])
    assert manifest["page_url"] == manifest["page"]["url"] == page
    assert manifest["image"]["referer"] == page


AGE_COOKIE: Final = ("age_ok", "18+")  # the site policy's --cookie
VISIT_COOKIE: Final = ("visit", "v1")  # what the site sets itself on its front page


def sent_cookies(request: FixtureRequest) -> dict[str, str]:
    pairs = (
        part.strip().partition("=")
        for header in request.headers.get_all("Cookie")
        for part in header.split(";")
    )
    return {name: value for name, _, value in pairs if name}


def age_gate(inner: Handler, *, visited: bool = False) -> Handler:
    """403 to a visitor without the age cookie (or, ``visited``, without the cookie the front
    page sets): the age gates that put a site's content behind ``--cookie``."""
    wanted = [AGE_COOKIE, VISIT_COOKIE] if visited else [AGE_COOKIE]

    def handle(request: FixtureRequest) -> FixtureResponse:
        cookies = sent_cookies(request)
        if any(cookies.get(name) != value for name, value in wanted):
            return FixtureResponse(403, b"adults only", "text/plain")
        return inner(request)

    return handle


def age_gated_site(elsewhere: Site) -> tuple[SiteBuilder, dict[str, str]]:
    """A gallery, a chapter page and a CBZ behind an age gate; its images also want the cookie
    the front page sets. The front page shows a banner from ``elsewhere``, another host."""
    b = SiteBuilder("age-gate")
    gallery = b.url("/")
    chapter = b.url("/chapter/2.html")
    archive = b.url("/dl/steel-v01.cbz")
    banner = elsewhere.url("/banner.png", host="localhost")
    front = document(
        "Gallery",
        '<img src="/img/1.jpg" alt=""><img src="/img/2.jpg" alt="">'
        f'<img src="{banner}" alt="">'
        '<a href="/chapter/2.html">Chapter 2</a> <a href="/dl/steel-v01.cbz">Download</a>',
    )
    set_visit = [("Set-Cookie", f"{VISIT_COOKIE[0]}={VISIT_COOKIE[1]}; Path=/")]
    b.site.route("/", age_gate(Static(front.encode(), HTML, headers=set_visit)))
    page_two = document("Chapter 2", '<img src="/img/3.jpg" alt="">')
    b.site.route("/chapter/2.html", age_gate(Static(page_two.encode(), HTML)))
    for n in (1, 2, 3):
        b.copy(f"/img/{n}.jpg", wrap=lambda inner: age_gate(inner, visited=True))
    members = [(f"p{n:03d}.png", images.rendition(STEEL, n, 400, "PNG")) for n in (4, 5)]
    cbz = Static(images.cbz(members, "<ComicInfo/>"), "application/zip")
    b.site.route("/dl/steel-v01.cbz", age_gate(cbz))
    elsewhere.add("/banner.png", images.rendition(STEEL, 1, 120, "PNG"), "image/png")
    return b, {"gallery": gallery, "chapter": chapter, "archive": archive, "banner": banner}


def test_site_cookies_go_with_every_static_request_to_the_site_only(
    crawls: Crawls, registered: dict[tuple[str, int], int]
) -> None:
    elsewhere = Site("elsewhere")
    b, urls = age_gated_site(elsewhere)
    gated = urls["gallery"]
    with b.site, elsewhere:
        hosts = {"127.0.0.1", "localhost"}
        bare = crawls.site(Expected(name="age-gate-bare", start_url=gated))
        refused = crawls.run(bare, allowed_hosts=hosts)
        b.site.requests.clear()
        elsewhere.requests.clear()
        row = crawls.site(Expected(name="age-gate", start_url=gated), cookies=dict([AGE_COOKIE]))
        summary = crawls.run(row, allowed_hosts=hosts)
    # Without the cookie the gate turns the crawler away: nothing is found.
    assert refused.errors.get("http_403") == 1  # the front page
    assert crawls.sightings(bare.id) == {}
    # With it: every page, image and archive page behind the gate.
    assert "http_403" not in summary.errors, summary.errors
    found = crawls.sightings(row.id)
    expected = {(gated, b.url(f"/img/{n}.jpg")) for n in (1, 2)}
    expected |= {(urls["chapter"], b.url("/img/3.jpg"))}
    expected |= {(gated, f"{urls['archive']}#p{n:03d}.png") for n in (4, 5)}
    expected |= {(gated, urls["banner"])}
    assert expected <= set(found), sorted(expected - set(found))
    hits = matched(found, registered)
    for url, ref in b.copies.items():
        assert (ref.title, ref.page) in hits.get(url, set()), url
    assert hits[f"{urls['archive']}#p005.png"] == {(STEEL, 5)}
    # Every request to the site carried the configured cookie (robots.txt and sitemap probes
    # too), and the images the cookie the site set beside it.
    asked = b.site.requests.snapshot()
    assert {r.path for r in asked} >= {"/", "/chapter/2.html", "/dl/steel-v01.cbz", "/img/1.jpg"}
    for request in asked:
        assert sent_cookies(request).get(AGE_COOKIE[0]) == AGE_COOKIE[1], request
    for request in b.site.requests.for_path("/img/1.jpg"):
        assert sent_cookies(request) == dict([AGE_COOKIE, VISIT_COOKIE])
    # The banner's host is not the site's: no cookie of the site went there.
    [banner] = elsewhere.requests.for_path("/banner.png")
    assert banner.headers.get_all("Cookie") == []


def test_second_active_crawl_is_refused(crawls: Crawls) -> None:
    site, expected = catalog.static_gallery()
    row = crawls.site(expected)
    with crawls.db.connection() as conn:
        conn.execute("insert into crawls (site_id, state) values (%s, 'running')", (row.id,))
    with pytest.raises(CrawlAlreadyActive, match="already has a crawl"):
        run_crawl(crawls.db, row, crawls.settings)
    site.stop()


def test_cli_crawl(mamoru_env: Path, db: Database, registered: dict[tuple[str, int], int]) -> None:
    site, expected = catalog.static_gallery()
    add_site(
        db,
        "gallery",
        SitePolicy(
            start_urls=[expected.start_url],
            rendering="never",
            delay_seconds=0.0,
            allow_private_addresses=True,
        ),
    )
    with site:
        result = CliRunner().invoke(cli, ["crawl", "gallery", "--json", "--max-pages", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["state"] == "finished"
    assert summary["stats"]["pages"] == 1
    assert summary["stats"]["matches"] >= 15
    with db.connection() as conn:
        row = conn.execute("select state, stats from crawls").fetchone()
        events = conn.execute(
            "select event_type from events where subject_type = 'crawl' order by id"
        ).fetchall()
    assert row is not None and row[0] == "finished" and row[1]["pages"] == 1
    assert [e[0] for e in events] == ["started", "finished"]
