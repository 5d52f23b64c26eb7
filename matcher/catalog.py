"""Read-only queries over registered works, for the CLI and the admin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row

from store.db import Database
from store.rows import FingerprintRow, Page, Work


@dataclass(frozen=True)
class WorkSummary:
    id: int
    publisher: str
    title: str
    kind: str
    isbn: str | None
    official_url: str | None
    pages: int
    fingerprints: int
    created_at: datetime


@dataclass(frozen=True)
class WorkDetail:
    summary: WorkSummary
    work: Work
    pages: list[Page]
    fingerprints: dict[int, list[FingerprintRow]]  # by page id


_SUMMARY = """
    select w.id, p.name as publisher, w.title, w.kind, w.isbn, w.official_url,
           (select count(*) from pages pg where pg.work_id = w.id)::int as pages,
           (select count(*) from fingerprints f join pages pg on pg.id = f.page_id
             where pg.work_id = w.id)::int as fingerprints,
           w.created_at
    from works w join publishers p on p.id = w.publisher_id
"""


def list_works(db: Database, publisher: str | None = None) -> list[WorkSummary]:
    with db.connection() as conn, conn.cursor(row_factory=class_row(WorkSummary)) as cur:
        if publisher is None:
            return cur.execute(_SUMMARY + " order by p.name, w.title").fetchall()
        return cur.execute(
            _SUMMARY + " where p.name = %s order by w.title", (publisher,)
        ).fetchall()


def get_work(db: Database, work_id: int) -> WorkDetail | None:
    with db.connection() as conn:
        with conn.cursor(row_factory=class_row(WorkSummary)) as cur:
            summary = cur.execute(_SUMMARY + " where w.id = %s", (work_id,)).fetchone()
        if summary is None:
            return None
        with conn.cursor(row_factory=class_row(Work)) as cur:
            work = cur.execute("select * from works where id = %s", (work_id,)).fetchone()
        with conn.cursor(row_factory=class_row(Page)) as cur:
            pages = cur.execute(
                "select * from pages where work_id = %s order by page_number", (work_id,)
            ).fetchall()
        with conn.cursor(row_factory=class_row(FingerprintRow)) as cur:
            rows = cur.execute(
                """
                select f.* from fingerprints f join pages p on p.id = f.page_id
                where p.work_id = %s order by p.page_number, f.kind, f.variant
                """,
                (work_id,),
            ).fetchall()
    assert work is not None
    by_page: dict[int, list[FingerprintRow]] = {}
    for row in rows:
        by_page.setdefault(row.page_id, []).append(row)
    return WorkDetail(summary, work, pages, by_page)
