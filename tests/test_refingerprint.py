"""The re-fingerprint job and `mamoru works refingerprint`, against a real PostgreSQL."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from admin.cli import cli
from admin.publishers import add_publisher
from admin.samples import render_page
from matcher.errors import InputError
from matcher.hashing import CURRENT_VERSIONS, fingerprint_bytes, reference_fingerprints
from matcher.identify import ReferenceIndex
from matcher.pagestore import page_store
from matcher.refingerprint import pages_needing_refingerprint, refingerprint
from matcher.registry import register_work
from matcher.sources import expand_paths
from store.db import Database
from tests.test_identify import pirate_copy


def _register(db: Database, tmp_path: Path, title: str, pages: int) -> None:
    folder = tmp_path / title
    folder.mkdir()
    for n in range(1, pages + 1):
        render_page(title, n).save(folder / f"{n:03d}.png")
    register_work(db, publisher="P", title=title, sources=expand_paths([folder]))


def _versions(db: Database) -> set[tuple[str, str]]:
    with db.connection() as conn:
        return {(k, v) for k, v in conn.execute("select distinct kind, version from fingerprints")}


def test_registration_keeps_page_images_and_current_fingerprints(
    db: Database, tmp_path: Path
) -> None:
    add_publisher(db, "P")
    _register(db, tmp_path, "Harbor", 2)
    assert _versions(db) == set(CURRENT_VERSIONS.items())
    assert pages_needing_refingerprint(db) == []
    store = page_store()
    with db.connection() as conn:
        rows = conn.execute("select sha256, image_sha256, image_media_type from pages").fetchall()
    for sha256, image_sha256, media_type in rows:
        # A PNG page is kept as submitted: the stored file is the registered file.
        assert bytes(image_sha256) == bytes(sha256)
        assert media_type == "image/png"
        assert store.has(bytes(image_sha256).hex())


def test_old_versions_are_rehashed_from_the_page_store(db: Database, tmp_path: Path) -> None:
    add_publisher(db, "P")
    _register(db, tmp_path, "Harbor", 3)
    with db.connection() as conn:
        before = conn.execute("select count(*) from fingerprints").fetchone()
        # As after an upgrade that changed the region hashes: stored rows are of an old version.
        conn.execute("update fingerprints set version = 'old-1' where kind = 'rphash'")
    assert before is not None
    index = ReferenceIndex(db)
    index.refresh()
    assert index.identify(pirate_copy("Harbor", 2)) == []  # old versions are never loaded
    assert len(pages_needing_refingerprint(db)) == 3

    dry = refingerprint(db, page_store(), dry_run=True)
    assert (dry.pages, dry.updated) == (3, 0)
    report = refingerprint(db, page_store())
    assert (report.pages, report.updated, report.failed) == (3, 3, [])
    assert report.fingerprints_removed > 0
    assert _versions(db) == set(CURRENT_VERSIONS.items())
    with db.connection() as conn:
        assert conn.execute("select count(*) from fingerprints").fetchone() == before
    # The index picks the new rows up on its next refresh, without a restart.
    index.refresh()
    [best, *_] = index.identify(pirate_copy("Harbor", 2))
    assert (best.page.work_title, best.page.page_number) == ("Harbor", 2)
    # Idempotent: nothing left to do.
    assert refingerprint(db, page_store()).pages == 0


def test_pages_without_a_stored_image_are_reported_not_lost(
    mamoru_env: Path, db_url: str, tmp_path: Path
) -> None:
    db = Database(db_url, min_size=0)
    add_publisher(db, "P")
    _register(db, tmp_path, "Harbor", 2)
    with db.connection() as conn:
        conn.execute("update fingerprints set version = 'old-1' where kind = 'phash'")
        # Page 1 as if registered before images were kept.
        conn.execute("update pages set image_sha256 = null where page_number = 1")
        before = conn.execute("select count(*) from fingerprints").fetchone()
    db.close()

    result = CliRunner().invoke(cli, ["works", "refingerprint", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["pages"] == 2 and report["updated"] == 1
    [[page_id, why]] = report["failed"]
    assert "no stored image" in why
    db = Database(db_url, min_size=0)
    with db.connection() as conn:
        # The page that could not be re-hashed keeps every row it had.
        kept = conn.execute(
            "select count(*) from fingerprints where page_id = %s", (page_id,)
        ).fetchone()
        after = conn.execute("select count(*) from fingerprints").fetchone()
    db.close()
    assert kept is not None and kept[0] > 0
    assert after == before

    text = CliRunner().invoke(cli, ["works", "refingerprint", "--dry-run"])
    assert text.exit_code == 0 and "1 page(s) need re-fingerprinting" in text.output


def test_fingerprint_bytes_is_decode_then_reference_fingerprints() -> None:
    page = render_page("Bytes", 1)
    buffer = io.BytesIO()
    page.save(buffer, "PNG")
    fps = fingerprint_bytes(buffer.getvalue(), source="page.png")
    assert fps == reference_fingerprints(page)
    assert {fp.kind for fp in fps} == set(CURRENT_VERSIONS)
    with pytest.raises(InputError, match=r"^broken\.png: "):
        fingerprint_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, source="broken.png")
