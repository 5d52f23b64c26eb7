"""Registering works through the real `mamoru` CLI against a real PostgreSQL."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from admin.cli import cli
from admin.samples import render_page
from matcher import robust
from matcher.fingerprint import FINGERPRINT_VERSION, from_signed64, hamming
from tests.conftest import table_counts

PUBLISHER = "Example Comics"


def mamoru(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def page_png(path: Path, number: int, title: str = "Test Work") -> Path:
    render_page(title, number).save(path, "PNG")
    return path


def page_jpeg(path: Path, number: int, title: str = "Test Work") -> Path:
    render_page(title, number).save(path, "JPEG", quality=90)
    return path


@pytest.fixture
def publisher(mamoru_env: Path) -> str:
    result = mamoru("publishers", "add", PUBLISHER, "--agent-org", "Example Rights Office")
    assert result.exit_code == 0, result.output
    return PUBLISHER


def add(*args: str | Path) -> Result:
    return mamoru("works", "add", "--publisher", PUBLISHER, *map(str, args))


def add_json(*args: str | Path) -> dict[str, object]:
    result = add("--json", *args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert isinstance(payload, dict)
    return payload


def test_add_images_stores_pages_and_fingerprints(
    publisher: str, tmp_path: Path, db_url: str
) -> None:
    files = [page_png(tmp_path / "p1.png", 1), page_jpeg(tmp_path / "p2.jpg", 2)]
    webp = tmp_path / "p3.webp"
    render_page("Test Work", 3).save(webp, "WEBP", quality=80)
    payload = add_json(
        "--title",
        "Vol 1",
        "--isbn",
        "978-4-00-000000-0",
        "--official-url",
        "https://example.com/v1",
        "--id",
        "asin=B000TEST",
        *files,
        webp,
    )
    assert payload["created"] is True
    pages = payload["pages_added"]
    assert isinstance(pages, list)
    assert [p["page_number"] for p in pages] == [1, 2, 3]
    assert [p["source_name"] for p in pages] == [str(f) for f in [*files, webp]]
    assert [p["media_type"] for p in pages] == ["image/png", "image/jpeg", "image/webp"]
    assert all(p["width"] == 800 and p["height"] == 1200 for p in pages)
    fingerprints_added = payload["fingerprints_added"]
    work = payload["work"]
    assert isinstance(work, dict)
    assert work["isbn"] == "978-4-00-000000-0"
    assert work["identifiers"] == {"asin": "B000TEST"}

    with psycopg.connect(db_url) as conn:
        total = conn.execute("select count(*) from fingerprints").fetchone()
        regions = conn.execute(
            "select count(distinct page_id), min(version) from fingerprints where kind = 'rphash'"
        ).fetchone()
        rows = conn.execute(
            "select p.page_number, f.kind, f.params, f.version, f.variant, f.bits, f.value "
            "from fingerprints f join pages p on p.id = f.page_id "
            "where f.kind in ('phash', 'dhash') order by 1, 2"
        ).fetchall()
    assert total == (fingerprints_added,)
    assert regions == (3, robust.VERSION)  # every page also has its region hashes
    assert [(r[0], r[1]) for r in rows] == [
        (1, "dhash"),
        (1, "phash"),
        (2, "dhash"),
        (2, "phash"),
        (3, "dhash"),
        (3, "phash"),
    ]
    assert {r[3] for r in rows} == {FINGERPRINT_VERSION}
    assert rows[1][2] == {"hash_size": 8, "highfreq_factor": 4}
    assert {(r[4], r[5]) for r in rows} == {("full", 64)}
    # The PNG and its JPEG/WebP re-encodings are different pages, hashed consistently.
    phash = {r[0]: from_signed64(r[6]) for r in rows if r[1] == "phash"}
    assert len(set(phash.values())) == 3


def test_reencoded_copy_hashes_close_to_its_original(publisher: str, tmp_path: Path) -> None:
    png = page_png(tmp_path / "a.png", 1)
    jpeg = tmp_path / "a.jpg"
    Image.open(png).resize((400, 600)).save(jpeg, "JPEG", quality=60)
    first = add_json("--title", "Original", png)
    second = add_json("--title", "Copy", jpeg)
    show_a = json.loads(mamoru("works", "show", str(first["work"]["id"]), "--json").stdout)  # type: ignore[index]
    show_b = json.loads(mamoru("works", "show", str(second["work"]["id"]), "--json").stdout)  # type: ignore[index]
    hashes_a = {f["kind"]: int(f["value"], 16) for f in show_a["pages"][0]["fingerprints"]}
    hashes_b = {f["kind"]: int(f["value"], 16) for f in show_b["pages"][0]["fingerprints"]}
    assert hamming(hashes_a["phash"], hashes_b["phash"]) <= 6
    assert hamming(hashes_a["dhash"], hashes_b["dhash"]) <= 10


def test_same_file_twice_is_one_page(publisher: str, tmp_path: Path, db_url: str) -> None:
    p1 = page_png(tmp_path / "p1.png", 1)
    copy = tmp_path / "copy-of-p1.png"
    copy.write_bytes(p1.read_bytes())
    payload = add_json("--title", "Vol 1", p1, copy)
    assert len(payload["pages_added"]) == 1  # type: ignore[arg-type]
    assert payload["pages_skipped"] == [{"source": str(copy), "reason": f"same content as {p1}"}]
    # Registering again adds nothing and says why.
    p2 = page_png(tmp_path / "p2.png", 2)
    again = add_json("--title", "Vol 1", p1, p2)
    assert again["created"] is False
    assert [p["page_number"] for p in again["pages_added"]] == [2]  # type: ignore[union-attr]
    assert again["pages_skipped"] == [{"source": str(p1), "reason": "already registered as page 1"}]
    assert table_counts(db_url)["pages"] == 2
    assert table_counts(db_url)["works"] == 1


def test_folder_cbz_and_pdf(publisher: str, tmp_path: Path) -> None:
    folder = tmp_path / "vol"
    folder.mkdir()
    for n in (1, 2, 10):
        page_png(folder / f"{n}.png", n, "Folder")
    (folder / "ComicInfo.xml").write_text("<ComicInfo/>")
    payload = add_json("--title", "From folder", folder)
    names = [Path(p["source_name"]).name for p in payload["pages_added"]]  # type: ignore[union-attr]
    assert names == ["1.png", "2.png", "10.png"]

    cbz = tmp_path / "vol2.cbz"
    with zipfile.ZipFile(cbz, "w") as archive:
        for n in (3, 1, 2):
            buffer = io.BytesIO()
            render_page("Archive", n).save(buffer, "JPEG")
            archive.writestr(f"pages/{n:02d}.jpg", buffer.getvalue())
        archive.writestr("ComicInfo.xml", "<ComicInfo/>")
    payload = add_json("--title", "From CBZ", cbz)
    assert [p["source_name"].split(":", 1)[1] for p in payload["pages_added"]] == [  # type: ignore[union-attr]
        "pages/01.jpg",
        "pages/02.jpg",
        "pages/03.jpg",
    ]

    pdf = tmp_path / "book.pdf"
    first, second = render_page("PDF", 1), render_page("PDF", 2)
    first.save(pdf, "PDF", save_all=True, append_images=[second], resolution=100)
    payload = add_json("--title", "From PDF", pdf)
    pages = payload["pages_added"]
    assert isinstance(pages, list)
    assert len(pages) == 2
    assert all(p["media_type"] == "application/pdf" for p in pages)
    # Registering the same PDF again: rendering is deterministic, so nothing new.
    again = add_json("--title", "From PDF", pdf)
    assert again["pages_added"] == []
    assert len(again["pages_skipped"]) == 2  # type: ignore[arg-type]


def test_list_and_show(publisher: str, tmp_path: Path) -> None:
    add_json("--title", "Vol 1", page_png(tmp_path / "a.png", 1))
    listing = mamoru("works", "list", "--json")
    assert listing.exit_code == 0
    [work] = json.loads(listing.stdout)
    assert (work["publisher"], work["title"], work["pages"]) == (PUBLISHER, "Vol 1", 1)
    assert 20 < work["fingerprints"] <= 2 + robust.MAX_REFERENCE_FINGERPRINTS
    text = mamoru("works", "show", str(work["id"]))
    assert text.exit_code == 0
    assert "work" in text.output and "'Vol 1'" in text.output and "phash=" in text.output
    assert "region hashes" in text.output
    missing = mamoru("works", "show", "999999")
    assert missing.exit_code == 1
    assert "no work with id 999999" in missing.output


def test_unknown_publisher(mamoru_env: Path, tmp_path: Path, db_url: str) -> None:
    before = table_counts(db_url)
    result = mamoru("works", "add", "-p", "Nobody", "-t", "X", str(page_png(tmp_path / "a.png", 1)))
    assert result.exit_code == 1
    assert "no publisher named 'Nobody'" in result.output
    assert table_counts(db_url) == before


def test_duplicate_publisher(publisher: str) -> None:
    result = mamoru("publishers", "add", PUBLISHER)
    assert result.exit_code == 1
    assert f"a publisher named '{PUBLISHER}' already exists" in result.output


# --- bad input: a clear one-line error naming the file, and the database unchanged -----------


def corrupt_jpeg(path: Path) -> Path:
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 100)
    return path


def text_file(path: Path) -> Path:
    path.write_text("this is not an image\n")
    return path


def empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def bomb_png(path: Path) -> Path:
    # A valid PNG header declaring 30000 x 30000 pixels: a few hundred bytes on disk.
    width = height = 30_000
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = zlib.compress(b"\x00" * 64)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    )
    return path


def truncated_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    render_page("Trunc", 1).save(buffer, "JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def encrypted_zip(path: Path) -> Path:
    buffer = io.BytesIO()
    render_page("Enc", 1).save(buffer, "PNG")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("001.png", buffer.getvalue())
    # zipfile cannot encrypt; set the "encrypted" flag (bit 0) as `zip -P` would, in the local
    # header (flags at offset 6) and the central directory entry (offset 8).
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + offset
        data[at] |= 0x1
    path.write_bytes(bytes(data))
    return path


def broken_zip(path: Path) -> Path:
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 20 + b"not really a zip")
    return path


def empty_pdf(path: Path) -> Path:
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [] /Count 0 >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    path.write_bytes(out.getvalue())
    return path


def encrypted_pdf(path: Path) -> Path:
    from pypdf import PdfReader, PdfWriter

    plain = path.with_suffix(".plain.pdf")
    render_page("Secret", 1).save(plain, "PDF")
    writer = PdfWriter()
    for page in PdfReader(plain).pages:
        writer.add_page(page)
    writer.encrypt("secret")
    with path.open("wb") as handle:
        writer.write(handle)
    plain.unlink()
    return path


def broken_pdf(path: Path) -> Path:
    path.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\n%%EOF garbage")
    return path


BAD_INPUTS: list[tuple[str, Callable[[Path], Path], str]] = [
    ("corrupt.jpg", corrupt_jpeg, "corrupt.jpg: "),
    ("notes.jpg", text_file, "notes.jpg: not an image"),
    ("empty.png", empty_file, "empty.png: empty file (0 bytes)"),
    ("bomb.png", bomb_png, "bomb.png: image has 900,000,000 pixels, limit is 50,000,000"),
    ("truncated.jpg", truncated_jpeg, "truncated.jpg: "),
    ("locked.cbz", encrypted_zip, "locked.cbz: password-protected archive"),
    ("broken.cbz", broken_zip, "broken.cbz: broken archive"),
    ("nopages.pdf", empty_pdf, "nopages.pdf: PDF has no pages"),
    ("locked.pdf", encrypted_pdf, "locked.pdf: password-protected PDF"),
    ("broken.pdf", broken_pdf, "broken.pdf: broken PDF"),
]


@pytest.mark.parametrize(("name", "build", "message"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_refused_and_nothing_is_written(
    publisher: str,
    tmp_path: Path,
    db_url: str,
    name: str,
    build: Callable[[Path], Path],
    message: str,
) -> None:
    good = page_png(tmp_path / "good.png", 1)
    bad = build(tmp_path / name)
    before = table_counts(db_url)
    # The bad file comes after a good one: the good page must not be written either.
    result = add("--title", "Mixed", good, bad)
    assert result.exit_code == 1, result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error_lines) == 1, result.output
    assert error_lines[0].startswith(f"Error: {tmp_path}/{message}"), error_lines[0]
    assert "Traceback" not in result.output
    assert table_counts(db_url) == before


def test_missing_path(publisher: str, tmp_path: Path, db_url: str) -> None:
    before = table_counts(db_url)
    result = add("--title", "X", tmp_path / "nope.png")
    assert result.exit_code == 1
    assert f"Error: {tmp_path}/nope.png: no such file or directory" in result.output
    assert table_counts(db_url) == before


def test_pixel_limit_is_configurable(
    publisher: str, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from store.config import get_settings

    monkeypatch.setenv("MAMORU_MAX_IMAGE_PIXELS", "1000")
    get_settings.cache_clear()
    result = add("--title", "Small limit", page_png(tmp_path / "a.png", 1))
    assert result.exit_code == 1
    assert "image has 960,000 pixels, limit is 1,000" in result.output
