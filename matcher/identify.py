"""Identify which registered pages an image copies.

Retrieval is generous and exact: every reference region hash (``matcher.robust``) within
``robust.RETRIEVAL_RADIUS`` bits of any of the query's region hashes comes back from one
in-memory ``HammingIndex``, in one batched search per image. Verification is strict: a candidate
page is scored by ``robust.score`` (region pairs must agree on one placement of the page in the
image) and becomes a match only above calibrated thresholds, because a wrong match becomes a
wrongful legal notice. Global pHash/dHash distances are reported beside the score as
corroboration; they do not decide.

Thresholds come from ``bench/matching_quality.py``; docs/decisions/0005 records the run.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
from PIL import Image

from matcher import robust
from matcher.fingerprint import Fingerprint, hamming
from matcher.hashing import CURRENT_VERSIONS, query_fingerprints
from matcher.index import HammingIndex
from store.db import Database

__all__ = [
    "IDENTIFY_VERSION",
    "Match",
    "PageInfo",
    "ReferenceIndex",
    "Thresholds",
    "confidence_of",
]


@dataclass(frozen=True)
class Thresholds:
    """Region-score thresholds (``robust.score``) chosen by ``bench/matching_quality.py``.

    ``review``: the lowest score at which at most 1 in 10,000 unrelated images (most of them
    look-alike pages) scores higher: above it a candidate goes to review. ``confident``: above
    every unrelated image of the run with a margin; such matches may be auto-approved when the
    publisher opted in.
    """

    review: float = robust.THRESHOLD
    confident: float = 3.0


# What identified a crawled image: every fingerprint version and the default thresholds. An image
# identified under another value is identified again (crawler pipeline, images.identified_with).
IDENTIFY_VERSION = "+".join(
    [f"{kind}:{version}" for kind, version in CURRENT_VERSIONS.items()]
    + [f"review>{Thresholds().review}", f"confident>{Thresholds().confident}"]
)


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
    confidence: float  # 0..1, see confidence_of
    scores: dict[str, float] = field(default_factory=dict)
    explanation: str = ""


def confidence_of(score: float, thresholds: Thresholds = Thresholds()) -> float:
    """Map a region score onto 0..1: 0.5 at the review threshold, 0.9 at the confident one.

    Publishers choose an auto-approval confidence, so the scale is anchored at the two
    calibrated points rather than at an arbitrary maximum score.

    >>> t = Thresholds(review=2.0, confident=4.0)
    >>> confidence_of(2.0, t), confidence_of(4.0, t), confidence_of(0.0, t)
    (0.5, 0.9, 0.0)
    """
    if score <= 0:
        return 0.0
    exponent = math.log(5) / math.log(thresholds.confident / thresholds.review)
    return round(1.0 - 0.5 * float((thresholds.review / score) ** exponent), 4)


@dataclass(frozen=True)
class _Regions:
    """One page's region hashes, kept compact (three arrays instead of objects per hash)."""

    values: npt.NDArray[np.uint64]
    boxes: npt.NDArray[np.int32]
    variants: tuple[str, ...]

    def fingerprints(self) -> list[Fingerprint]:
        return [
            Fingerprint(
                kind=robust.KIND,
                value=int(value),
                params=MappingProxyType({"box": tuple(int(c) for c in box), "group": "reference"}),
                variant=variant,
                version=robust.VERSION,
            )
            for value, box, variant in zip(self.values, self.boxes, self.variants, strict=True)
        ]


class ReferenceIndex:
    """The registered fingerprints of the current versions, indexed, kept fresh from PostgreSQL.

    New pages are picked up by ``refresh()`` (fingerprints with an id above the last one seen),
    which ``identify`` calls at most every ``refresh_seconds``: a work registered while workers
    run becomes matchable within that delay, without a restart. Deleted pages are filtered out
    when candidates are resolved against the database.
    """

    def __init__(
        self,
        db: Database,
        *,
        refresh_seconds: float = 30.0,
        thresholds: Thresholds = Thresholds(),
    ) -> None:
        self._db = db
        self._refresh_seconds = refresh_seconds
        self.thresholds = thresholds
        self._lock = threading.Lock()
        self._index = HammingIndex()
        self._row_page = np.zeros(0, dtype=np.int64)  # index row -> page id
        self._regions: dict[int, _Regions] = {}
        self._global: dict[tuple[str, int], int] = {}  # (phash|dhash, page id) -> value
        self._last_id = 0
        self._refreshed_at = float("-inf")

    def __len__(self) -> int:
        return len(self._index)

    @property
    def pages(self) -> int:
        return len(self._regions)

    def refresh(self) -> int:
        """Load fingerprints added since the last refresh; return how many were added."""
        with self._lock:
            with self._db.connection() as conn:
                rows = conn.execute(
                    """
                    select f.id, f.page_id, f.kind, f.variant, f.value, f.params -> 'box'
                    from fingerprints f
                    join unnest(%s::text[], %s::text[]) as v(kind, version)
                      on v.kind = f.kind and v.version = f.version
                    where f.id > %s
                    order by f.id
                    """,
                    (list(CURRENT_VERSIONS), list(CURRENT_VERSIONS.values()), self._last_id),
                ).fetchall()
            self._refreshed_at = time.monotonic()
            if not rows:
                return 0
            added: dict[int, tuple[list[int], list[list[int]], list[str]]] = {}
            for _, page_id, kind, variant, value, box in rows:
                unsigned = int(value) & 0xFFFF_FFFF_FFFF_FFFF
                if kind == robust.KIND:
                    values, boxes, variants = added.setdefault(int(page_id), ([], [], []))
                    values.append(unsigned)
                    boxes.append([int(c) for c in box])
                    variants.append(variant)
                elif variant == "full":
                    self._global[(kind, int(page_id))] = unsigned
            self._last_id = int(rows[-1][0])
            self._add_regions(added)
            return len(rows)

    def _add_regions(self, added: dict[int, tuple[list[int], list[list[int]], list[str]]]) -> None:
        codes: list[int] = []
        owners: list[int] = []
        for page_id, (values, boxes, variants) in added.items():
            old = self._regions.get(page_id)
            regions = _Regions(
                np.array(values, dtype=np.uint64),
                np.array(boxes, dtype=np.int32).reshape(-1, 4),
                tuple(variants),
            )
            if old is not None:  # a page's fingerprints arrived across two refreshes
                regions = _Regions(
                    np.concatenate([old.values, regions.values]),
                    np.concatenate([old.boxes, regions.boxes]),
                    old.variants + regions.variants,
                )
            self._regions[page_id] = regions
            codes.extend(values)
            owners.extend([page_id] * len(values))
        if codes:
            first = len(self._row_page)
            self._row_page = np.concatenate([self._row_page, np.array(owners, dtype=np.int64)])
            self._index.add(np.array(codes, dtype=np.uint64), np.arange(first, first + len(codes)))

    def _refresh_if_due(self) -> None:
        if time.monotonic() - self._refreshed_at >= self._refresh_seconds:
            self.refresh()

    def identify(self, image: Image.Image, *, limit: int = 10) -> list[Match]:
        """Registered pages ``image`` copies, best first (empty when it copies none)."""
        return self.identify_fingerprints(query_fingerprints(image))[:limit]

    def candidates(self, fingerprints: Sequence[Fingerprint]) -> dict[int, float]:
        """Pages whose score could exceed the review threshold, with that upper bound.

        Each reference region counts once, with the weight of its closest query region; the
        real score also demands one consistent placement, so it is never higher.
        """
        self._refresh_if_due()
        query = [fp.value for fp in fingerprints if _is_current_region(fp)]
        if not query or len(self._index) == 0:
            return {}
        hits = self._index.search(np.array(query, dtype=np.uint64), robust.RETRIEVAL_RADIUS)
        if len(hits) == 0:
            return {}
        radius = robust.RETRIEVAL_RADIUS
        weights = (radius + 1 - hits.distances.astype(np.float64)) / (radius + 1)
        rows, inverse = np.unique(hits.ids, return_inverse=True)
        best = np.zeros(len(rows))
        np.maximum.at(best, inverse, weights)
        pages, owner = np.unique(self._row_page[rows], return_inverse=True)
        bounds = np.bincount(owner, weights=best)
        keep = bounds > self.thresholds.review
        return dict(zip(pages[keep].tolist(), bounds[keep].tolist(), strict=True))

    def identify_fingerprints(self, fingerprints: Sequence[Fingerprint]) -> list[Match]:
        """Like ``identify`` for fingerprints from ``matcher.hashing.query_fingerprints``."""
        scored: list[tuple[int, float, str]] = []
        for page_id in self.candidates(fingerprints):
            regions = self._regions.get(page_id)
            if regions is None:
                continue
            value, why = robust.score(fingerprints, regions.fingerprints())
            if value > self.thresholds.review:
                scored.append((page_id, value, why))
        if not scored:
            return []
        pages = _page_info(self._db, [page_id for page_id, _, _ in scored])
        globals_ = {
            (fp.kind, fp.variant): fp.value for fp in fingerprints if fp.kind in ("phash", "dhash")
        }
        matches = [
            self._match(pages[page_id], value, why, globals_)
            for page_id, value, why in scored
            if page_id in pages  # deleted since the index loaded it
        ]
        matches.sort(key=lambda m: (-m.scores["region_score"], m.page.page_id))
        return matches

    def _match(
        self, page: PageInfo, value: float, why: str, globals_: dict[tuple[str, str], int]
    ) -> Match:
        scores: dict[str, float] = {"region_score": round(value, 3)}
        notes = [f"region score {value:.2f} (review above {self.thresholds.review:.2f}): {why}"]
        distances = []
        for kind in ("phash", "dhash"):
            query = globals_.get((kind, "full"))
            reference = self._global.get((kind, page.page_id))
            if query is not None and reference is not None:
                scores[kind] = hamming(query, reference)
                distances.append(f"{kind} {scores[kind]:.0f}")
        if distances:
            notes.append(f"whole-page distances {', '.join(distances)} of 64 bits")
        confident = value > self.thresholds.confident
        return Match(
            page=page,
            decision="confident" if confident else "review",
            confidence=confidence_of(value, self.thresholds),
            scores=scores,
            explanation="; ".join(notes),
        )


def _is_current_region(fp: Fingerprint) -> bool:
    return fp.kind == robust.KIND and fp.version == robust.VERSION


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
