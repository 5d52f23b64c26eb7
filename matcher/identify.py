"""Identify which registered pages an image copies.

Retrieval is generous and exact: every reference fingerprint within ``RETRIEVAL_RADIUS`` bits of
the query's fingerprint of the same kind and variant comes back from an in-memory
``HammingIndex``. Verification is strict: a candidate page becomes a match only when several
fingerprints agree (``Thresholds``), because a wrong match becomes a wrongful legal notice.

The thresholds here are provisional, set for the global pHash + dHash fingerprints of
``matcher.fingerprint``; docs/decisions records how they are to be chosen by
``bench/matching_quality.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from matcher.fingerprint import FINGERPRINT_VERSION, Fingerprint, fingerprint_image, hamming
from matcher.index import HammingIndex
from store.db import Database

RETRIEVAL_KIND = "phash"
RETRIEVAL_RADIUS = 12


@dataclass(frozen=True)
class Thresholds:
    """Distances (bits of 64) at or below which a candidate is a match."""

    confident_phash: int = 6
    confident_dhash: int = 10
    review_phash: int = 12
    review_dhash: int = 16


@dataclass(frozen=True)
class PageInfo:
    page_id: int
    page_number: int
    work_id: int
    work_title: str
    publisher_id: int
    publisher: str


@dataclass(frozen=True)
class Match:
    page: PageInfo
    decision: str  # "confident" or "review"
    confidence: float  # 0..1, higher is more similar
    scores: dict[str, int] = field(default_factory=dict)  # distance per fingerprint kind
    explanation: str = ""


class ReferenceIndex:
    """The registered fingerprints of the current version, indexed, kept fresh from PostgreSQL.

    New pages are picked up by ``refresh()`` (fingerprints with an id above the last one seen),
    which ``identify`` calls at most every ``refresh_seconds``: a work registered while workers
    run becomes matchable within that delay, without a restart. Deleted pages are filtered out
    when candidates are resolved against the database.
    """

    def __init__(self, db: Database, *, refresh_seconds: float = 30.0) -> None:
        self._db = db
        self._refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._indexes: dict[tuple[str, str], HammingIndex] = {}
        # Second-stage lookups: (kind, variant, page id) -> codes of that page.
        self._codes: dict[tuple[str, str, int], list[int]] = {}
        self._last_id = 0
        self._refreshed_at = float("-inf")

    def __len__(self) -> int:
        return sum(len(index) for index in self._indexes.values())

    def refresh(self) -> int:
        """Load fingerprints added since the last refresh; return how many were added."""
        with self._lock:
            with self._db.connection() as conn:
                rows = conn.execute(
                    """
                    select id, page_id, kind, variant, value from fingerprints
                    where id > %s and version = %s order by id
                    """,
                    (self._last_id, FINGERPRINT_VERSION),
                ).fetchall()
            self._refreshed_at = time.monotonic()
            if not rows:
                return 0
            grouped: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
            for fp_id, page_id, kind, variant, value in rows:
                unsigned = int(value) & 0xFFFF_FFFF_FFFF_FFFF
                codes, pages = grouped.setdefault((kind, variant), ([], []))
                codes.append(unsigned)
                pages.append(int(page_id))
                self._codes.setdefault((kind, variant, int(page_id)), []).append(unsigned)
                self._last_id = max(self._last_id, int(fp_id))
            for key, (codes, pages) in grouped.items():
                index = self._indexes.setdefault(key, HammingIndex())
                index.add(np.array(codes, dtype=np.uint64), np.array(pages, dtype=np.int64))
            return len(rows)

    def _refresh_if_due(self) -> None:
        if time.monotonic() - self._refreshed_at >= self._refresh_seconds:
            self.refresh()

    def identify(
        self, image: Image.Image, *, thresholds: Thresholds = Thresholds(), limit: int = 10
    ) -> list[Match]:
        """Registered pages ``image`` copies, best first (empty when it copies none)."""
        return self.identify_fingerprints(fingerprint_image(image), thresholds=thresholds)[:limit]

    def identify_fingerprints(
        self, fingerprints: Sequence[Fingerprint], *, thresholds: Thresholds = Thresholds()
    ) -> list[Match]:
        self._refresh_if_due()
        query = {(fp.kind, fp.variant): fp.value for fp in fingerprints}
        retrieval = query.get((RETRIEVAL_KIND, "full"))
        index = self._indexes.get((RETRIEVAL_KIND, "full"))
        if retrieval is None or index is None or len(index) == 0:
            return []
        hits = index.search(np.array([retrieval], dtype=np.uint64), RETRIEVAL_RADIUS)
        best_phash: dict[int, int] = {}
        for page_id, distance in zip(hits.ids.tolist(), hits.distances.tolist(), strict=True):
            best_phash[page_id] = min(distance, best_phash.get(page_id, 64))
        verified: list[tuple[int, str, dict[str, int]]] = []
        for page_id, d_phash in best_phash.items():
            d_dhash = (
                min(
                    (
                        hamming(query[("dhash", "full")], code)
                        for code in self._codes.get(("dhash", "full", page_id), [])
                    ),
                    default=64,
                )
                if ("dhash", "full") in query
                else 64
            )
            if d_phash <= thresholds.confident_phash and d_dhash <= thresholds.confident_dhash:
                verified.append((page_id, "confident", {"phash": d_phash, "dhash": d_dhash}))
            elif d_phash <= thresholds.review_phash and d_dhash <= thresholds.review_dhash:
                verified.append((page_id, "review", {"phash": d_phash, "dhash": d_dhash}))
        if not verified:
            return []
        pages = _page_info(self._db, [page_id for page_id, _, _ in verified])
        matches = [
            Match(
                page=pages[page_id],
                decision=decision,
                confidence=round(1.0 - (scores["phash"] + scores["dhash"]) / 64.0, 4),
                scores=scores,
                explanation=(
                    f"pHash distance {scores['phash']}, dHash distance {scores['dhash']} "
                    f"(of 64 bits) on the whole page"
                ),
            )
            for page_id, decision, scores in verified
            if page_id in pages  # deleted since the index loaded it
        ]
        matches.sort(key=lambda m: (m.decision != "confident", -m.confidence, m.page.page_id))
        return matches


def _page_info(db: Database, page_ids: list[int]) -> dict[int, PageInfo]:
    with db.connection() as conn:
        rows = conn.execute(
            """
            select pg.id, pg.page_number, w.id, w.title, p.id, p.name
            from pages pg
            join works w on w.id = pg.work_id
            join publishers p on p.id = w.publisher_id
            where pg.id = any(%s)
            """,
            (page_ids,),
        ).fetchall()
    return {
        int(r[0]): PageInfo(int(r[0]), int(r[1]), int(r[2]), r[3], int(r[4]), r[5]) for r in rows
    }
