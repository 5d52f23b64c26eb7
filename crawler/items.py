"""What the spider hands the pipeline: one :class:`ImageItem` per image seen on a page.

A page's capture (HTML as served, headers, address, screenshot) is one shared
:class:`PageCapture` object referenced by every item of that page, so a page with a hundred
images is held in memory once, and only the pipeline decides whether it becomes evidence
(only for images that match).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from PIL import Image

__all__ = ["ImageItem", "PageCapture", "headers_dict", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def headers_dict(headers: Any) -> dict[str, list[str]]:
    """Response headers as plain text lists (Scrapy's are bytes, Playwright's are text)."""
    out: dict[str, list[str]] = {}
    if headers is None:
        return out
    if hasattr(headers, "getlist"):  # scrapy.http.Headers
        for key in headers:
            name = key.decode("latin-1") if isinstance(key, bytes) else str(key)
            values = headers.getlist(key)
            out[name] = [v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in values]
        return out
    for key, value in dict(headers).items():
        out.setdefault(str(key), []).append(str(value))
    return out


@dataclass
class PageCapture:
    """One page as the crawler saw it. ``html`` is the body as served (never the rendered DOM);
    ``screenshot`` is set when the page was rendered."""

    url: str
    status: int
    headers: dict[str, list[str]]
    ip_address: str | None
    fetched_at: datetime
    html: bytes
    media_type: str = "text/html"
    screenshot: bytes | None = None
    rendered: bool = False


@dataclass
class ImageItem:
    """One image on one page.

    ``data`` holds the bytes as fetched; ``loader`` decodes a picture that has no bytes of
    its own (a PDF page, rendered on demand); neither when the crawler knows the content is
    unchanged and gives only ``sha256`` (a 304, or a URL fetched earlier in this crawl).
    """

    page: PageCapture
    image_url: str
    source: str  # how it was found: "img-src", "browser", "canvas", "archive", "data-uri", ...
    data: bytes | None = None
    loader: Callable[[], Image.Image] | None = None
    sha256: bytes | None = None
    media_type: str | None = None
    headers: dict[str, list[str]] = field(default_factory=dict)
    ip_address: str | None = None
    fetched_at: datetime = field(default_factory=utc_now)
    referer: str | None = None
