"""What the admin hands to the workers: crawls, sends, rechecks and escalations as Dramatiq
messages to the actors of ``takedown.actors`` and ``takedown.actors_followup``.

``takedown.actors`` installs the configured broker when it is imported (PostgreSQL, the app's
own database, unless ``MAMORU_BROKER_URL`` names Redis or RabbitMQ), so it is imported here on
first use, never when the app is built: gunicorn imports the app before it forks, and a broker
connection must not be shared across the fork. The broker is installed from the app's settings
and database first, so the messages go where the app's workers look for them.

Callers enqueue only after the state a job reads is committed (a worker may take the message
at once); a message lost after that commit is covered by the scheduler's sweeps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final

from flask import current_app
from psycopg import Connection

from admin.users import User, record_audit
from admin.web.resources import get_db, settings
from store.db import Database
from store.rows import Site
from takedown.followup import RECHECKED_EVENT

log = logging.getLogger(__name__)

# Class ids for pg_advisory_xact_lock(int, int) around a crawl request and a recheck request:
# "mcrl" and "mrrq" in ASCII.
_CRAWL_LOCK: Final = 0x6D63726C
_RECHECK_LOCK: Final = 0x6D727271
#: A "crawl now" not yet started by a worker, or a "recheck now" not yet run, after this long
#: no longer blocks another (a lost message must not block the button for good).
REQUEST_PENDING_FOR: Final = "10 minutes"


class EnqueueFailed(RuntimeError):
    """The broker did not take the message; the cause is logged, not shown."""


class CrawlRefused(ValueError):
    """A "crawl now" refused; the message says why."""


class RecheckRefused(ValueError):
    """A "recheck now" refused; the message says why."""


def _install_broker() -> None:
    from takedown.broker import setup_broker

    conf = settings()
    if conf.broker_url is None and conf.database_url is None:
        # The queues live in the database this app uses (embedded, or given to create_app).
        conf = conf.model_copy(update={"database_url": get_db().url})
    # A web process serves no worker metrics.
    setup_broker(conf.model_copy(update={"worker_metrics_port": None}))


def _actors() -> ModuleType:
    _install_broker()
    from takedown import actors

    return actors


def _followup() -> ModuleType:
    _install_broker()
    from takedown import actors_followup

    return actors_followup


def _send(module: ModuleType, actor_name: str, *args: object, **kwargs: object) -> str:
    """Enqueue ``actor_name(*args, **kwargs)``; the message id, or EnqueueFailed."""
    try:
        message = getattr(module, actor_name).send(*args, **kwargs)
    except Exception as exc:
        current_app.logger.exception("could not enqueue %s%r", actor_name, args)
        raise EnqueueFailed(f"the job queue did not take the {actor_name} job") from exc
    return str(message.message_id)


def crawl_site(site_id: int) -> str:
    return _send(_actors(), "crawl_site", site_id, "manual")


def send_notice(notice_id: int) -> str:
    return _send(_actors(), "send_notice", notice_id)


def recheck_notice(notice_id: int, *, user: User, via: str) -> str:
    """An operator's "Recheck now": at once, due or not, naming ``user`` in its events."""
    return _send(
        _followup(),
        "recheck_notice",
        notice_id,
        force=True,
        actor=via,
        user_id=user.id,
        requested_by=user.email,
    )


def escalate(notice_id: int) -> str:
    return _send(_followup(), "escalate", notice_id)


def origin_followup(site_id: int) -> str:
    return _send(_followup(), "origin_followup", site_id, "web")


# -- "crawl now"


@dataclass(frozen=True)
class CrawlBlock:
    """Why a site cannot be crawled now (shown on its page and as the refusal)."""

    reason: str


def crawl_block(db: Database, site: Site) -> CrawlBlock | None:
    """What stops a "crawl now" of ``site``: inactive, a crawl queued or running, or a request
    made recently that no worker has started yet (a double click, or two operators)."""
    with db.connection() as conn:
        return _crawl_block(conn, site)


def _crawl_block(conn: Connection[Any], site: Site) -> CrawlBlock | None:
    if not site.is_active:
        return CrawlBlock(f"Site {site.name} is inactive: activate it in its policy first.")
    active = conn.execute(
        "select id, state from crawls where site_id = %s and state in ('queued', 'running')"
        " order by id desc limit 1",
        (site.id,),
    ).fetchone()
    if active is not None:
        return CrawlBlock(
            f"Site {site.name} already has crawl {active[0]} {active[1]}; wait for it to finish."
        )
    requested = conn.execute(
        """
        select a.occurred_at, a.actor from audit_log a
        where a.action = 'site.crawl' and a.target_type = 'site' and a.target_id = %(site)s
          and a.occurred_at > now() - %(window)s::interval
          and not exists (select 1 from crawls c
                          where c.site_id = %(site)s and c.started_at >= a.occurred_at)
        order by a.occurred_at desc limit 1
        """,
        {"site": site.id, "window": REQUEST_PENDING_FOR},
    ).fetchone()
    if requested is not None:
        return CrawlBlock(
            f"A crawl of {site.name} was requested by {requested[1]} at "
            f"{requested[0]:%Y-%m-%d %H:%M} and is waiting for a worker."
        )
    return None


def request_crawl(db: Database, site: Site, *, user: User, remote_addr: str | None) -> str:
    """Enqueue a manual crawl of ``site`` unless :func:`crawl_block` says otherwise.

    Returns the message id; raises :class:`CrawlRefused` or :class:`EnqueueFailed`. The check,
    the enqueue and the audit row happen under a per-site lock, so two requests at once
    enqueue one crawl; a failed enqueue leaves no audit row.
    """
    with db.connection() as conn:
        conn.execute("select pg_advisory_xact_lock(%s, %s)", (_CRAWL_LOCK, site.id))
        block = _crawl_block(conn, site)
        if block is not None:
            raise CrawlRefused(block.reason)
        message_id = crawl_site(site.id)
        record_audit(
            conn,
            actor=user.email,
            action="site.crawl",
            user_id=user.id,
            target_type="site",
            target_id=site.id,
            remote_addr=remote_addr,
            details={"site": site.name, "trigger": "manual", "message_id": message_id},
        )
    return message_id


# -- "recheck now"

#: The audit action of a "recheck now" (``admin.web.notice_actions`` writes it): the record of
#: the request that :func:`recheck_block` looks for.
RECHECK_AUDIT: Final = "notice.recheck"


@dataclass(frozen=True)
class RecheckRequest:
    """A "recheck now" enqueued: what its audit row must record."""

    message_id: str
    #: The notice's last recheck event when it was asked: a later one means it has run.
    rechecked_through: int


def recheck_block(conn: Connection[Any], notice_id: int) -> str | None:
    """What stops a "recheck now" of ``notice_id``: one requested recently whose round the
    worker has not recorded yet (a double click, or two operators).

    A round counts when the notice has a recheck event newer (by id) than the last one at the
    time of the request: ids, not the workers' clocks, which write the rounds' times. Any round
    counts, a scheduled one too: the notice was rechecked after the operator asked.
    """
    requested = conn.execute(
        """
        select a.occurred_at, a.actor from audit_log a
        where a.action = %(action)s and a.target_type = 'notice' and a.target_id = %(notice)s
          and a.occurred_at > now() - %(window)s::interval
          and not exists (select 1 from events e
                          where e.subject_type = 'notice' and e.subject_id = %(notice)s
                            and e.event_type = %(event)s
                            and e.id > coalesce((a.details ->> 'rechecked_through')::bigint, 0))
        order by a.occurred_at desc limit 1
        """,
        {
            "action": RECHECK_AUDIT,
            "notice": notice_id,
            "window": REQUEST_PENDING_FOR,
            "event": RECHECKED_EVENT,
        },
    ).fetchone()
    if requested is None:
        return None
    return (
        f"A recheck of notice {notice_id} was requested by {requested[1]} at "
        f"{requested[0]:%Y-%m-%d %H:%M} and has not run yet."
    )


def request_recheck(
    conn: Connection[Any], notice_id: int, *, user: User, via: str
) -> RecheckRequest:
    """Enqueue an operator's recheck of ``notice_id`` unless :func:`recheck_block` says
    otherwise; raises :class:`RecheckRefused` or :class:`EnqueueFailed`.

    Takes a per-notice lock for the rest of the caller's transaction, in which the caller then
    writes the request's audit row (``RECHECK_AUDIT``, with the returned fields): two requests
    at once enqueue one recheck, and a failed enqueue leaves no audit row. As "crawl now".
    """
    conn.execute("select pg_advisory_xact_lock(%s, %s)", (_RECHECK_LOCK, notice_id))
    block = recheck_block(conn, notice_id)
    if block is not None:
        raise RecheckRefused(block)
    row = conn.execute(
        "select coalesce(max(id), 0) from events"
        " where subject_type = 'notice' and subject_id = %s and event_type = %s",
        (notice_id, RECHECKED_EVENT),
    ).fetchone()
    assert row is not None
    message_id = recheck_notice(notice_id, user=user, via=via)
    return RecheckRequest(message_id, int(row[0]))
