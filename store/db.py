"""Connections to PostgreSQL, the system of record.

One pool per process, created closed and opened on first use in the process that uses it:
gunicorn and Dramatiq fork, and a pool inherited across a fork would share sockets between
processes. Rows come back as dataclasses (``store.rows``) through psycopg's ``class_row``.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from store.config import Settings, get_settings


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached; the message says where we tried."""


# A connection given back this recently worked a moment ago; checking it again would add a
# round trip to every short job (a notice send) while changing little: a server that died in
# between fails the job, which is retried like any job that met a dying server.
FRESH_SECONDS = 1.0
_returned_at: weakref.WeakKeyDictionary[psycopg.Connection, float] = weakref.WeakKeyDictionary()


def _note_returned(conn: psycopg.Connection) -> None:
    _returned_at[conn] = time.monotonic()


def _check_unless_fresh(conn: psycopg.Connection) -> None:
    returned = _returned_at.get(conn)
    if returned is not None and time.monotonic() - returned < FRESH_SECONDS and not conn.closed:
        return
    ConnectionPool.check_connection(conn)


class Database:
    """A lazily opened, fork-aware connection pool for one database URL."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 30.0):
        self.url = url
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._pool: ConnectionPool[psycopg.Connection] | None = None
        self._pool_pid: int | None = None

    def _get_pool(self) -> ConnectionPool[psycopg.Connection]:
        if self._pool is None or self._pool_pid != os.getpid():
            # After a fork the parent's pool is dropped without closing: closing it here would
            # close sockets the parent still uses.
            self._pool = ConnectionPool(
                self.url,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._timeout,
                open=False,
                name="mamoru",
                # A connection the server dropped (restart, failover, idle timeout) is replaced
                # when taken from the pool, instead of failing the job that took it.
                check=_check_unless_fresh,
                reset=_note_returned,
            )
            self._pool_pid = os.getpid()
            try:
                self._pool.open(wait=self._min_size > 0, timeout=self._timeout)
            except Exception as exc:
                self._pool = None
                raise DatabaseUnavailable(
                    f"cannot connect to PostgreSQL at {describe_url(self.url)}: {exc}"
                ) from exc
        return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; its transaction commits on success and rolls back on error."""
        with self._get_pool().connection() as conn:
            yield conn

    def close(self) -> None:
        if self._pool is not None and self._pool_pid == os.getpid():
            self._pool.close()
        self._pool = None


def describe_url(url: str) -> str:
    """Where a URL points, without its password (for error messages and logs)."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "an unparsable database URL"
    host = info.get("host") or "localhost"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    """One direct connection (migrations, maintenance); DatabaseUnavailable if unreachable."""
    try:
        return psycopg.connect(url, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {describe_url(url)}: {detail}"
        ) from exc


def resolve_database_url(settings: Settings) -> str:
    """The configured URL, or the embedded server's (started on demand)."""
    if settings.database_url:
        return settings.database_url
    from store.embedded import start_embedded

    return start_embedded(settings.data_dir)


def open_database(settings: Settings | None = None) -> Database:
    settings = settings or get_settings()
    return Database(
        resolve_database_url(settings),
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
    )
