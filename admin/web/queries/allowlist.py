"""Allowlist entries: domains licensed to carry a work, or every work of a publisher."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import class_row

from admin.users import User, record_audit
from admin.web.scope import Scope
from store.db import Database

_DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_-]{1,63})*$")


class AllowlistError(ValueError):
    pass


@dataclass(frozen=True)
class Entry:
    id: int
    publisher_id: int
    publisher: str
    work_id: int | None
    work_title: str | None
    domain: str
    note: str | None
    created_by: str | None
    created_at: datetime


def normalise_domain(text: str) -> str:
    """A lower-case host name from what an operator typed (a bare domain or a pasted URL)."""
    text = text.strip()
    if "://" in text:
        text = urlsplit(text).hostname or ""
    text = text.strip().rstrip(".").lower()
    try:
        text = text.encode("idna").decode("ascii") if text else text
    except UnicodeError as exc:
        raise AllowlistError(f"{text!r} is not a domain name") from exc
    if not _DOMAIN.match(text):
        raise AllowlistError(f"{text!r} is not a domain name")
    return text


def list_entries(
    db: Database, scope: Scope, *, publisher_id: int | None = None, work_id: int | None = None
) -> list[Entry]:
    """Entries in scope; with ``work_id``, those that apply to that work (its own and the
    publisher-wide ones)."""
    with db.connection() as conn, conn.cursor(row_factory=class_row(Entry)) as cur:
        return cur.execute(
            """
            select a.id, a.publisher_id, p.name as publisher, a.work_id, w.title as work_title,
                   a.domain, a.note, u.email as created_by, a.created_at
            from allowlist_entries a
            join publishers p on p.id = a.publisher_id
            left join works w on w.id = a.work_id
            left join users u on u.id = a.created_by
            where a.publisher_id = any(%(publishers)s)
              and (%(pub)s::bigint is null or a.publisher_id = %(pub)s)
              and (%(work)s::bigint is null or a.work_id is null or a.work_id = %(work)s)
              and (%(work)s::bigint is null
                   or a.publisher_id = (select publisher_id from works where id = %(work)s))
            order by p.name, a.domain, w.title nulls first
            """,
            {**scope.params, "pub": publisher_id, "work": work_id},
        ).fetchall()


def add_entry(
    db: Database,
    scope: Scope,
    *,
    publisher_id: int,
    work_id: int | None,
    domain: str,
    note: str | None,
    user: User,
    remote_addr: str | None,
) -> int:
    if not scope.allows(publisher_id):
        raise LookupError("no such publisher")
    domain = normalise_domain(domain)
    with db.connection() as conn:
        if work_id is not None:
            owner = conn.execute("select publisher_id from works where id = %s", (work_id,))
            row = owner.fetchone()
            if row is None or int(row[0]) != publisher_id:
                raise LookupError("no such work")
        try:
            inserted = conn.execute(
                """
                insert into allowlist_entries (publisher_id, work_id, domain, note, created_by)
                values (%s, %s, %s, %s, %s) returning id
                """,
                (publisher_id, work_id, domain, note or None, user.id),
            ).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            raise AllowlistError(f"{domain} is already on this allowlist") from exc
        assert inserted is not None
        record_audit(
            conn,
            actor=user.email,
            action="allowlist.add",
            user_id=user.id,
            target_type="allowlist_entry",
            target_id=int(inserted[0]),
            remote_addr=remote_addr,
            details={"publisher_id": publisher_id, "work_id": work_id, "domain": domain},
        )
    return int(inserted[0])


def remove_entry(
    db: Database, scope: Scope, entry_id: int, *, user: User, remote_addr: str | None
) -> bool:
    with db.connection() as conn:
        row = conn.execute(
            """
            delete from allowlist_entries
            where id = %(id)s and publisher_id = any(%(publishers)s)
            returning publisher_id, work_id, domain
            """,
            {**scope.params, "id": entry_id},
        ).fetchone()
        if row is None:
            return False
        record_audit(
            conn,
            actor=user.email,
            action="allowlist.remove",
            user_id=user.id,
            target_type="allowlist_entry",
            target_id=entry_id,
            remote_addr=remote_addr,
            details={"publisher_id": row[0], "work_id": row[1], "domain": row[2]},
        )
    return True
