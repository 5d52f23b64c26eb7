"""Per-process resources of the web admin: settings, the database, the reference index, stores.

Each is created on first use and kept on the app, never at import time: gunicorn forks its
workers after importing the app, and ``store.db.Database`` opens its pool in the process that
uses it. The embedded database is migrated on first use, as the CLI does; a configured one must
be upgraded deliberately (``mamoru db upgrade``), so the admin refuses an outdated schema.
"""

from __future__ import annotations

import threading
from typing import Any, cast

from flask import Flask, current_app

from crawler.evidence import EvidenceStore
from matcher.decode import DecodeLimits
from matcher.identify import ReferenceIndex
from matcher.pagestore import page_store as _page_store
from matcher.sources import IngestLimits
from store.blobs import BlobStore
from store.config import Settings
from store.db import Database, open_database
from store.migrate import MigrationError, pending, upgrade

_LOCK = threading.Lock()
_KEY = "mamoru"


def _state(app: Flask) -> dict[str, Any]:
    return cast("dict[str, Any]", app.extensions.setdefault(_KEY, {}))


def settings(app: Flask | None = None) -> Settings:
    app = app or current_app
    return cast(Settings, app.config["MAMORU_SETTINGS"])


def get_db(app: Flask | None = None) -> Database:
    app = app or current_app
    state = _state(app)
    db = state.get("db")
    if db is None:
        with _LOCK:
            db = state.get("db")
            if db is None:
                db = _open(app)
                state["db"] = db
    return cast(Database, db)


def database_url(app: Flask | None = None) -> str:
    """The URL of the app's database, without opening the request pool (the embedded server
    is started, as on any first use)."""
    app = app or current_app
    given = app.config.get("MAMORU_DATABASE")
    if isinstance(given, Database):
        return given.url
    url = app.config.get("MAMORU_DATABASE_URL") or settings(app).database_url
    return str(url) if url else get_db(app).url


def _open(app: Flask) -> Database:
    given = app.config.get("MAMORU_DATABASE")
    if isinstance(given, Database):
        return given
    conf = settings(app)
    url = app.config.get("MAMORU_DATABASE_URL")
    if url:
        db = Database(url, min_size=conf.db_pool_min_size, max_size=conf.db_pool_max_size)
    else:
        db = open_database(conf)
    outstanding = pending(db.url)
    if outstanding and conf.database_url is None and not url:
        upgrade(db.url)
    elif outstanding:
        names = ", ".join(m.filename for m in outstanding)
        raise MigrationError(
            f"database schema is out of date ({names} pending): run `mamoru db upgrade`"
        )
    return db


def reference_index(app: Flask | None = None) -> ReferenceIndex:
    """The matcher's index for rights lookups; picks up new works within ``refresh_seconds``."""
    app = app or current_app
    state = _state(app)
    index = state.get("index")
    if index is None:
        with _LOCK:
            index = state.get("index")
            if index is None:
                index = ReferenceIndex(
                    get_db(app), refresh_seconds=app.config["MAMORU_INDEX_REFRESH_SECONDS"]
                )
                state["index"] = index
    return cast(ReferenceIndex, index)


def page_store(app: Flask | None = None) -> BlobStore:
    return _page_store(settings(app))


def evidence_store(app: Flask | None = None) -> EvidenceStore:
    conf = settings(app)
    return EvidenceStore(conf.evidence_dir or conf.data_dir / "evidence")


def ingest_limits(conf: Settings) -> IngestLimits:
    return IngestLimits(
        decode=DecodeLimits(max_pixels=conf.max_image_pixels, max_bytes=conf.max_image_bytes),
        max_archive_bytes=conf.max_archive_bytes,
        max_archive_members=conf.max_archive_members,
        pdf_dpi=conf.pdf_dpi,
    )


def close(app: Flask) -> None:
    """Close the pool this app opened (tests; a server's pool lives as long as the process)."""
    state = _state(app)
    db = state.pop("db", None)
    state.pop("index", None)
    if isinstance(db, Database) and not isinstance(app.config.get("MAMORU_DATABASE"), Database):
        db.close()
