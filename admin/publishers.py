"""Publishers: the rightsholders (or their agents) whose works Mamoru protects."""

from __future__ import annotations

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from store.db import Database
from store.rows import Publisher


class PublisherExists(ValueError):
    pass


def add_publisher(
    db: Database,
    name: str,
    *,
    agent_organisation: str | None = None,
    contact_email: str | None = None,
    contact_address: str | None = None,
    contact_phone: str | None = None,
) -> Publisher:
    name = name.strip()
    if not name:
        raise ValueError("a publisher needs a non-empty name")
    try:
        with db.connection() as conn, conn.cursor(row_factory=class_row(Publisher)) as cur:
            row = cur.execute(
                """
                insert into publishers (name, agent_organisation, contact_email, contact_address,
                                        contact_phone)
                values (%s, %s, %s, %s, %s) returning *
                """,
                (name, agent_organisation, contact_email, contact_address, contact_phone),
            ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise PublisherExists(f"a publisher named {name!r} already exists") from exc
    assert row is not None
    return row


def ensure_publisher(db: Database, name: str, **details: str | None) -> tuple[Publisher, bool]:
    """The publisher named ``name``, created with ``details`` if missing; True when created."""
    existing = find_publisher(db, name)
    if existing is not None:
        return existing, False
    try:
        return add_publisher(db, name, **details), True
    except PublisherExists:
        found = find_publisher(db, name)
        assert found is not None
        return found, False


def find_publisher(db: Database, name: str) -> Publisher | None:
    with db.connection() as conn, conn.cursor(row_factory=class_row(Publisher)) as cur:
        return cur.execute("select * from publishers where name = %s", (name,)).fetchone()


def list_publishers(db: Database) -> list[Publisher]:
    with db.connection() as conn, conn.cursor(row_factory=class_row(Publisher)) as cur:
        return cur.execute("select * from publishers order by name").fetchall()


# Columns ``update_publisher`` may change; the name is the publisher's identity.
EDITABLE = (
    "agent_organisation",
    "contact_email",
    "contact_address",
    "contact_phone",
    "auto_approve_min_confidence",
)


def update_publisher(db: Database, name: str, **changes: object) -> Publisher:
    """Change a publisher's notice identity or auto-approval; every change is audited."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
    before = find_publisher(db, name)
    if before is None:
        raise LookupError(f"no publisher named {name!r}")
    if not changes:
        return before
    assignments = ", ".join(f"{column} = %({column})s" for column in changes)
    with db.connection() as conn, conn.cursor(row_factory=class_row(Publisher)) as cur:
        after = cur.execute(
            f"update publishers set {assignments} where id = %(id)s returning *",
            {**changes, "id": before.id},
        ).fetchone()
        assert after is not None
        conn.execute(
            "insert into audit_log (actor, action, target_type, target_id, details) "
            "values ('cli', 'publisher_updated', 'publisher', %s, %s)",
            (
                before.id,
                Jsonb({c: {"old": getattr(before, c), "new": getattr(after, c)} for c in changes}),
            ),
        )
    return after
