"""Admin users, operator assignments, API tokens and the audit log they write to.

Shared by the ``mamoru users`` command and the web admin, so a user created either way is the
same row with the same checks. Passwords are hashed with werkzeug's scrypt; API tokens are
random strings shown once and stored only as their SHA-256, so a leaked database does not leak
usable tokens.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from werkzeug.security import check_password_hash, generate_password_hash

from store.db import Database

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "ROLES",
    "ApiToken",
    "User",
    "UserError",
    "assign_operator",
    "authenticate",
    "create_token",
    "create_user",
    "find_user",
    "get_user",
    "list_tokens",
    "list_users",
    "operator_publishers",
    "record_audit",
    "revoke_token",
    "set_active",
    "set_password",
    "unassign_operator",
    "user_for_token",
]

ROLES: Final = ("admin", "operator", "publisher")
MIN_PASSWORD_LENGTH: Final = 10
TOKEN_PREFIX: Final = "mmr_"  # noqa: S105 (a recognisable prefix, not a secret)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Checked against when the email is unknown, so a login for a missing user costs the same time
# as one with a wrong password and does not reveal which emails exist.
_DUMMY_HASH: Final = generate_password_hash("not a real password, only spends time")


class UserError(ValueError):
    """A user operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class User:
    id: int
    email: str
    display_name: str | None
    role: str
    publisher_id: int | None
    publisher: str | None
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None
    # Changes whenever the password does: a session remembers it, so changing a password ends
    # every other session of that user.
    password_version: str


@dataclass(frozen=True)
class ApiToken:
    id: int
    user_id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


_USER_SELECT = """
    select u.id, u.email, u.display_name, u.role, u.publisher_id, p.name as publisher,
           u.is_active, u.created_at, u.last_login_at,
           left(encode(sha256(convert_to(coalesce(u.password_hash, ''), 'UTF8')), 'hex'), 16)
               as password_version
    from users u left join publishers p on p.id = u.publisher_id
"""


def record_audit(
    conn: psycopg.Connection[Any],
    *,
    actor: str,
    action: str,
    user_id: int | None = None,
    target_type: str | None = None,
    target_id: int | None = None,
    remote_addr: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """One ``audit_log`` row, in the caller's transaction so it commits with the change."""
    conn.execute(
        """
        insert into audit_log (user_id, actor, action, target_type, target_id, remote_addr,
                               details)
        values (%s, %s, %s, %s, %s, %s, %s)
        """,
        (user_id, actor, action, target_type, target_id, remote_addr, Jsonb(details or {})),
    )


def normalise_email(email: str) -> str:
    email = email.strip()
    if not _EMAIL.match(email) or len(email) > 254:
        raise UserError(f"{email!r} is not an email address")
    return email


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")


def _publisher_id(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute("select id from publishers where name = %s", (name,)).fetchone()
    if row is None:
        raise UserError(f"no publisher named {name!r}")
    return int(row[0])


def create_user(
    db: Database,
    *,
    email: str,
    role: str,
    password: str,
    publisher: str | None = None,
    display_name: str | None = None,
    actor: str = "cli",
    actor_user_id: int | None = None,
    remote_addr: str | None = None,
) -> User:
    email = normalise_email(email)
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if role == "publisher" and not publisher:
        raise UserError("a publisher user needs --publisher")
    if role != "publisher" and publisher:
        raise UserError("only publisher users belong to a publisher")
    check_password_strength(password)
    hashed = generate_password_hash(password)
    try:
        with db.connection() as conn:
            publisher_id = _publisher_id(conn, publisher) if publisher else None
            row = conn.execute(
                """
                insert into users (email, display_name, password_hash, role, publisher_id)
                values (%s, %s, %s, %s, %s) returning id
                """,
                (email, display_name or None, hashed, role, publisher_id),
            ).fetchone()
            assert row is not None
            record_audit(
                conn,
                actor=actor,
                action="user.create",
                user_id=actor_user_id,
                target_type="user",
                target_id=int(row[0]),
                remote_addr=remote_addr,
                details={"email": email, "role": role, "publisher": publisher},
            )
    except psycopg.errors.UniqueViolation as exc:
        raise UserError(f"a user with email {email!r} already exists") from exc
    user = get_user(db, int(row[0]))
    assert user is not None
    return user


def get_user(db: Database, user_id: int) -> User | None:
    with db.connection() as conn, conn.cursor(row_factory=class_row(User)) as cur:
        return cur.execute(_USER_SELECT + " where u.id = %s", (user_id,)).fetchone()


def find_user(db: Database, email: str) -> User | None:
    with db.connection() as conn, conn.cursor(row_factory=class_row(User)) as cur:
        return cur.execute(
            _USER_SELECT + " where lower(u.email) = lower(%s)", (email.strip(),)
        ).fetchone()


def list_users(db: Database) -> list[User]:
    with db.connection() as conn, conn.cursor(row_factory=class_row(User)) as cur:
        return cur.execute(_USER_SELECT + " order by u.role, lower(u.email)").fetchall()


def authenticate(db: Database, email: str, password: str) -> User | None:
    """The active user with this email and password, else None (same cost either way)."""
    with db.connection() as conn:
        row = conn.execute(
            "select id, password_hash, is_active from users where lower(email) = lower(%s)",
            (email.strip(),),
        ).fetchone()
    if row is None or row[1] is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(row[1], password) or not row[2]:
        return None
    return get_user(db, int(row[0]))


def _require_user(conn: psycopg.Connection[Any], email: str) -> tuple[int, str]:
    row = conn.execute(
        "select id, role from users where lower(email) = lower(%s)", (email.strip(),)
    ).fetchone()
    if row is None:
        raise UserError(f"no user with email {email!r}")
    return int(row[0]), str(row[1])


def assign_operator(
    db: Database,
    email: str,
    publisher: str,
    *,
    actor: str = "cli",
    actor_user_id: int | None = None,
    remote_addr: str | None = None,
) -> bool:
    """Let operator ``email`` see ``publisher``; False when it already could."""
    with db.connection() as conn:
        user_id, role = _require_user(conn, email)
        if role != "operator":
            raise UserError(f"{email} is a {role}, not an operator")
        publisher_id = _publisher_id(conn, publisher)
        row = conn.execute(
            "insert into operator_assignments (user_id, publisher_id) values (%s, %s)"
            " on conflict do nothing returning 1",
            (user_id, publisher_id),
        ).fetchone()
        if row is not None:
            record_audit(
                conn,
                actor=actor,
                action="user.assign",
                user_id=actor_user_id,
                target_type="user",
                target_id=user_id,
                remote_addr=remote_addr,
                details={"publisher": publisher, "publisher_id": publisher_id},
            )
    return row is not None


def unassign_operator(
    db: Database,
    user_id: int,
    publisher_id: int,
    *,
    actor: str,
    actor_user_id: int | None = None,
    remote_addr: str | None = None,
) -> bool:
    with db.connection() as conn:
        row = conn.execute(
            "delete from operator_assignments where user_id = %s and publisher_id = %s returning 1",
            (user_id, publisher_id),
        ).fetchone()
        if row is not None:
            record_audit(
                conn,
                actor=actor,
                action="user.unassign",
                user_id=actor_user_id,
                target_type="user",
                target_id=user_id,
                remote_addr=remote_addr,
                details={"publisher_id": publisher_id},
            )
    return row is not None


def operator_publishers(db: Database, user_id: int) -> list[tuple[int, str]]:
    with db.connection() as conn:
        rows = conn.execute(
            """
            select p.id, p.name from operator_assignments a
            join publishers p on p.id = a.publisher_id
            where a.user_id = %s order by p.name
            """,
            (user_id,),
        ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def set_active(
    db: Database,
    user_id: int,
    active: bool,
    *,
    actor: str,
    actor_user_id: int | None = None,
    remote_addr: str | None = None,
) -> None:
    with db.connection() as conn:
        row = conn.execute(
            "update users set is_active = %s where id = %s returning 1", (active, user_id)
        ).fetchone()
        if row is None:
            raise UserError(f"no user with id {user_id}")
        record_audit(
            conn,
            actor=actor,
            action="user.activate" if active else "user.deactivate",
            user_id=actor_user_id,
            target_type="user",
            target_id=user_id,
            remote_addr=remote_addr,
        )


def set_password(
    db: Database,
    email: str,
    password: str,
    *,
    actor: str = "cli",
    actor_user_id: int | None = None,
    remote_addr: str | None = None,
) -> None:
    check_password_strength(password)
    with db.connection() as conn:
        user_id, _ = _require_user(conn, email)
        conn.execute(
            "update users set password_hash = %s where id = %s",
            (generate_password_hash(password), user_id),
        )
        record_audit(
            conn,
            actor=actor,
            action="user.password",
            user_id=actor_user_id,
            target_type="user",
            target_id=user_id,
            remote_addr=remote_addr,
        )


def record_login(db: Database, user: User, remote_addr: str | None) -> None:
    with db.connection() as conn:
        conn.execute("update users set last_login_at = now() where id = %s", (user.id,))
        record_audit(
            conn,
            actor=user.email,
            action="login",
            user_id=user.id,
            target_type="user",
            target_id=user.id,
            remote_addr=remote_addr,
        )


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def create_token(db: Database, email: str, name: str, *, actor: str = "cli") -> tuple[int, str]:
    """A new API token for ``email``: (its id, the token). The token is not stored anywhere."""
    name = name.strip()
    if not name:
        raise UserError("a token needs a name (what uses it)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.connection() as conn:
        user_id, _ = _require_user(conn, email)
        row = conn.execute(
            "insert into api_tokens (user_id, name, token_sha256) values (%s, %s, %s) returning id",
            (user_id, name, token_digest(token)),
        ).fetchone()
        assert row is not None
        record_audit(
            conn,
            actor=actor,
            action="token.create",
            target_type="api_token",
            target_id=int(row[0]),
            details={"email": email, "name": name},
        )
    return int(row[0]), token


def list_tokens(db: Database, email: str | None = None) -> list[tuple[ApiToken, str]]:
    """Tokens with their user's email, newest first."""
    with db.connection() as conn:
        rows = conn.execute(
            """
            select t.id, t.user_id, t.name, t.created_at, t.last_used_at, t.revoked_at, u.email
            from api_tokens t join users u on u.id = t.user_id
            where %(email)s::text is null or lower(u.email) = lower(%(email)s)
            order by t.created_at desc, t.id desc
            """,
            {"email": email},
        ).fetchall()
    return [(ApiToken(*r[:6]), str(r[6])) for r in rows]


def revoke_token(
    db: Database, token_id: int, *, actor: str = "cli", actor_user_id: int | None = None
) -> bool:
    """Revoke a token; False when it was already revoked."""
    with db.connection() as conn:
        exists = conn.execute("select 1 from api_tokens where id = %s", (token_id,)).fetchone()
        if exists is None:
            raise UserError(f"no API token with id {token_id}")
        row = conn.execute(
            "update api_tokens set revoked_at = now() where id = %s and revoked_at is null"
            " returning 1",
            (token_id,),
        ).fetchone()
        if row is not None:
            record_audit(
                conn,
                actor=actor,
                action="token.revoke",
                user_id=actor_user_id,
                target_type="api_token",
                target_id=token_id,
            )
    return row is not None


def user_for_token(db: Database, token: str) -> User | None:
    """The active user owning an unrevoked ``token``; marks the token used."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with db.connection() as conn:
        row = conn.execute(
            """
            update api_tokens t set last_used_at = now()
            from users u
            where t.token_sha256 = %s and t.revoked_at is null
              and u.id = t.user_id and u.is_active
            returning u.id
            """,
            (token_digest(token),),
        ).fetchone()
    return get_user(db, int(row[0])) if row is not None else None
