"""The main job on embedded defaults, run as a newcomer would: the installed `mamoru` script."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
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
def test_demo_runs_the_whole_job_and_is_repeatable(tmp_path: Path) -> None:
    first = run(tmp_path, "demo", "--exit")
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert f"{len(available_migrations())} migration(s) applied now" in out
    for work in SAMPLE_WORKS:
        assert f"'{work.title}'" in out
        assert f"{work.pages} page(s) added" in out
    total_pages = sum(w.pages for w in SAMPLE_WORKS)
    assert f"{len(SAMPLE_WORKS)} sample work(s), {total_pages} page(s)" in out
    assert "sample pirate site MangaFX serving at http://127.0.0.1:" in out
    assert "crawl 1: finished  pages    9  images   65  matches   22" in out
    # Full-size copies are auto-approved and noticed; thumbnails wait for review.
    assert re.search(r"matches +22: 17 auto-approved .*, 5 waiting for review", out), out
    assert re.search(r"notices +1 drafted, 1 sent to the outbox", out), out
    [eml] = (tmp_path / "outbox").glob("*.eml")  # nothing left the machine
    notice = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert notice["To"] == "abuse@mangafx.test"
    body = notice.get_body(("plain",))
    assert body is not None and "/cdn/moonlit-harbor/1/01.jpg" in body.get_content()

    second = run(tmp_path, "demo", "--exit")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "0 migration(s) applied now" in second.stdout
    assert second.stdout.count("already registered") == len(SAMPLE_WORKS)
    assert "crawl 2: finished" in second.stdout
    # The same copies at the same URLs: nothing new to review or to notice.
    assert re.search(r"matches +22: 17 auto-approved", second.stdout), second.stdout
    assert re.search(r"notices +1 drafted, 1 sent", second.stdout), second.stdout
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1

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


@pytest.mark.slow
def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORU_")}
    env["MAMORU_DATA_DIR"] = str(tmp_path)
    demo = subprocess.Popen(
        [MAMORU, "demo"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert demo.stdout is not None
    lines = []
    for line in demo.stdout:
        lines.append(line)
        if "Press Ctrl-C" in line:
            break
    assert any("summary" in line for line in lines), "".join(lines)
    started = _children_of(demo.pid)
    assert started  # the worker (and the admin, when built in)
    demo.send_signal(signal.SIGINT)
    rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, rest
    assert "stopped" in rest
    for pid in started:
        assert not _alive(pid), f"child {pid} still running"


def _children_of(pid: int) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [int(p) for p in found]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent's wait is missing.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


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
