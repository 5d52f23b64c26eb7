"""A fuller world for the browser test and its screenshots: several works, sites, a month of
matches, notices to several recipients with removals, crawls that finished and one that
failed. Built on ``tests.web_fixtures`` with the same production paths and SQL."""

from __future__ import annotations

import datetime as dt
import io
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image, ImageDraw
from psycopg.types.json import Jsonb

from crawler.sites import SitePolicy, add_site
from matcher.registry import register_work
from matcher.sources import expand_paths
from store.db import Database
from takedown.formats import RenderedNotice, render
from takedown.notice_content import NoticeContent, NoticeItem, Recipient, Sender, WorkRef
from tests.web_fixtures import (
    PUB_A,
    PUB_B,
    TITLE_A,
    TITLE_B,
    World,
    add_match,
    add_notice,
    build_world,
    copy_bytes,
    page_png,
)

EXTRA_WORKS = (
    (PUB_A, "Harbor Lights, Vol. 3", 4, "volume", "978-4-00-000103-4"),
    (PUB_A, "Night Garden", 1, "illustration", None),
    (PUB_B, "Steel Orchard, Vol. 1", 3, "volume", "978-4-00-000201-7"),
)
SITES = ("mangaraw-example", "comicdrop-example", "scanhub-example")


def reader_screenshot(site: str, copy: bytes) -> bytes:
    """What a pirate reader page looks like: a dark header, ads column, the page in the middle."""
    canvas = Image.new("RGB", (1280, 1500), (24, 26, 31))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, 1280, 64), fill=(178, 34, 52))
    draw.text((24, 24), f"{site.upper()}  |  READ MANGA ONLINE FREE", fill=(255, 255, 255))
    for y in range(110, 1400, 160):
        draw.rectangle((1010, y, 1250, y + 130), fill=(60, 63, 70))
        draw.text((1030, y + 55), "ADVERTISEMENT", fill=(150, 150, 150))
    page = Image.open(io.BytesIO(copy)).convert("RGB")
    page.thumbnail((820, 1300))
    canvas.paste(page, (130, 110))
    out = io.BytesIO()
    canvas.save(out, "PNG")
    return out.getvalue()


def render_notice(
    owner: str, recipient: str, title: str, page_url: str, reference: str
) -> RenderedNotice:
    publisher = PUB_A if owner == "a" else PUB_B
    return render(
        NoticeContent(
            format="dmca",
            language="en",
            date=dt.date.today(),
            reference=reference,
            sender=Sender(
                publisher=publisher,
                agent_organisation=f"{publisher} Rights Office",
                address="1-2-3 Kanda, Chiyoda-ku, Tokyo 101-0051, Japan",
                email="rights@example.com",
                phone="+81-3-0000-0000",
            ),
            recipient=Recipient(name=recipient, scope="host", email="abuse@host.example"),
            items=(
                NoticeItem(
                    image_url=page_url.replace("/read/", "/img/") + ".jpg",
                    page_url=page_url,
                    work=WorkRef(title=title, official_url="https://books.example/"),
                    page_number=1,
                ),
            ),
        )
    )


def showcase(db: Database, db_url: str, tmp: Path) -> World:
    world = build_world(db, db_url, tmp)
    rng = random.Random(7)
    pages: list[tuple[int, str, int]] = [
        (world.pages["a"], TITLE_A, 1),
        (world.pages["b"], TITLE_B, 1),
    ]
    owner = {TITLE_A: "a", TITLE_B: "b"}
    for publisher, title, count, kind, isbn in EXTRA_WORKS:
        owner[title] = "a" if publisher == PUB_A else "b"
        folder = tmp / title.replace(" ", "_").replace(",", "")
        folder.mkdir()
        paths = [page_png(folder / f"{n}.png", title, n) for n in range(1, count + 1)]
        result = register_work(
            db,
            publisher=publisher,
            title=title,
            sources=expand_paths(paths),
            kind=kind,
            isbn=isbn,
            official_url=f"https://books.example/{title.split(',')[0].lower().replace(' ', '-')}",
        )
        pages += [(p.id, title, p.page_number) for p in result.added]
    now = datetime.now(UTC)
    site_ids = [world.site_id]
    site_names = ["pirate-example", *SITES]
    for name in SITES:
        site = add_site(db, name, SitePolicy(start_urls=[f"https://{name}.example/"]))
        site_ids.append(site.id)
    recipients = [world.recipient_id]
    recipient_names = ["Pirate Host Abuse", "Cloudy CDN Trust & Safety", "Registrar Abuse Desk"]
    with db.connection() as conn:
        for name, email, site_id in (
            ("Cloudy CDN Trust & Safety", "abuse@cdn.example", site_ids[1]),
            ("Registrar Abuse Desk", "abuse@registrar.example", site_ids[2]),
        ):
            row = conn.execute(
                "insert into recipients (name, email, scope, site_id, source)"
                " values (%s, %s, 'cdn', %s, 'rdap') returning id",
                (name, email, site_id),
            ).fetchone()
            assert row is not None
            recipients.append(int(row[0]))
        for site_id in site_ids:
            for days_ago, state, error in ((3, "finished", None), (1, "finished", None)):
                conn.execute(
                    """
                    insert into crawls (site_id, state, trigger, queued_at, started_at,
                                        finished_at, stats, error)
                    values (%s, %s, 'schedule', %s, %s, %s, %s, %s)
                    """,
                    (
                        site_id,
                        state,
                        now - timedelta(days=days_ago, minutes=5),
                        now - timedelta(days=days_ago, minutes=4),
                        now - timedelta(days=days_ago),
                        Jsonb(
                            {
                                "pages": rng.randint(200, 2000),
                                "images": rng.randint(900, 9000),
                                "matches": rng.randint(3, 40),
                                "errors": {},
                            }
                        ),
                        error,
                    ),
                )
        conn.execute(
            """
            insert into crawls (site_id, state, trigger, queued_at, started_at, finished_at,
                                error)
            values (%s, 'failed', 'schedule', %s, %s, %s,
                    'DNS lookup failed for scanhub-example.example (3 retries)')
            """,
            (
                site_ids[3],
                now - timedelta(hours=5),
                now - timedelta(hours=5),
                now - timedelta(hours=5),
            ),
        )
    counter = 0
    for day in range(29, -1, -1):
        for _ in range(rng.choice((0, 1, 1, 2, 3, 4))):
            counter += 1
            page_id, title, number = rng.choice(pages)
            site_index = rng.randrange(len(site_ids))
            site_name = site_names[site_index]
            # Every copy a different size, so every found image is distinct bytes.
            copy = copy_bytes(title, number, size=(520 + 2 * counter, 780 + 3 * counter))
            confidence = round(rng.uniform(0.55, 0.99), 2)
            match_id = add_match(
                world,
                page_id=page_id,
                page_url=f"https://{site_name}.example/read/{counter}",
                image_url=f"https://img.{site_name}.example/{counter:05d}.jpg",
                image=copy,
                confidence=confidence,
                decision="confident" if confidence >= 0.9 else "review",
                created_at=now - timedelta(days=day, hours=rng.randint(0, 12)),
                screenshot=reader_screenshot(site_name, copy),
                site_id=site_ids[site_index],
            )
            if day > 6:
                state = rng.choice(("approved", "approved", "approved", "rejected"))
                with db.connection() as conn:
                    conn.execute(
                        "update matches set review_state = %s, reviewed_at = now() where id = %s",
                        (state, match_id),
                    )
                if state == "approved":
                    sent = now - timedelta(days=day - 1, hours=rng.randint(0, 10))
                    removed = (
                        sent + timedelta(hours=rng.randint(6, 120)) if rng.random() < 0.7 else None
                    )
                    recipient = recipient_names[site_index % len(recipients)]
                    page_url = f"https://{site_name}.example/read/{counter}"
                    notice = render_notice(
                        owner[title], recipient, title, page_url, f"MAMORU-2026-{counter:06d}"
                    )
                    world.notices["showcase"] = add_notice(
                        world,
                        publisher_id=world.publishers[owner[title]],
                        match_id=match_id,
                        url=page_url,
                        sent_at=sent,
                        removed_at=removed if removed and removed < now else None,
                        recipient_id=recipients[site_index % len(recipients)],
                        subject=notice.subject,
                        body_text=notice.text,
                        body_html=notice.html,
                    )
    return world
