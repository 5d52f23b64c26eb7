"""Identifying copies of registered pages against a real PostgreSQL, and `mamoru match`."""

from __future__ import annotations

import io
import json
from pathlib import Path

from click.testing import CliRunner
from PIL import Image, ImageDraw

from admin.cli import cli
from admin.publishers import add_publisher
from admin.samples import render_page
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
    assert index.refresh() == 16  # 8 pages x (pHash, dHash)

    [best, *_] = index.identify(pirate_copy("Garden", 3))
    assert (best.page.work_title, best.page.page_number) == ("Garden", 3)
    assert best.decision == "confident"
    assert "pHash distance" in best.explanation
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
