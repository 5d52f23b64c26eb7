"""What a correct crawler must find on a fixture site, as data the crawler tests assert against.

Every URL is absolute (``site.url(path)``). Each field is a lower bound or a prohibition, never
an exact inventory: a crawler may find more (placeholders, directory icons) without failing.
Fields that do not apply to a site stay empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Values of Expected.errors.
NOT_FOUND = "http_404"
REDIRECT_LOOP = "redirect_loop"  # a crawler may equally report it as too many redirects
TOO_MANY_REDIRECTS = "too_many_redirects"


@dataclass(frozen=True)
class SampleRef:
    """Which sample work page (``admin.samples``) an image or canvas shows, and how it differs."""

    title: str
    page: int
    transform: str = "scaled"


@dataclass(frozen=True)
class Expected:
    name: str
    start_url: str
    #: HTML pages a crawler must visit (and get 200 for); ``page_count`` is their number.
    pages: frozenset[str] = frozenset()
    #: Image URLs it must discover and fetch (successfully, given the right Referer).
    images: frozenset[str] = frozenset()
    #: ``data:`` image URIs it must pick out of the HTML (exact strings).
    data_uris: frozenset[str] = frozenset()
    #: Subset of ``images`` that static HTML does not name: only running the page's script finds
    #: them (a JSON list, infinite scroll batches, a canvas reader's fetch).
    browser_only: frozenset[str] = frozenset()
    #: Subset of ``images`` a browser requests only after scrolling them into view.
    below_fold: frozenset[str] = frozenset()
    #: Image URL -> the sample page it copies. Archive members are ``<archive url>#<member>`` for
    #: a CBZ and ``<archive url>#page=<n>`` for a PDF (1-based).
    copies: Mapping[str, SampleRef] = field(default_factory=dict)
    #: Page URL -> sample pages its ``<canvas>`` elements show, in document order. The pixels
    #: are what a reader sees; the fetched bytes may not match (scrambled tiles).
    canvases: Mapping[str, tuple[SampleRef, ...]] = field(default_factory=dict)
    #: Archive URL (CBZ, PDF) -> number of page images inside.
    archives: Mapping[str, int] = field(default_factory=dict)
    #: URL -> where it ends up (HTTP redirect chains and meta refresh).
    redirects: Mapping[str, str] = field(default_factory=dict)
    #: URL -> the error a crawler must record for it (``NOT_FOUND``, ``REDIRECT_LOOP``, ...).
    errors: Mapping[str, str] = field(default_factory=dict)
    #: URL -> seconds before the server answers; the crawl must go on meanwhile.
    slow: Mapping[str, float] = field(default_factory=dict)
    #: URL -> body size in bytes; a crawler with a smaller size limit must cut it off.
    large: Mapping[str, int] = field(default_factory=dict)
    #: Images served only with a Referer from this site (403 without).
    hotlinked: frozenset[str] = frozenset()
    #: URLs robots.txt disallows: never requested when robots.txt is obeyed, found (pages
    #: visited, images fetched) when the site's policy overrides it.
    disallowed: frozenset[str] = frozenset()
    #: URLs a crawler must refuse before connecting: private, loopback or link-local addresses
    #: (also as a redirect target) when the policy refuses them.
    refused: frozenset[str] = frozenset()
    #: URLs on this server that must never appear in ``site.requests`` (checked by path).
    not_fetched: frozenset[str] = frozenset()
    #: Page URL -> which validators it sends: "etag", "last-modified", "both" or "none".
    validators: Mapping[str, str] = field(default_factory=dict)

    @property
    def page_count(self) -> int:
        return len(self.pages)

    @property
    def static_images(self) -> frozenset[str]:
        """Images a crawler finds without running scripts."""
        return self.images - self.browser_only

    @property
    def disallowed_images(self) -> frozenset[str]:
        return frozenset(url for url in self.disallowed if _looks_like_image(url))


def _looks_like_image(url: str) -> bool:
    return url.rsplit("?", 1)[0].lower().endswith((".jpg", ".jpeg", ".png", ".gif", ".webp"))
