"""The crawl's child process: ``python -m crawler.worker`` runs one Scrapy crawl and exits.

Twisted's reactor runs once per process and netguard's resolver takes its policy from the
process settings, so every crawl gets a fresh process (:func:`crawler.run.run_crawl` starts
it). The job arrives as JSON on stdin; stdout carries JSON lines only (``progress`` while it
runs, one ``done`` with the stats at the end); logs go to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from crawler.config import CrawlConfig, scrapy_settings

__all__ = ["crawl_in_process", "main", "summarize"]


def summarize(stats: dict[str, Any]) -> dict[str, Any]:
    """The crawl's stats as stored in ``crawls.stats``: Mamoru's counters plus Scrapy's own
    totals, JSON-safe."""

    def get(key: str) -> int:
        return int(stats.get(f"mamoru/{key}", 0))

    prefix = "mamoru/errors/"
    errors = {k[len(prefix) :]: int(v) for k, v in sorted(stats.items()) if k.startswith(prefix)}
    statuses = {
        k.rsplit("/", 1)[1]: int(v)
        for k, v in stats.items()
        if k.startswith("downloader/response_status_count/")
    }
    names = (
        "pages",
        "pages_not_modified",
        "pages_unchanged",
        "pages_rendered",
        "pages_over_limit",
        "pages_not_html",
        "images",
        "images_new",
        "images_decoded",
        "images_reused",
        "images_matched",
        "images_not_modified",
        "images_from_browser",
        "matches",
        "sightings_new",
        "sightings_seen_again",
        "archives",
        "archives_not_modified",
        "archive_pages",
        "sitemaps",
        "robots_forbidden",
        "render_blocked",
    )
    summary: dict[str, Any] = {name: get(name) for name in names}
    summary.update(
        {
            "errors": errors,
            "bytes": int(stats.get("downloader/response_bytes", 0)),
            "requests": int(stats.get("downloader/request_count", 0)),
            "responses": int(stats.get("response_received_count", 0)),
            "status_counts": statuses,
            "netguard_blocked": int(stats.get("netguard/blocked", 0)),
            "duration_seconds": round(float(stats.get("elapsed_time_seconds", 0.0)), 3),
            "finish_reason": str(stats.get("finish_reason", "")),
        }
    )
    return summary


def crawl_in_process(
    config: CrawlConfig,
    crawl_id: int,
    database_url: str,
    *,
    progress_stream: IO[str] | None = None,
) -> dict[str, Any]:
    """Run the crawl in this process (once per process: the reactor cannot restart)."""
    from scrapy.crawler import CrawlerProcess

    from crawler.spider import SiteSpider

    process = CrawlerProcess(scrapy_settings(config))
    crawler = process.create_crawler(SiteSpider)
    process.crawl(
        crawler,
        config=config,
        crawl_id=crawl_id,
        database_url=database_url,
        progress_stream=progress_stream,
    )
    process.start()
    assert crawler.stats is not None
    return summarize(crawler.stats.get_stats())


def main() -> None:
    job = json.loads(sys.stdin.read())
    config = CrawlConfig.from_json(job["config"])
    out = sys.stdout
    stats = crawl_in_process(
        config, int(job["crawl_id"]), str(job["database_url"]), progress_stream=out
    )
    out.write(json.dumps({"type": "done", "stats": stats}) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
