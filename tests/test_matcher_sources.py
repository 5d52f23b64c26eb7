"""Expanding command-line paths into pages, and refusing every unusable input by name."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pypdf
import pytest
from PIL import Image

from matcher.decode import DecodeLimits
from matcher.errors import InputError
from matcher.sources import IngestLimits, PageSource, expand_paths

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)


def encode(image: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def solid(color: tuple[int, int, int], size: tuple[int, int] = (24, 32)) -> bytes:
    return encode(Image.new("RGB", size, color))


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for member, data in members.items():
            if member.endswith("/"):
                archive.mkdir(member.rstrip("/"))
            else:
                archive.writestr(member, data)
    return path


def make_pdf(path: Path, colors: list[tuple[int, int, int]]) -> Path:
    # Pillow writes one point per pixel, so a 200x300 image is a 200x300 pt page.
    pages = [
        Image.new("RGB", (200, 300) if i % 2 == 0 else (300, 200), c) for i, c in enumerate(colors)
    ]
    pages[0].save(path, "PDF", save_all=True, append_images=pages[1:])
    return path


def empty_pdf() -> bytes:
    objects = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[]/Count 0>>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def png_header(width: int, height: int) -> bytes:
    def chunk(tag: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + body))
        return struct.pack(">I", len(body)) + tag + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def error_text(paths: list[Path], limits: IngestLimits | None = None) -> str:
    with pytest.raises(InputError) as caught:
        expand_paths(paths, limits or IngestLimits())
    return str(caught.value)


def load_error(page: PageSource) -> str:
    with pytest.raises(InputError) as caught:
        page.load()
    return str(caught.value)


def center(page: PageSource) -> tuple[int, ...]:
    image = page.load()
    assert image.mode == "RGB"
    pixel = image.getpixel((image.width // 2, image.height // 2))
    assert isinstance(pixel, tuple)
    return pixel


# Valid inputs


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("WEBP", "image/webp"),
        ("GIF", "image/gif"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
    ],
)
def test_image_file(tmp_path: Path, fmt: str, media_type: str) -> None:
    data = encode(Image.new("RGB", (24, 32), BLUE), fmt)
    path = write(tmp_path / "page.img", data)

    [page] = expand_paths([path])

    assert page.name == str(path)
    assert page.sha256 == hashlib.sha256(data).digest()
    assert page.media_type == media_type
    assert page.load().size == (24, 32)
    assert max(abs(a - b) for a, b in zip(center(page), BLUE, strict=True)) <= 8


def test_content_beats_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "page.jpg", solid(RED))
    [page] = expand_paths([path])
    assert page.media_type == "image/png"


def test_folder_natural_order_skips_junk(tmp_path: Path) -> None:
    book = tmp_path / "book"
    for name in ["p10.png", "p2.png", "P3.PNG", "p1.png", "ch10/a.png", "ch2/a.png"]:
        write(book / name, solid(GREEN))
    write(book / "Thumbs.db", b"\x00junk")
    write(book / "ComicInfo.xml", b"<ComicInfo/>")
    write(book / "notes.txt", b"scan notes")
    write(book / ".hidden.png", solid(RED))
    write(book / ".git" / "x.png", solid(RED))

    pages = expand_paths([book])

    names = [Path(page.name).relative_to(book).as_posix() for page in pages]
    assert names == ["ch2/a.png", "ch10/a.png", "p1.png", "p2.png", "P3.PNG", "p10.png"]


def test_folder_expands_archives_and_pdfs_in_place(tmp_path: Path) -> None:
    book = tmp_path / "book"
    write(book / "a.png", solid(RED))
    make_zip(book / "b.cbz", {"1.png": solid(GREEN)})
    make_pdf(book / "c.pdf", [BLUE])

    names = [page.name for page in expand_paths([book])]

    assert names == [str(book / "a.png"), f"{book / 'b.cbz'}:1.png", f"{book / 'c.pdf'}#page=1"]


def test_command_line_order_is_kept(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "z.pdf", [RED])
    image = write(tmp_path / "a.png", solid(GREEN))
    folder = tmp_path / "m"
    write(folder / "1.png", solid(BLUE))

    names = [page.name for page in expand_paths([pdf, image, folder])]

    assert names == [f"{pdf}#page=1", str(image), str(folder / "1.png")]


def test_cbz_members_in_natural_order(tmp_path: Path) -> None:
    members = {
        "vol/": b"",
        "vol/p10.png": solid(BLUE),
        "vol/p2.png": solid(GREEN),
        "vol/p1.png": solid(RED),
        "ComicInfo.xml": b"<ComicInfo/>",
        "__MACOSX/vol/._p1.png": b"\x00\x05\x16\x07resource fork",
        "__MACOSX/vol/p3.png": solid(RED),
        "vol/.p0.png": solid(RED),
        "extras.zip": b"PK\x05\x06" + b"\x00" * 18,
        "extras.cbz": b"not even read",
    }
    path = make_zip(tmp_path / "vol.cbz", members)

    pages = expand_paths([path])

    assert [page.name for page in pages] == [f"{path}:vol/p{n}.png" for n in (1, 2, 10)]
    assert [page.sha256 for page in pages] == [
        hashlib.sha256(members[f"vol/p{n}.png"]).digest() for n in (1, 2, 10)
    ]
    assert {page.media_type for page in pages} == {"image/png"}
    assert [center(page) for page in pages] == [RED, GREEN, BLUE]


def test_zip_member_names_escaping_the_archive_are_only_names(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "vol.zip", {"../../evil.png": solid(RED), "/abs.png": solid(BLUE)})

    pages = expand_paths([path])

    assert sorted(page.name for page in pages) == sorted(
        f"{path}:{info.filename}" for info in zipfile.ZipFile(path).infolist()
    )
    assert sorted(center(page) for page in pages) == sorted([RED, BLUE])
    assert not (tmp_path.parent.parent / "evil.png").exists()


def test_pdf_pages(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "book.pdf", [RED, BLUE])

    pages = expand_paths([path])
    again = expand_paths([path])

    assert [page.name for page in pages] == [f"{path}#page=1", f"{path}#page=2"]
    assert {page.media_type for page in pages} == {"application/pdf"}
    assert [page.sha256 for page in pages] == [page.sha256 for page in again]
    assert pages[0].sha256 != pages[1].sha256
    images = [page.load() for page in pages]
    # 200x300 pt at 150 dpi
    assert [image.size for image in images] == [(417, 625), (625, 417)]
    for page, image in zip(pages, images, strict=True):
        digest = hashlib.sha256(struct.pack(">II", *image.size) + image.tobytes()).digest()
        assert page.sha256 == digest
    assert [center(page) for page in pages] == [(254, 0, 0), (0, 0, 254)]


def test_pdf_scale_respects_pixel_limit(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "book.pdf", [RED, BLUE])
    limits = IngestLimits(decode=DecodeLimits(max_pixels=10_000))

    sizes = [page.load().size for page in expand_paths([path], limits)]

    assert all(width * height <= 10_000 for width, height in sizes)
    assert all(width * height > 9_000 for width, height in sizes)


def test_load_notices_a_file_changed_after_expansion(tmp_path: Path) -> None:
    path = write(tmp_path / "a.png", solid(RED))
    [page] = expand_paths([path])
    write(path, solid(BLUE))

    assert load_error(page) == f"{path}: changed since it was checked; run the command again"


# Bad inputs


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.cbz"
    assert error_text([path]) == f"{path}: no such file or directory"


def test_zero_byte_file(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.jpg", b"")
    assert error_text([path]) == f"{path}: empty file (0 bytes)"


def test_zero_byte_file_in_folder(tmp_path: Path) -> None:
    write(tmp_path / "pages" / "001.png", solid(RED))
    path = write(tmp_path / "pages" / "002.png", b"")
    assert error_text([tmp_path / "pages"]) == f"{path}: empty file (0 bytes)"


def test_explicit_non_image(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", b"just text")
    assert error_text([path]) == f"{path}: not an image, CBZ/ZIP archive or PDF"


def test_not_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    assert error_text([path]) == f"{path}: not a regular file"


def test_text_named_as_image_in_folder(tmp_path: Path) -> None:
    write(tmp_path / "pages" / "002.jpg", solid(RED))
    path = write(tmp_path / "pages" / "003.jpg", b"chapter 3 notes")
    text = error_text([tmp_path / "pages"])
    assert text == f"{path}: not an image (cannot identify image format)"


def test_corrupt_image_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.png", b"\x89PNG\r\n\x1a\n" + b"x" * 30)
    assert error_text([path]) == f"{path}: corrupt image header (Truncated File Read)"


def test_decompression_bomb_file(tmp_path: Path) -> None:
    path = write(tmp_path / "scan.png", png_header(20_000, 20_000))
    assert error_text([path]) == (
        f"{path}: image has 400,000,000 pixels, limit is 50,000,000 (possible decompression bomb)"
    )


def test_truncated_jpeg_fails_at_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")
    path = write(tmp_path / "cut.jpg", data[: len(data) // 2])

    [page] = expand_paths([path])

    assert load_error(page) == f"{path}: truncated image data"


def test_empty_folder(tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    write(folder / "Thumbs.db", b"\x00")
    write(folder / ".DS_Store", b"\x00")
    assert error_text([folder]) == f"{folder}: folder contains no images"


def test_unsupported_archive_format(tmp_path: Path) -> None:
    path = write(tmp_path / "vol.cbr", b"Rar!\x1a\x07\x01\x00" + b"\x00" * 40)
    assert error_text([path]) == f"{path}: unsupported archive format (RAR); repack it as CBZ"


def test_password_protected_zip(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "vol1.cbz", {"p1.png": solid(RED)}, zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    # The "encrypted" general-purpose flag, in the local and the central header.
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        data[data.index(signature) + flag_offset] |= 0x1
    path.write_bytes(bytes(data))

    assert error_text([path]) == f"{path}: password-protected archive"


def test_random_bytes_with_cbz_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "vol.cbz", np.random.default_rng(5).bytes(500))
    assert error_text([path]) == f"{path}: broken archive (File is not a zip file)"


def test_zip_with_truncated_central_directory(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "vol.zip", {f"p{i}.png": solid(RED) for i in range(3)})
    data = path.read_bytes()
    directory, end = data.index(b"PK\x01\x02"), data.index(b"PK\x05\x06")
    path.write_bytes(data[: directory + 10] + data[end:])

    text = error_text([path])

    assert text == f"{path}: broken archive (Bad magic number for central directory)"


def test_zip_member_with_bad_crc(tmp_path: Path) -> None:
    page = solid(RED)
    path = make_zip(tmp_path / "vol.cbz", {"p1.png": page}, zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    data[data.index(page) + len(page) - 5] ^= 0xFF
    path.write_bytes(bytes(data))

    assert error_text([path]) == f"{path}:p1.png: broken archive (Bad CRC-32 for file 'p1.png')"


def test_zip_member_that_is_not_an_image(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "vol.cbz", {"p1.png": solid(RED), "p2.png": b"<html>oops</html>"})
    text = error_text([path])
    assert text == f"{path}:p2.png: not an image (cannot identify image format)"


def test_zip_without_images(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "vol.cbz", {"ComicInfo.xml": b"<ComicInfo/>", "inner.cbz": b"x"})
    assert error_text([path]) == f"{path}: archive contains no images"


def test_zip_with_too_many_members(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "vol.cbz", {f"p{i}.png": solid(RED) for i in range(4)})
    text = error_text([path], IngestLimits(max_archive_members=3))
    assert text == f"{path}: archive exceeds limit: 4 members, limit is 3"


def test_zip_bomb_by_compression_ratio(tmp_path: Path) -> None:
    # A genuine 3 MiB page of white compresses about 1000:1.
    page = encode(Image.new("RGB", (1024, 1024), (255, 255, 255)), "BMP")
    path = make_zip(tmp_path / "vol.cbz", {"p1.bmp": page})
    [info] = zipfile.ZipFile(path).infolist()
    ratio = info.file_size / info.compress_size
    assert ratio > 200

    text = error_text([path])

    assert text == (
        f"{path}:p1.bmp: archive exceeds limit: compression ratio {ratio:,.0f}:1, limit is 200:1"
    )
    assert len(expand_paths([path], IngestLimits(max_compression_ratio=ratio + 1))) == 1


def test_zip_total_uncompressed_limit(tmp_path: Path) -> None:
    pages = {f"p{i}.png": solid(RED) for i in range(2)}
    path = make_zip(tmp_path / "vol.cbz", pages)
    total = sum(len(data) for data in pages.values())

    text = error_text([path], IngestLimits(max_total_uncompressed=total - 1))

    assert (
        text
        == f"{path}: archive exceeds limit: {total:,} bytes uncompressed, limit is {total - 1:,}"
    )


def test_zip_file_size_limit(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "vol.cbz", {"p1.png": solid(RED)})
    size = path.stat().st_size
    text = error_text([path], IngestLimits(max_archive_bytes=100))
    assert text == f"{path}: archive exceeds limit: {size:,} bytes, limit is 100"


def test_password_protected_pdf(tmp_path: Path) -> None:
    plain = make_pdf(tmp_path / "plain.pdf", [RED])
    writer = pypdf.PdfWriter(clone_from=plain)
    writer.encrypt("secret", algorithm="RC4-128")
    path = tmp_path / "locked.pdf"
    writer.write(path)

    assert error_text([path]) == f"{path}: password-protected PDF"


def test_broken_pdf(tmp_path: Path) -> None:
    path = write(tmp_path / "book.pdf", b"%PDF-1.4\nthis is not really a PDF")
    assert error_text([path]) == f"{path}: broken PDF (not a PDF or corrupted)"


def test_pdf_without_pages(tmp_path: Path) -> None:
    path = write(tmp_path / "book.pdf", empty_pdf())
    assert error_text([path]) == f"{path}: PDF has no pages"


def test_pdf_with_too_many_pages(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "book.pdf", [RED, BLUE])
    assert (
        error_text([path], IngestLimits(max_pdf_pages=1)) == f"{path}: PDF has 2 pages, limit is 1"
    )
