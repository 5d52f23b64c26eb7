"""Migrating from empty gives the schema the code expects, idempotently and concurrently."""

from __future__ import annotations

import dataclasses
import multiprocessing
from pathlib import Path

import psycopg
import pytest

from store import migrate
from store.migrate import Migration, MigrationError, available_migrations, pending, upgrade
from store.rows import TABLES

EXPECTED_TABLES = {
    "publishers",
    "users",
    "operator_assignments",
    "api_tokens",
    "works",
    "pages",
    "fingerprints",
    "allowlist_entries",
    "sites",
    "crawls",
    "images",
    "sightings",
    "matches",
    "recipients",
    "notices",
    "notice_items",
    "rechecks",
    "events",
    "audit_log",
    "deployment",
    "scheduler_runs",
    "send_attempts",
    "schema_migrations",
}


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {
            r[0]
            for r in conn.execute("select tablename from pg_tables where schemaname = 'public'")
        }


def test_upgrade_from_empty_creates_every_table(empty_db_url: str) -> None:
    assert tables(empty_db_url) == set()
    applied = upgrade(empty_db_url)
    assert [m.version for m in applied] == [m.version for m in available_migrations()]
    assert tables(empty_db_url) == EXPECTED_TABLES
    assert pending(empty_db_url) == []


def test_upgrade_twice_applies_nothing_the_second_time(empty_db_url: str) -> None:
    upgrade(empty_db_url)
    assert upgrade(empty_db_url) == []
    with psycopg.connect(empty_db_url) as conn:
        row = conn.execute("select count(*) from schema_migrations").fetchone()
    assert row == (len(available_migrations()),)


def test_row_dataclasses_match_their_tables(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        for row_type, table in TABLES.items():
            columns = [
                r[0]
                for r in conn.execute(
                    "select column_name from information_schema.columns "
                    "where table_schema = 'public' and table_name = %s order by ordinal_position",
                    (table,),
                )
            ]
            fields = [f.name for f in dataclasses.fields(row_type)]
            assert fields == columns, f"{row_type.__name__} does not match table {table}"


def _upgrade_in_child(url: str) -> int:
    return len(upgrade(url))


def test_concurrent_upgrades_apply_each_migration_once(empty_db_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        applied_counts = pool.map(_upgrade_in_child, [empty_db_url] * 3)
    # Exactly one process applied everything; the others found nothing to do.
    assert sorted(applied_counts) == [0, 0, len(available_migrations())]
    assert tables(empty_db_url) == EXPECTED_TABLES


def test_edited_migration_is_refused(empty_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    upgrade(empty_db_url)
    original = available_migrations()
    edited = [
        dataclasses.replace(m, sql=m.sql + "\n-- edited") if m.version == 1 else m for m in original
    ]
    monkeypatch.setattr(migrate, "available_migrations", lambda: edited)
    with pytest.raises(MigrationError, match=r"0001_initial\.sql was changed after it was applied"):
        upgrade(empty_db_url)


def test_database_from_a_newer_release_is_refused(empty_db_url: str) -> None:
    upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            "insert into schema_migrations (version, name, checksum) values (999, 'x', 'y')"
        )
    with pytest.raises(MigrationError, match=r"migrations \[999\] that this version"):
        upgrade(empty_db_url)


def test_failed_migration_rolls_back_and_is_not_recorded(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(empty_db_url)
    landed = available_migrations()
    failing = Migration(len(landed) + 1, "broken", "create table t_ok (a int); select 1/0;")
    broken = [*landed, failing]
    monkeypatch.setattr(migrate, "available_migrations", lambda: broken)
    with pytest.raises(psycopg.errors.DivisionByZero):
        upgrade(empty_db_url)
    assert "t_ok" not in tables(empty_db_url)
    assert [m.version for m in pending(empty_db_url)] == [broken[-1].version]


def test_migration_files_are_numbered_without_gaps() -> None:
    folder = Path(migrate.__file__).parent / "migrations"
    names = sorted(p.name for p in folder.glob("*.sql"))
    assert names == [m.filename for m in available_migrations()]
    assert names[0] == "0001_initial.sql"
