"""Identifying copies of registered pages against a real PostgreSQL, and `mamoru match`."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from admin.cli import cli
from admin.publishers import add_publisher
from admin.samples import render_page
from bench import corpus, transforms
from matcher.identify import ReferenceIndex
from matcher.registry import register_work
from matcher.sources import expand_paths
from store.db import Database


def register(db: Database, tmp_path: Path, title: str, pages: int) -> None:
    folder = tmp_path / title
    folder.mkdir()
    for n in range(1, pages + 1):
        render_page(title, n).save(folder / f"{n:03d}.png")
    register_work(db, publisher="P", title=title, sources=expand_paths([folder]))


def pirate_copy(title: str, number: int) -> Image.Image:
    """Resized to 70%, re-encoded as JPEG quality 50, with a site name stamped in a corner."""
    page = render_page(title, number)
    page = page.resize((page.width * 7 // 10, page.height * 7 // 10))
    ImageDraw.Draw(page).text((10, page.height - 20), "pirate-manga.example", fill=(255, 0, 0))
    buffer = io.BytesIO()
    page.save(buffer, "JPEG", quality=50)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def test_copy_is_identified_and_unrelated_page_is_not(db: Database, tmp_path: Path) -> None:
    add_publisher(db, "P")
    register(db, tmp_path, "Harbor", 4)
    register(db, tmp_path, "Garden", 4)
    index = ReferenceIndex(db)
    with db.connection() as conn:
        row = conn.execute("select count(*) from fingerprints").fetchone()
    assert row is not None and index.refresh() == row[0] > 8 * 20  # global + ~30 regions a page

    [best, *_] = index.identify(pirate_copy("Garden", 3))
    assert (best.page.work_title, best.page.page_number) == ("Garden", 3)
    assert best.decision == "confident"
    assert best.confidence > 0.9
    assert best.scores["region_score"] > index.thresholds.confident
    assert best.scores["phash"] <= 10  # a resized re-encode keeps its whole-page hash too
    assert "region score" in best.explanation and "region pairs agree" in best.explanation
    # A page drawn in the same style but not registered matches nothing.
    assert index.identify(render_page("Never registered", 1)) == []


def test_work_registered_later_becomes_matchable_without_restart(
    db: Database, tmp_path: Path
) -> None:
    add_publisher(db, "P")
    register(db, tmp_path, "Harbor", 2)
    index = ReferenceIndex(db, refresh_seconds=0)
    index.refresh()
    assert index.identify(pirate_copy("Latecomer", 1)) == []
    register(db, tmp_path, "Latecomer", 2)
    # refresh_seconds=0: the next identification loads what was added meanwhile.
    [best, *_] = index.identify(pirate_copy("Latecomer", 1))
    assert (best.page.work_title, best.page.page_number) == ("Latecomer", 1)


def test_fingerprints_of_another_version_are_never_loaded(db: Database, tmp_path: Path) -> None:
    add_publisher(db, "P")
    register(db, tmp_path, "Harbor", 1)
    with db.connection() as conn:
        conn.execute("update fingerprints set version = 'imagehash-0.0/old-pipeline'")
    index = ReferenceIndex(db)
    assert index.refresh() == 0
    assert index.identify(pirate_copy("Harbor", 1)) == []


# Registered pages for the transform tests: generated manga pages (two generators) and a tinted
# one standing in for a colour illustration.
REGISTERED = 5
LOOKALIKES = 6
# Copies of each registered page that must be identified, per transform. The hard families are
# allowed misses in line with bench/matching_quality.py (crop_large is the weakest, ~0.6).
REQUIRED = {"crop_large": 3, "split": 4, "join": 4, "rotate": 4, "embed": 4}


def _reference(n: int) -> Image.Image:
    if n == 0:
        return render_page("Transform test", 1).resize(corpus.REFERENCE_SIZE)
    page = corpus.draw_page(random.Random(1000 + n))
    return corpus.tint(page, random.Random(n)) if n == REGISTERED - 1 else page


@pytest.mark.slow
@pytest.mark.parametrize("transform", transforms.TRANSFORMS, ids=lambda t: t.name)
def test_each_transform_family_is_identified_and_lookalikes_are_not(
    db: Database, tmp_path: Path, transform: transforms.Transform
) -> None:
    add_publisher(db, "P")
    folder = tmp_path / "work"
    folder.mkdir()
    originals = [_reference(n) for n in range(REGISTERED)]
    for n, page in enumerate(originals, start=1):
        page.save(folder / f"{n:03d}.png")
    register_work(db, publisher="P", title="Work", sources=expand_paths([folder]))
    index = ReferenceIndex(db)
    fillers = [corpus.draw_page(random.Random(5000 + n)) for n in range(4)]

    found = 0
    for n, page in enumerate(originals, start=1):
        copy = transform.apply(page, random.Random(n), fillers)
        matches = index.identify(copy)
        if matches:
            # Whatever is found must be right: a wrong page would be a wrongful notice.
            assert matches[0].page.page_number == n, (transform.name, n, matches[0])
            found += 1
    assert found >= REQUIRED.get(transform.name, REGISTERED), (transform.name, found)

    # Unregistered pages drawn by the same generator, put through the same transform.
    for n in range(LOOKALIKES):
        lookalike = corpus.draw_page(random.Random(9000 + n))
        copy = transform.apply(lookalike, random.Random(n), fillers)
        assert index.identify(copy) == [], (transform.name, n)


def test_match_cli(mamoru_env: Path, db_url: str, tmp_path: Path) -> None:
    db = Database(db_url, min_size=0)
    add_publisher(db, "P")
    register(db, tmp_path, "Harbor", 3)
    db.close()
    copy = tmp_path / "copy.jpg"
    pirate_copy("Harbor", 2).save(copy, "JPEG")
    unrelated = tmp_path / "other.png"
    render_page("Other", 1).save(unrelated)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff" + b"x" * 50)

    result = CliRunner().invoke(cli, ["match", "--json", str(copy), str(unrelated), str(broken)])
    assert result.exit_code == 1  # one image could not be read
    copy_entry, unrelated_entry, broken_entry = json.loads(result.stdout)
    assert copy_entry["matches"][0]["work_title"] == "Harbor"
    assert copy_entry["matches"][0]["page_number"] == 2
    assert unrelated_entry == {"image": str(unrelated), "matches": [], "error": None}
    assert broken_entry["error"].startswith(f"{broken}: ")

    text = CliRunner().invoke(cli, ["match", str(copy), str(unrelated)])
    assert text.exit_code == 0
    assert "confident 'Harbor' page 2 (P)" in text.output
    assert f"{unrelated}: no match" in text.output
