"""The connection pool: typed rows, transactions, and a fresh pool after fork."""

from __future__ import annotations

import os
import warnings

import psycopg
import pytest
from psycopg.rows import class_row

from store.db import Database, DatabaseUnavailable, describe_url
from store.rows import Publisher


def test_rows_come_back_as_dataclasses(db: Database) -> None:
    with db.connection() as conn:
        conn.execute("insert into publishers (name) values ('P')")
    with db.connection() as conn, conn.cursor(row_factory=class_row(Publisher)) as cur:
        row = cur.execute("select * from publishers").fetchone()
    assert isinstance(row, Publisher)
    assert row.name == "P"


def test_error_rolls_back_the_transaction(db: Database) -> None:
    with pytest.raises(psycopg.errors.CheckViolation), db.connection() as conn:
        conn.execute("insert into publishers (name) values ('kept?')")
        conn.execute("insert into publishers (name) values ('  ')")  # violates the check
    with db.connection() as conn:
        assert conn.execute("select count(*) from publishers").fetchone() == (0,)


def test_child_process_gets_its_own_pool(db: Database) -> None:
    with db.connection() as conn:
        parent_backend = conn.execute("select pg_backend_pid()").fetchone()
    read, write = os.pipe()
    # Python 3.12 warns about forking a process that has threads (the pool's workers); forking
    # after the pool opened is exactly the situation under test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's sockets
        status = 1
        try:
            with db.connection() as conn:
                row = conn.execute("select pg_backend_pid()").fetchone()
            os.write(write, str(row[0] if row else 0).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    child_backend = int(os.read(read, 64).decode() or 0)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_backend not in (0, parent_backend)
    # The parent's pool still works after the child exited.
    with db.connection() as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_unreachable_server_is_reported_without_password() -> None:
    url = "postgresql://user:s3cret@127.0.0.1:9/db?connect_timeout=2"
    database = Database(url, min_size=1, timeout=3)
    with pytest.raises(DatabaseUnavailable) as info, database.connection():
        pass
    assert "127.0.0.1:9/db" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert describe_url(url) == "127.0.0.1:9/db"
