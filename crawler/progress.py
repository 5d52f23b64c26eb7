"""Live counters of a running crawl, written as JSON lines for the process that started it.

The crawl runs in a child process (:mod:`crawler.worker`); this extension writes the
counters every half second to the stream the worker gives the spider (``progress_stream``),
and the parent turns them into a progress display. No stream: the extension does nothing.
"""

from __future__ import annotations

import json
from typing import IO, TYPE_CHECKING, Any, Self

from scrapy import signals
from twisted.internet import task

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

__all__ = ["ProgressExtension", "counters"]

INTERVAL = 0.5


def counters(stats: dict[str, Any]) -> dict[str, int]:
    """The numbers a progress display shows, from Scrapy's stats."""

    def get(key: str) -> int:
        return int(stats.get(f"mamoru/{key}", 0))

    errors = sum(int(v) for k, v in stats.items() if k.startswith("mamoru/errors/"))
    return {
        "pages": get("pages") + get("pages_not_modified") + get("pages_unchanged"),
        "images": get("images"),
        "matches": get("matches"),
        "errors": errors,
    }


class ProgressExtension:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self._loop: task.LoopingCall | None = None
        self._stream: IO[str] | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        extension = cls(crawler)
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_opened(self) -> None:
        spider = self.crawler.spider
        self._stream = getattr(spider, "progress_stream", None)
        if self._stream is None:
            return
        self._loop = task.LoopingCall(self.report)
        self._loop.start(INTERVAL, now=True)

    def report(self) -> None:
        if self._stream is None or self.crawler.stats is None:
            return
        line = {"type": "progress", **counters(self.crawler.stats.get_stats())}
        try:
            self._stream.write(json.dumps(line) + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            self._stream = None  # the parent went away; the crawl itself goes on

    def spider_closed(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self.report()
