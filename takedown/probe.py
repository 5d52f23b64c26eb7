"""Is a reported copy still served? Fetching and judging URLs for a recheck.

Every request goes through :func:`takedown.rdap.fetch`: the crawler's SSRF policy
(:mod:`crawler.netguard`, checked on the URL, on the resolved addresses that the connection is
then pinned to, and on every redirect), a bounded body and one deadline per request. A site's
``allow_private_addresses`` is honoured the way the crawler honours it. Bodies are decoded with
the matcher's limits (:func:`matcher.decode.decode_image`) and compared with the registered
page by the matcher's own verification (:func:`matcher.robust.score`) against the review
threshold: above it the image is still a copy, whatever its bytes.

A recheck asks the way the crawler asked (:class:`SiteRequests`): the crawler's User-Agent, the
site's own headers and cookies, an image with its page as Referer, and the cookies the site set
kept for the next request. A site whose images answer 401/403 to a visitor that has not been
on the page (hotlink protection, a cookie set by the page) gets the page visited first and the
image asked again, as a reader's browser would; without this every recheck of such a site
would be an ``error`` forever.

A URL's verdict (:func:`judge`):

- ``same``: a 2xx with exactly the bytes the crawl saw (same SHA-256);
- ``match``: a 2xx with other bytes that still copy the page (re-encoded, resized, re-framed);
- ``absent``: 404, 410 or 451, or a 2xx with something that is not a copy of the page (a
  placeholder image, an HTML "removed" page served at the image URL);
- ``error``: the recheck cannot tell: no answer, refused by the SSRF policy, too large, any
  other status (403 even after a visit to the page, 429, 5xx), an image too large or too broken to
  decode, or a page without current fingerprints to compare with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol

from psycopg import Connection

from crawler.config import ACCEPT_LANGUAGE, default_user_agent
from crawler.cookies import add_cookies
from crawler.discovery import discover
from crawler.netguard import AddressPolicy
from matcher import robust
from matcher.decode import DecodeLimits, decode_image
from matcher.errors import InputError
from matcher.fingerprint import Fingerprint
from matcher.identify import Thresholds
from store.db import Database
from takedown.rdap import Fetched, FetchError, fetch

__all__ = [
    "GONE_STATUSES",
    "Body",
    "Fetcher",
    "Judgement",
    "PageScorer",
    "ProbeLimits",
    "Prober",
    "Seen",
    "SiteRequests",
    "Verdict",
    "judge",
    "judge_body",
]

Verdict = Literal["same", "match", "absent", "error"]

#: Statuses that say the resource is gone (451: unavailable for legal reasons, i.e. removed).
GONE_STATUSES: Final = frozenset({404, 410, 451})
_MIB: Final = 1024 * 1024
_IMAGE_ACCEPT: Final = "image/avif,image/webp,image/png,image/jpeg,image/*;q=0.9,*/*;q=0.5"
_PAGE_ACCEPT: Final = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
_HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml"})
# Decoder complaints that mean "this is not an image at all" (an HTML page, an empty body):
# the copy is not there. Any other failure (a pixel bomb, truncated data) says nothing about
# the copy and leaves the verdict open.
_NOT_AN_IMAGE: Final = ("not an image", "empty file")
# What a site answers an image request it will not serve to this visitor (as opposed to 404:
# gone): hotlink protection, a cookie gate.
_DENIED: Final = frozenset({401, 403})


class Fetcher(Protocol):
    def __call__(
        self,
        url: str,
        *,
        policy: AddressPolicy,
        timeout: float,
        max_bytes: int,
        max_redirects: int,
        accept: str,
        headers: Mapping[str, str] | None = None,
        cookies: CookieJar | None = None,
    ) -> Fetched: ...


@dataclass(frozen=True)
class SiteRequests:
    """What the crawler sends a site with every request: the site policy's headers (a language,
    an age gate) and cookies. A recheck sends the same, so the site answers it as it answered
    the crawl."""

    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    cookies: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


_NO_SITE: Final = SiteRequests()


@dataclass(frozen=True)
class ProbeLimits:
    """Bounds per recheck request, and on how far a recheck looks for a moved copy."""

    timeout: float = 30.0
    max_redirects: int = 5
    max_page_bytes: int = 10 * _MIB
    max_image_bytes: int = 100 * _MIB
    max_image_pixels: int = 50_000_000
    # Images of the page (on the site's own domains) tried when the reported one is gone.
    max_candidates: int = 40
    # Other image URLs of the site's sightings of the same copy tried after them.
    max_other_sightings: int = 10

    @property
    def decode(self) -> DecodeLimits:
        return DecodeLimits(max_pixels=self.max_image_pixels, max_bytes=self.max_image_bytes)


class Body:
    """A 2xx body: its digest at once, its fingerprints when first needed (most rechecks find
    the same bytes and never decode)."""

    def __init__(self, data: bytes, source: str, limits: DecodeLimits) -> None:
        self.sha256 = hashlib.sha256(data).digest()
        self.not_image = False
        self.problem: str | None = None
        self._data: bytes | None = data
        self._source = source
        self._limits = limits
        self._fingerprints: tuple[Fingerprint, ...] | None = None

    def fingerprints(self) -> tuple[Fingerprint, ...] | None:
        """Region fingerprints, or None with ``not_image`` or ``problem`` set."""
        if self._data is not None:
            data, self._data = self._data, None  # hashed once; the bytes are not kept
            try:
                with decode_image(data, source=self._source, limits=self._limits) as image:
                    self._fingerprints = tuple(robust.query_fingerprints(image))
            except InputError as exc:
                if exc.reason.startswith(_NOT_AN_IMAGE):
                    self.not_image = True
                else:
                    self.problem = exc.reason
        return self._fingerprints


@dataclass
class Seen:
    """What one GET of a URL showed."""

    url: str
    status: int | None = None
    error: str | None = None
    body: Body | None = None  # 2xx bodies that are not HTML
    images: tuple[str, ...] = ()  # an HTML page's image URLs, in document order
    inline: tuple[Body, ...] = ()  # an HTML page's data: images
    final_url: str | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "status": self.status}
        if self.error is not None:
            out["error"] = self.error
        if self.final_url not in (None, self.url):
            out["final_url"] = self.final_url
        return out


class Prober:
    """GETs through the SSRF policy, each URL once per recheck (items of one notice often share
    a page, and every item of a page looks at the same images), with one cookie jar for the
    whole recheck, as one reader's browser."""

    def __init__(
        self,
        limits: ProbeLimits = ProbeLimits(),
        fetcher: Fetcher = fetch,
        *,
        user_agent: str | None = None,
    ) -> None:
        self.limits = limits
        self._fetch = fetcher
        self._user_agent = user_agent or default_user_agent()
        self._jar = CookieJar()
        self._seen: dict[tuple[bool, str, str], Seen] = {}

    def image(
        self,
        url: str,
        policy: AddressPolicy,
        *,
        page: str | None = None,
        site: SiteRequests = _NO_SITE,
    ) -> Seen:
        """The image at ``url``, asked for as shown on ``page`` (its Referer). Refused (401/403),
        ``page`` is visited and the image asked again with what the visit left in the jar."""
        key = (policy.allow_private, "image", url)
        if key in self._seen:
            return self._seen[key]
        seen = self._fetch_one(url, policy, "image", site, page)
        if seen.status in _DENIED and page is not None and page != url:
            self.page(page, policy, site=site)
            seen = self._fetch_one(url, policy, "image", site, page)
        self._seen[key] = seen
        return seen

    def page(self, url: str, policy: AddressPolicy, *, site: SiteRequests = _NO_SITE) -> Seen:
        key = (policy.allow_private, "page", url)
        if key not in self._seen:
            self._seen[key] = self._fetch_one(url, policy, "page", site, None)
        return self._seen[key]

    def _headers(self, url: str, site: SiteRequests, referer: str | None) -> dict[str, str]:
        # The crawler's order: its defaults, then the site's own headers over them (names in
        # one spelling, so that a site's "user-agent" replaces the default instead of joining it).
        headers = {"User-Agent": self._user_agent, "Accept-Language": ACCEPT_LANGUAGE}
        headers.update({_header_name(k): v for k, v in site.headers.items()})
        if referer is not None:
            headers["Referer"] = referer
        # The site's configured cookies go to the host asked, as the renderer sets them for the
        # page's origin; a cookie the site itself set since wins.
        add_cookies(self._jar, url, site.cookies)
        return headers

    def _fetch_one(
        self, url: str, policy: AddressPolicy, kind: str, site: SiteRequests, referer: str | None
    ) -> Seen:
        page = kind == "page"
        limits = self.limits
        try:
            got = self._fetch(
                url,
                policy=policy,
                timeout=limits.timeout,
                max_bytes=limits.max_page_bytes if page else limits.max_image_bytes,
                max_redirects=limits.max_redirects,
                accept=_PAGE_ACCEPT if page else _IMAGE_ACCEPT,
                headers=self._headers(url, site, referer),
                cookies=self._jar,
            )
        except FetchError as exc:
            return Seen(url, status=exc.status, error=f"{exc.reason}: {exc.detail or exc.url}")
        seen = Seen(url, status=got.status, final_url=got.url)
        if not 200 <= got.status < 300:
            return seen
        if page and _is_html(got):
            found = discover(got.body, got.url, content_type=got.content_type)
            seen.images = tuple(dict.fromkeys(found.image_urls))
            seen.inline = tuple(
                Body(d.data, f"{url} (inline image)", limits.decode) for d in found.data_images
            )
        else:
            seen.body = Body(got.body, url, limits.decode)
        return seen


def _header_name(name: str) -> str:
    return "-".join(part.capitalize() for part in name.strip().split("-"))


def _is_html(got: Fetched) -> bool:
    if got.content_type:
        return got.content_type in _HTML_TYPES
    return got.body.lstrip()[:1] == b"<"


_THRESHOLDS: Final = Thresholds()


class PageScorer:
    """Scores images against one registered page's region fingerprints, read once per page."""

    def __init__(self, db: Database, thresholds: Thresholds = _THRESHOLDS) -> None:
        self._db = db
        self.threshold = thresholds.review
        self._pages: dict[int, list[Fingerprint]] = {}

    def preload(self, conn: Connection[Any], page_ids: Iterable[int]) -> None:
        """Read the pages' fingerprints now, on ``conn`` (then scoring needs no connection)."""
        for page_id in page_ids:
            if page_id not in self._pages:
                self._pages[page_id] = _reference(conn, page_id)

    def score(self, fingerprints: Sequence[Fingerprint], page_id: int) -> float | None:
        """The region score, or None when the page has no current fingerprints (a
        re-fingerprint is pending): nothing to compare with is not "no longer a copy"."""
        reference = self._reference(page_id)
        if not reference:
            return None
        value, _ = robust.score(fingerprints, reference)
        return value

    def _reference(self, page_id: int) -> list[Fingerprint]:
        if page_id not in self._pages:
            with self._db.connection() as conn:
                self._pages[page_id] = _reference(conn, page_id)
        return self._pages[page_id]


def _reference(conn: Connection[Any], page_id: int) -> list[Fingerprint]:
    rows = conn.execute(
        "select value, variant, params -> 'box' from fingerprints "
        "where page_id = %s and kind = %s and version = %s order by id",
        (page_id, robust.KIND, robust.VERSION),
    ).fetchall()
    # The same shape ReferenceIndex gives robust.score (unsigned values, boxes, group).
    return [
        Fingerprint(
            kind=robust.KIND,
            value=int(value) & 0xFFFF_FFFF_FFFF_FFFF,
            params=MappingProxyType({"box": tuple(int(c) for c in box), "group": "reference"}),
            variant=str(variant),
            version=robust.VERSION,
        )
        for value, variant, box in rows
    ]


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    details: dict[str, Any] = field(default_factory=dict)


def judge(seen: Seen, sha256: bytes, page_id: int, scorer: PageScorer) -> Judgement:
    """Whether ``seen`` (an image URL's answer) still serves the copy of ``page_id``."""
    info = seen.summary()
    if seen.error is not None:
        return Judgement("error", info)
    if seen.status in GONE_STATUSES:
        return Judgement("absent", info)
    if seen.body is None:
        return Judgement("error", info | {"error": f"HTTP {seen.status} says nothing"})
    verdict = judge_body(seen.body, sha256, page_id, scorer)
    return Judgement(verdict.verdict, info | verdict.details)


def judge_body(body: Body, sha256: bytes, page_id: int, scorer: PageScorer) -> Judgement:
    if body.sha256 == sha256:
        return Judgement("same", {"same_bytes": True})
    fingerprints = body.fingerprints()
    if fingerprints is None:
        if body.not_image:
            return Judgement("absent", {"not_image": True})
        return Judgement("error", {"error": f"cannot decode: {body.problem}"})
    score = scorer.score(fingerprints, page_id)
    if score is None:
        return Judgement("error", {"error": f"page {page_id} has no current fingerprints"})
    verdict: Verdict = "match" if score > scorer.threshold else "absent"
    return Judgement(verdict, {"score": round(score, 3)})
