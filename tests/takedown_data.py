"""Rows a takedown test needs: a publisher, a registered work, a site with a configured
recipient, and sightings matched to the work's pages (inserted as the crawler would)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from admin.publishers import add_publisher
from admin.samples import render_page
from matcher.registry import register_work
from matcher.sources import expand_paths
from store.db import Database


@dataclass(frozen=True)
class Scenario:
    publisher_id: int
    work_id: int
    page_ids: list[int]
    site_id: int
    recipient_id: int


def build(
    db: Database,
    tmp_path: Path,
    *,
    recipient_email: str = "abuse@pirate-host.test",
    complete_publisher: bool = True,
    pages: int = 2,
) -> Scenario:
    add_publisher(db, "Sample Comics")
    folder = tmp_path / "work"
    folder.mkdir(exist_ok=True)
    for n in range(1, pages + 1):
        render_page("Takedown", n).save(folder / f"{n:03d}.png")
    result = register_work(
        db,
        publisher="Sample Comics",
        title="Takedown Vol. 1",
        sources=expand_paths([folder]),
        isbn="978-4-00-000001-7",
        official_url="https://publisher.test/takedown-1",
    )
    with db.connection() as conn:
        if complete_publisher:
            conn.execute(
                """
                update publishers set agent_organisation = 'Sample Comics Rights Office',
                    contact_address = '1-1 Kanda, Chiyoda-ku, Tokyo',
                    contact_email = 'rights@publisher.test', contact_phone = '+81-3-0000-0000'
                """
            )
        site = conn.execute(
            "insert into sites (name, start_urls) values ('pirate', %s) returning id",
            (["http://pirate.test/"],),
        ).fetchone()
        assert site is not None
        recipient = conn.execute(
            """
            insert into recipients (name, email, scope, site_id, domain, source)
            values ('Pirate Host Abuse', %s, 'host', %s, 'pirate.test', 'configured')
            returning id
            """,
            (recipient_email, site[0]),
        ).fetchone()
        assert recipient is not None
    return Scenario(
        int(result.publisher.id),
        int(result.work.id),
        [p.id for p in result.added],
        int(site[0]),
        int(recipient[0]),
    )


def add_match(
    db: Database,
    scenario: Scenario,
    page_id: int,
    *,
    page_url: str,
    image_url: str,
    review_state: str = "approved",
    decision: str = "confident",
    confidence: float = 0.95,
) -> int:
    digest = hashlib.sha256(image_url.encode()).digest()
    with db.connection() as conn:
        conn.execute(
            "insert into images (sha256, byte_size) values (%s, 1000) on conflict do nothing",
            (digest,),
        )
        sighting = conn.execute(
            """
            insert into sightings (site_id, page_url, image_url, image_sha256, evidence_ref)
            values (%s, %s, %s, %s, %s) returning id
            """,
            (scenario.site_id, page_url, image_url, digest, "ab" * 32),
        ).fetchone()
        assert sighting is not None
        match = conn.execute(
            """
            insert into matches (sighting_id, page_id, confidence, decision, review_state,
                                 explanation)
            values (%s, %s, %s, %s, %s, 'test') returning id
            """,
            (sighting[0], page_id, confidence, decision, review_state),
        ).fetchone()
        assert match is not None
    return int(match[0])
