"""The item pipeline: every image the spider found becomes rows (and evidence when it matches).

Per image: SHA-256; bytes already identified by the current matcher version are not decoded
again (their earlier decisions are reused, across crawls too); new bytes are decoded safely
and identified; the sighting is upserted; each match gets a ``matches`` row, an event and an
evidence manifest. An image that matches nothing keeps only its ``images`` row and its
sighting (hash and URLs). One small transaction per item.

Decoding, hashing and SQL run in the reactor's thread pool, never on the reactor thread, so
downloads go on meanwhile. Items carrying the same bytes are serialised on a per-hash lock:
the first decodes and identifies, the others find the decision made and reuse it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Self

from PIL import Image
from psycopg.types.json import Jsonb
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.threads import deferToThread

from crawler.evidence import EvidenceStore, build_manifest
from crawler.items import ImageItem
from matcher.decode import DecodeLimits
from matcher.errors import InputError
from matcher.hashing import query_fingerprints
from matcher.identify import IDENTIFY_VERSION, Match, ReferenceIndex
from matcher.pool import FingerprintPool
from store.db import Database

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from crawler.spider import SiteSpider

__all__ = [
    "MatchInfo",
    "Outcome",
    "ResourceState",
    "SightingPipeline",
    "UnchangedPage",
    "decode_error_kind",
]

logger = logging.getLogger(__name__)

STAT_PREFIX: Final = "mamoru"


@dataclass
class ResourceState:
    """What the crawler saw at a URL, kept for the next crawl's conditional requests.

    Stored with the crawl (``crawls.stats["incremental"]``, URL -> :meth:`as_json`): the next
    crawl of the site reads the last finished crawl's copy, no table of its own needed.
    """

    url: str
    kind: str  # page | image | stylesheet | archive
    status: int
    etag: str | None = None
    last_modified: str | None = None
    content_sha256: bytes | None = None
    found: dict[str, list[str]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "status": self.status,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "sha256": self.content_sha256.hex() if self.content_sha256 else None,
            "found": self.found,
        }


@dataclass
class UnchangedPage:
    """A page answered 304 or served the same bytes as last time: its sightings are seen again
    without fetching or decoding anything."""

    url: str


@dataclass(frozen=True)
class MatchInfo:
    page_id: int
    page_number: int
    work_id: int
    work_title: str
    publisher: str
    decision: str
    confidence: float
    scores: dict[str, Any]
    explanation: str

    @classmethod
    def from_match(cls, match: Match) -> MatchInfo:
        page = match.page
        return cls(
            page.page_id,
            page.page_number,
            page.work_id,
            page.work_title,
            page.publisher,
            match.decision,
            float(match.confidence),
            dict(match.scores),
            match.explanation,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "page_id": self.page_id,
            "page_number": self.page_number,
            "work_id": self.work_id,
            "work_title": self.work_title,
            "publisher": self.publisher,
            "decision": self.decision,
            "confidence": self.confidence,
            "scores": self.scores,
            "explanation": self.explanation,
        }


@dataclass
class Outcome:
    """What processing one item did, counted into the crawl's stats on the reactor thread."""

    new_image: bool = False
    decoded: bool = False
    reused: bool = False
    new_sighting: bool = False
    matched: bool = False
    new_matches: int = 0
    error: str | None = None


def decode_error_kind(exc: InputError) -> str:
    """A short, stable name for why an image could not be used (stats keys)."""
    reason = exc.reason
    if "decompression bomb" in reason:
        return "image_too_many_pixels"
    if "too large" in reason:
        return "image_too_large"
    if "empty" in reason:
        return "image_empty"
    if "not an image" in reason:
        return "not_an_image"
    if "truncated" in reason:
        return "image_truncated"
    return "image_corrupt"


def pixel_digest(image: Image.Image) -> bytes:
    """SHA-256 of decoded pixels: the identity of a rendered PDF page (no file bytes exist)."""
    digest = hashlib.sha256(struct.pack(">II", *image.size))
    digest.update(image.tobytes())
    return digest.digest()


class SightingPipeline:
    """Scrapy item pipeline: resources from ``from_crawler``/``open_spider``, released in
    ``close_spider`` (one database pool per crawl process)."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.db: Database | None = None
        self.index: ReferenceIndex | None = None
        self.evidence: EvidenceStore | None = None
        self._locks: dict[bytes, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        #: URL -> what was seen there, for the next crawl's conditional requests.
        self.resources: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    @property
    def spider(self) -> SiteSpider:
        from crawler.spider import SiteSpider

        spider = self.crawler.spider
        assert isinstance(spider, SiteSpider)
        return spider

    def open_spider(self) -> None:
        spider = self.spider
        self.db = Database(spider.database_url, min_size=0, max_size=4)
        self.index = ReferenceIndex(self.db)
        self.index.refresh()
        self.pool = FingerprintPool(spider.config.match_processes)
        self.evidence = EvidenceStore(spider.config.evidence_dir)
        self.limits = DecodeLimits(
            max_pixels=spider.config.max_image_pixels, max_bytes=spider.config.max_image_bytes
        )

    def close_spider(self) -> None:
        if self.db is None:
            return
        # Carried forward: a URL this crawl did not reach keeps what the last crawl knew.
        state = {**self.spider.known_resources(), **self.resources}
        try:
            with self.db.connection() as conn:
                conn.execute(
                    "update crawls set stats = stats"
                    " || jsonb_build_object('incremental', %s::jsonb) where id = %s",
                    (Jsonb(state), self.spider.crawl_id),
                )
        finally:
            self.pool.close()
            self.db.close()
            self.db = None

    async def process_item(self, item: Any) -> Any:
        if isinstance(item, ImageItem):
            outcome: Outcome = await maybe_deferred_to_future(deferToThread(self._image, item))
            self._count(outcome)
            # The bytes are no longer needed; the item object lives on in Scrapy's signals.
            item.data = None
        elif isinstance(item, ResourceState):
            self.resources[item.url] = item.as_json()
        elif isinstance(item, UnchangedPage):
            seen = await maybe_deferred_to_future(deferToThread(self._unchanged, item))
            self._inc("sightings_seen_again", seen)
        return item

    # -- stats (reactor thread only: Scrapy's stats collector is not thread-safe)

    def _inc(self, key: str, count: int = 1) -> None:
        stats = self.crawler.stats
        if stats is not None and count:
            stats.inc_value(f"{STAT_PREFIX}/{key}", count)

    def _count(self, outcome: Outcome) -> None:
        self._inc("images")
        if outcome.error:
            self._inc(f"errors/{outcome.error}")
            return
        self._inc("images_new", int(outcome.new_image))
        self._inc("images_decoded", int(outcome.decoded))
        self._inc("images_reused", int(outcome.reused))
        self._inc("sightings_new", int(outcome.new_sighting))
        self._inc("images_matched", int(outcome.matched))
        self._inc("matches", outcome.new_matches)

    # -- worker threads

    def _lock_for(self, sha: bytes) -> threading.Lock:
        with self._locks_guard:
            lock = self._locks.get(sha)
            if lock is None:
                lock = self._locks[sha] = threading.Lock()
            return lock

    def _image(self, item: ImageItem) -> Outcome:
        try:
            return self._image_unguarded(item)
        except Exception:
            # One bad item must not end the crawl; it is counted and logged with its URL.
            logger.exception("failed to process image %s on %s", item.image_url, item.page.url)
            return Outcome(error="pipeline")

    def _image_unguarded(self, item: ImageItem) -> Outcome:
        assert self.db is not None and self.index is not None
        decoded: Image.Image | None = None
        sha = item.sha256
        if sha is None and item.data is not None:
            sha = hashlib.sha256(item.data).digest()
        elif sha is None and item.loader is not None:
            try:
                decoded = item.loader()
            except InputError as exc:
                return Outcome(error=decode_error_kind(exc))
            sha = pixel_digest(decoded)
        if sha is None:
            return Outcome(error="no_content")
        with self._lock_for(sha):
            with self.db.connection() as conn:
                row = conn.execute(
                    "select identified_with, byte_size, media_type from images where sha256 = %s",
                    (sha,),
                ).fetchone()
            known = row is not None and row[0] == IDENTIFY_VERSION
            matches: list[MatchInfo] = []
            size: tuple[int, int] | None = None
            outcome = Outcome()
            if known:
                matches = self._prior_matches(sha)
                outcome.reused = True
            elif decoded is not None or item.data is not None:
                try:
                    if decoded is None:
                        assert item.data is not None
                        query = self.pool.query(
                            item.data, source=item.image_url, limits=self.limits
                        )
                        size, fps = query.size, query.fingerprints
                    else:
                        size, fps = decoded.size, query_fingerprints(decoded)
                except InputError as exc:
                    return Outcome(error=decode_error_kind(exc))
                matches = [MatchInfo.from_match(m) for m in self.index.identify_fingerprints(fps)]
                outcome.decoded = True
            elif row is None:
                return Outcome(error="no_content")
            byte_size = len(item.data) if item.data is not None else (row[1] if row else 0)
            evidence_bytes = item.data
            if matches and evidence_bytes is None and decoded is not None:
                evidence_bytes = _png(decoded)
            with self.db.connection() as conn:
                inserted = conn.execute(
                    """
                    insert into images (sha256, byte_size, media_type) values (%s, %s, %s)
                    on conflict (sha256) do nothing returning 1
                    """,
                    (sha, byte_size, item.media_type),
                ).fetchone()
                outcome.new_image = inserted is not None
                if size is not None:
                    conn.execute(
                        """
                        update images set identified_with = %s, identified_at = now(),
                            width = %s, height = %s, media_type = coalesce(media_type, %s)
                        where sha256 = %s
                        """,
                        (IDENTIFY_VERSION, size[0], size[1], item.media_type, sha),
                    )
                sighting = conn.execute(
                    """
                    insert into sightings (site_id, first_crawl_id, last_crawl_id, page_url,
                                           image_url, image_sha256)
                    values (%(site)s, %(crawl)s, %(crawl)s, %(page)s, %(image)s, %(sha)s)
                    on conflict (site_id, page_url, image_url, image_sha256) do update set
                        last_crawl_id = excluded.last_crawl_id, last_seen_at = now()
                    returning id, evidence_ref, (xmax = 0) as inserted
                    """,
                    {
                        "site": self.spider.config.site_id,
                        "crawl": self.spider.crawl_id,
                        "page": item.page.url,
                        "image": item.image_url,
                        "sha": sha,
                    },
                ).fetchone()
                assert sighting is not None
                sighting_id, previous_ref, new_sighting = int(sighting[0]), sighting[1], sighting[2]
                outcome.new_sighting = bool(new_sighting)
                if matches:
                    outcome.matched = True
                    ref = self._evidence(item, evidence_bytes, sha, matches, previous_ref)
                    conn.execute(
                        "update sightings set evidence_ref = %s where id = %s", (ref, sighting_id)
                    )
                    for match in matches:
                        outcome.new_matches += self._insert_match(conn, sighting_id, match)
            return outcome

    def _insert_match(self, conn: Any, sighting_id: int, match: MatchInfo) -> int:
        row = conn.execute(
            """
            insert into matches (sighting_id, page_id, confidence, decision, scores, explanation)
            values (%s, %s, %s, %s, %s, %s)
            on conflict (sighting_id, page_id) do nothing returning id
            """,
            (
                sighting_id,
                match.page_id,
                match.confidence,
                match.decision,
                Jsonb(match.scores),
                match.explanation,
            ),
        ).fetchone()
        if row is None:
            return 0
        conn.execute(
            """
            insert into events (subject_type, subject_id, event_type, to_state, actor, details)
            values ('match', %s, 'created', 'pending', 'system', %s)
            """,
            (
                row[0],
                Jsonb(
                    {
                        "crawl_id": self.spider.crawl_id,
                        "sighting_id": sighting_id,
                        "decision": match.decision,
                        "confidence": match.confidence,
                    }
                ),
            ),
        )
        return 1

    def _prior_matches(self, sha: bytes) -> list[MatchInfo]:
        """The latest decision per registered page for these bytes, from any earlier sighting."""
        assert self.db is not None
        with self.db.connection() as conn:
            rows = conn.execute(
                """
                select distinct on (m.page_id) m.page_id, pg.page_number, w.id, w.title, p.name,
                       m.decision, m.confidence, m.scores, m.explanation
                from matches m
                join sightings s on s.id = m.sighting_id
                join pages pg on pg.id = m.page_id
                join works w on w.id = pg.work_id
                join publishers p on p.id = w.publisher_id
                where s.image_sha256 = %s
                order by m.page_id, m.created_at desc
                """,
                (sha,),
            ).fetchall()
        return [
            MatchInfo(
                int(r[0]), int(r[1]), int(r[2]), r[3], r[4], r[5], float(r[6]), dict(r[7]), r[8]
            )
            for r in rows
        ]

    def _evidence(
        self,
        item: ImageItem,
        image_bytes: bytes | None,
        sha: bytes,
        matches: list[MatchInfo],
        previous: str | None,
    ) -> str:
        assert self.evidence is not None
        spider = self.spider
        manifest = build_manifest(
            self.evidence,
            item,
            image_bytes=image_bytes,
            image_sha256=sha.hex(),
            site={"id": spider.config.site_id, "name": spider.config.site_name},
            crawl_id=spider.crawl_id,
            matches=[m.as_json() for m in matches],
            previous=previous,
            extra={
                "crawler": {
                    "user_agent": spider.config.user_agent,
                    "matcher_version": IDENTIFY_VERSION,
                }
            },
        )
        return self.evidence.put_manifest(manifest)

    def _unchanged(self, page: UnchangedPage) -> int:
        assert self.db is not None
        spider = self.spider
        with self.db.connection() as conn:
            cursor = conn.execute(
                """
                update sightings set last_crawl_id = %s, last_seen_at = now()
                where site_id = %s and page_url = %s
                """,
                (spider.crawl_id, spider.config.site_id, page.url),
            )
            return cursor.rowcount


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
