"""Pictures and archives for the fixture sites, drawn by code and cached per process.

Copies of registered works come from ``admin.samples.render_page``, so the crawler's matcher can
identify them; everything else (logos, ads, other art) is either drawn here or rendered for a
title that is not a sample work, so it must match nothing.
"""

from __future__ import annotations

import base64
import io
import random
import zipfile
import zlib
from collections.abc import Sequence
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from admin.samples import render_page

MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
EXTENSION = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}


@lru_cache(maxsize=64)
def page(title: str, number: int) -> Image.Image:
    """Full-size page (800x1200). Shared by every caller: copy before drawing on it."""
    return render_page(title, number)


def encode(img: Image.Image, fmt: str = "JPEG", *, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        img.convert("RGB").save(buffer, fmt, quality=quality)
    elif fmt == "WEBP":
        img.save(buffer, fmt, quality=quality)
    else:
        img.save(buffer, fmt)
    return buffer.getvalue()


@lru_cache(maxsize=64)
def half_page(title: str, number: int) -> Image.Image:
    """``page`` at 400x600: small renditions start here, four times fewer pixels to filter."""
    return page(title, number).reduce(2)


def scaled(img: Image.Image, width: int) -> Image.Image:
    height = round(img.height * width / img.width)
    return img.resize((width, height), Image.Resampling.LANCZOS)


@lru_cache(maxsize=256)
def rendition(
    title: str, number: int, width: int = 240, fmt: str = "JPEG", quality: int = 85
) -> bytes:
    """Page ``number`` of ``title`` scaled to ``width`` pixels: small, so fixtures stay fast.

    Fixture pages give each image a different width, so no two URLs serve the same bytes and a
    crawler that skips bytes it has seen still records every URL it was asked to find.
    """
    source = half_page(title, number) if width <= 400 else page(title, number)
    return encode(scaled(source, width), fmt, quality=quality)


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def watermarked(img: Image.Image, text: str) -> Image.Image:
    """``img`` with ``text`` in the bottom-right corner on a light box, as scanlation sites do."""
    marked = img.convert("RGB")
    draw = ImageDraw.Draw(marked)
    face = font(max(12, img.width // 28))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
    w, h = right - left, bottom - top
    x, y = img.width - w - 14, img.height - h - 14
    draw.rectangle((x - 6, y - 4, x + w + 6, y + h + 8), fill=(255, 255, 255))
    draw.text((x - left, y - top), text, fill=(200, 20, 20), font=face)
    return marked


def banner(text: str, size: tuple[int, int], *, seed: str = "", fmt: str = "PNG") -> bytes:
    """A loud flat graphic (logo, ad): colours and stripes seeded by ``seed`` or the text."""
    rng = random.Random(zlib.crc32((seed or text).encode()))  # noqa: S311 (drawing, not secrets)
    colour = tuple(rng.randint(40, 255) for _ in range(3))
    img = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(img)
    for x in range(-size[1], size[0], 24):
        stripe = tuple(rng.randint(0, 255) for _ in range(3))
        draw.line([(x, size[1]), (x + size[1], 0)], fill=stripe, width=6)
    face = font(max(10, size[1] // 3))
    draw.text(
        (12, size[1] // 3), text, fill=(255, 255, 255), font=face, stroke_width=2, stroke_fill=0
    )
    return encode(img, fmt, quality=80)


@lru_cache(maxsize=1)
def tiny_gif() -> bytes:
    """The 1x1 grey GIF lazy loaders put in ``src`` until the real image is due."""
    return encode(Image.new("P", (1, 1), 0), "GIF")


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def scrambled(img: Image.Image, grid: tuple[int, int], order: Sequence[int]) -> Image.Image:
    """Tiles of ``img`` shuffled as a canvas reader's server sends them.

    ``order[dst] = src``: the tile shown at position ``dst`` is stored at position ``src``; the
    reader's script draws tile ``src`` back to ``dst``. Tiles should be multiples of 8 pixels so
    JPEG blocks do not straddle tile edges.
    """
    cols, rows = grid
    tw, th = img.width // cols, img.height // rows
    out = Image.new("RGB", (tw * cols, th * rows))

    def box(i: int) -> tuple[int, int, int, int]:
        x, y = (i % cols) * tw, (i // cols) * th
        return (x, y, x + tw, y + th)

    for dst, src in enumerate(order):
        out.paste(img.crop(box(dst)), box(src)[:2])
    return out


def cbz(pages: Sequence[tuple[str, bytes]], comic_info: str) -> bytes:
    """A comic book archive: page files in reading order plus ComicInfo.xml."""
    buffer = io.BytesIO()
    # Fixed timestamps: the same archive byte for byte every time it is built, as a file on a
    # real server would be (so a recrawl gets 304 Not Modified, not a "new" archive).
    stamp = (2024, 3, 2, 21, 14, 0)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in [*pages, ("ComicInfo.xml", comic_info.encode())]:
            archive.writestr(zipfile.ZipInfo(name, date_time=stamp), data)
    return buffer.getvalue()


def pdf(pages: Sequence[Image.Image]) -> bytes:
    buffer = io.BytesIO()
    first, *rest = [p.convert("RGB") for p in pages]
    first.save(buffer, "PDF", save_all=True, append_images=rest, resolution=100.0)
    return buffer.getvalue()
