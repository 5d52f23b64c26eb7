"""Sites with their latest crawl, and a site's crawl history (staff only: sites are shared)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row

from store.db import Database
from store.rows import Crawl, Site


@dataclass(frozen=True)
class SiteRow:
    id: int
    name: str
    start_urls: list[str]
    rendering: str
    is_active: bool
    obey_robots: bool
    schedule: str
    last_state: str | None
    last_finished_at: datetime | None
    last_error: str | None
    sightings: int
    matches: int


def list_site_rows(db: Database) -> list[SiteRow]:
    with db.connection() as conn, conn.cursor(row_factory=class_row(SiteRow)) as cur:
        return cur.execute(
            """
            select st.id, st.name, st.start_urls, st.rendering, st.is_active, st.obey_robots,
                   st.schedule, c.state as last_state, c.finished_at as last_finished_at,
                   c.error as last_error,
                   (select count(*) from sightings s where s.site_id = st.id)::int as sightings,
                   (select count(*) from matches m join sightings s on s.id = m.sighting_id
                     where s.site_id = st.id)::int as matches
            from sites st
            left join lateral (
                select * from crawls c where c.site_id = st.id
                order by c.queued_at desc, c.id desc limit 1
            ) c on true
            order by st.name
            """
        ).fetchall()


def site_crawls(db: Database, site_id: int, *, limit: int = 20) -> list[Crawl]:
    with db.connection() as conn, conn.cursor(row_factory=class_row(Crawl)) as cur:
        return cur.execute(
            "select * from crawls where site_id = %s order by queued_at desc, id desc limit %s",
            (site_id, limit),
        ).fetchall()


def crawl_summary(stats: dict[str, Any] | None) -> str:
    """A one-line summary of a crawl's statistics (``crawler.worker.summarize``) for tables."""
    if not stats:
        return ""
    parts = [
        f"{stats[key]:,} {key}"
        for key in ("pages", "images", "matches")
        if isinstance(stats.get(key), int)
    ]
    errors = stats.get("errors")
    if isinstance(errors, dict) and errors:
        parts.append(f"{sum(int(v) for v in errors.values()):,} errors")
    return ", ".join(parts)


def site_by_id(db: Database, site_id: int) -> Site | None:
    with db.connection() as conn, conn.cursor(row_factory=class_row(Site)) as cur:
        return cur.execute("select * from sites where id = %s", (site_id,)).fetchone()
