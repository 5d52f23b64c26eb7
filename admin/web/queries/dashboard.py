"""Figures for the dashboard, all within the user's scope.

Time-to-removal is measured from a notice's first transition to ``sent`` to its first
transition to ``removed``, both read from ``events``: the lifecycle is recorded there, so the
figures need no columns of their own and stay right when a notice is re-sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from psycopg.rows import class_row

from admin.web.scope import Scope
from store.db import Database


@dataclass(frozen=True)
class Counts:
    works: int
    pages: int
    pending: int
    approved: int
    open_notices: int
    removed_notices: int


@dataclass(frozen=True)
class Day:
    day: date
    matches: int
    notices: int
    removals: int


@dataclass(frozen=True)
class RemovalStat:
    name: str
    sent: int
    removed: int
    median_seconds: float | None

    @property
    def rate(self) -> float:
        return self.removed / self.sent if self.sent else 0.0


@dataclass(frozen=True)
class TopSite:
    site_id: int
    name: str
    matches: int
    pages: int
    works: int


@dataclass(frozen=True)
class CrawlHealth:
    site_id: int
    name: str
    is_active: bool
    crawl_id: int | None
    state: str | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    stats: dict[str, Any] | None
    failures_7d: int


_MATCHES_IN_SCOPE = """
    matches m join pages pg on pg.id = m.page_id join works w on w.id = pg.work_id
    where w.publisher_id = any(%(publishers)s)
"""


def counts(db: Database, scope: Scope) -> Counts:
    with db.connection() as conn, conn.cursor(row_factory=class_row(Counts)) as cur:
        row = cur.execute(
            f"""
            select
              (select count(*) from works where publisher_id = any(%(publishers)s))::int
                  as works,
              (select count(*) from pages pg join works w on w.id = pg.work_id
                where w.publisher_id = any(%(publishers)s))::int as pages,
              (select count(*) from {_MATCHES_IN_SCOPE} and m.review_state = 'pending')::int
                  as pending,
              (select count(*) from {_MATCHES_IN_SCOPE} and m.review_state = 'approved')::int
                  as approved,
              (select count(*) from notices where publisher_id = any(%(publishers)s)
                and state not in ('removed', 'closed'))::int as open_notices,
              (select count(*) from notices where publisher_id = any(%(publishers)s)
                and state = 'removed')::int as removed_notices
            """,
            scope.params,
        ).fetchone()
    assert row is not None
    return row


def per_day(db: Database, scope: Scope, *, days: int = 30) -> list[Day]:
    """Matches found, notices created and removals confirmed per day, zeros included."""
    with db.connection() as conn, conn.cursor(row_factory=class_row(Day)) as cur:
        return cur.execute(
            f"""
            with days as (
                select generate_series(current_date - (%(days)s - 1), current_date,
                                       interval '1 day')::date as day
            ),
            m as (
                select m.created_at::date as day, count(*) as n from {_MATCHES_IN_SCOPE}
                and m.created_at >= current_date - (%(days)s - 1) group by 1
            ),
            n as (
                select created_at::date as day, count(*) as n from notices
                where publisher_id = any(%(publishers)s)
                  and created_at >= current_date - (%(days)s - 1) group by 1
            ),
            r as (
                select e.occurred_at::date as day, count(*) as n from events e
                join notices nt on nt.id = e.subject_id
                where e.subject_type = 'notice' and e.to_state = 'removed'
                  and nt.publisher_id = any(%(publishers)s)
                  and e.occurred_at >= current_date - (%(days)s - 1) group by 1
            )
            select d.day, coalesce(m.n, 0)::int as matches, coalesce(n.n, 0)::int as notices,
                   coalesce(r.n, 0)::int as removals
            from days d left join m using (day) left join n using (day) left join r using (day)
            order by d.day
            """,
            {**scope.params, "days": days},
        ).fetchall()


_NOTICE_TIMES = """
    select n.id, n.recipient_id,
           min(e.occurred_at) filter (where e.to_state = 'sent') as sent_at,
           min(e.occurred_at) filter (where e.to_state = 'removed') as removed_at
    from notices n join events e on e.subject_type = 'notice' and e.subject_id = n.id
    where n.publisher_id = any(%(publishers)s)
    group by n.id, n.recipient_id
"""
_STATS = """
    count(*) filter (where t.sent_at is not null)::int as sent,
    count(*) filter (where t.sent_at is not null and t.removed_at > t.sent_at)::int as removed,
    percentile_cont(0.5) within group (order by extract(epoch from t.removed_at - t.sent_at))
        filter (where t.sent_at is not null and t.removed_at > t.sent_at) as median_seconds
"""


def removal_by_recipient(db: Database, scope: Scope) -> list[RemovalStat]:
    with db.connection() as conn, conn.cursor(row_factory=class_row(RemovalStat)) as cur:
        return cur.execute(
            f"""
            with t as ({_NOTICE_TIMES})
            select r.name, {_STATS}
            from t join recipients r on r.id = t.recipient_id
            group by r.id, r.name
            having count(*) filter (where t.sent_at is not null) > 0
            order by sent desc, r.name limit 20
            """,
            scope.params,
        ).fetchall()


def removal_by_site(db: Database, scope: Scope) -> list[RemovalStat]:
    """Per site, over the notices that listed at least one URL of that site."""
    with db.connection() as conn, conn.cursor(row_factory=class_row(RemovalStat)) as cur:
        return cur.execute(
            f"""
            with t0 as ({_NOTICE_TIMES}),
            t as (
                select distinct t0.*, s.site_id from t0
                join notice_items i on i.notice_id = t0.id
                join matches m on m.id = i.match_id
                join sightings s on s.id = m.sighting_id
            )
            select st.name, {_STATS}
            from t join sites st on st.id = t.site_id
            group by st.id, st.name
            having count(*) filter (where t.sent_at is not null) > 0
            order by sent desc, st.name limit 20
            """,
            scope.params,
        ).fetchall()


def top_sites(db: Database, scope: Scope, *, limit: int = 10) -> list[TopSite]:
    """Sites with the most matches that were not rejected or licensed."""
    with db.connection() as conn, conn.cursor(row_factory=class_row(TopSite)) as cur:
        return cur.execute(
            """
            select st.id as site_id, st.name, count(*)::int as matches,
                   count(distinct s.page_url)::int as pages,
                   count(distinct w.id)::int as works
            from matches m
            join pages pg on pg.id = m.page_id
            join works w on w.id = pg.work_id
            join sightings s on s.id = m.sighting_id
            join sites st on st.id = s.site_id
            where w.publisher_id = any(%(publishers)s)
              and m.review_state in ('pending', 'approved')
            group by st.id, st.name order by matches desc, st.name limit %(limit)s
            """,
            {**scope.params, "limit": limit},
        ).fetchall()


def crawl_health(db: Database) -> list[CrawlHealth]:
    """The last crawl of every site and its failures in the last seven days (staff only)."""
    with db.connection() as conn, conn.cursor(row_factory=class_row(CrawlHealth)) as cur:
        return cur.execute(
            """
            select st.id as site_id, st.name, st.is_active, c.id as crawl_id, c.state,
                   c.started_at, c.finished_at, c.error, c.stats,
                   (select count(*) from crawls f where f.site_id = st.id and f.state = 'failed'
                     and f.queued_at > now() - interval '7 days')::int as failures_7d
            from sites st
            left join lateral (
                select * from crawls c where c.site_id = st.id
                order by c.queued_at desc, c.id desc limit 1
            ) c on true
            order by (c.state = 'failed') desc nulls last, st.name
            """
        ).fetchall()
