"""From approved matches to sent notices: gates, rendering, exactly-once sending, a real worker.

Real PostgreSQL, a real SMTP server on loopback (tests/smtp_sink.py), and for the worker test a
real `mamoru worker` process consuming from the PostgreSQL broker.
"""

from __future__ import annotations

import email
import email.policy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from store.config import load_settings
from store.db import Database
from takedown.compose import FloodGuard, compose_notices, release
from takedown.delivery import OutboxSender, SmtpSender, TransientDeliveryError
from takedown.send import send_notice
from takedown.states import IllegalTransition, transition
from tests.smtp_sink import SmtpSink
from tests.takedown_data import Scenario, add_match, build
from tests.workers import add_notice_targets


def notice_rows(db: Database) -> list[tuple[int, str, str | None, str | None]]:
    with db.connection() as conn:
        return [
            (int(r[0]), r[1], r[2], r[3])
            for r in conn.execute(
                "select id, state, held_reason, last_error from notices order by id"
            )
        ]


def events(db: Database, subject_type: str, subject_id: int) -> list[tuple[str, str | None]]:
    with db.connection() as conn:
        return [
            (r[0], r[1])
            for r in conn.execute(
                "select event_type, to_state from events where subject_type = %s "
                "and subject_id = %s order by id",
                (subject_type, subject_id),
            )
        ]


def two_matches(db: Database, s: Scenario) -> list[int]:
    return [
        add_match(
            db,
            s,
            page_id,
            page_url=f"http://pirate.test/read/{n}",
            image_url=f"http://img.pirate.test/{n}.jpg",
        )
        for n, page_id in enumerate(s.page_ids, start=1)
    ]


def test_one_notice_per_recipient_lists_every_approved_match(db: Database, tmp_path: Path) -> None:
    s = build(db, tmp_path)
    two_matches(db, s)
    add_match(
        db,
        s,
        s.page_ids[0],
        page_url="http://pirate.test/pending",
        image_url="http://img.pirate.test/pending.jpg",
        review_state="pending",
    )
    report = compose_notices(db)
    [notice_id] = report.notices
    assert report.held == report.invalid == []
    [(_, state, held, error)] = notice_rows(db)
    assert (state, held, error) == ("approved", None, None)
    with db.connection() as conn:
        row = conn.execute(
            "select subject, body_text, body_html, message_id from notices"
        ).fetchone()
        items = conn.execute("select infringing_url from notice_items order by id").fetchall()
    assert row is not None
    subject, text, html, message_id = row
    assert "DMCA" in subject and "Sample Comics" in subject
    for url in ("http://img.pirate.test/1.jpg", "http://pirate.test/read/2"):
        assert url in text and url in html
    assert "Takedown Vol. 1" in text and "penalty of perjury" in text
    assert "http://img.pirate.test/pending.jpg" not in text  # not reviewed: not noticed
    assert [r[0] for r in items] == ["http://img.pirate.test/1.jpg", "http://img.pirate.test/2.jpg"]
    assert message_id.startswith(f"<notice-{notice_id}.")
    assert events(db, "notice", notice_id) == [("drafted", None), ("state_changed", "approved")]
    # Composing again finds nothing new: a match is listed in one notice only.
    assert compose_notices(db).notices == []


def test_allowlisted_domains_are_never_noticed(db: Database, tmp_path: Path) -> None:
    s = build(db, tmp_path)
    [licensed, _] = two_matches(db, s)
    with db.connection() as conn:
        # The first match's image is served from img.pirate.test; license that host only.
        conn.execute(
            "insert into allowlist_entries (publisher_id, work_id, domain) "
            "values (%s, %s, 'img.pirate.test')",
            (s.publisher_id, s.work_id),
        )
    report = compose_notices(db)
    assert report.allowlisted == 2  # both images are on the licensed host
    assert report.notices == []
    assert events(db, "match", licensed) == [("allowlisted", "licensed")]


def test_auto_approval_only_when_the_publisher_opted_in(db: Database, tmp_path: Path) -> None:
    s = build(db, tmp_path)
    high = add_match(
        db,
        s,
        s.page_ids[0],
        page_url="http://pirate.test/a",
        image_url="http://pirate.test/a.jpg",
        review_state="pending",
        confidence=0.97,
    )
    add_match(
        db,
        s,
        s.page_ids[1],
        page_url="http://pirate.test/b",
        image_url="http://pirate.test/b.jpg",
        review_state="pending",
        decision="review",
        confidence=0.6,
    )
    assert compose_notices(db).notices == []  # no opt-in: everything waits for review
    with db.connection() as conn:
        conn.execute("update publishers set auto_approve_min_confidence = 0.9")
    report = compose_notices(db)
    assert report.auto_approved == 1 and len(report.notices) == 1
    assert events(db, "match", high) == [("auto_approved", "approved")]


def test_flood_guard_holds_an_unusual_batch(db: Database, tmp_path: Path) -> None:
    s = build(db, tmp_path)
    two_matches(db, s)
    report = compose_notices(db, guard=FloodGuard(factor=10, minimum=2))
    [notice_id] = report.held
    [(_, state, held, _)] = notice_rows(db)
    assert state == "drafted" and held is not None and "flood guard" in held
    # A held notice is never sent, whatever a worker is told.
    outbox = OutboxSender(tmp_path / "outbox")
    from store.config import load_settings

    assert send_notice(db, notice_id, outbox, load_settings()).result == "skipped"
    assert not list((tmp_path / "outbox").glob("*.eml"))


def test_a_held_work_stays_held_until_an_operator_releases_it(db: Database, tmp_path: Path) -> None:
    s = build(db, tmp_path)
    two_matches(db, s)
    guard = FloodGuard(factor=10, minimum=2)
    [first] = compose_notices(db, guard=guard).held
    # One more match of the same work: below the guard's minimum on its own, but it must not
    # slip out while the burst it belongs to waits for an operator.
    add_match(
        db,
        s,
        s.page_ids[0],
        page_url="http://pirate.test/late",
        image_url="http://img.pirate.test/late.jpg",
    )
    report = compose_notices(db, guard=guard)
    [second] = report.held
    [(_, _, reason, _)] = [r for r in notice_rows(db) if r[0] == second]
    assert reason is not None and "already has 2 match(es) held" in reason
    with db.connection() as conn:
        assert release(conn, first, user_id=None, actor="test")
        assert release(conn, second, user_id=None, actor="test")
    add_match(
        db,
        s,
        s.page_ids[1],
        page_url="http://pirate.test/after",
        image_url="http://img.pirate.test/after.jpg",
    )
    assert compose_notices(db, guard=guard).held == []


def test_notices_are_committed_and_handed_on_a_chunk_at_a_time(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    s = build(db, tmp_path)
    add_notice_targets(db, s.page_ids, 5, prefix="chunk")
    handed: list[list[int]] = []

    def on_ready(ids: list[int]) -> None:
        # Each chunk is committed before it is handed on: another connection sees it.
        with psycopg.connect(db_url) as other:
            states = other.execute(
                "select state from notices where id = any(%s)", (ids,)
            ).fetchall()
        assert [r[0] for r in states] == ["approved"] * len(ids)
        handed.append(ids)
        if len(handed) == 2:
            raise RuntimeError("the broker went away")

    with pytest.raises(RuntimeError, match="the broker went away"):
        compose_notices(db, chunk=2, on_ready=on_ready)
    assert [len(ids) for ids in handed] == [2, 2]
    # What was committed stays; the composer's lock is free again, and the next run drafts
    # the rest without listing any match twice.
    report = compose_notices(db, chunk=2, on_ready=handed.append)
    assert len(report.notices) == 1 and handed[2] == report.notices
    with db.connection() as conn:
        listed = conn.execute("select count(*), count(distinct match_id) from notice_items")
        assert listed.fetchone() == (5, 5)
        assert conn.execute("select count(*) from notices where state = 'approved'").fetchone() == (
            5,
        )


def test_one_registered_page_matching_a_burst_is_held(db: Database, tmp_path: Path) -> None:
    s = build(db, tmp_path)
    urls = [(f"http://pirate.test/read/{n}", f"http://img.pirate.test/{n}.jpg") for n in range(3)]
    for page_url, image_url in urls[:2]:  # two copies of page 1: a generic panel, say
        add_match(db, s, s.page_ids[0], page_url=page_url, image_url=image_url)
    guard = FloodGuard(minimum=1000, page_minimum=2)
    [held] = compose_notices(db, guard=guard).held
    [(_, state, reason, _)] = notice_rows(db)
    assert state == "drafted" and reason is not None
    assert f"registered page {s.page_ids[0]} has 2 new approved matches" in reason
    # One copy of another page is no burst (the work itself stays held until released).
    with db.connection() as conn:
        assert release(conn, held, user_id=None, actor="test")
    add_match(db, s, s.page_ids[1], page_url=urls[2][0], image_url=urls[2][1])
    assert compose_notices(db, guard=guard).held == []


def finished_crawl(db: Database, site_id: int, stats: dict[str, object]) -> int:
    """A finished crawl with the stats the crawler records (crawler/run.py)."""
    with db.connection() as conn:
        row = conn.execute(
            "insert into crawls (site_id, state, started_at, finished_at, stats) "
            "values (%s, 'finished', now(), now(), %s) returning id",
            (site_id, Jsonb(stats)),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_site_whose_last_crawl_found_mostly_dead_urls_is_held(
    db: Database, tmp_path: Path
) -> None:
    s = build(db, tmp_path)
    two_matches(db, s)
    finished_crawl(db, s.site_id, {"pages": 5, "images": 20, "errors": {"http_404": 1}})
    crawl = finished_crawl(
        db,
        s.site_id,
        {"pages": 2, "images": 3, "errors": {"http_404": 6, "dns": 1, "timeout": 4}},
    )
    [held] = compose_notices(db).held
    [(_, state, reason, _)] = notice_rows(db)
    assert state == "drafted" and reason is not None
    # Timeouts say nothing about whether a URL exists; 404s and a failed lookup do.
    assert f"7 of the 12 URLs of crawl {crawl} of site {s.site_id} were dead" in reason
    with db.connection() as conn:
        assert release(conn, held, user_id=None, actor="test")
    # The next crawl finds the site alive again: new matches go out.
    finished_crawl(db, s.site_id, {"pages": 4, "images": 9, "errors": {"http_404": 2}})
    add_match(db, s, s.page_ids[0], page_url="http://pirate.test/new",
              image_url="http://img.pirate.test/new.jpg")  # fmt: skip
    report = compose_notices(db)
    assert report.held == [] and len(report.notices) == 1


def test_incomplete_notice_is_refused_and_says_why(db: Database, tmp_path: Path) -> None:
    s = build(db, tmp_path, complete_publisher=False)
    two_matches(db, s)
    report = compose_notices(db)
    assert report.invalid == report.notices
    [(_, state, _, error)] = notice_rows(db)
    assert state == "drafted"
    assert error is not None and "refused by the validator" in error and "signature" in error


def test_send_is_exactly_once_and_uses_the_stable_message_id(db: Database, tmp_path: Path) -> None:
    from store.config import load_settings

    s = build(db, tmp_path)
    two_matches(db, s)
    [notice_id] = compose_notices(db).notices
    with SmtpSink() as sink:
        sender = SmtpSender(sink.url())
        first = send_notice(db, notice_id, sender, load_settings())
        again = send_notice(db, notice_id, sender, load_settings())
        [captured] = sink.wait_for(1)
    assert (first.result, again.result) == ("sent", "skipped")
    message = email.message_from_bytes(captured.data)
    with db.connection() as conn:
        row = conn.execute(
            "select state, message_id, send_attempts, sent_at is not null from notices"
        ).fetchone()
    assert row is not None and row[0] == "sent" and row[2] == 1 and row[3]
    assert message["Message-ID"] == row[1]
    assert list(captured.rcpt_tos) == ["abuse@pirate-host.test"]
    assert [e for e in events(db, "notice", notice_id) if e[0] == "state_changed"] == [
        ("state_changed", "approved"),
        ("state_changed", "queued"),
        ("state_changed", "sent"),
    ]
    with db.connection() as conn, pytest.raises(IllegalTransition):
        transition(conn, notice_id, "sent", "approved")


def test_permanent_failure_is_recorded_and_transient_is_retried(
    db: Database, tmp_path: Path
) -> None:
    from store.config import load_settings
    from takedown.delivery import TransientDeliveryError

    s = build(db, tmp_path)
    two_matches(db, s)
    [notice_id] = compose_notices(db).notices
    with SmtpSink(rcpt_reply="451 4.3.0 try later") as sink:
        with pytest.raises(TransientDeliveryError):
            send_notice(db, notice_id, SmtpSender(sink.url()), load_settings())
        assert notice_rows(db)[0][1] == "queued"
        sink.rcpt_reply = "550 5.1.1 no such mailbox"
        outcome = send_notice(db, notice_id, SmtpSender(sink.url()), load_settings())
    assert outcome.result == "failed"
    [(_, state, _, error)] = notice_rows(db)
    assert state == "delivery_failed" and error is not None and "550" in error


MAMORU = str(Path(sys.executable).with_name("mamoru"))


def test_a_send_after_an_attempt_without_outcome_is_flagged_as_a_possible_duplicate(
    db: Database, tmp_path: Path
) -> None:
    s = build(db, tmp_path)
    two_matches(db, s)
    [notice_id] = compose_notices(db).notices
    settings = load_settings()
    # Refused connection: nothing reached a relay, so the retry is not a duplicate.
    with SmtpSink() as gone:
        nowhere = gone.url()
    with pytest.raises(TransientDeliveryError):
        send_notice(db, notice_id, SmtpSender(nowhere), settings)
    # The connection breaks after the whole message went out: the relay may have it.
    with SmtpSink(drop_after_data=True) as dropping:
        with pytest.raises(TransientDeliveryError) as broke:
            send_notice(db, notice_id, SmtpSender(dropping.url()), settings)
        assert broke.value.maybe_delivered and len(dropping.messages) == 1
    with SmtpSink() as sink:
        outcome = send_notice(db, notice_id, SmtpSender(sink.url()), settings)
    assert outcome.result == "sent"
    assert "possible duplicate: 1 earlier attempt(s) without outcome" in outcome.detail
    assert [e for e in events(db, "notice", notice_id) if e[0] == "possible_duplicate"] == [
        ("possible_duplicate", None)
    ]
    with db.connection() as conn:
        receipt = conn.execute(
            "select delivery_receipt from notices where id = %s", (notice_id,)
        ).fetchone()
        attempts = conn.execute(
            "select outcome, finished_at is not null from send_attempts where notice_id = %s "
            "order by id",
            (notice_id,),
        ).fetchall()
    assert receipt is not None and receipt[0]["possible_duplicate"] is True
    # refused: deferred; dropped after DATA: left open, then closed by the send that followed
    assert attempts == [("deferred", True), (None, True), ("sent", True)]


def test_a_plain_send_is_not_flagged(db: Database, tmp_path: Path) -> None:
    s = build(db, tmp_path)
    two_matches(db, s)
    [notice_id] = compose_notices(db).notices
    with SmtpSink() as sink:
        outcome = send_notice(db, notice_id, SmtpSender(sink.url()), load_settings())
    assert outcome.result == "sent" and "possible duplicate" not in outcome.detail
    assert "possible_duplicate" not in [e[0] for e in events(db, "notice", notice_id)]


def worker_output(worker: subprocess.Popen[bytes]) -> str:
    os.killpg(worker.pid, signal.SIGTERM)
    out, _ = worker.communicate(timeout=30)
    return out.decode(errors="replace")[-3000:]


def _worker_env(db_url: str, data_dir: Path, smtp_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORU_")}
    env |= {
        "MAMORU_DATABASE_URL": db_url,
        "MAMORU_DATA_DIR": str(data_dir),
        "MAMORU_SMTP_URL": smtp_url,
    }
    return env


@pytest.mark.slow
def test_real_worker_composes_and_sends_through_the_postgres_broker(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    s = build(db, tmp_path)
    two_matches(db, s)
    with SmtpSink() as sink:
        env = _worker_env(db_url, tmp_path / "data", sink.url())
        worker = subprocess.Popen(
            [MAMORU, "worker", "--processes", "1", "--threads", "2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            enqueue = subprocess.run(
                [MAMORU, "notices", "compose", "--enqueue"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert enqueue.returncode == 0, enqueue.stderr
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and [r[1] for r in notice_rows(db)] != ["sent"]:
                time.sleep(0.5)
            assert [r[1] for r in notice_rows(db)] == ["sent"], worker_output(worker)
            assert len(sink.wait_for(1)) == 1
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.communicate()
        time.sleep(0.5)
        assert len(sink.messages) == 1  # sent once


@pytest.mark.slow
def test_worker_serves_prometheus_metrics(db_url: str, tmp_path: Path) -> None:
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = _worker_env(db_url, tmp_path / "data", "smtp://127.0.0.1:9/?starttls=off")
    env["MAMORU_WORKER_METRICS_PORT"] = str(port)
    env["dramatiq_prom_db"] = str(tmp_path / "prometheus")
    worker = subprocess.Popen(
        [MAMORU, "worker", "--processes", "1", "--threads", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # One message through the worker, so that there is something to count.
        enqueue = subprocess.run(
            [MAMORU, "notices", "compose", "--enqueue"], env=env, capture_output=True, timeout=120
        )
        assert enqueue.returncode == 0, enqueue.stderr
        deadline = time.monotonic() + 60
        body = ""
        while "dramatiq_messages_total" not in body and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    body = r.read().decode()
            except OSError:
                continue
        assert 'dramatiq_messages_total{actor_name="compose",queue_name="notices"}' in body, body
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
        worker.communicate(timeout=60)


def test_page_screenshots_are_attached_from_the_evidence_store(
    db: Database, tmp_path: Path
) -> None:
    import io

    from PIL import Image

    from crawler.evidence import EvidenceStore
    from store.config import load_settings

    settings = load_settings(evidence_dir=tmp_path / "evidence")
    store = EvidenceStore(settings.evidence_path)
    png = io.BytesIO()
    Image.new("RGB", (64, 48), "white").save(png, "PNG")
    shot = store.put(png.getvalue(), "image/png")
    manifest = store.put_manifest({"page": {"screenshot": shot.as_json()}})
    s = build(db, tmp_path)
    [first, _] = two_matches(db, s)
    with db.connection() as conn:
        conn.execute(
            "update sightings set evidence_ref = %s where id = "
            "(select sighting_id from matches where id = %s)",
            (manifest, first),
        )
    [notice_id] = compose_notices(db).notices
    with SmtpSink() as sink:
        assert send_notice(db, notice_id, SmtpSender(sink.url()), settings).result == "sent"
        [captured] = sink.wait_for(1)
    message = email.message_from_bytes(captured.data, policy=email.policy.default)
    [attachment] = list(message.iter_attachments())  # the other item's evidence is not stored
    assert attachment.get_content_type() == "image/png"
    assert attachment.get_content() == png.getvalue()
