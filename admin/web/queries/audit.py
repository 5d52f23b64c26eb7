"""The audit log, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row

from store.db import Database


@dataclass(frozen=True)
class AuditRow:
    id: int
    occurred_at: datetime
    actor: str
    user_email: str | None
    action: str
    target_type: str | None
    target_id: int | None
    remote_addr: str | None
    details: dict[str, Any]


def list_audit(
    db: Database, *, action: str = "", actor: str = "", limit: int = 100, offset: int = 0
) -> list[AuditRow]:
    with db.connection() as conn, conn.cursor(row_factory=class_row(AuditRow)) as cur:
        return cur.execute(
            """
            select a.id, a.occurred_at, a.actor, u.email as user_email, a.action,
                   a.target_type, a.target_id, a.remote_addr, a.details
            from audit_log a left join users u on u.id = a.user_id
            where (%(action)s = '' or a.action like %(action)s || '%%')
              and (%(actor)s = '' or a.actor ilike '%%' || %(actor)s || '%%')
            order by a.occurred_at desc, a.id desc limit %(limit)s offset %(off)s
            """,
            {"action": action, "actor": actor, "limit": limit, "off": offset},
        ).fetchall()


def audit_actions(db: Database) -> list[str]:
    with db.connection() as conn:
        rows = conn.execute("select distinct action from audit_log order by action").fetchall()
    return [str(r[0]) for r in rows]
