"""Notices, their items and their timeline of events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from psycopg.rows import class_row

from admin.web.scope import Scope
from store.db import Database

STATES: Final = (
    "drafted",
    "approved",
    "queued",
    "sent",
    "delivery_failed",
    "acknowledged",
    "removed",
    "still_up",
    "escalated",
    "closed",
)


@dataclass(frozen=True)
class NoticeRow:
    id: int
    publisher_id: int
    publisher: str
    recipient_id: int
    recipient: str
    recipient_email: str | None
    format: str
    state: str
    subject: str | None
    items: int
    removed_items: int
    send_attempts: int
    last_error: str | None
    held_reason: str | None
    created_at: datetime
    state_changed_at: datetime


@dataclass(frozen=True)
class NoticeDetail:
    notice: NoticeRow
    body_text: str | None
    has_html: bool
    message_id: str | None
    escalates_notice_id: int | None


@dataclass(frozen=True)
class ItemRow:
    id: int
    match_id: int
    infringing_url: str
    state: str
    removed_at: datetime | None
    work_id: int
    work_title: str
    page_number: int
    site_name: str


@dataclass(frozen=True)
class EventRow:
    occurred_at: datetime
    subject_type: str
    subject_id: int
    event_type: str
    from_state: str | None
    to_state: str | None
    actor: str
    actor_email: str | None
    details: dict[str, Any]


_SELECT = """
    select n.id, n.publisher_id, p.name as publisher, n.recipient_id, r.name as recipient,
           r.email as recipient_email, n.format, n.state, n.subject,
           (select count(*) from notice_items i where i.notice_id = n.id)::int as items,
           (select count(*) from notice_items i
             where i.notice_id = n.id and i.state = 'removed')::int as removed_items,
           n.send_attempts, n.last_error, n.held_reason, n.created_at, n.state_changed_at
    from notices n
    join publishers p on p.id = n.publisher_id
    join recipients r on r.id = n.recipient_id
    where n.publisher_id = any(%(publishers)s)
"""


def list_notices(
    db: Database,
    scope: Scope,
    *,
    state: str | None = None,
    recipient_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[NoticeRow]:
    sql = (
        _SELECT
        + " and (%(state)s::text is null or n.state = %(state)s::text)"
        + " and (%(rcpt)s::bigint is null or n.recipient_id = %(rcpt)s::bigint)"
        + " order by n.state_changed_at desc, n.id desc limit %(limit)s offset %(off)s"
    )
    params = {**scope.params, "state": state, "rcpt": recipient_id, "limit": limit, "off": offset}
    with db.connection() as conn, conn.cursor(row_factory=class_row(NoticeRow)) as cur:
        return cur.execute(sql, params).fetchall()


def recipients_in_scope(db: Database, scope: Scope) -> list[tuple[int, str]]:
    with db.connection() as conn:
        rows = conn.execute(
            """
            select distinct r.id, r.name from notices n join recipients r on r.id = n.recipient_id
            where n.publisher_id = any(%(publishers)s) order by r.name
            """,
            scope.params,
        ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def get_notice(db: Database, scope: Scope, notice_id: int) -> NoticeDetail | None:
    with db.connection() as conn:
        with conn.cursor(row_factory=class_row(NoticeRow)) as cur:
            row = cur.execute(
                _SELECT + " and n.id = %(id)s", {**scope.params, "id": notice_id}
            ).fetchone()
        if row is None:
            return None
        extra = conn.execute(
            "select body_text, body_html is not null and body_html <> '', message_id,"
            " escalates_notice_id from notices where id = %s",
            (notice_id,),
        ).fetchone()
    assert extra is not None
    return NoticeDetail(row, extra[0], bool(extra[1]), extra[2], extra[3])


def notice_html(db: Database, scope: Scope, notice_id: int) -> str | None:
    with db.connection() as conn:
        row = conn.execute(
            "select body_html from notices where id = %(id)s"
            " and publisher_id = any(%(publishers)s)",
            {**scope.params, "id": notice_id},
        ).fetchone()
    return str(row[0]) if row is not None and row[0] else None


def notice_items(db: Database, notice_id: int) -> list[ItemRow]:
    """Items of a notice already found in scope by :func:`get_notice`."""
    with db.connection() as conn, conn.cursor(row_factory=class_row(ItemRow)) as cur:
        return cur.execute(
            """
            select i.id, i.match_id, i.infringing_url, i.state, i.removed_at,
                   w.id as work_id, w.title as work_title, pg.page_number, st.name as site_name
            from notice_items i
            join matches m on m.id = i.match_id
            join pages pg on pg.id = m.page_id
            join works w on w.id = pg.work_id
            join sightings s on s.id = m.sighting_id
            join sites st on st.id = s.site_id
            where i.notice_id = %s order by i.id
            """,
            (notice_id,),
        ).fetchall()


def notice_timeline(db: Database, notice_id: int) -> list[EventRow]:
    """Events of the notice and of its items, oldest first."""
    with db.connection() as conn, conn.cursor(row_factory=class_row(EventRow)) as cur:
        return cur.execute(
            """
            select e.occurred_at, e.subject_type, e.subject_id, e.event_type, e.from_state,
                   e.to_state, e.actor, u.email as actor_email, e.details
            from events e left join users u on u.id = e.actor_user_id
            where (e.subject_type = 'notice' and e.subject_id = %(id)s)
               or (e.subject_type = 'notice_item'
                   and e.subject_id in (select id from notice_items where notice_id = %(id)s))
            order by e.occurred_at, e.id
            """,
            {"id": notice_id},
        ).fetchall()
