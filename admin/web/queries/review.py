"""Matches for review: the filtered queue, one match with its context, neighbours in order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from psycopg.rows import class_row

from admin.web.scope import Scope
from store.db import Database
from takedown.recipients import recipients_for_site

STATES: Final = ("pending", "approved", "rejected", "licensed")
DECISIONS: Final = ("confident", "review")


@dataclass(frozen=True)
class _Sort:
    order: str
    reverse: str
    after: str  # rows that come after the key row in ``order``
    before: str


_SORTS: Final[dict[str, _Sort]] = {
    "oldest": _Sort(
        "m.created_at, m.id",
        "m.created_at desc, m.id desc",
        "(m.created_at, m.id) > (%(k_created)s, %(k_id)s)",
        "(m.created_at, m.id) < (%(k_created)s, %(k_id)s)",
    ),
    "newest": _Sort(
        "m.created_at desc, m.id desc",
        "m.created_at, m.id",
        "(m.created_at, m.id) < (%(k_created)s, %(k_id)s)",
        "(m.created_at, m.id) > (%(k_created)s, %(k_id)s)",
    ),
    "confidence": _Sort(
        "m.confidence desc, m.id",
        "m.confidence, m.id desc",
        "(m.confidence < %(k_conf)s::real"
        " or (m.confidence = %(k_conf)s::real and m.id > %(k_id)s))",
        "(m.confidence > %(k_conf)s::real"
        " or (m.confidence = %(k_conf)s::real and m.id < %(k_id)s))",
    ),
}
SORTS: Final = tuple(_SORTS)


@dataclass(frozen=True)
class ReviewFilter:
    state: str = "pending"  # one of STATES, or "all"
    site_id: int | None = None
    work_id: int | None = None
    decision: str | None = None
    min_confidence: float | None = None
    sort: str = "oldest"

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> ReviewFilter:
        """Read filters from a query string or form; values that do not parse are ignored."""
        state = args.get("state", "pending")
        decision = args.get("decision") or None
        sort = args.get("sort", "oldest")
        return cls(
            state=state if state in (*STATES, "all") else "pending",
            site_id=_int(args.get("site")),
            work_id=_int(args.get("work")),
            decision=decision if decision in DECISIONS else None,
            min_confidence=_confidence(args.get("min_confidence")),
            sort=sort if sort in _SORTS else "oldest",
        )

    def args(self) -> dict[str, Any]:
        """The filter as query-string arguments (only those that differ from the default)."""
        out: dict[str, Any] = {}
        if self.state != "pending":
            out["state"] = self.state
        if self.site_id is not None:
            out["site"] = str(self.site_id)
        if self.work_id is not None:
            out["work"] = str(self.work_id)
        if self.decision is not None:
            out["decision"] = self.decision
        if self.min_confidence is not None:
            out["min_confidence"] = f"{self.min_confidence:g}"
        if self.sort != "oldest":
            out["sort"] = self.sort
        return out

    def pending_only(self) -> ReviewFilter:
        return replace(self, state="pending")

    def _params(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "site": self.site_id,
            "work": self.work_id,
            "decision": self.decision,
            "min_conf": self.min_confidence,
        }


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _confidence(value: str | None) -> float | None:
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return number if number is not None and 0.0 <= number <= 1.0 else None


@dataclass(frozen=True)
class MatchRow:
    id: int
    confidence: float
    decision: str
    review_state: str
    scores: dict[str, Any]
    explanation: str
    created_at: datetime
    reviewed_at: datetime | None
    reviewed_by: str | None
    page_id: int
    page_number: int
    page_has_image: bool
    work_id: int
    work_title: str
    publisher_id: int
    publisher: str
    sighting_id: int
    site_id: int
    site_name: str
    page_url: str
    image_url: str
    evidence_ref: str | None


_SELECT = """
    select m.id, m.confidence, m.decision, m.review_state, m.scores, m.explanation,
           m.created_at, m.reviewed_at, u.email as reviewed_by,
           pg.id as page_id, pg.page_number, pg.image_sha256 is not null as page_has_image,
           w.id as work_id, w.title as work_title, w.publisher_id, p.name as publisher,
           s.id as sighting_id, s.site_id, st.name as site_name, s.page_url, s.image_url,
           s.evidence_ref
    from matches m
    join pages pg on pg.id = m.page_id
    join works w on w.id = pg.work_id
    join publishers p on p.id = w.publisher_id
    join sightings s on s.id = m.sighting_id
    join sites st on st.id = s.site_id
    left join users u on u.id = m.reviewed_by
"""
_FILTER = """
    where w.publisher_id = any(%(publishers)s)
      and (%(state)s::text = 'all' or m.review_state = %(state)s::text)
      and (%(site)s::bigint is null or s.site_id = %(site)s::bigint)
      and (%(work)s::bigint is null or w.id = %(work)s::bigint)
      and (%(decision)s::text is null or m.decision = %(decision)s::text)
      and (%(min_conf)s::real is null or m.confidence >= %(min_conf)s::real)
"""


def count_matches(db: Database, scope: Scope, flt: ReviewFilter) -> int:
    sql = (
        "select count(*) from matches m join pages pg on pg.id = m.page_id"
        " join works w on w.id = pg.work_id join sightings s on s.id = m.sighting_id" + _FILTER
    )
    with db.connection() as conn:
        row = conn.execute(sql, {**scope.params, **flt._params()}).fetchone()
    return int(row[0]) if row else 0


def list_matches(
    db: Database, scope: Scope, flt: ReviewFilter, *, limit: int = 50, offset: int = 0
) -> list[MatchRow]:
    sql = _SELECT + _FILTER + f" order by {_SORTS[flt.sort].order} limit %(limit)s offset %(off)s"
    params = {**scope.params, **flt._params(), "limit": limit, "off": offset}
    with db.connection() as conn, conn.cursor(row_factory=class_row(MatchRow)) as cur:
        return cur.execute(sql, params).fetchall()


def filtered_ids(db: Database, scope: Scope, flt: ReviewFilter, *, limit: int) -> list[int]:
    sql = (
        "select m.id from matches m join pages pg on pg.id = m.page_id"
        " join works w on w.id = pg.work_id join sightings s on s.id = m.sighting_id"
        + _FILTER
        + f" order by {_SORTS[flt.sort].order} limit %(limit)s"
    )
    with db.connection() as conn:
        rows = conn.execute(sql, {**scope.params, **flt._params(), "limit": limit}).fetchall()
    return [int(r[0]) for r in rows]


def get_match(db: Database, scope: Scope, match_id: int) -> MatchRow | None:
    sql = _SELECT + " where w.publisher_id = any(%(publishers)s) and m.id = %(id)s"
    with db.connection() as conn, conn.cursor(row_factory=class_row(MatchRow)) as cur:
        return cur.execute(sql, {**scope.params, "id": match_id}).fetchone()


def neighbour(
    db: Database, scope: Scope, flt: ReviewFilter, row: MatchRow, *, forward: bool
) -> int | None:
    """The id after (or before) ``row`` in the filtered order; ``row`` itself need not pass
    the filter any more (it was just decided)."""
    sort = _SORTS[flt.sort]
    condition, order = (sort.after, sort.order) if forward else (sort.before, sort.reverse)
    sql = (
        "select m.id from matches m join pages pg on pg.id = m.page_id"
        " join works w on w.id = pg.work_id join sightings s on s.id = m.sighting_id"
        + _FILTER
        + f" and {condition} order by {order} limit 1"
    )
    params = {
        **scope.params,
        **flt._params(),
        "k_created": row.created_at,
        "k_id": row.id,
        "k_conf": row.confidence,
    }
    with db.connection() as conn:
        found = conn.execute(sql, params).fetchone()
    return int(found[0]) if found else None


def filter_choices(
    db: Database, scope: Scope
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(sites, works) that have matches in scope, for the filter menus."""
    with db.connection() as conn:
        sites = conn.execute(
            """
            select distinct st.id, st.name from matches m
            join pages pg on pg.id = m.page_id join works w on w.id = pg.work_id
            join sightings s on s.id = m.sighting_id join sites st on st.id = s.site_id
            where w.publisher_id = any(%(publishers)s) order by st.name
            """,
            scope.params,
        ).fetchall()
        works = conn.execute(
            """
            select distinct w.id, w.title from matches m
            join pages pg on pg.id = m.page_id join works w on w.id = pg.work_id
            where w.publisher_id = any(%(publishers)s) order by w.title
            """,
            scope.params,
        ).fetchall()
    return [(int(r[0]), str(r[1])) for r in sites], [(int(r[0]), str(r[1])) for r in works]


@dataclass(frozen=True)
class NoticePreview:
    """What approving a match leads to: the notice it is in, or the one it would join."""

    in_notice_id: int | None
    recipient: str | None
    drafted_notice_id: int | None


def notice_preview(db: Database, row: MatchRow) -> NoticePreview:
    with db.connection() as conn:
        listed = conn.execute(
            "select notice_id from notice_items where match_id = %s order by notice_id desc",
            (row.id,),
        ).fetchone()
        if listed is not None:
            return NoticePreview(int(listed[0]), None, None)
        recipients = recipients_for_site(conn, row.site_id)
        if not recipients:
            return NoticePreview(None, None, None)
        recipient = recipients[0]
        drafted = conn.execute(
            """
            select id from notices
            where publisher_id = %s and recipient_id = %s and state = 'drafted'
            order by id desc limit 1
            """,
            (row.publisher_id, recipient.id),
        ).fetchone()
    return NoticePreview(None, recipient.name, int(drafted[0]) if drafted else None)
