"""Dramatiq actors: crawl a site, compose notices, send a notice, sweep for unsent ones.

Actors take ids, reload rows and are idempotent through guarded state transitions
(``takedown.states``), so a retried or duplicated message does no harm. Retry policies are set
per actor: Dramatiq's default of 20 retries over a week does not fit legal notices.
Messages are only enqueued for committed state (and ``sweep`` re-enqueues anything approved
but not sent), so a crash between a commit and an enqueue loses nothing.

Notices travel to the senders in batches (``send_notices``): at volume, a broker message per
notice cost more than the notice (an enqueue, a claim and an ack each). A notice whose delivery
must wait gets a message of its own (``send_notice``), with that actor's backoff.
"""

from __future__ import annotations

import logging
from functools import cache

import dramatiq

from crawler.run import CrawlAlreadyActive, run_crawl
from crawler.sites import get_site
from store.config import get_settings
from store.db import Database, open_database
from takedown.broker import setup_broker
from takedown.compose import compose_notices
from takedown.contacts import discover_missing_recipients
from takedown.delivery import (
    PermanentDeliveryError,
    Sender,
    TransientDeliveryError,
    sender_from_settings,
)
from takedown.send import send_notice as send_one

setup_broker()

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
# A notice stuck in approved/queued this long (a worker died, a message was lost) is re-sent.
SWEEP_AFTER = "2 minutes"
# Notices per send_notices message: large enough that broker overhead vanishes, small enough
# that the threads of several workers share a run's notices.
SEND_BATCH = 16
# The first wait of a notice deferred out of a batch; send_notice's backoff takes over from there.
DEFER_MS = 30_000


@cache
def _db() -> Database:
    # One pool per worker process; Database is fork-aware.
    return open_database(get_settings())


@cache
def _sender() -> Sender:
    return sender_from_settings(get_settings())


@dramatiq.actor(queue_name="crawl", max_retries=0, time_limit=6 * 60 * MINUTE_MS)
def crawl_site(site_id: int, trigger: str = "schedule") -> None:
    """Crawl one site; a crawl already running for it makes this a no-op (one at a time)."""
    settings = get_settings()
    db = _db()
    site = get_site(db, site_id)
    if not site.is_active:
        log.info("site %s is inactive; not crawled", site.name)
        return
    try:
        summary = run_crawl(db, site, settings, trigger=trigger, actor="worker")
    except CrawlAlreadyActive as exc:
        log.info("%s", exc)
        return
    log.info("crawl of %s finished: %s", site.name, summary)
    compose.send()


@dramatiq.actor(queue_name="notices", max_retries=3, min_backoff=10_000, time_limit=10 * MINUTE_MS)
def compose() -> None:
    """Find recipients where none is known, draft notices for approved matches, then enqueue
    the sends of those approved."""
    discover_missing_recipients(_db(), get_settings())
    # Each committed chunk of notices goes to the senders while the next is composed.
    report = compose_notices(_db(), on_ready=enqueue_sends)
    log.info(
        "composed %d notice(s): %d held, %d invalid, %d auto-approved, %d allowlisted",
        len(report.notices),
        len(report.held),
        len(report.invalid),
        report.auto_approved,
        report.allowlisted,
    )


def enqueue_sends(notice_ids: list[int]) -> None:
    """Enqueue the sends of committed, approved notices, ``SEND_BATCH`` to a message."""
    for start in range(0, len(notice_ids), SEND_BATCH):
        send_notices.send(notice_ids[start : start + SEND_BATCH])


@dramatiq.actor(
    queue_name="notices",
    max_retries=8,
    min_backoff=30_000,
    max_backoff=60 * MINUTE_MS,
    time_limit=2 * MINUTE_MS,
    throws=(PermanentDeliveryError,),
)
def send_notice(notice_id: int) -> None:
    """Send one notice; transient delivery errors raise and are retried with backoff."""
    outcome = send_one(_db(), notice_id, _sender(), get_settings())
    log.info("notice %s: %s %s", notice_id, outcome.result, outcome.detail)


@dramatiq.actor(
    queue_name="notices",
    max_retries=3,
    min_backoff=10_000,
    max_backoff=5 * MINUTE_MS,
    # send_notice's limit for each notice of the batch: a slow relay must not cut one short.
    time_limit=SEND_BATCH * 2 * MINUTE_MS,
)
def send_notices(notice_ids: list[int]) -> None:
    """Send several notices, one after the other.

    A transient delivery error (relay down, greylisting) defers this notice and the rest of
    the batch to ``send_notice`` messages of their own, which back off; the batch itself is
    retried only for other failures (the database went away), and a retry skips whatever
    was sent. A permanent failure is recorded on its notice and the batch goes on.
    """
    db, sender, settings = _db(), _sender(), get_settings()
    for position, notice_id in enumerate(notice_ids):
        try:
            outcome = send_one(db, notice_id, sender, settings)
        except TransientDeliveryError as exc:
            rest = notice_ids[position:]
            log.info("delivery deferred (%s); %d notice(s) retried on their own", exc, len(rest))
            for deferred in rest:
                send_notice.send_with_options(args=(deferred,), delay=DEFER_MS)
            return
        log.info("notice %s: %s %s", notice_id, outcome.result, outcome.detail)


@dramatiq.actor(queue_name="notices", max_retries=0, time_limit=5 * MINUTE_MS)
def sweep(older_than_seconds: float | None = None) -> None:
    """Enqueue a send for every notice approved or queued for a while but not sent.

    "A while" is ``SWEEP_AFTER`` unless ``older_than_seconds`` says otherwise (tests and an
    operator recovering at once pass 0). Sweeping a notice that is being sent is harmless: the
    send finds its row locked and skips.
    """
    interval = SWEEP_AFTER if older_than_seconds is None else f"{float(older_than_seconds)} s"
    with _db().connection() as conn:
        rows = conn.execute(
            """
            select id from notices
            where state in ('approved', 'queued') and held_reason is null
              and state_changed_at < now() - %s::interval
            order by id
            """,
            (interval,),
        ).fetchall()
    enqueue_sends([int(notice_id) for (notice_id,) in rows])


# Follow-up actors (rechecks, escalation) live beside these; importing declares them.
from takedown import actors_followup  # noqa: E402, F401
