"""Expand command-line paths (images, folders, CBZ/ZIP, PDF) into reference pages.

Everything is validated eagerly, so a bad input fails before any database work; pixels are
decoded again only when a page is loaded, so a long volume is never all in memory at once.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import stat
import struct
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, Literal

import pypdfium2 as pdfium
from PIL import Image

from matcher.decode import (
    DEFAULT_DECODE_LIMITS,
    DecodeLimits,
    check_byte_size,
    decode_image,
    probe_image,
)
from matcher.errors import InputError

Kind = Literal["image", "zip", "pdf", "RAR", "7z"]

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
)
_SUFFIX_KINDS: dict[str, Kind] = {
    **dict.fromkeys(IMAGE_SUFFIXES, "image"),
    ".cbz": "zip",
    ".zip": "zip",
    ".pdf": "pdf",
    # Listed so a folder holding one fails loudly instead of silently losing a volume.
    ".cbr": "RAR",
    ".rar": "RAR",
    ".cb7": "7z",
    ".7z": "7z",
}
_MAGIC_KINDS: tuple[tuple[bytes, Kind], ...] = (
    (b"\xff\xd8\xff", "image"),
    (b"\x89PNG\r\n\x1a\n", "image"),
    (b"GIF87a", "image"),
    (b"GIF89a", "image"),
    (b"BM", "image"),
    (b"II*\x00", "image"),
    (b"MM\x00*", "image"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"Rar!\x1a\x07", "RAR"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
)
_ZIP_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_RATIO_FLOOR = 1024 * 1024
_DIGITS = re.compile(r"([0-9]+)")
_MEMBER_SEPARATORS = re.compile(r"[/\\]")
_PDF_LOAD_ERRORS = {
    1: "unknown error",
    2: "file could not be opened",
    3: "not a PDF or corrupted",
    5: "unsupported security handler",
    6: "page not found or content error",
}
# PDFium is not thread-safe.
PDFIUM_LOCK = threading.Lock()


@dataclass(frozen=True)
class IngestLimits:
    decode: DecodeLimits = DEFAULT_DECODE_LIMITS
    max_archive_bytes: int = 2 * 1024**3
    max_archive_members: int = 10_000
    max_total_uncompressed: int = 4 * 1024**3
    # Checked only for members above 1 MiB: small files legitimately compress very well.
    max_compression_ratio: float = 200.0
    pdf_dpi: int = 150
    max_pdf_pages: int = 5000


DEFAULT_INGEST_LIMITS = IngestLimits()


@dataclass(frozen=True)
class PageSource:
    """One reference page; ``sha256`` identifies its content without decoding it again."""

    name: str
    sha256: bytes
    media_type: str
    loader: Callable[[], LoadedPage] = field(repr=False, compare=False)

    def load(self) -> Image.Image:
        """Decode the page as RGB; InputError if it is corrupt or changed since expansion."""
        return self.loader().image

    def load_stored(self) -> LoadedPage:
        """The decoded page and the bytes to keep in the page store."""
        return self.loader()


@dataclass(frozen=True)
class LoadedPage:
    """A decoded page and what the page store keeps of it: the file as submitted, or a
    lossless PNG of a rendered PDF page (the PDF itself is not a page image)."""

    image: Image.Image
    data: bytes
    media_type: str


def expand_paths(
    paths: Sequence[Path], limits: IngestLimits = DEFAULT_INGEST_LIMITS
) -> list[PageSource]:
    """Pages of every path in command-line order; InputError on the first unusable input."""
    pages: list[PageSource] = []
    for path in paths:
        name = str(path)
        try:
            info = path.stat()
        except OSError as exc:
            raise InputError(name, _os_reason(exc)) from exc
        if stat.S_ISDIR(info.st_mode):
            pages.extend(_folder_pages(path, limits))
        elif not stat.S_ISREG(info.st_mode):
            raise InputError(name, "not a regular file")
        else:
            pages.extend(_file_pages(path, name, info.st_size, limits))
    return pages


def _file_pages(path: Path, name: str, size: int, limits: IngestLimits) -> list[PageSource]:
    if size == 0:
        raise InputError(name, "empty file (0 bytes)")
    with _open_file(path, name) as fp:
        head = fp.read(1024)
    kind = _detect(head, path.suffix.lower())
    if kind == "image":
        return [_image_file_page(path, name, limits.decode)]
    if kind == "zip":
        return _zip_pages(path, name, size, limits)
    if kind == "pdf":
        return _pdf_pages(path, name, limits)
    if kind is not None:
        raise InputError(name, f"unsupported archive format ({kind}); repack it as CBZ")
    raise InputError(name, "not an image, CBZ/ZIP archive or PDF")


def _detect(head: bytes, suffix: str) -> Kind | None:
    for magic, kind in _MAGIC_KINDS:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    # The PDF header may legally follow up to 1 KiB of junk.
    if b"%PDF-" in head:
        return "pdf"
    return _SUFFIX_KINDS.get(suffix)


def natural_key(name: str) -> tuple[tuple[tuple[str | int, ...], str], ...]:
    # Per path component, so "ch2/p1" sorts before "ch10/p1"; the raw text breaks ties
    # such as "p01" and "p1" deterministically.
    return tuple(
        (
            tuple(
                int(chunk) if i % 2 else chunk.casefold()
                for i, chunk in enumerate(_DIGITS.split(part))
            ),
            part,
        )
        for part in _MEMBER_SEPARATORS.split(name)
    )


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file or directory"
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _open_file(path: Path, name: str) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise InputError(name, _os_reason(exc)) from exc


def _check_unchanged(actual: bytes, expected: bytes, source: str) -> None:
    if actual != expected:
        raise InputError(source, "changed since it was checked; run the command again")


# Folders


def _folder_pages(folder: Path, limits: IngestLimits) -> list[PageSource]:
    pages: list[PageSource] = []
    for path in _folder_files(folder, set()):
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise InputError(str(path), _os_reason(exc)) from exc
        pages.extend(_file_pages(path, str(path), size, limits))
    if not pages:
        raise InputError(str(folder), "folder contains no images")
    return pages


def _folder_files(folder: Path, seen: set[Path]) -> Iterator[Path]:
    try:
        real = folder.resolve()
        if real in seen:  # a symlink back up the tree would otherwise recurse forever
            return
        seen.add(real)
        entries = sorted(folder.iterdir(), key=lambda entry: natural_key(entry.name))
    except (OSError, RuntimeError) as exc:
        reason = _os_reason(exc) if isinstance(exc, OSError) else str(exc)
        raise InputError(str(folder), reason) from exc
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _folder_files(entry, seen)
        elif entry.suffix.lower() in _SUFFIX_KINDS and entry.is_file():
            yield entry


# Image files


def _read_image_file(path: Path, name: str, limits: DecodeLimits) -> bytes:
    with _open_file(path, name) as fp:
        data = fp.read(limits.max_bytes + 1)
    check_byte_size(len(data), source=name, limits=limits)
    return data


def _image_file_page(path: Path, name: str, limits: DecodeLimits) -> PageSource:
    data = _read_image_file(path, name, limits)
    info = probe_image(data, source=name, limits=limits)
    digest = hashlib.sha256(data).digest()
    return PageSource(
        name, digest, info.media_type, partial(_load_image_file, path, name, digest, limits)
    )


def _load_image_file(path: Path, name: str, digest: bytes, limits: DecodeLimits) -> LoadedPage:
    data = _read_image_file(path, name, limits)
    _check_unchanged(hashlib.sha256(data).digest(), digest, name)
    image = decode_image(data, source=name, limits=limits)
    return LoadedPage(image, data, probe_image(data, source=name, limits=limits).media_type)


# CBZ / ZIP


@contextmanager
def _open_zip(path: Path, name: str) -> Iterator[zipfile.ZipFile]:
    with _open_file(path, name) as fp:
        try:
            archive = zipfile.ZipFile(fp)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
            raise InputError(name, f"broken archive ({exc})") from exc
        with archive:
            yield archive


def _is_page_member(info: zipfile.ZipInfo) -> bool:
    parts = _MEMBER_SEPARATORS.split(info.filename)
    # ".." is no hidden file: such names are only ever labels here, never extraction paths.
    hidden = any(
        (part.startswith(".") and part not in (".", "..")) or part == "__MACOSX" for part in parts
    )
    return not info.is_dir() and not hidden and Path(parts[-1]).suffix.lower() in IMAGE_SUFFIXES


def _page_members(
    archive: zipfile.ZipFile, name: str, limits: IngestLimits
) -> list[zipfile.ZipInfo]:
    infos = archive.infolist()
    count, max_count = len(infos), limits.max_archive_members
    if count > max_count:
        raise InputError(name, f"archive exceeds limit: {count:,} members, limit is {max_count:,}")
    if any(info.flag_bits & 0x1 for info in infos):
        raise InputError(name, "password-protected archive")
    members = sorted(filter(_is_page_member, infos), key=lambda info: natural_key(info.filename))
    total = sum(info.file_size for info in members)
    if total > limits.max_total_uncompressed:
        raise InputError(
            name,
            f"archive exceeds limit: {total:,} bytes uncompressed, "
            f"limit is {limits.max_total_uncompressed:,}",
        )
    for info in members:
        source = f"{name}:{info.filename}"
        if info.compress_type not in _ZIP_METHODS:
            raise InputError(source, f"unsupported compression method {info.compress_type}")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_FLOOR and ratio > limits.max_compression_ratio:
            raise InputError(
                source,
                f"archive exceeds limit: compression ratio {ratio:,.0f}:1, "
                f"limit is {limits.max_compression_ratio:,.0f}:1",
            )
        check_byte_size(info.file_size, source=source, limits=limits.decode)
    return members


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> bytes:
    try:
        # Reads stop at the declared size, which the checks above already bounded.
        return archive.read(info)
    except MemoryError:
        raise
    except Exception as exc:  # zlib, bz2, lzma and zipfile each raise their own types
        raise InputError(source, f"broken archive ({exc})") from exc


def _zip_pages(path: Path, name: str, size: int, limits: IngestLimits) -> list[PageSource]:
    if size > limits.max_archive_bytes:
        raise InputError(
            name, f"archive exceeds limit: {size:,} bytes, limit is {limits.max_archive_bytes:,}"
        )
    pages: list[PageSource] = []
    with _open_zip(path, name) as archive:
        for info in _page_members(archive, name, limits):
            source = f"{name}:{info.filename}"
            data = _read_member(archive, info, source)
            media_type = probe_image(data, source=source, limits=limits.decode).media_type
            digest = hashlib.sha256(data).digest()
            loader = partial(_load_member, path, name, info, digest, limits.decode)
            pages.append(PageSource(source, digest, media_type, loader))
    if not pages:
        raise InputError(name, "archive contains no images")
    return pages


def _load_member(
    path: Path, name: str, info: zipfile.ZipInfo, digest: bytes, limits: DecodeLimits
) -> LoadedPage:
    source = f"{name}:{info.filename}"
    with _open_zip(path, name) as archive:
        data = _read_member(archive, info, source)
    _check_unchanged(hashlib.sha256(data).digest(), digest, source)
    image = decode_image(data, source=source, limits=limits)
    return LoadedPage(image, data, probe_image(data, source=source, limits=limits).media_type)


# PDF


def _open_pdf(path: Path, name: str) -> Any:
    # Loaded through the raw API because pypdfium2 reports an empty document with
    # FPDF_GetLastError(), which PDFium leaves stale after a successful load.
    raw = pdfium.raw.FPDF_LoadDocument(os.fsencode(path), None)
    if not raw:
        code = pdfium.raw.FPDF_GetLastError()
        if code == pdfium.raw.FPDF_ERR_PASSWORD:
            raise InputError(name, "password-protected PDF")
        raise InputError(name, f"broken PDF ({_PDF_LOAD_ERRORS.get(code, f'PDFium error {code}')})")
    pdf = pdfium.PdfDocument(raw)
    if len(pdf) == 0:
        pdf.close()
        raise InputError(name, "PDF has no pages")
    return pdf


def _pdf_scale(width: float, height: float, dpi: int, max_pixels: int) -> float:
    scale = dpi / 72
    if math.ceil(width * scale) * math.ceil(height * scale) <= max_pixels:
        return scale
    # Largest s with (w*s + 1) * (h*s + 1) <= max_pixels, which bounds the rounded-up
    # bitmap size PDFium will allocate.
    area, sides = width * height, width + height
    root = math.sqrt(sides**2 + 4 * area * (max_pixels - 1))
    return (root - sides) / (2 * area)


def render_pdf_page(pdf: Any, index: int, source: str, *, dpi: int, max_pixels: int) -> Image.Image:
    """Page ``index`` of an open PDFium document as RGB, at ``dpi`` but never above
    ``max_pixels``. Callers hold ``PDFIUM_LOCK``: PDFium is not thread-safe."""
    try:
        page = pdf[index]
        try:
            width, height = page.get_size()
            if not (width > 0 and height > 0):
                raise ValueError("page has no area")
            bitmap = page.render(scale=_pdf_scale(width, height, dpi, max_pixels))
            # Rendered as BGR, so Pillow copies the pixels out of PDFium's buffer.
            image: Image.Image = bitmap.to_pil()
            bitmap.close()
        finally:
            page.close()
    except (pdfium.PdfiumError, ValueError, IndexError) as exc:
        raise InputError(source, f"broken PDF ({exc})") from exc
    return image if image.mode == "RGB" else image.convert("RGB")


def _render(pdf: Any, index: int, source: str, limits: IngestLimits) -> Image.Image:
    return render_pdf_page(
        pdf, index, source, dpi=limits.pdf_dpi, max_pixels=limits.decode.max_pixels
    )


def _pixel_digest(image: Image.Image) -> bytes:
    digest = hashlib.sha256(struct.pack(">II", *image.size))
    digest.update(image.tobytes())
    return digest.digest()


def _pdf_pages(path: Path, name: str, limits: IngestLimits) -> list[PageSource]:
    pages: list[PageSource] = []
    with PDFIUM_LOCK, _open_pdf(path, name) as pdf:
        count = len(pdf)
        if count > limits.max_pdf_pages:
            raise InputError(name, f"PDF has {count:,} pages, limit is {limits.max_pdf_pages:,}")
        for index in range(count):
            source = f"{name}#page={index + 1}"
            with _render(pdf, index, source, limits) as image:
                digest = _pixel_digest(image)
            loader = partial(_load_pdf_page, path, name, index, digest, limits)
            pages.append(PageSource(source, digest, "application/pdf", loader))
    return pages


def _load_pdf_page(
    path: Path, name: str, index: int, digest: bytes, limits: IngestLimits
) -> LoadedPage:
    source = f"{name}#page={index + 1}"
    with PDFIUM_LOCK, _open_pdf(path, name) as pdf:
        image = _render(pdf, index, source, limits)
    _check_unchanged(_pixel_digest(image), digest, source)
    png = io.BytesIO()
    image.save(png, format="PNG", compress_level=6)
    return LoadedPage(image, png.getvalue(), "image/png")
