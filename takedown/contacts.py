"""Finding a recipient for every site that has approved matches but nobody to send them to.

Runs before composing, outside any transaction: discovery makes network calls (RDAP,
security.txt) that must not hold database locks. Contacts configured by an operator always
win; discovery only runs for sites without a recipient that takes email. A site's recorded
origin addresses (behind a CDN) are passed on, so the origin's host is found too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urlsplit

from store.config import Settings
from store.db import Database
from takedown.recipients import LookupRefused, discover_report, ensure_recipients
from takedown.states import record_event

__all__ = [
    "ContactsReport",
    "SiteToDiscover",
    "discover_missing_recipients",
    "sites_needing_recipients",
]

log = logging.getLogger(__name__)


@dataclass
class ContactsReport:
    discovered: dict[int, int] = field(default_factory=dict)  # site id -> recipients added
    problems: dict[int, list[str]] = field(default_factory=dict)


class SiteToDiscover(NamedTuple):
    site_id: int
    start_url: str
    allow_private: bool
    origin_addresses: tuple[str, ...] = ()


def sites_needing_recipients(db: Database) -> list[SiteToDiscover]:
    """Sites with approved, unnoticed matches and no recipient that takes email."""
    with db.connection() as conn:
        rows = conn.execute(
            """
            select distinct st.id, st.start_urls[1], st.allow_private_addresses,
                   st.origin_addresses
            from matches m
            join sightings s on s.id = m.sighting_id
            join sites st on st.id = s.site_id
            where m.review_state = 'approved'
              and not exists (select 1 from notice_items i where i.match_id = m.id)
              and not exists (
                  select 1 from recipients r where r.site_id = st.id and r.email is not null)
            order by st.id
            """
        ).fetchall()
    return [SiteToDiscover(int(r[0]), str(r[1]), bool(r[2]), tuple(r[3] or ())) for r in rows]


def discover_missing_recipients(
    db: Database, settings: Settings, *, timeout: float = 10.0
) -> ContactsReport:
    report = ContactsReport()
    for site_id, start_url, allow_private, origin in sites_needing_recipients(db):
        domain = (urlsplit(start_url).hostname or "").lower()
        base = f"{urlsplit(start_url).scheme}://{urlsplit(start_url).netloc}/"
        problems: list[str] = []
        try:
            found = discover_report(
                domain,
                None,
                settings=settings,
                site_url=base,
                origin_addresses=origin,
                allow_private=allow_private,
                timeout=timeout,
            )
            contacts = found.contacts
            problems = [f"{p.step} {p.target}: {p.message}" for p in found.problems]
        except LookupRefused as exc:
            contacts, problems = [], [str(exc)]
        with db.connection() as conn:
            ids = ensure_recipients(conn, site_id, contacts) if contacts else []
            record_event(
                conn,
                "site",
                site_id,
                "recipients_discovered",
                details={"recipients": ids, "problems": problems},
            )
        report.discovered[site_id] = len(ids)
        if problems:
            report.problems[site_id] = problems
            log.info("site %s: recipient discovery: %s", site_id, "; ".join(problems))
    return report
