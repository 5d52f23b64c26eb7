"""The main job on embedded defaults, run as a newcomer would: the installed `mamoru` script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from admin.samples import SAMPLE_WORKS
from store.migrate import available_migrations

MAMORU = str(Path(sys.executable).with_name("mamoru"))


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORU_")}
    env["MAMORU_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [MAMORU, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.slow
def test_demo_registers_sample_works_and_is_repeatable(tmp_path: Path) -> None:
    first = run(tmp_path, "demo")
    assert first.returncode == 0, first.stderr
    assert f"{len(available_migrations())} migration(s) applied now" in first.stdout
    for work in SAMPLE_WORKS:
        assert f"'{work.title}'" in first.stdout
        assert f"{work.pages} page(s) added" in first.stdout
    total_pages = sum(w.pages for w in SAMPLE_WORKS)
    assert f"{len(SAMPLE_WORKS)} sample work(s), {total_pages} page(s)" in first.stdout

    second = run(tmp_path, "demo")
    assert second.returncode == 0, second.stderr
    assert "0 migration(s) applied now" in second.stdout
    assert second.stdout.count("already registered") == len(SAMPLE_WORKS)

    listing = run(tmp_path, "works", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    works = json.loads(listing.stdout)
    assert sorted(w["title"] for w in works) == sorted(w.title for w in SAMPLE_WORKS)
    assert sum(w["pages"] for w in works) == total_pages
    # Two whole-page hashes and about 30 region hashes per page.
    assert all(w["pages"] * 20 < w["fingerprints"] <= w["pages"] * 38 for w in works)

    status = run(tmp_path, "db", "status")
    assert status.returncode == 0
    assert status.stdout.split() == [
        word for m in available_migrations() for word in ("applied", m.filename)
    ]


def test_invalid_configuration_is_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORU_")}
    env["MAMORU_PDF_DPI"] = "lots"
    result = subprocess.run(
        [MAMORU, "works", "list"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("Error: invalid configuration: MAMORU_PDF_DPI:")
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORU_")}
    # Port 9 (discard) on loopback: nothing listens there.
    env["MAMORU_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:9/none?connect_timeout=2"
    result = subprocess.run(
        [MAMORU, "works", "list"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1
    assert "Error: cannot connect to PostgreSQL" in result.stderr
    assert "Traceback" not in result.stderr
