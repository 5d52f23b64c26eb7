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

log = logging.getLogger(__name__)

# Class id for pg_advisory_xact_lock(int, int) around a crawl request: "mcrl" in ASCII.
_CRAWL_LOCK: Final = 0x6D63726C
#: A "crawl now" not yet started by a worker after this long no longer blocks another.
REQUEST_PENDING_FOR: Final = "10 minutes"


class EnqueueFailed(RuntimeError):
    """The broker did not take the message; the cause is logged, not shown."""


class CrawlRefused(ValueError):
    """A "crawl now" refused; the message says why."""


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


def _send(module: ModuleType, actor_name: str, *args: object) -> str:
    """Enqueue ``actor_name(*args)``; the message id, or EnqueueFailed."""
    try:
        message = getattr(module, actor_name).send(*args)
    except Exception as exc:
        current_app.logger.exception("could not enqueue %s%r", actor_name, args)
        raise EnqueueFailed(f"the job queue did not take the {actor_name} job") from exc
    return str(message.message_id)


def crawl_site(site_id: int) -> str:
    return _send(_actors(), "crawl_site", site_id, "manual")


def send_notice(notice_id: int) -> str:
    return _send(_actors(), "send_notice", notice_id)


def recheck_notice(notice_id: int) -> str:
    return _send(_followup(), "recheck_notice", notice_id)


def escalate(notice_id: int) -> str:
    return _send(_followup(), "escalate", notice_id)


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
