"""The re-fingerprint job: bring every page's fingerprints to ``CURRENT_VERSIONS``.

When a hash kind, its parameters, the pipeline or a library that changes values is updated,
stored fingerprints of the old version stop being loaded by the index (it loads only current
versions, so values are never mixed). This job re-hashes each affected page from its image in
the page store and, in one transaction per page, inserts the current fingerprints and deletes
those of other versions. It is idempotent and can be interrupted and run again.

A page registered before images were kept (no ``image_sha256``) or whose image is missing from
the page store cannot be re-hashed: it is reported, keeps its old rows, and stays unmatchable
until its work is registered again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from matcher.decode import DecodeLimits, decode_image
from matcher.errors import InputError
from matcher.hashing import CURRENT_VERSIONS, reference_fingerprints
from matcher.registry import insert_fingerprints
from store.blobs import BlobStore
from store.db import Database

__all__ = ["RefingerprintReport", "pages_needing_refingerprint", "refingerprint"]


@dataclass
class RefingerprintReport:
    pages: int = 0  # pages that needed work
    updated: int = 0
    fingerprints_added: int = 0
    fingerprints_removed: int = 0
    # (page id, why it could not be re-hashed)
    failed: list[tuple[int, str]] = field(default_factory=list)


_NEEDING = """
    select p.id, p.image_sha256 from pages p
    where exists (
        select 1 from fingerprints f
        where f.page_id = p.id
          and (f.kind, f.version) not in (
              select * from unnest(%(kinds)s::text[], %(versions)s::text[]))
    )
    or exists (
        select 1 from unnest(%(kinds)s::text[], %(versions)s::text[]) as v(kind, version)
        where not exists (
            select 1 from fingerprints f
            where f.page_id = p.id and f.kind = v.kind and f.version = v.version
        )
    )
    order by p.id
"""


def pages_needing_refingerprint(db: Database) -> list[tuple[int, bytes | None]]:
    """Pages with a fingerprint of another version or without one of a current kind."""
    params = {"kinds": list(CURRENT_VERSIONS), "versions": list(CURRENT_VERSIONS.values())}
    with db.connection() as conn:
        rows = conn.execute(_NEEDING, params).fetchall()
    return [(int(page_id), bytes(sha) if sha is not None else None) for page_id, sha in rows]


def refingerprint(
    db: Database,
    store: BlobStore,
    *,
    limits: DecodeLimits | None = None,
    dry_run: bool = False,
    on_page: Callable[[int], None] | None = None,
) -> RefingerprintReport:
    """Re-hash every page that needs it (see module docstring); ``dry_run`` only counts."""
    todo = pages_needing_refingerprint(db)
    report = RefingerprintReport(pages=len(todo))
    if dry_run:
        return report
    for page_id, image_sha256 in todo:
        try:
            _refingerprint_page(db, store, page_id, image_sha256, limits, report)
        finally:
            if on_page is not None:
                on_page(page_id)
    return report


def _refingerprint_page(
    db: Database,
    store: BlobStore,
    page_id: int,
    image_sha256: bytes | None,
    limits: DecodeLimits | None,
    report: RefingerprintReport,
) -> None:
    if image_sha256 is None:
        report.failed.append((page_id, "no stored image (registered before images were kept)"))
        return
    digest = image_sha256.hex()
    if not store.has(digest):
        report.failed.append((page_id, f"image {digest[:12]}... missing from the page store"))
        return
    try:
        data = store.read(digest)
        with decode_image(data, source=f"page {page_id}", limits=limits or DecodeLimits()) as image:
            fps = reference_fingerprints(image)
    except InputError as exc:
        report.failed.append((page_id, str(exc)))
        return
    with db.connection() as conn:
        insert_fingerprints(conn, page_id, fps)
        removed = conn.execute(
            """
            delete from fingerprints f
            where f.page_id = %s
              and (f.kind, f.version) not in (select * from unnest(%s::text[], %s::text[]))
            """,
            (page_id, list(CURRENT_VERSIONS), list(CURRENT_VERSIONS.values())),
        ).rowcount
    report.updated += 1
    report.fingerprints_added += len(fps)
    report.fingerprints_removed += removed
