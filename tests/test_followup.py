"""Follow-up of sent notices: the recheck schedule, rechecks against real loopback HTTP
servers, escalation along the ladder, the delisting export and time-to-removal.

Real PostgreSQL, real HTTP servers on 127.0.0.1 (tests/fixtures_rdap.py), real decoding and
matching against the registered pages. A guard refuses any connection or name lookup beyond
loopback for the duration of each test.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw
from psycopg.types.json import Jsonb

from admin.cli import cli
from admin.demosite.handlers import Handler, Request, Response, Static
from admin.demosite.handlers import same_site_referer as referer_check
from admin.demosite.server import Site
from admin.samples import render_page
from admin.users import assign_operator, create_user
from admin.web import resources
from crawler.config import default_user_agent
from crawler.netguard import AddressPolicy
from store.config import load_settings
from store.db import Database
from takedown import rdap
from takedown.compose import compose_notices
from takedown.delivery import OutboxSender
from takedown.escalate import DiscoveryOptions, DiscoveryUnavailable, escalate_notice
from takedown.exports import search_engine_csv
from takedown.followup import (
    DEFAULT_POLICY,
    FollowupPolicy,
    RecheckSchedule,
    delisting_contents,
    due_rechecks,
    escalations_due,
    removal_times,
)
from takedown.probe import ProbeLimits, Prober
from takedown.recheck import recheck_notice
from takedown.send import send_notice
from tests.fixtures_rdap import (
    FixtureServer,
    bootstrap,
    entity,
    ip_answer,
    rdap_sandbox,  # noqa: F401 (autouse: loopback only, a fresh RDAP bootstrap cache)
    serving,
    vcard,
)
from tests.takedown_data import Scenario, add_match, build
from tests.web_fixtures import PASSWORD, Queue, make_app, queue_fixture  # noqa: F401 (fixture)
from tests.workers import Worker, wait_until, worker_env

H = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


# -- guards and fixtures


@pytest.fixture
def site() -> Iterator[FixtureServer]:
    """The pirate site: every path is a 404 until a test puts something there."""
    with serving() as server:
        yield server


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def page_copy(n: int) -> bytes:
    """Page ``n`` of the registered work, as the pirate site serves it."""
    return png(render_page("Takedown", n))


def reencoded_copy(n: int) -> bytes:
    image = render_page("Takedown", n)
    image = image.resize((image.width * 4 // 5, image.height * 4 // 5))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()


def placeholder() -> bytes:
    image = Image.new("RGB", (600, 850), (235, 235, 235))
    draw = ImageDraw.Draw(image)
    draw.rectangle((100, 300, 500, 500), outline=(120, 120, 120), width=6)
    draw.text((180, 390), "This content has been removed", fill=(60, 60, 60))
    return png(image)


def html(*images: str) -> str:
    tags = "".join(f'<img src="{src}">' for src in images)
    return f"<!doctype html><html><body><h1>Chapter</h1>{tags}</body></html>"


def add_copy(db: Database, s: Scenario, page_id: int, *, page_url: str, image_url: str,
             data: bytes) -> int:  # fmt: skip
    """An approved match of a sighting whose image is ``data`` (as the crawler records it)."""
    digest = hashlib.sha256(data).digest()
    with db.connection() as conn:
        conn.execute(
            "insert into images (sha256, byte_size) values (%s, %s) on conflict do nothing",
            (digest, len(data)),
        )
        sighting = conn.execute(
            "insert into sightings (site_id, page_url, image_url, image_sha256, evidence_ref) "
            "values (%s, %s, %s, %s, %s) returning id",
            (s.site_id, page_url, image_url, digest, "ab" * 32),
        ).fetchone()
        assert sighting is not None
        match = conn.execute(
            "insert into matches (sighting_id, page_id, confidence, decision, review_state) "
            "values (%s, %s, 0.95, 'confident', 'approved') returning id",
            (sighting[0], page_id),
        ).fetchone()
        assert match is not None
    return int(match[0])


def pirate(db: Database, tmp_path: Path, server: FixtureServer) -> Scenario:
    """The takedown scenario with its site on the loopback server (which tests may reach)."""
    s = build(db, tmp_path)
    with db.connection() as conn:
        conn.execute(
            "update sites set start_urls = %s, allow_private_addresses = true where id = %s",
            ([server.url + "/"], s.site_id),
        )
    return s


def noticed_copy(db: Database, s: Scenario, tmp_path: Path, site: FixtureServer) -> int:
    """A copy of page 1 served at ``/img/1.png`` on ``/read/1``, sighted and noticed (sent
    just now); the notice's id."""
    copy = page_copy(1)
    site.route("/img/1.png", body=copy, content_type="image/png")
    add_copy(db, s, s.page_ids[0], page_url=site.url + "/read/1",
             image_url=site.url + "/img/1.png", data=copy)  # fmt: skip
    [notice_id] = send_all(db, tmp_path)
    return notice_id


def send_all(db: Database, tmp_path: Path) -> list[int]:
    """Compose and send (to an outbox folder) every approved match; the notices' ids."""
    ids = compose_notices(db).notices
    outbox = OutboxSender(tmp_path / "outbox")
    for notice_id in ids:
        assert send_notice(db, notice_id, outbox, load_settings()).result == "sent"
    return ids


def sent_ago(db: Database, notice_id: int, age: dt.timedelta) -> None:
    with db.connection() as conn:
        conn.execute("update notices set sent_at = now() - %s where id = %s", (age, notice_id))


def one(db: Database, sql: str, *args: Any) -> Any:
    with db.connection() as conn:
        row = conn.execute(sql, args).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else tuple(row)


def item_states(db: Database, notice_id: int) -> list[str]:
    with db.connection() as conn:
        return [
            r[0]
            for r in conn.execute(
                "select state from notice_items where notice_id = %s order by id", (notice_id,)
            )
        ]


# -- the schedule


def test_rounds_are_due_at_24h_72h_and_7_days(db: Database, tmp_path: Path) -> None:
    s = build(db, tmp_path)
    add_match(db, s, s.page_ids[0], page_url="http://pirate.test/1",
              image_url="http://pirate.test/1.jpg")  # fmt: skip
    [notice_id] = send_all(db, tmp_path)
    sent = one(db, "select sent_at from notices where id = %s", notice_id)

    def due(at: dt.timedelta, policy: FollowupPolicy = DEFAULT_POLICY) -> list[int]:
        with db.connection() as conn:
            return [d.notice_id for d in due_rechecks(conn, now=sent + at, policy=policy)]

    def rechecked(at: dt.timedelta, errors: int = 0) -> None:
        with db.connection() as conn:
            conn.execute(
                "insert into events (occurred_at, subject_type, subject_id, event_type, details)"
                " values (%s, 'notice', %s, 'rechecked', %s::jsonb)",
                (sent + at, notice_id, json.dumps({"errors": errors})),
            )

    assert due(23 * H) == []
    assert due(24 * H) == [notice_id]
    rechecked(25 * H)
    assert due(71 * H) == []
    assert due(72 * H) == [notice_id]
    rechecked(72 * H, errors=1)  # the 72 h round could not tell: repeated 6 h later
    assert due(77 * H) == []
    with db.connection() as conn:
        [retry] = due_rechecks(conn, now=sent + 78 * H)
    assert retry.retry and retry.due_at == sent + 78 * H
    rechecked(78 * H)
    assert due(7 * DAY - H) == []
    assert due(7 * DAY) == [notice_id]
    rechecked(7 * DAY)
    assert due(30 * DAY) == []  # the schedule is over

    # Per scope: hosts rechecked at 12 h with a 48 h SLA, but a designated platform keeps its
    # own 7-day schedule whatever its scope.
    fast = FollowupPolicy(by_scope={"host": RecheckSchedule((12 * H, 48 * H), sla=48 * H)})
    with db.connection() as conn:
        conn.execute("delete from events where event_type = 'rechecked'")
    assert due(12 * H, fast) == [notice_id]
    with db.connection() as conn:
        conn.execute("update recipients set is_designated_platform = true")
    assert due(12 * H, fast) == []
    assert due(24 * H, fast) == [notice_id]


def test_schedules_are_validated() -> None:
    with pytest.raises(ValueError, match="SLA"):
        RecheckSchedule((24 * H,), sla=7 * DAY)
    with pytest.raises(ValueError, match="increasing"):
        RecheckSchedule((72 * H, 24 * H))
    with pytest.raises(ValueError, match="unknown recipient scope"):
        FollowupPolicy(ladder=("host", "hosting-company"))


# -- rechecks against a real site


def test_image_still_served_is_still_up(db: Database, tmp_path: Path, site: FixtureServer) -> None:
    s = pirate(db, tmp_path, site)
    notice_id = noticed_copy(db, s, tmp_path, site)
    report = recheck_notice(db, notice_id)
    assert report.counts == {"gone": 0, "still_up": 1, "changed": 0, "error": 0}
    assert (report.state, report.escalation_due) == ("sent", False)
    assert item_states(db, notice_id) == ["still_up"]
    assert one(db, "select outcome, http_status from rechecks") == ("still_up", 200)
    assert site.requested("/read/") == []  # the image answered; the page was not needed
    with db.connection() as conn:  # an early recheck does not use up the 24 h round
        assert due_rechecks(conn, now=dt.datetime.now(dt.UTC) + 23 * H) == []
        [due] = due_rechecks(conn, now=dt.datetime.now(dt.UTC) + 25 * H)
    assert due.notice_id == notice_id and not due.retry


def test_image_404_removes_the_notice(db: Database, tmp_path: Path, site: FixtureServer) -> None:
    s = pirate(db, tmp_path, site)
    copy = page_copy(1)
    site.text("/read/1", html("/img/other.png"), content_type="text/html")
    site.route("/img/other.png", body=page_copy(2), content_type="image/png")  # another page
    add_copy(db, s, s.page_ids[0], page_url=site.url + "/read/1",
             image_url=site.url + "/img/1.png", data=copy)  # fmt: skip
    [notice_id] = send_all(db, tmp_path)
    report = recheck_notice(db, notice_id)
    assert report.counts["gone"] == 1 and report.state == "removed"
    [check] = report.items
    assert check.http_status == 404 and check.details["page"]["status"] == 200
    assert item_states(db, notice_id) == ["removed"]
    assert one(db, "select removed_at is not null from notice_items")
    assert (
        one(
            db,
            "select count(*) from events where subject_type = 'notice' and subject_id = %s "
            "and from_state = 'sent' and to_state = 'removed'",
            notice_id,
        )
        == 1
    )
    # A removed notice is no longer followed up.
    again = recheck_notice(db, notice_id)
    assert again.skipped == "not open"


@pytest.mark.parametrize(
    ("served", "outcome", "state"),
    [
        ("placeholder", "gone", "removed"),
        ("re-encoded copy", "changed", "sent"),  # other bytes, still the copy: not removed
    ],
)
def test_a_different_image_counts_only_if_it_no_longer_matches(
    db: Database, tmp_path: Path, site: FixtureServer, served: str, outcome: str, state: str
) -> None:
    s = pirate(db, tmp_path, site)
    body = placeholder() if served == "placeholder" else reencoded_copy(1)
    site.route("/img/1.png", body=body, content_type="image/png")
    site.text("/read/1", html("/img/1.png"), content_type="text/html")
    add_copy(db, s, s.page_ids[0], page_url=site.url + "/read/1",
             image_url=site.url + "/img/1.png", data=page_copy(1))  # fmt: skip
    [notice_id] = send_all(db, tmp_path)
    report = recheck_notice(db, notice_id)
    [check] = report.items
    assert (check.outcome, report.state) == (outcome, state), check.details
    assert "score" in check.details["image"]


def test_html_removal_page_at_the_image_url_is_gone(
    db: Database, tmp_path: Path, site: FixtureServer
) -> None:
    s = pirate(db, tmp_path, site)
    site.text("/img/1.png", "<html>removed (DMCA)</html>", content_type="text/html")
    add_copy(db, s, s.page_ids[0], page_url=site.url + "/read/1",
             image_url=site.url + "/img/1.png", data=page_copy(1))  # fmt: skip
    [notice_id] = send_all(db, tmp_path)
    [check] = recheck_notice(db, notice_id).items
    assert check.outcome == "gone" and check.details["image"]["not_image"] is True


def test_copy_still_elsewhere_on_the_site_is_not_removed(
    db: Database, tmp_path: Path, site: FixtureServer
) -> None:
    s = pirate(db, tmp_path, site)
    copy = page_copy(1)
    # Item 1: its page and image are 404, but the site serves the same copy at a URL another
    # sighting recorded. Item 2: its image is 404, its page now shows the copy at a new URL.
    add_copy(db, s, s.page_ids[0], page_url=site.url + "/read/1",
             image_url=site.url + "/img/1.png", data=copy)  # fmt: skip
    with db.connection() as conn:  # the other sighting (not noticed: not approved)
        conn.execute(
            "insert into sightings (site_id, page_url, image_url, image_sha256) "
            "values (%s, %s, %s, %s)",
            (s.site_id, site.url + "/mirror", site.url + "/mirror/1.png",
             hashlib.sha256(copy).digest()),
        )  # fmt: skip
    site.route("/mirror/1.png", body=copy, content_type="image/png")
    add_copy(db, s, s.page_ids[1], page_url=site.url + "/read/2",
             image_url=site.url + "/img/2.png", data=page_copy(2))  # fmt: skip
    site.text("/read/2", html("/static/logo.png", "/cdn/v2/2.jpg"), content_type="text/html")
    site.route("/cdn/v2/2.jpg", body=reencoded_copy(2), content_type="image/jpeg")
    [notice_id] = send_all(db, tmp_path)
    report = recheck_notice(db, notice_id)
    first, second = report.items
    assert first.outcome == "changed" and first.details["moved_to"] == site.url + "/mirror/1.png"
    assert first.details["page"]["status"] == 404
    assert second.outcome == "changed" and second.details["moved_to"] == site.url + "/cdn/v2/2.jpg"
    assert report.state == "sent" and item_states(db, notice_id) == ["still_up", "still_up"]


def test_network_error_is_an_error_never_a_removal(
    db: Database, tmp_path: Path, site: FixtureServer
) -> None:
    s = pirate(db, tmp_path, site)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    add_copy(db, s, s.page_ids[0], page_url=dead + "/read/1", image_url=dead + "/img/1.png",
             data=page_copy(1))  # fmt: skip
    # Image 404 but the page times out: whether the copy moved cannot be told either.
    site.route("/read/2", body=b"<html></html>", content_type="text/html", delay=3)
    add_copy(db, s, s.page_ids[1], page_url=site.url + "/read/2",
             image_url=site.url + "/img/2.png", data=page_copy(2))  # fmt: skip
    [notice_id] = send_all(db, tmp_path)
    sent_ago(db, notice_id, 8 * DAY)  # even past the SLA nothing is decided on errors
    report = recheck_notice(db, notice_id, prober=Prober(ProbeLimits(timeout=1.0)))
    first, second = report.items
    assert first.outcome == "error" and "network" in first.details["image"]["error"]
    # A timeout (the socket's or the deadline's, whichever fires first under load).
    assert second.outcome == "error" and "time" in second.details["page"]["error"].lower()
    assert (report.state, report.escalation_due) == ("sent", False)
    assert item_states(db, notice_id) == ["listed", "listed"]
    with db.connection() as conn:  # retried after FollowupPolicy.retry_after
        now = dt.datetime.now(dt.UTC)
        assert due_rechecks(conn, now=now + H) == []
        [retry] = due_rechecks(conn, now=now + 7 * H)
    assert retry.notice_id == notice_id and retry.retry


def test_refused_address_is_an_error(db: Database, tmp_path: Path, site: FixtureServer) -> None:
    s = pirate(db, tmp_path, site)
    with db.connection() as conn:  # the site no longer allows loopback: nothing is fetched
        conn.execute("update sites set allow_private_addresses = false")
    add_copy(db, s, s.page_ids[0], page_url=site.url + "/read/1",
             image_url=site.url + "/img/1.png", data=page_copy(1))  # fmt: skip
    [notice_id] = send_all(db, tmp_path)
    [check] = recheck_notice(db, notice_id).items
    assert check.outcome == "error" and check.details["image"]["error"].startswith("refused")
    assert site.requested() == []


# -- sites that guard their images


@pytest.fixture
def guarded() -> Iterator[Site]:
    """A pirate site on loopback whose images are hotlink-protected (:func:`cookie_gate`)."""
    with Site("guarded") as site:
        yield site


def cookie_gate(inner: Handler) -> Handler:
    """Hotlink protection as pirate sites do it: the image only for a visitor coming from a page
    of the site (Referer) who has been on it (the cookie the page sets) and passed the age gate
    (a cookie the site's crawl policy carries); everyone else gets a 403."""

    def handle(request: Request) -> Response:
        cookies = {c.strip() for c in request.headers.get("Cookie", "").split(";")}
        if {"visited=1", "age_ok=1"} <= cookies:
            return inner(request)
        return Response(403, b"hotlinking is not allowed", "text/plain")

    return referer_check(handle)


def test_hotlink_protected_image_is_rechecked_as_a_reader_sees_it(
    db: Database, tmp_path: Path, guarded: Site
) -> None:
    s = build(db, tmp_path)
    with db.connection() as conn:  # the crawl policy: a language and the age gate's cookie
        conn.execute(
            "update sites set start_urls = %s, allow_private_addresses = true,"
            " request_headers = %s, cookies = %s where id = %s",
            ([guarded.url("/")], Jsonb({"accept-language": "ja"}), Jsonb({"age_ok": "1"}),
             s.site_id),
        )  # fmt: skip
    page_url, image_url = guarded.url("/read/1"), guarded.url("/cdn/1.png")
    reader = Static(html("/cdn/1.png").encode(), headers=[("Set-Cookie", "visited=1; Path=/")])
    guarded.route("/read/1", reader)
    copy = page_copy(1)
    guarded.route("/cdn/1.png", cookie_gate(Static(copy, "image/png")))
    add_copy(db, s, s.page_ids[0], page_url=page_url, image_url=image_url, data=copy)  # fmt: skip
    [notice_id] = send_all(db, tmp_path)
    # Asked as a stranger, the site refuses: what every recheck of it used to get.
    assert rdap.fetch(image_url, policy=AddressPolicy(allow_private=True)).status == 403
    guarded.requests.clear()

    report = recheck_notice(db, notice_id)
    assert report.counts == {"gone": 0, "still_up": 1, "changed": 0, "error": 0}, report.items
    assert (report.state, item_states(db, notice_id)) == ("sent", ["still_up"])
    # Refused without the page's cookie, the page was visited and the image asked again.
    assert guarded.requests.paths() == ["/cdn/1.png", "/read/1", "/cdn/1.png"]
    refused, page, served = guarded.requests.snapshot()
    assert refused.headers["Referer"] == served.headers["Referer"] == page_url
    assert "Referer" not in page.headers
    assert {c.strip() for c in served.headers["Cookie"].split(";")} == {"visited=1", "age_ok=1"}
    for request in (refused, page, served):  # as the crawler asks: its agent, the site's headers
        assert request.headers["User-Agent"] == default_user_agent()
        assert request.headers.get_all("Accept-Language") == ["ja"]

    # The site replaces the copy with a placeholder, behind the same protection: removed.
    guarded.route("/cdn/1.png", cookie_gate(Static(placeholder(), "image/png")))
    report = recheck_notice(db, notice_id)
    [check] = report.items
    assert (check.outcome, report.state) == ("gone", "removed"), check.details
    assert check.http_status == 200 and check.details["image"]["verdict"] == "absent"
    assert "score" in check.details["image"] and check.details["page"]["status"] == 200
    assert item_states(db, notice_id) == ["removed"]


# -- escalation


def test_sla_passed_escalates_to_the_next_scope(
    db: Database, tmp_path: Path, site: FixtureServer
) -> None:
    s = pirate(db, tmp_path, site)
    copy = page_copy(1)
    site.route("/img/1.png", body=copy, content_type="image/png")
    kept = add_copy(db, s, s.page_ids[0], page_url=site.url + "/read/1",
                    image_url=site.url + "/img/1.png", data=copy)  # fmt: skip
    add_copy(db, s, s.page_ids[1], page_url=site.url + "/read/2",
             image_url=site.url + "/img/2.png", data=page_copy(2))  # fmt: skip
    with db.connection() as conn:  # the ladder: host (the notice's own) -> cdn -> registrar
        registrar = one_row(
            conn,
            "insert into recipients (name, email, scope, site_id, source) values "
            "('Registrar Abuse', 'abuse@registrar.test', 'registrar', %s, 'configured') "
            "returning id",
            s.site_id,
        )
    [notice_id] = send_all(db, tmp_path)
    sent_ago(db, notice_id, 7 * DAY + H)
    report = recheck_notice(db, notice_id)
    assert report.counts == {"gone": 1, "still_up": 1, "changed": 0, "error": 0}
    assert (report.state, report.escalation_due) == ("still_up", True)
    with db.connection() as conn:
        assert escalations_due(conn) == [notice_id]

    result = escalate_notice(db, notice_id, discovery=None)
    [new_id] = result.new_notices
    assert (result.outcome, result.approved, result.invalid) == ("escalated", (new_id,), ())
    assert one(db, "select state from notices where id = %s", notice_id) == "escalated"
    state, escalates, recipient, body = one(
        db,
        "select state, escalates_notice_id, recipient_id, body_text from notices where id = %s",
        new_id,
    )
    assert (state, escalates, recipient) == ("approved", notice_id, registrar)
    assert site.url + "/img/1.png" in body and site.url + "/img/2.png" not in body
    assert one(db, "select array_agg(match_id) from notice_items where notice_id = %s",
               new_id) == [kept]  # fmt: skip
    assert escalate_notice(db, notice_id).outcome == "skipped"  # idempotent

    # The registrar acts: the new notice is removed, and the escalated one with it.
    assert send_notice(db, new_id, OutboxSender(tmp_path / "outbox"), load_settings()).result == (
        "sent"
    )
    site.route("/img/1.png", status=410, body=b"", content_type=None)
    assert recheck_notice(db, new_id).state == "removed"
    assert one(db, "select state from notices where id = %s", notice_id) == "removed"
    assert item_states(db, notice_id) == ["removed", "removed"]
    with db.connection() as conn:
        times = removal_times(conn)
    by_name = {r.name: (r.sent, r.removed, r.escalated) for r in times.by_recipient}
    # The host's notice was removed only after escalation: not to the host's credit.
    assert by_name == {"Pirate Host Abuse": (1, 0, 1), "Registrar Abuse": (1, 1, 0)}


def one_row(conn: Any, sql: str, *args: Any) -> Any:
    row = conn.execute(sql, args).fetchone()
    assert row is not None
    return row[0]


def test_escalation_discovers_the_host_over_loopback_rdap(
    db: Database, tmp_path: Path, site: FixtureServer
) -> None:
    s = pirate(db, tmp_path, site)
    with db.connection() as conn:  # the notice went to the site's operator
        conn.execute("update recipients set scope = 'site_operator'")
    notice_id = noticed_copy(db, s, tmp_path, site)
    sent_ago(db, notice_id, 8 * DAY)
    assert recheck_notice(db, notice_id).escalation_due
    with socket.socket() as sock:  # an RDAP service that is down
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}/iana/"
    with pytest.raises(DiscoveryUnavailable, match="rdap_ip: network"):
        escalate_notice(db, notice_id, discovery=DiscoveryOptions(bootstrap_url=down))
    # Not the end of the ladder: nothing changed, to be retried.
    assert one(db, "select state from notices where id = %s", notice_id) == "still_up"
    assert one(db, "select count(*) from notices") == 1
    with serving() as registry:
        base = registry.url + "/rdap/"
        registry.json("/iana/ipv4.json", bootstrap([(["127.0.0.0/8"], [base])]))
        registry.json(
            "/rdap/ip/127.0.0.1",
            ip_answer("127.0.0.0", "127.255.255.255", "LOOPBACK-NET",
                      entity(["abuse"], vcard("Loopback NOC", "noc@host.test"))),
        )  # fmt: skip
        result = escalate_notice(
            db, notice_id, discovery=DiscoveryOptions(bootstrap_url=registry.url + "/iana/")
        )
    [new_id] = result.approved
    name, email, scope, source = one(
        db,
        "select r.name, r.email, r.scope, r.source from notices n "
        "join recipients r on r.id = n.recipient_id where n.id = %s",
        new_id,
    )
    assert (name, email, scope, source) == ("Loopback NOC", "noc@host.test", "host", "rdap")


def test_exhausted_ladder_goes_to_the_delisting_export(
    db: Database, tmp_path: Path, site: FixtureServer, mamoru_env: Path
) -> None:
    import admin.cli_followup  # noqa: F401  (attaches the commands; admin/cli.py will import it)

    s = pirate(db, tmp_path, site)
    notice_id = noticed_copy(db, s, tmp_path, site)
    sent_ago(db, notice_id, 8 * DAY)
    assert recheck_notice(db, notice_id).escalation_due
    result = escalate_notice(db, notice_id, discovery=None)  # nobody beyond the host is known
    assert (result.outcome, result.new_notices, len(result.delisted_items)) == ("exhausted", (), 1)
    assert one(db, "select state from notices where id = %s", notice_id) == "escalated"
    with db.connection() as conn:
        [content] = delisting_contents(conn)
    assert [i.image_url for i in content.items] == [site.url + "/img/1.png"]
    assert site.url + "/img/1.png" in search_engine_csv([content])
    for command in (["notices", "delisting"], ["notices", "export", "--format", "csv",
                                                "--state", "escalated"]):  # fmt: skip
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 0, result.output
        urls = [row[0] for row in csv.reader(io.StringIO(result.output))][1:]
        assert urls == [site.url + "/img/1.png", site.url + "/read/1"]


# -- time to removal


def test_removal_times_per_recipient_and_site(db: Database, tmp_path: Path) -> None:
    s = build(db, tmp_path)
    with db.connection() as conn:
        mirror = one_row(
            conn, "insert into sites (name, start_urls) values ('mirror', %s) returning id",
            ["http://mirror.test/"],
        )  # fmt: skip
        other = one_row(
            conn,
            "insert into recipients (name, email, scope, site_id) "
            "values ('Mirror Registrar', 'abuse@reg.test', 'registrar', %s) returning id",
            mirror,
        )
    on_mirror = dataclasses.replace(s, site_id=mirror)
    matches = [
        add_match(db, s, s.page_ids[0], page_url=f"http://pirate.test/{n}",
                  image_url=f"http://pirate.test/{n}.jpg")
        for n in range(4)
    ] + [add_match(db, on_mirror, s.page_ids[0], page_url="http://mirror.test/1",
                   image_url="http://mirror.test/1.jpg")]  # fmt: skip
    t0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    # (recipient, match, [(hours after t0, from, to)])
    history = [
        (s.recipient_id, matches[0], [(0, "queued", "sent"), (10, "sent", "removed")]),
        (s.recipient_id, matches[1], [(0, "queued", "sent"), (30, "sent", "removed")]),
        (s.recipient_id, matches[2], [(0, "queued", "sent"), (168, "sent", "still_up"),
                                      (169, "still_up", "escalated"),
                                      (200, "escalated", "removed")]),
        (s.recipient_id, matches[3], []),  # drafted, never sent: not counted
        (other, matches[4], [(0, "queued", "sent")]),
    ]  # fmt: skip
    with db.connection() as conn:
        for recipient, match, moves in history:
            notice = one_row(
                conn,
                "insert into notices (publisher_id, recipient_id, format) "
                "values (%s, %s, 'dmca') returning id",
                s.publisher_id,
                recipient,
            )
            conn.execute(
                "insert into notice_items (notice_id, match_id, infringing_url) "
                "values (%s, %s, '')",
                (notice, match),
            )
            for hours, before, after in moves:
                conn.execute(
                    "insert into events (occurred_at, subject_type, subject_id, event_type, "
                    "from_state, to_state) values (%s, 'notice', %s, 'state_changed', %s, %s)",
                    (t0 + hours * H, notice, before, after),
                )
        times = removal_times(conn)
        later = removal_times(conn, since=t0 + H)
    mirror_registrar, pirate_host = times.by_recipient  # by name
    assert (pirate_host.name, pirate_host.scope) == ("Pirate Host Abuse", "host")
    # The third notice was removed only after its escalation: not to the host's credit.
    assert (pirate_host.sent, pirate_host.removed, pirate_host.escalated) == (3, 2, 1)
    assert pirate_host.removal_rate == pytest.approx(2 / 3)
    assert pirate_host.median_hours == pytest.approx(20.0)
    assert (mirror_registrar.name, mirror_registrar.sent, mirror_registrar.removed) == (
        "Mirror Registrar", 1, 0,
    )  # fmt: skip
    assert mirror_registrar.median_hours is None and mirror_registrar.removal_rate == 0
    assert [(x.name, x.sent, x.removed, x.median_hours) for x in times.by_site] == [
        ("mirror", 1, 0, None),
        ("pirate", 3, 2, pytest.approx(20.0)),
    ]
    assert later.by_recipient == [] and later.by_site == []


# -- the command line


def test_cli_recheck_escalate_and_removal_times(
    mamoru_env: Path, db_url: str, tmp_path: Path, site: FixtureServer
) -> None:
    import admin.cli_followup  # noqa: F401  (attaches the commands; admin/cli.py will import it)

    db = Database(db_url, min_size=0, max_size=4)
    try:
        s = pirate(db, tmp_path, site)
        add_copy(db, s, s.page_ids[0], page_url=site.url + "/read/1",
                 image_url=site.url + "/img/1.png", data=page_copy(1))  # fmt: skip
        [notice_id] = send_all(db, tmp_path)
        sent_ago(db, notice_id, 2 * DAY)
    finally:
        db.close()
    runner = CliRunner()
    assert runner.invoke(cli, ["notices", "recheck"]).exit_code == 2  # ids or --due
    result = runner.invoke(cli, ["notices", "recheck", "--due", "--json"])
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.output)["rechecks"]
    assert (report["notice_id"], report["state"], report["counts"]["gone"]) == (
        notice_id, "removed", 1,
    )  # fmt: skip
    again = runner.invoke(cli, ["notices", "recheck", str(notice_id)])
    assert again.exit_code == 0 and "not rechecked (not open)" in again.output
    assert "no recheck due" in runner.invoke(cli, ["notices", "recheck", "--due"]).output
    missing = runner.invoke(cli, ["notices", "recheck", "999999"])
    assert missing.exit_code == 1 and "no notice 999999" in missing.output
    times = runner.invoke(cli, ["notices", "removal-times", "--json"])
    assert times.exit_code == 0, times.output
    [row] = json.loads(times.output)["by_recipient"]
    assert (row["sent"], row["removed"], row["removal_rate"]) == (1, 1, 1.0)
    assert row["median_hours"] is not None and row["median_hours"] < 1
    text = runner.invoke(cli, ["notices", "removal-times"])
    assert "Pirate Host Abuse (host): 1 sent, 1 removed (100%)" in text.output
    skipped = runner.invoke(cli, ["notices", "escalate", str(notice_id), "--no-discovery"])
    assert skipped.exit_code == 0 and "skipped" in skipped.output


# -- the actors


ACTOR_SCRIPT = """
import json, sys
from takedown import actors_followup as a

a.recheck_due.fn()  # what the scheduler's message runs: enqueues the due recheck
a.recheck_notice.fn(int(sys.argv[1]))  # what a worker then runs for it
print(json.dumps({n: {k: v for k, v in getattr(a, n).options.items() if k != "throws"}
                  | {"queue": getattr(a, n).queue_name}
                  for n in ("recheck_due", "recheck_notice", "escalate")}))
"""


def test_actors_enqueue_and_recheck_on_the_postgres_broker(
    db: Database, db_url: str, tmp_path: Path, site: FixtureServer
) -> None:
    s = pirate(db, tmp_path, site)
    add_copy(db, s, s.page_ids[0], page_url=site.url + "/read/1",
             image_url=site.url + "/img/1.png", data=page_copy(1))  # fmt: skip
    [notice_id] = send_all(db, tmp_path)
    sent_ago(db, notice_id, 25 * H)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORU_")}
    env |= {"MAMORU_DATABASE_URL": db_url, "MAMORU_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-c", ACTOR_SCRIPT, str(notice_id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    options = json.loads(done.stdout.strip().splitlines()[-1])
    assert {o["queue"] for o in options.values()} == {"followup"}
    assert options["recheck_notice"]["max_retries"] == 3
    assert all("time_limit" in o and "max_retries" in o for o in options.values())
    assert one(db, "select state from notices where id = %s", notice_id) == "removed"
    with db.connection() as conn:
        queued = conn.execute(
            "select message -> 'actor_name', message -> 'args' from dramatiq.queue "
            "where queue_name = 'followup'"
        ).fetchall()
    assert queued == [("recheck_notice", [notice_id])]


def test_recheck_now_from_the_admin_runs_at_once_and_names_the_operator(
    db: Database, db_url: str, tmp_path: Path, site: FixtureServer, queue: Queue, mamoru_env: Path
) -> None:
    import admin.cli_followup  # noqa: F401  (attaches the commands; admin/cli.py will import it)
    from takedown import actors_followup

    s = pirate(db, tmp_path, site)
    notice_id = noticed_copy(db, s, tmp_path, site)  # just now: the first round is 24 h away
    operator = create_user(db, email="op@rights.test", role="operator", password=PASSWORD)
    assign_operator(db, operator.email, "Sample Comics")
    # What the scheduler would send for it: rechecks only a round that is due.
    actors_followup.recheck_notice.send(notice_id)
    app = make_app(db_url)
    try:
        client = app.test_client()
        signed_in = client.post("/login", data={"email": operator.email, "password": PASSWORD})
        assert signed_in.status_code == 302
        page = client.get(f"/notices/{notice_id}").get_data(as_text=True)
        assert re.search(r'data-action="recheck" title=', page)  # offered, not disabled
        asked = client.post(f"/notices/{notice_id}/actions", data={"action": "recheck"})
        assert asked.status_code == 303
    finally:
        resources.close(app)
    with db.connection() as conn:
        sent = conn.execute(
            "select message -> 'args', message -> 'kwargs' from dramatiq.queue"
            " where queue_name = 'followup' order by position"
        ).fetchall()
    assert sent == [
        ([notice_id], {}),
        ([notice_id], {"force": True, "actor": "web", "user_id": operator.id,
                       "requested_by": "op@rights.test"}),
    ]  # fmt: skip

    def queue_empty() -> bool:
        return one(db, "select count(*) from dramatiq.queue where queue_name = 'followup'") == 0

    env = worker_env(db_url, tmp_path / "data")
    with Worker(env, log_path=tmp_path / "worker.log", queues=("followup",)) as worker:
        wait_until(queue_empty, timeout=60, message=worker.log_tail)
    with db.connection() as conn:
        rounds = conn.execute(
            "select actor, actor_user_id, details from events"
            " where subject_type = 'notice' and subject_id = %s and event_type = 'rechecked'",
            (notice_id,),
        ).fetchall()
    # One round, the operator's: the scheduled message found none due and did nothing.
    [(actor, user_id, details)] = rounds
    assert (actor, user_id, details["requested_by"]) == ("web", operator.id, "op@rights.test")
    assert (details["items"], details["still_up"]) == (1, 1)
    assert item_states(db, notice_id) == ["still_up"]
    assert site.requested("/img/") == ["/img/1.png"]

    # From the command line, a notice named by id is rechecked at once too, and the round
    # names who ran the command; --due runs only rounds that are due.
    runner = CliRunner(env={"LOGNAME": "night-shift"})
    assert "no recheck due" in runner.invoke(cli, ["notices", "recheck", "--due"]).output
    result = runner.invoke(cli, ["notices", "recheck", str(notice_id)])
    assert result.exit_code == 0 and "1 still up" in result.output, result.output
    latest = one(
        db,
        "select actor, details ->> 'requested_by' from events where event_type = 'rechecked'"
        " order by id desc limit 1",
    )
    assert latest == ("cli", "night-shift")


def test_a_forced_recheck_waits_for_the_round_in_progress(
    db: Database, tmp_path: Path, site: FixtureServer
) -> None:
    s = pirate(db, tmp_path, site)
    add_copy(db, s, s.page_ids[0], page_url=site.url + "/read/1",
             image_url=site.url + "/img/1.png", data=page_copy(1))  # fmt: skip
    [notice_id] = send_all(db, tmp_path)
    results: list[Any] = []
    with psycopg.connect(db.url) as other:  # a round in progress elsewhere
        other.execute("select pg_advisory_lock(%s, %s)", (0x6D726563, notice_id))
        other.commit()
        waiter = threading.Thread(target=lambda: results.append(recheck_notice(db, notice_id)))
        waiter.start()
        time.sleep(0.5)
        assert results == [] and site.requested() == []  # still waiting, nothing fetched
        other.execute("select pg_advisory_unlock(%s, %s)", (0x6D726563, notice_id))
        other.commit()
        waiter.join(timeout=30)
    [report] = results
    assert report.skipped is None and report.state == "removed"


def test_one_recheck_of_a_notice_at_a_time(
    db: Database, tmp_path: Path, site: FixtureServer
) -> None:
    s = pirate(db, tmp_path, site)
    add_copy(db, s, s.page_ids[0], page_url=site.url + "/read/1",
             image_url=site.url + "/img/1.png", data=page_copy(1))  # fmt: skip
    [notice_id] = send_all(db, tmp_path)
    with db.connection() as other:  # another worker holds the notice
        other.execute("select pg_advisory_lock(%s, %s)", (0x6D726563, notice_id))
        other.commit()
        scheduled = recheck_notice(db, notice_id, only_if_due=True)
        forced = recheck_notice(db, notice_id, lock_wait=0.3)
        other.execute("select pg_advisory_unlock(%s, %s)", (0x6D726563, notice_id))
    for busy in (scheduled, forced):
        assert busy.skipped == "being rechecked elsewhere"
    assert site.requested() == []
    assert recheck_notice(db, notice_id, only_if_due=True).skipped == "not due"  # sent just now
    assert recheck_notice(db, notice_id).state == "removed"
    assert recheck_notice(db, notice_id, only_if_due=True).skipped == "not open"
