"""The flood guard: approved matches that look like a malfunction, not piracy, are held.

The field has sent notices by the hundred thousand for URLs that did not exist. Three signs
hold a batch's notices as drafted, with the reason, until an operator releases them
(``mamoru notices release``, or the admin):

1. **A work** suddenly has far more new approved matches than its usual daily volume (notice
   items over ``window_days``): ``factor`` times as many, and at least ``minimum``.
2. **A registered page** (one fingerprinted image) does the same, from ``page_minimum`` on: a
   blank, a logo or a generic panel matching everything looks exactly like this.
3. **Most URLs of the site's last crawl were dead** (404, 410, no DNS, refused): at least
   ``dead_share`` of them and ``dead_minimum`` in all. The site is gone or restructured, and
   its older sightings are likely dead links too.

A work with notices still held stays held: its later matches must not trickle out (or slip out
after a crash between composition's chunk commits) before an operator decides.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from psycopg import Connection

__all__ = ["DEAD_KINDS", "FloodGuard", "Flooded", "held_reasons"]

# Crawl error kinds (crawler.spider.error_kind) that mean the URL is not there any more.
DEAD_KINDS: Final = frozenset({"http_404", "http_410", "dns", "connection_refused"})
REASON_PREFIX: Final = "flood guard:"


@dataclass(frozen=True)
class FloodGuard:
    factor: float = 10.0
    minimum: int = 200
    page_minimum: int = 50
    window_days: int = 30
    dead_share: float = 0.5
    dead_minimum: int = 10


class Flooded(Protocol):
    @property
    def match_id(self) -> int: ...
    @property
    def work_id(self) -> int: ...
    @property
    def page_id(self) -> int | None: ...
    @property
    def site_id(self) -> int: ...


def held_reasons(
    conn: Connection[Any], candidates: Sequence[Flooded], guard: FloodGuard
) -> dict[int, str]:
    """match id -> why its notice is held, for the candidates the guard holds."""
    if not candidates:
        return {}  # composition runs every few minutes, mostly with nothing new
    by_work = _sudden(
        conn, Counter(c.work_id for c in candidates), guard, guard.minimum, "pg.work_id", "work"
    )
    by_work.update(_still_held(conn, {c.work_id for c in candidates}))
    pages = Counter(c.page_id for c in candidates if c.page_id is not None)
    by_page = _sudden(conn, pages, guard, guard.page_minimum, "m.page_id", "registered page")
    by_site = _dead_sites(conn, {c.site_id for c in candidates}, guard)
    held: dict[int, str] = {}
    for c in candidates:
        reasons = [
            r
            for r in (
                by_work.get(c.work_id),
                by_page.get(c.page_id) if c.page_id is not None else None,
                by_site.get(c.site_id),
            )
            if r
        ]
        if reasons:
            held[c.match_id] = "; ".join(reasons)
    return held


def _sudden(
    conn: Connection[Any],
    batch: Counter[int],
    guard: FloodGuard,
    minimum: int,
    column: str,
    what: str,
) -> dict[int, str]:
    big = [key for key, n in batch.items() if n >= minimum]
    if not big:
        return {}
    # column is one of two literals above, never input.
    usual = dict(
        conn.execute(
            f"""
            select {column}, count(*)::float / %s
            from notice_items i
            join notices n on n.id = i.notice_id
            join matches m on m.id = i.match_id
            join pages pg on pg.id = m.page_id
            where {column} = any(%s) and n.created_at > now() - make_interval(days => %s)
              and (n.held_reason is null or n.held_reason not like 'flood guard:%%')
            group by {column}
            """,
            (guard.window_days, big, guard.window_days),
        ).fetchall()
    )
    flooded = {}
    for key in big:
        daily = float(usual.get(key, 0.0))
        if batch[key] > guard.factor * daily:
            flooded[key] = (
                f"{REASON_PREFIX} {what} {key} has {batch[key]} new approved matches against "
                f"{daily:.1f} a day over {guard.window_days} days; an operator must release it"
            )
    return flooded


def _still_held(conn: Connection[Any], works: Iterable[int]) -> dict[int, str]:
    return {
        int(work): (
            f"{REASON_PREFIX} work {work} already has {held} match(es) held for an operator; "
            "an operator must release them first"
        )
        for work, held in conn.execute(
            """
            select pg.work_id, count(*)
            from notices n
            join notice_items i on i.notice_id = n.id
            join matches m on m.id = i.match_id
            join pages pg on pg.id = m.page_id
            where n.state = 'drafted' and n.held_reason like 'flood guard:%%'
              and pg.work_id = any(%s)
            group by pg.work_id
            """,
            (list(works),),
        )
    }


def _dead_sites(conn: Connection[Any], sites: Iterable[int], guard: FloodGuard) -> dict[int, str]:
    rows = conn.execute(
        """
        select distinct on (c.site_id) c.site_id, c.id, c.stats
        from crawls c
        where c.site_id = any(%s) and c.state = 'finished'
        order by c.site_id, c.finished_at desc nulls last, c.id desc
        """,
        (list(sites),),
    ).fetchall()
    dead_sites = {}
    for site_id, crawl_id, stats in rows:
        errors = stats.get("errors") or {}
        dead = sum(int(n) for kind, n in errors.items() if kind in DEAD_KINDS)
        alive = int(stats.get("pages", 0)) + int(stats.get("images", 0))
        tried = dead + alive
        if tried >= guard.dead_minimum and dead >= guard.dead_share * tried:
            dead_sites[int(site_id)] = (
                f"{REASON_PREFIX} {dead} of the {tried} URLs of crawl {crawl_id} of site "
                f"{site_id} were dead (404, 410, no DNS or refused); check the site, then an "
                "operator must release it"
            )
    return dead_sites
