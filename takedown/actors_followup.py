"""Dramatiq actors of the follow-up: find due rechecks, recheck a notice, escalate a notice.

``recheck_due`` is what the scheduler enqueues periodically; it only reads committed state
and enqueues, so a lost or duplicated message costs a delay or a no-op. ``recheck_notice``
rechecks only when a round is due and under a per-notice lock, so duplicates find the round
done; an operator's "Recheck now" sends it with ``force`` (and who asked), and it rechecks at
once, due or not. ``escalate`` moves the notice out of ``still_up`` in the transaction that
drafts its successor, so a retry finds it escalated. Queue ``followup``: rechecks wait on slow
pirate sites and must not hold up the sending of notices.
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import cache

import dramatiq

from store.config import get_settings
from store.db import Database, open_database
from takedown.broker import setup_broker
from takedown.escalate import DiscoveryOptions, escalate_notice, follow_up_origin
from takedown.followup import FollowupPolicy, due_rechecks, escalations_due
from takedown.probe import ProbeLimits, Prober
from takedown.recheck import recheck_notice as recheck_one

setup_broker()

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
QUEUE = "followup"


@cache
def _db() -> Database:
    return open_database(get_settings())


def _policy() -> FollowupPolicy:
    return FollowupPolicy()


def _limits() -> ProbeLimits:
    settings = get_settings()
    return ProbeLimits(
        max_image_bytes=settings.max_image_bytes, max_image_pixels=settings.max_image_pixels
    )


@dramatiq.actor(queue_name=QUEUE, max_retries=0, time_limit=5 * MINUTE_MS)
def recheck_due() -> None:
    """Enqueue a recheck of every notice with a round due, and an escalation of every notice
    left ``still_up`` (a lost escalate message is re-sent here)."""
    now = dt.datetime.now(dt.UTC)
    with _db().connection() as conn:
        due = due_rechecks(conn, now=now, policy=_policy())
        stuck = escalations_due(conn)
    for item in due:
        recheck_notice.send(item.notice_id)
    for notice_id in stuck:
        escalate.send(notice_id)
    log.info("follow-up: %d recheck(s) and %d escalation(s) enqueued", len(due), len(stuck))


@dramatiq.actor(
    queue_name=QUEUE,
    max_retries=3,
    min_backoff=MINUTE_MS,
    max_backoff=30 * MINUTE_MS,
    time_limit=30 * MINUTE_MS,
    throws=(LookupError,),
)
def recheck_notice(
    notice_id: int,
    force: bool = False,
    actor: str = "worker",
    user_id: int | None = None,
    requested_by: str | None = None,
) -> None:
    """Recheck one notice if a round is due, or at once with ``force`` (an operator asked:
    ``actor`` is where, ``user_id``/``requested_by`` who, for the round's events); enqueue its
    escalation when its SLA has passed."""
    report = recheck_one(
        _db(),
        notice_id,
        policy=_policy(),
        prober=Prober(_limits()),
        only_if_due=not force,
        actor=actor,
        user_id=user_id,
        requested_by=requested_by,
    )
    if report.skipped:
        log.info("notice %s: recheck skipped: %s", notice_id, report.skipped)
        return
    log.info("notice %s rechecked: %s -> %s", notice_id, report.counts, report.state)
    if report.escalation_due:
        escalate.send(notice_id)


@dramatiq.actor(
    queue_name=QUEUE,
    max_retries=5,
    min_backoff=5 * MINUTE_MS,
    max_backoff=6 * 60 * MINUTE_MS,
    time_limit=10 * MINUTE_MS,
    throws=(LookupError,),
)
def escalate(notice_id: int) -> None:
    """Escalate one notice still up past its SLA; send the new notices it drafted.

    ``DiscoveryUnavailable`` (an RDAP server down) is retried with backoff, and after that by
    ``recheck_due``, which re-enqueues every notice left ``still_up``."""
    from takedown.actors import send_notice  # here: takedown.actors imports this module

    result = escalate_notice(
        _db(), notice_id, policy=_policy(), discovery=DiscoveryOptions(get_settings())
    )
    log.info("notice %s: %s %s %s", notice_id, result.outcome, result.new_notices, result.detail)
    for new_id in result.approved:
        send_notice.send(new_id)


@dramatiq.actor(
    queue_name=QUEUE,
    max_retries=5,
    min_backoff=5 * MINUTE_MS,
    max_backoff=6 * 60 * MINUTE_MS,
    time_limit=10 * MINUTE_MS,
    throws=(LookupError,),
)
def origin_followup(site_id: int, actor: str = "worker") -> None:
    """An operator recorded the origin behind a site's CDN: take the site's notices that went
    to the CDN on to the origin's host, and send the new notices (idempotent: a duplicate
    message finds the chains already followed up). ``DiscoveryUnavailable`` is retried."""
    from takedown.actors import enqueue_sends  # here: takedown.actors imports this module

    results = follow_up_origin(
        _db(), site_id, discovery=DiscoveryOptions(get_settings()), actor=actor
    )
    for result in results:
        log.info(
            "site %s origin follow-up: notice %s %s %s",
            site_id,
            result.notice_id,
            result.outcome,
            result.new_notices,
        )
    enqueue_sends([new_id for result in results for new_id in result.approved])
