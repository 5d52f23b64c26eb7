"""Test harness: a real PostgreSQL and a fresh database per test.

By default the session starts the embedded PostgreSQL (the same package Mamoru uses) in a
temporary folder. With ``MAMORU_TEST_DATABASE_URL`` set (e.g. this machine's service:
postgresql://postgres@127.0.0.1:5432/test) the same suite runs against that server instead.
Either way the schema is migrated once into a template database, and each test gets its own
copy of it (pytest-postgresql's janitor does the create-from-template and the drop).
"""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from pytest_postgresql.janitor import DatabaseJanitor

from store.config import get_settings
from store.db import Database
from store.migrate import upgrade

# A shell starts a background job (`make test &`, nohup) with SIGINT ignored, and processes the
# tests start would inherit that: Ctrl-C (SIGINT) would not stop `mamoru demo` or `mamoru
# scheduler`, and the tests that check it would hang. A handled signal is reset to the default
# in a child at exec, an ignored one is not; so it is handled here.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TEMPLATE = "mamoru_test_template"
_counter = itertools.count()


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str
    password: str | None
    kind: str  # "embedded" or "external"

    def url(self, dbname: str) -> str:
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        if self.host.startswith("/"):  # Unix socket directory
            return f"postgresql://{auth}@/{dbname}?host={quote(self.host)}&port={self.port}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}"

    def janitor(self, dbname: str, **kwargs: Any) -> DatabaseJanitor:
        return DatabaseJanitor(
            user=self.user,
            host=self.host,
            port=self.port,
            password=self.password,
            dbname=dbname,
            **kwargs,
        )


def _server_from_url(url: str, kind: str) -> Server:
    info = conninfo_to_dict(url)
    return Server(
        host=str(info.get("host") or "127.0.0.1"),
        port=int(info.get("port") or 5432),
        user=str(info.get("user") or "postgres"),
        password=str(info["password"]) if info.get("password") else None,
        kind=kind,
    )


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    external = os.environ.get("MAMORU_TEST_DATABASE_URL")
    if external:
        return _server_from_url(external, "external")
    from store.embedded import start_embedded

    # A short path: Unix socket paths are limited to ~107 bytes.
    data_dir = tmp_path_factory.mktemp("pg")
    return _server_from_url(start_embedded(data_dir), "embedded")


@pytest.fixture(scope="session")
def template_db(pg_server: Server) -> Iterator[str]:
    """A migrated template database; dropped at the end of the session."""
    janitor = pg_server.janitor(TEMPLATE, as_template=True)
    with janitor.cursor() as cur:  # left over from an interrupted run
        cur.execute(f"select 1 from pg_database where datname = '{TEMPLATE}'")
        if cur.fetchone():
            janitor.drop()
    janitor.init()
    upgrade(pg_server.url(TEMPLATE))
    yield TEMPLATE
    janitor.drop()


@contextmanager
def _fresh_database(server: Server, prefix: str, template: str | None = None) -> Iterator[str]:
    name = f"{prefix}_{os.getpid()}_{next(_counter)}"
    janitor = server.janitor(name, template_dbname=template)
    janitor.init()
    try:
        yield server.url(name)
    finally:
        janitor.drop()


@pytest.fixture
def db_url(pg_server: Server, template_db: str) -> Iterator[str]:
    """URL of a fresh, migrated database for this test only."""
    with _fresh_database(pg_server, "mamoru_test", template_db) as url:
        yield url


@pytest.fixture
def empty_db_url(pg_server: Server) -> Iterator[str]:
    """URL of a fresh database with no schema at all (for migration tests)."""
    with _fresh_database(pg_server, "mamoru_empty") as url:
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url, min_size=0, max_size=4)
    yield database
    database.close()


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test writes local state (page store, outbox, evidence) under a temporary folder,
    never in the user's real data folder."""
    saved = os.environ.get("MAMORU_DATA_DIR")
    os.environ["MAMORU_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    get_settings.cache_clear()
    yield
    if saved is None:
        os.environ.pop("MAMORU_DATA_DIR", None)
    else:
        os.environ["MAMORU_DATA_DIR"] = saved
    get_settings.cache_clear()


@pytest.fixture
def mamoru_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Environment for running the CLI against this test's database; returns the data dir."""
    data_dir = tmp_path / "data"
    for key in list(os.environ):
        if key.startswith("MAMORU_") and key != "MAMORU_TEST_DATABASE_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("MAMORU_DATABASE_URL", db_url)
    monkeypatch.setenv("MAMORU_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


def table_counts(url: str) -> dict[str, int]:
    """Row count of every table in the public schema: a snapshot to prove nothing changed."""
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "select tablename from pg_tables where schemaname = 'public' order by tablename"
            )
        ]
        counts: dict[str, int] = {}
        for table in tables:
            row = conn.execute(f'select count(*) from "{table}"').fetchone()
            assert row is not None
            counts[table] = int(row[0])
    return counts
