"""Fixtures for the web admin tests: an app on this test's database and a small "world".

The world is built the way production builds it where an API exists (publishers, users and
works through ``admin.publishers``, ``admin.users`` and ``matcher.registry.register_work`` on
generated pages) and with plain SQL where the producing component is another issue's (sites,
crawled images, sightings, matches, recipients, notices, events). Two publishers, A and B, each
own a work with a pending match, a notice and an allowlist entry, so every route can be asked
for the other publisher's objects.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from psycopg.types.json import Jsonb

from admin.publishers import add_publisher
from admin.samples import render_page
from admin.users import assign_operator, create_token, create_user
from admin.web import create_app, resources
from crawler.evidence import MANIFEST_KIND, EvidenceStore
from crawler.sites import SitePolicy, add_site
from matcher.registry import register_work
from matcher.sources import expand_paths
from store.config import get_settings
from store.db import Database

PASSWORD = "correct horse battery"
PUB_A = "Alpha Comics"
PUB_B = "Beta Books"
TITLE_A = "Alpha Saga, Vol. 1"
TITLE_B = "Beta Chronicle, Vol. 2"
ROLES = ("anon", "pub_a", "pub_b", "op_a", "admin")
EMAILS = {
    "pub_a": "pub-a@example.com",
    "pub_b": "pub-b@example.com",
    "op_a": "operator@example.com",
    "admin": "admin@example.com",
}


@dataclass
class World:
    db: Database
    db_url: str
    publishers: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    works: dict[str, int] = field(default_factory=dict)
    pages: dict[str, int] = field(default_factory=dict)
    matches: dict[str, int] = field(default_factory=dict)
    notices: dict[str, int] = field(default_factory=dict)
    entries: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    token_ids: dict[str, int] = field(default_factory=dict)
    site_id: int = 0
    recipient_id: int = 0

    def ids(self) -> dict[str, int]:
        """Every object id by a flat name (``work_a``, ``match_b``...), for URL templates."""
        out: dict[str, int] = {"site": self.site_id}
        for prefix, table in (
            ("work", self.works),
            ("page", self.pages),
            ("match", self.matches),
            ("notice", self.notices),
            ("entry", self.entries),
            ("user", self.users),
            ("token", self.token_ids),
        ):
            out.update({f"{prefix}_{key}": value for key, value in table.items()})
        return out


def page_png(path: Path, title: str, number: int) -> Path:
    render_page(title, number).save(path, "PNG")
    return path


def copy_bytes(title: str, number: int, *, size: tuple[int, int] = (560, 840)) -> bytes:
    """A pirate's copy of a page: resized and re-encoded as JPEG."""
    image = render_page(title, number).resize(size)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def evidence_dir() -> Path:
    settings = get_settings()
    return settings.evidence_dir or settings.data_dir / "evidence"


def store_evidence(
    image: bytes, *, page_url: str, image_url: str, screenshot: bytes | None = None
) -> str:
    store = EvidenceStore(evidence_dir())
    html = store.put(b"<html><body><img src='x'></body></html>", "text/html")
    blank = png_bytes(Image.new("RGB", (1200, 900), (235, 238, 242)))
    shot = store.put(screenshot or blank, "image/png")
    found = store.put(image, "image/jpeg")
    return store.put_manifest(
        {
            "kind": MANIFEST_KIND,
            "captured_at": datetime.now(UTC).isoformat(),
            "page_url": page_url,
            "image_url": image_url,
            "page": {
                "url": page_url,
                "ip_address": "203.0.113.7",
                "rendered": True,
                "html": html.as_json(),
                "screenshot": shot.as_json(),
            },
            "image": {"url": image_url, "artefact": found.as_json()},
            "previous": None,
        }
    )


def add_match(
    world: World,
    *,
    page_id: int,
    page_url: str,
    image_url: str,
    image: bytes,
    confidence: float = 0.93,
    decision: str = "confident",
    created_at: datetime | None = None,
    screenshot: bytes | None = None,
    site_id: int | None = None,
) -> int:
    sha = hashlib.sha256(image).digest()
    ref = store_evidence(image, page_url=page_url, image_url=image_url, screenshot=screenshot)
    with world.db.connection() as conn:
        conn.execute(
            "insert into images (sha256, byte_size, media_type) values (%s, %s, 'image/jpeg')"
            " on conflict do nothing",
            (sha, len(image)),
        )
        row = conn.execute(
            """
            insert into sightings (site_id, page_url, image_url, image_sha256, evidence_ref)
            values (%s, %s, %s, %s, %s) returning id
            """,
            (site_id or world.site_id, page_url, image_url, sha, ref),
        ).fetchone()
        assert row is not None
        match = conn.execute(
            """
            insert into matches (sighting_id, page_id, confidence, decision, scores, explanation,
                                 created_at)
            values (%s, %s, %s, %s, %s, %s, coalesce(%s, now())) returning id
            """,
            (
                row[0],
                page_id,
                confidence,
                decision,
                Jsonb({"region_score": 7.5, "phash": 4}),
                "region score 7.50 (review above 1.82): 12 region pairs agree",
                created_at,
            ),
        ).fetchone()
    assert match is not None
    return int(match[0])


def add_notice(
    world: World,
    *,
    publisher_id: int,
    match_id: int,
    url: str,
    state: str | None = None,
    body_html: str | None = None,
    body_text: str = "Notice of infringement",
    subject: str = "DMCA notice",
    sent_at: datetime | None = None,
    removed_at: datetime | None = None,
    recipient_id: int | None = None,
) -> int:
    created = sent_at - timedelta(hours=1) if sent_at else None
    if state is None:
        state = "removed" if removed_at else "sent" if sent_at else "drafted"
    with world.db.connection() as conn:
        row = conn.execute(
            """
            insert into notices (publisher_id, recipient_id, format, state, subject, body_text,
                                 body_html, created_at, state_changed_at)
            values (%s, %s, 'dmca', %s, %s, %s, %s, coalesce(%s, now()), coalesce(%s, now()))
            returning id
            """,
            (
                publisher_id,
                recipient_id or world.recipient_id,
                state,
                subject,
                body_text,
                body_html,
                created,
                removed_at or sent_at,
            ),
        ).fetchone()
        assert row is not None
        notice_id = int(row[0])
        conn.execute(
            "insert into notice_items (notice_id, match_id, infringing_url, state, removed_at)"
            " values (%s, %s, %s, %s, %s)",
            (notice_id, match_id, url, "removed" if removed_at else "listed", removed_at),
        )
        events: list[tuple[str, str | None, str, datetime | None]] = [
            ("created", None, "drafted", created)
        ]
        if sent_at is not None:
            events.append(("state_changed", "drafted", "sent", sent_at))
        if removed_at is not None:
            events.append(("state_changed", "sent", "removed", removed_at))
        for event_type, from_state, to_state, at in events:
            conn.execute(
                """
                insert into events (subject_type, subject_id, event_type, from_state, to_state,
                                    occurred_at, actor)
                values ('notice', %s, %s, %s, %s, coalesce(%s, now()), 'worker')
                """,
                (notice_id, event_type, from_state, to_state, at),
            )
    return notice_id


def build_world(db: Database, db_url: str, tmp: Path) -> World:
    world = World(db=db, db_url=db_url)
    for key, name in (("a", PUB_A), ("b", PUB_B)):
        world.publishers[key] = add_publisher(db, name, agent_organisation=f"{name} Rights").id
    for role, email in EMAILS.items():
        publisher = {"pub_a": PUB_A, "pub_b": PUB_B}.get(role)
        user = create_user(
            db,
            email=email,
            role={"pub_a": "publisher", "pub_b": "publisher", "op_a": "operator"}.get(role, role),
            password=PASSWORD,
            publisher=publisher,
        )
        world.users[role] = user.id
    assign_operator(db, EMAILS["op_a"], PUB_A)
    for key, publisher, title in (("a", PUB_A, TITLE_A), ("b", PUB_B, TITLE_B)):
        folder = tmp / f"work-{key}"
        folder.mkdir()
        paths = [page_png(folder / f"p{n}.png", title, n) for n in (1, 2)]
        result = register_work(db, publisher=publisher, title=title, sources=expand_paths(paths))
        world.works[key] = result.work.id
        world.pages[key] = result.added[0].id
    site = add_site(db, "pirate-example", SitePolicy(start_urls=["https://pirate.example/"]))
    world.site_id = site.id
    with db.connection() as conn:
        row = conn.execute(
            """
            insert into recipients (name, email, scope, site_id, domain, source)
            values ('Pirate Host Abuse', 'abuse@host.example', 'host', %s, 'pirate.example',
                    'configured')
            returning id
            """,
            (site.id,),
        ).fetchone()
        assert row is not None
        world.recipient_id = int(row[0])
    now = datetime.now(UTC)
    for key, title in (("a", TITLE_A), ("b", TITLE_B)):
        world.matches[key] = add_match(
            world,
            page_id=world.pages[key],
            page_url=f"https://pirate.example/read/{key}/1",
            image_url=f"https://cdn.pirate.example/{key}/001.jpg",
            image=copy_bytes(title, 1),
        )
        # A second, already approved match is what a notice lists.
        noticed = add_match(
            world,
            page_id=world.pages[key],
            page_url=f"https://pirate.example/read/{key}/old",
            image_url=f"https://cdn.pirate.example/{key}/old.jpg",
            image=copy_bytes(title, 1, size=(500, 750)),
        )
        with db.connection() as conn:
            conn.execute("update matches set review_state = 'approved' where id = %s", (noticed,))
        world.notices[key] = add_notice(
            world,
            publisher_id=world.publishers[key],
            match_id=noticed,
            url=f"https://pirate.example/read/{key}/old",
            sent_at=now - timedelta(days=2),
            removed_at=now - timedelta(days=1),
            body_html=f"<p>Notice for {title}</p>",
        )
        with db.connection() as conn:
            entry = conn.execute(
                "insert into allowlist_entries (publisher_id, work_id, domain) values (%s, %s, %s)"
                " returning id",
                (world.publishers[key], world.works[key], f"partner-{key}.example"),
            ).fetchone()
        assert entry is not None
        world.entries[key] = int(entry[0])
    for role in ("pub_a", "pub_b", "op_a", "admin"):
        token_id, token = create_token(db, EMAILS[role], f"{role} system")
        world.tokens[role] = token
        world.token_ids[role] = token_id
    return world


def make_app(db_url: str, **config: Any) -> Flask:
    settings = dict(
        TESTING=True,
        SECRET_KEY="test-secret-key-that-is-long-enough-0123456789",
        MAMORU_DATABASE_URL=db_url,
        WTF_CSRF_ENABLED=False,
        SESSION_COOKIE_SECURE=False,
        MAMORU_INDEX_REFRESH_SECONDS=0.0,
    )
    settings.update(config)
    return create_app(settings)


@pytest.fixture(name="app")
def app_fixture(db_url: str) -> Iterator[Flask]:
    application = make_app(db_url)
    yield application
    resources.close(application)


@pytest.fixture(name="world")
def world_fixture(db: Database, db_url: str, tmp_path: Path) -> World:
    return build_world(db, db_url, tmp_path)


@dataclass(frozen=True)
class Queue:
    """The Dramatiq queues of this test's database (dramatiq-postgres keeps them in the table
    ``dramatiq.queue``): what the admin enqueued for the workers."""

    db_url: str

    def messages(self) -> list[tuple[str, str, list[Any]]]:
        """(queue, actor, args) of every message enqueued, oldest first."""
        with psycopg.connect(self.db_url) as conn:
            rows = conn.execute(
                "select queue_name, message->>'actor_name', message->'args'"
                " from dramatiq.queue order by position"
            ).fetchall()
        return [(str(q), str(actor), list(args)) for q, actor, args in rows]


@pytest.fixture(name="queue")
def queue_fixture(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Queue]:
    """The default broker (PostgreSQL, dramatiq-postgres) on this test's database.

    ``takedown.actors`` installs a broker and declares its actors on it once per process, when
    first imported; every test has a database of its own, so this test's broker is installed
    first (the admin then finds one installed) and the actors already declared are pointed at
    it, for this test only.
    """
    import dramatiq
    import dramatiq.broker

    from takedown import broker as takedown_broker

    settings = get_settings().model_copy(update={"database_url": db_url, "broker_url": None})
    broker = takedown_broker.make_broker(settings)  # creates the dramatiq schema
    monkeypatch.setattr(takedown_broker, "_installed", broker)
    monkeypatch.setattr(dramatiq.broker, "global_broker", broker)
    from takedown import actors, actors_followup

    for module in (actors, actors_followup):
        for value in list(vars(module).values()):
            if isinstance(value, dramatiq.Actor):
                monkeypatch.setattr(value, "broker", broker)
                broker.declare_actor(value)
    yield Queue(db_url)
    broker.close()


def login(client: FlaskClient, role: str) -> None:
    if role == "anon":
        return
    response = client.post("/login", data={"email": EMAILS[role], "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)


def client_for(app: Flask, role: str) -> FlaskClient:
    client = app.test_client()
    login(client, role)
    return client


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, f"no CSRF token on {path}"
    return found.group(1)
