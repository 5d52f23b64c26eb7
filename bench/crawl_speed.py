"""Crawl speed: Mamoru against a plain Scrapy spider on the same generated loopback site.

Usage::

    .venv/bin/python bench/crawl_speed.py [--static-pages 1000] [--js-pages 100] [--concurrency 8]

One run starts an embedded PostgreSQL in a temporary folder, registers the sample works,
builds a site on 127.0.0.1 (``bench/crawlsite.py``: static pages with four images each, one in
four a reduced copy of a sample page, and JS pages whose images a script injects), then
measures:

1. Mamoru's crawl of the static pages: rendering never, fingerprinting and matching on, no
   delay, robots off;
2. the baseline: a plain Scrapy spider (``CrawlerProcess`` in a child process, the same
   concurrency) following the same links and downloading the same images, doing nothing with
   them;
3. Mamoru's crawl of the JS pages with rendering always (one browser per crawl).

Rates are over Scrapy's own elapsed time of each crawl (spider open to close), so process
start-up counts for neither side; the wall time of each run is shown too. Goals (issue 4):
static Mamoru >= 0.5x plain Scrapy, JS pages >= 60/min per browser.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STATIC_GOAL = 0.5
JS_GOAL = 60.0


@dataclass(frozen=True)
class Result:
    name: str
    pages: int
    images: int
    elapsed: float  # Scrapy's elapsed_time_seconds
    wall: float  # the whole run, child process start-up included
    note: str = ""

    @property
    def pages_per_min(self) -> float:
        return 60.0 * self.pages / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def images_per_min(self) -> float:
        return 60.0 * self.images / self.elapsed if self.elapsed > 0 else 0.0


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the baseline: a plain Scrapy spider, run in a child process of its own


def baseline_child(start_url: str, concurrency: int) -> None:
    """Crawl ``start_url``'s site with nothing but Scrapy; print the stats as one JSON line."""
    import scrapy
    from scrapy.crawler import CrawlerProcess
    from scrapy.http import Request, Response

    class PlainSpider(scrapy.Spider):
        name = "plain"

        def __init__(self, url: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.url = url

        async def start(self) -> AsyncIterator[Request]:
            yield Request(self.url, callback=self.parse)

        def parse(self, response: Response, **kwargs: Any) -> Iterator[Request]:
            assert self.crawler.stats is not None
            self.crawler.stats.inc_value("bench/pages")
            for href in response.css("a::attr(href)").getall():
                yield response.follow(href, callback=self.parse)
            for src in response.css("img::attr(src)").getall():
                yield response.follow(src, callback=self.image, headers={"Referer": response.url})

        def image(self, response: Response) -> None:
            assert self.crawler.stats is not None
            self.crawler.stats.inc_value("bench/images")
            self.crawler.stats.inc_value("bench/image_bytes", len(response.body))

    process = CrawlerProcess(
        {
            "BOT_NAME": "plain",
            "ROBOTSTXT_OBEY": False,
            "CONCURRENT_REQUESTS": max(concurrency * 2, 8),
            "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
            "DOWNLOAD_DELAY": 0.0,
            "COOKIES_ENABLED": True,
            "LOG_LEVEL": "WARNING",
            "TELNETCONSOLE_ENABLED": False,
            "SCHEDULER_PRIORITY_QUEUE": "scrapy.pqueues.DownloaderAwarePriorityQueue",
            "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
            "STATS_DUMP": False,
        }
    )
    crawler = process.create_crawler(PlainSpider)
    process.crawl(crawler, url=start_url)
    process.start()
    assert crawler.stats is not None
    stats = crawler.stats.get_stats()
    out = {
        "pages": int(stats.get("bench/pages", 0)),
        "images": int(stats.get("bench/images", 0)),
        "elapsed": float(stats.get("elapsed_time_seconds", 0.0)),
        "errors": int(stats.get("log_count/ERROR", 0)),
        "finish_reason": str(stats.get("finish_reason", "")),
    }
    print(json.dumps(out), flush=True)


def run_baseline(start_url: str, concurrency: int) -> Result:
    began = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--baseline-child",
            start_url,
            "--concurrency",
            str(concurrency),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    wall = time.monotonic() - began
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"baseline crawl failed ({done.returncode}): {done.stderr[-2000:]}")
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    note = f"errors {stats['errors']}, {stats['finish_reason']}"
    return Result(
        "plain Scrapy, static", stats["pages"], stats["images"], stats["elapsed"], wall, note
    )


# -- Mamoru


def register_samples(db: Any, folder: Path) -> int:
    from admin.publishers import add_publisher
    from admin.samples import SAMPLE_PUBLISHER, SAMPLE_WORKS, slug, write_sample_work
    from matcher.registry import register_work
    from matcher.sources import expand_paths

    add_publisher(db, SAMPLE_PUBLISHER)
    pages = 0
    for work in SAMPLE_WORKS:
        paths = write_sample_work(work, folder / slug(work.title))
        register_work(db, publisher=SAMPLE_PUBLISHER, title=work.title, sources=expand_paths(paths))
        pages += len(paths)
    return pages


def run_mamoru(
    db: Any, settings: Any, name: str, start_url: str, rendering: str, pages: int, concurrency: int
) -> Result:
    from crawler.run import run_crawl
    from crawler.sites import SitePolicy, add_site

    site = add_site(
        db,
        name,
        SitePolicy(
            start_urls=[start_url],
            rendering=rendering,
            obey_robots=False,
            delay_seconds=0.0,
            concurrency=concurrency,
            max_depth=30,
            max_pages=pages + 10,
        ),
    )
    overrides = {"allowed_hosts": {"127.0.0.1"}, "retry_times": 0, "log_level": "WARNING"}
    began = time.monotonic()
    summary = run_crawl(db, site, settings, overrides=overrides)
    wall = time.monotonic() - began
    if summary.state != "finished":
        raise RuntimeError(f"{name}: crawl {summary.state}: {summary.error}")
    stats = summary.stats
    elapsed = float(stats.get("duration_seconds", 0.0))
    note = (
        f"decoded {stats.get('images_decoded', 0)}, matches {summary.matches}, "
        f"rendered {stats.get('pages_rendered', 0)}, errors {sum(summary.errors.values())}"
    )
    label = f"Mamoru, {'JS' if rendering == 'always' else 'static'} ({rendering})"
    return Result(label, summary.pages, summary.images, elapsed, wall, note)


# -- report


def table(results: list[Result]) -> str:
    head = (
        f"{'run':<28} {'pages':>6} {'images':>7} {'elapsed s':>9} {'wall s':>7} "
        f"{'pages/min':>10} {'images/min':>10}  notes"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.name:<28} {r.pages:>6} {r.images:>7} {r.elapsed:>9.1f} {r.wall:>7.1f} "
            f"{r.pages_per_min:>10.0f} {r.images_per_min:>10.0f}  {r.note}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--static-pages", type=int, default=1000)
    parser.add_argument("--js-pages", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8, help="per-domain (Mamoru policy)")
    parser.add_argument("--baseline-child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_child:
        baseline_child(args.baseline_child, args.concurrency)
        return 0

    from bench.crawlsite import build_site
    from store.config import load_settings
    from store.db import Database
    from store.embedded import start_embedded
    from store.migrate import upgrade

    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mamoru-crawl-bench-") as tmp:
        tmpdir = Path(tmp)
        say("starting embedded PostgreSQL")
        url = start_embedded(tmpdir / "pg")
        upgrade(url)
        db = Database(url)
        try:
            registered = register_samples(db, tmpdir / "samples")
            say(f"registered {registered} sample pages")
            settings = load_settings(data_dir=tmpdir / "data", database_url=url)
            bench = build_site(args.static_pages, args.js_pages)
            say(
                f"site {bench.site.base_url}: {bench.static_pages} static pages "
                f"({bench.static_images} images), {bench.js_pages} JS pages "
                f"({bench.js_images} images), {bench.copies} copies of sample pages, "
                f"{bench.image_bytes / 1e6:.1f} MB of images"
            )
            results: list[Result] = []
            with bench.site:
                say("crawl 1/3: Mamoru, static")
                results.append(
                    run_mamoru(
                        db,
                        settings,
                        "bench-static",
                        bench.static_start,
                        "never",
                        args.static_pages,
                        args.concurrency,
                    )
                )
                say("crawl 2/3: plain Scrapy, static")
                results.append(run_baseline(bench.static_start, args.concurrency))
                say("crawl 3/3: Mamoru, JS (rendering always)")
                results.append(
                    run_mamoru(
                        db,
                        settings,
                        "bench-js",
                        bench.js_start,
                        "always",
                        args.js_pages,
                        args.concurrency,
                    )
                )
            if bench.site.errors:
                say(f"fixture handler errors: {len(bench.site.errors)}")
        finally:
            db.close()

    mamoru, plain, js = results
    print(
        f"crawl_speed: {args.static_pages} static pages x 4 images, {args.js_pages} JS pages "
        f"x 4 images, concurrency {args.concurrency}, 127.0.0.1"
    )
    print(table(results))
    print()
    pages_ratio = mamoru.pages_per_min / plain.pages_per_min if plain.pages_per_min else 0.0
    images_ratio = mamoru.images_per_min / plain.images_per_min if plain.images_per_min else 0.0
    verdict = "PASS" if pages_ratio >= STATIC_GOAL else "FAIL"
    print(
        f"static Mamoru / plain Scrapy: pages {pages_ratio:.2f}x, images {images_ratio:.2f}x "
        f"(goal >= {STATIC_GOAL}x): {verdict}"
    )
    js_verdict = "PASS" if js.pages_per_min >= JS_GOAL else "FAIL"
    print(
        f"JS pages per browser: {js.pages_per_min:.0f}/min (1 browser; goal >= {JS_GOAL:.0f}/min):"
        f" {js_verdict}"
    )
    print(f"total run time: {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
