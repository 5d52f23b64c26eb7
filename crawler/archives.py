"""Pages inside downloaded archives (CBZ/ZIP, PDF), read from bytes in memory.

The same refusals as ``matcher.sources`` applies to files an operator registers (member
count, encryption, compression ratio, member size, page count), because a pirate's archive is
hostile input too. ZIP members are handed on as their own bytes; PDF pages have none, so each
is rendered on demand by a loader (PDFium is not thread-safe: one lock for the process).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from io import BytesIO
from typing import Final

import pypdfium2 as pdfium
from PIL import Image

from matcher.errors import InputError
from matcher.sources import IMAGE_SUFFIXES, PDFIUM_LOCK, natural_key, render_pdf_page

__all__ = ["ArchiveLimits", "ArchivePage", "archive_kind", "archive_pages"]

_ZIP_METHODS: Final = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_RATIO_FLOOR: Final = 1024 * 1024


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int = 10_000
    max_member_bytes: int = 100 * 1024 * 1024
    max_total_uncompressed: int = 4 * 1024**3
    max_compression_ratio: float = 200.0
    max_pdf_pages: int = 5000
    pdf_dpi: int = 150
    max_pixels: int = 50_000_000


@dataclass(frozen=True)
class ArchivePage:
    """One page: ``fragment`` names it inside the archive (``page-001.png``, ``page=3``)."""

    fragment: str
    data: bytes | None = None
    loader: Callable[[], Image.Image] | None = None
    media_type: str | None = None


def archive_kind(data: bytes) -> str | None:
    """``"zip"``, ``"pdf"`` or ``None``, from the content (a URL's extension may lie)."""
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if b"%PDF-" in data[:1024]:
        return "pdf"
    return None


def archive_pages(data: bytes, name: str, limits: ArchiveLimits) -> list[ArchivePage]:
    """Every page of the archive in reading order; InputError if it is unusable."""
    kind = archive_kind(data)
    if kind == "zip":
        return _zip_pages(data, name, limits)
    if kind == "pdf":
        return _pdf_pages(data, name, limits)
    raise InputError(name, "not a CBZ/ZIP archive or PDF")


def _is_page(info: zipfile.ZipInfo) -> bool:
    parts = re.split(r"[/\\]", info.filename)
    hidden = any((p.startswith(".") and p not in (".", "..")) or p == "__MACOSX" for p in parts)
    suffix = parts[-1][parts[-1].rfind(".") :].lower() if "." in parts[-1] else ""
    return not info.is_dir() and not hidden and suffix in IMAGE_SUFFIXES


def _zip_pages(data: bytes, name: str, limits: ArchiveLimits) -> list[ArchivePage]:
    try:
        archive = zipfile.ZipFile(BytesIO(data))
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise InputError(name, f"broken archive ({exc})") from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            raise InputError(name, f"archive has {len(infos):,} members")
        if any(info.flag_bits & 0x1 for info in infos):
            raise InputError(name, "password-protected archive")
        members = sorted(filter(_is_page, infos), key=lambda i: natural_key(i.filename))
        if sum(i.file_size for i in members) > limits.max_total_uncompressed:
            raise InputError(name, "archive too large uncompressed")
        pages: list[ArchivePage] = []
        for info in members:
            source = f"{name}#{info.filename}"
            ratio = info.file_size / max(info.compress_size, 1)
            if info.compress_type not in _ZIP_METHODS:
                raise InputError(source, f"unsupported compression method {info.compress_type}")
            if info.file_size > _RATIO_FLOOR and ratio > limits.max_compression_ratio:
                raise InputError(source, f"compression ratio {ratio:,.0f}:1 (zip bomb?)")
            if info.file_size > limits.max_member_bytes:
                raise InputError(source, f"member too large ({info.file_size:,} bytes)")
            try:
                member = archive.read(info)
            except MemoryError:
                raise
            except Exception as exc:  # zlib, bz2, lzma and zipfile each raise their own
                raise InputError(source, f"broken archive ({exc})") from exc
            pages.append(ArchivePage(info.filename, data=member))
    if not pages:
        raise InputError(name, "archive contains no images")
    return pages


def _pdf_pages(data: bytes, name: str, limits: ArchiveLimits) -> list[ArchivePage]:
    with PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            raise InputError(name, f"broken or encrypted PDF ({exc})") from exc
        try:
            count = len(pdf)
        finally:
            pdf.close()
    if count == 0:
        raise InputError(name, "PDF has no pages")
    if count > limits.max_pdf_pages:
        raise InputError(name, f"PDF has {count:,} pages, limit is {limits.max_pdf_pages:,}")
    return [
        ArchivePage(
            f"page={index + 1}",
            loader=partial(_render, data, index, f"{name}#page={index + 1}", limits),
            media_type="image/png",
        )
        for index in range(count)
    ]


def _render(data: bytes, index: int, source: str, limits: ArchiveLimits) -> Image.Image:
    with PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            raise InputError(source, f"broken PDF ({exc})") from exc
        try:
            return render_pdf_page(
                pdf, index, source, dpi=limits.pdf_dpi, max_pixels=limits.max_pixels
            )
        finally:
            pdf.close()
