"""Registering works: pages in, fingerprints stored, in one transaction per work.

Hashing is CPU-bound and a volume can have hundreds of pages, so pages are decoded and hashed
before the write transaction opens; the transaction then only inserts rows. Any failure (a page
that does not decode, a database error) leaves the database exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import Connection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from matcher.errors import InputError
from matcher.fingerprint import Fingerprint, to_signed64
from matcher.hashing import reference_fingerprints
from matcher.pagestore import page_store
from matcher.sources import PageSource
from store.blobs import Blob, BlobStore
from store.db import Database
from store.rows import Page, Publisher, Work

WORK_KINDS = ("volume", "chapter", "illustration", "photo", "other")


class UnknownPublisher(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"no publisher named {name!r} (add it with: mamoru publishers add {name!r})"
        )
        self.name = name


@dataclass(frozen=True)
class HashedPage:
    source: PageSource
    width: int
    height: int
    fingerprints: list[Fingerprint]
    stored: Blob | None = None


@dataclass
class RegistrationResult:
    publisher: Publisher
    work: Work
    created: bool
    added: list[Page] = field(default_factory=list)
    # (source name, why it was not added), e.g. already registered as page 3
    skipped: list[tuple[str, str]] = field(default_factory=list)
    fingerprints_added: int = 0


def hash_page(source: PageSource, store: BlobStore | None = None) -> HashedPage:
    """Decode and fingerprint one page; keep its image in ``store`` when given.

    The image is stored before any row refers to it: a registration that fails later leaves at
    most an unreferenced file, never a row without its image.
    """
    loaded = source.load_stored()
    image = loaded.image
    try:
        stored = store.put(loaded.data, loaded.media_type) if store is not None else None
        return HashedPage(source, image.width, image.height, reference_fingerprints(image), stored)
    finally:
        image.close()


def _find_publisher(db: Database, name: str) -> Publisher:
    with db.connection() as conn, conn.cursor(row_factory=class_row(Publisher)) as cur:
        publisher = cur.execute("select * from publishers where name = %s", (name,)).fetchone()
    if publisher is None:
        raise UnknownPublisher(name)
    return publisher


def _registered_hashes(db: Database, publisher_id: int, title: str) -> dict[bytes, int]:
    with db.connection() as conn:
        rows = conn.execute(
            """
            select p.sha256, p.page_number from pages p join works w on w.id = p.work_id
            where w.publisher_id = %s and w.title = %s
            """,
            (publisher_id, title),
        ).fetchall()
    return {bytes(sha): number for sha, number in rows}


def register_work(
    db: Database,
    *,
    publisher: str,
    title: str,
    sources: Sequence[PageSource],
    kind: str = "volume",
    isbn: str | None = None,
    official_url: str | None = None,
    identifiers: dict[str, Any] | None = None,
    on_page: Callable[[PageSource], None] | None = None,
    store: BlobStore | None = None,
) -> RegistrationResult:
    """Register ``title`` for ``publisher`` (adding to it if it exists) with ``sources`` as pages.

    A page whose content is already in the work, or appears twice in ``sources``, is skipped
    and reported, never duplicated. ``on_page`` is called after each page is processed (for a
    progress bar). Page images go to ``store`` (default: the configured page store).
    """
    title = title.strip()
    if not title:
        raise ValueError("a work needs a non-empty title")
    if kind not in WORK_KINDS:
        raise ValueError(f"unknown work kind {kind!r}; expected one of {', '.join(WORK_KINDS)}")
    if not sources:
        raise ValueError("a work needs at least one page")
    owner = _find_publisher(db, publisher)
    store = store if store is not None else page_store()
    known = _registered_hashes(db, owner.id, title)

    hashed: list[HashedPage] = []
    skipped: list[tuple[str, str]] = []
    seen_now: dict[bytes, str] = {}
    for source in sources:
        if source.sha256 in known:
            skipped.append((source.name, f"already registered as page {known[source.sha256]}"))
        elif source.sha256 in seen_now:
            skipped.append((source.name, f"same content as {seen_now[source.sha256]}"))
        else:
            seen_now[source.sha256] = source.name
            hashed.append(hash_page(source, store))
        if on_page is not None:
            on_page(source)

    with db.connection() as conn:
        with conn.cursor(row_factory=class_row(Work)) as cur:
            work = cur.execute(
                """
                insert into works (publisher_id, title, kind, isbn, official_url, identifiers)
                values (%(publisher_id)s, %(title)s, %(kind)s, %(isbn)s, %(url)s, %(ids)s)
                on conflict (publisher_id, title) do update set
                    isbn = coalesce(excluded.isbn, works.isbn),
                    official_url = coalesce(excluded.official_url, works.official_url),
                    identifiers = works.identifiers || excluded.identifiers,
                    updated_at = now()
                returning *
                """,
                {
                    "publisher_id": owner.id,
                    "title": title,
                    "kind": kind,
                    "isbn": isbn,
                    "url": official_url,
                    "ids": Jsonb(identifiers or {}),
                },
            ).fetchone()
        assert work is not None
        created = work.created_at == work.updated_at
        # The upsert locked the work row, so page numbers below cannot race another registration.
        row = conn.execute(
            "select coalesce(max(page_number), 0) from pages where work_id = %s", (work.id,)
        ).fetchone()
        next_number = int(row[0]) + 1 if row else 1
        result = RegistrationResult(owner, work, created, skipped=skipped)
        for page in hashed:
            with conn.cursor(row_factory=class_row(Page)) as cur:
                inserted = cur.execute(
                    """
                    insert into pages (work_id, page_number, sha256, source_name, media_type,
                                       width, height, image_sha256, image_media_type)
                    values (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                    on conflict (work_id, sha256) do nothing
                    returning *
                    """,
                    (
                        work.id,
                        next_number,
                        page.source.sha256,
                        page.source.name,
                        page.source.media_type,
                        page.width,
                        page.height,
                        bytes.fromhex(page.stored.sha256) if page.stored else None,
                        page.stored.media_type if page.stored else None,
                    ),
                ).fetchone()
            if inserted is None:  # registered concurrently by another process
                result.skipped.append((page.source.name, "already registered"))
                continue
            next_number += 1
            result.added.append(inserted)
            insert_fingerprints(conn, inserted.id, page.fingerprints)
            result.fingerprints_added += len(page.fingerprints)
    return result


def insert_fingerprints(conn: Connection[Any], page_id: int, fps: Sequence[Fingerprint]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            """
            insert into fingerprints (page_id, kind, params, version, variant, bits, value)
            values (%s, %s, %s, %s, %s, %s, %s)
            on conflict (page_id, kind, params, version, variant) do nothing
            """,
            [
                (
                    page_id,
                    fp.kind,
                    Jsonb(dict(fp.params)),
                    fp.version,
                    fp.variant,
                    fp.bits,
                    to_signed64(fp.value),
                )
                for fp in fps
            ],
        )


__all__ = [
    "InputError",
    "RegistrationResult",
    "UnknownPublisher",
    "hash_page",
    "insert_fingerprints",
    "register_work",
]
