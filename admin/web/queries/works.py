"""Works and their pages, as the admin lists them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row

from admin.web.scope import Scope
from store.db import Database


@dataclass(frozen=True)
class WorkRow:
    id: int
    publisher_id: int
    publisher: str
    title: str
    kind: str
    isbn: str | None
    official_url: str | None
    identifiers: dict[str, Any]
    pages: int
    fingerprints: int
    first_page_id: int | None
    matches: int
    created_at: datetime


@dataclass(frozen=True)
class PageRow:
    id: int
    page_number: int
    source_name: str
    media_type: str
    width: int
    height: int
    fingerprints: int
    has_image: bool


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    media_type: str | None


_WORKS = """
    select w.id, w.publisher_id, p.name as publisher, w.title, w.kind, w.isbn, w.official_url,
           w.identifiers,
           (select count(*) from pages pg where pg.work_id = w.id)::int as pages,
           (select count(*) from fingerprints f join pages pg on pg.id = f.page_id
             where pg.work_id = w.id)::int as fingerprints,
           (select pg.id from pages pg where pg.work_id = w.id and pg.image_sha256 is not null
             order by pg.page_number limit 1) as first_page_id,
           (select count(*) from matches m join pages pg on pg.id = m.page_id
             where pg.work_id = w.id)::int as matches,
           w.created_at
    from works w join publishers p on p.id = w.publisher_id
    where w.publisher_id = any(%(publishers)s)
"""


def list_works(
    db: Database, scope: Scope, *, publisher_id: int | None = None, query: str = ""
) -> list[WorkRow]:
    sql = _WORKS + " and (%(pub)s::bigint is null or w.publisher_id = %(pub)s)"
    sql += " and (%(q)s = '' or w.title ilike '%%' || %(q)s || '%%')"
    sql += " order by p.name, w.title"
    params = {**scope.params, "pub": publisher_id, "q": query}
    with db.connection() as conn, conn.cursor(row_factory=class_row(WorkRow)) as cur:
        return cur.execute(sql, params).fetchall()


def get_work(db: Database, scope: Scope, work_id: int) -> WorkRow | None:
    with db.connection() as conn, conn.cursor(row_factory=class_row(WorkRow)) as cur:
        return cur.execute(
            _WORKS + " and w.id = %(id)s", {**scope.params, "id": work_id}
        ).fetchone()


def work_pages(db: Database, work_id: int) -> list[PageRow]:
    """Pages of a work already found in scope by :func:`get_work`."""
    with db.connection() as conn, conn.cursor(row_factory=class_row(PageRow)) as cur:
        return cur.execute(
            """
            select pg.id, pg.page_number, pg.source_name, pg.media_type, pg.width, pg.height,
                   (select count(*) from fingerprints f where f.page_id = pg.id)::int
                       as fingerprints,
                   pg.image_sha256 is not null as has_image
            from pages pg where pg.work_id = %s order by pg.page_number
            """,
            (work_id,),
        ).fetchall()


def page_image(db: Database, scope: Scope, page_id: int) -> StoredImage | None:
    with db.connection() as conn:
        row = conn.execute(
            """
            select pg.image_sha256, pg.image_media_type
            from pages pg join works w on w.id = pg.work_id
            where pg.id = %(id)s and w.publisher_id = any(%(publishers)s)
              and pg.image_sha256 is not null
            """,
            {**scope.params, "id": page_id},
        ).fetchone()
    return StoredImage(bytes(row[0]).hex(), row[1]) if row is not None else None
