"""Numbered plain-SQL migrations, applied in order and recorded in ``schema_migrations``.

Files are ``store/migrations/NNNN_name.sql``. Each is applied in its own transaction. A
session-level advisory lock serialises concurrent upgrades (two workers starting together), and
the recorded SHA-256 of every applied file makes an edited, already-applied migration an error
instead of a silent schema drift.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from store.db import connect

# Any constant will do; it only has to be the same in every Mamoru process.
_LOCK_KEY = 0x6D616D6F7275  # "mamoru"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


def available_migrations() -> list[Migration]:
    folder = resources.files("store") / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migrations must be numbered 0001, 0002, ... without gaps; "
                f"found {migration.filename} where {expected:04d} was expected"
            )
    return found


def _ensure_table(conn: psycopg.Connection) -> None:
    conn.execute(
        """
        create table if not exists schema_migrations (
            version     integer primary key,
            name        text not null,
            checksum    text not null,
            applied_at  timestamptz not null default now()
        )
        """
    )


def applied_versions(conn: psycopg.Connection) -> dict[int, str]:
    """Applied migration versions and their checksums (empty on a fresh database)."""
    exists = conn.execute("select to_regclass('schema_migrations') is not null").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("select version, checksum from schema_migrations").fetchall()
    return {int(version): str(checksum) for version, checksum in rows}


def upgrade(url: str) -> list[Migration]:
    """Apply every pending migration; return the ones applied by this call."""
    migrations = available_migrations()
    applied_now: list[Migration] = []
    with connect(url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            with conn.transaction():
                _ensure_table(conn)
            done = applied_versions(conn)
            unknown = sorted(set(done) - {m.version for m in migrations})
            if unknown:
                raise MigrationError(
                    f"database has migrations {unknown} that this version of Mamoru does not know; "
                    "it was upgraded by a newer release"
                )
            for migration in migrations:
                recorded = done.get(migration.version)
                if recorded is not None:
                    if recorded != migration.checksum:
                        raise MigrationError(
                            f"{migration.filename} was changed after it was applied; "
                            "add a new migration instead of editing a landed one"
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "insert into schema_migrations (version, name, checksum)"
                        " values (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def pending(url: str) -> list[Migration]:
    with connect(url) as conn:
        done = applied_versions(conn)
    return [m for m in available_migrations() if m.version not in done]
