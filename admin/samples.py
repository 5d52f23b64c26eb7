"""Sample works for the demo and the tests: manga-like pages drawn by code.

Generated, not shipped, so their licence is the repository's own and nothing is copied from a
real work. Drawing is seeded: the same work title always gives the same pixels, so running the
demo twice registers nothing new.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

PAGE_SIZE = (800, 1200)


@dataclass(frozen=True)
class SampleWork:
    title: str
    pages: int
    kind: str = "volume"
    isbn: str | None = None


SAMPLE_PUBLISHER = "Sample Comics K.K."
SAMPLE_AGENT = "Sample Comics Rights Office"
SAMPLE_WORKS: tuple[SampleWork, ...] = (
    SampleWork("Moonlit Harbor, Vol. 1", 6, isbn="978-4-00-000001-1"),
    SampleWork("Steel Garden, Vol. 3", 5, isbn="978-4-00-000002-8"),
    SampleWork("The Last Lantern (illustration)", 1, kind="illustration"),
)


def _panels(
    rng: random.Random, box: tuple[int, int, int, int], depth: int
) -> list[tuple[int, int, int, int]]:
    x0, y0, x1, y1 = box
    if depth == 0 or (x1 - x0) < 220 or (y1 - y0) < 220 or rng.random() < 0.2:
        return [box]
    gutter = 14
    if (y1 - y0) > (x1 - x0) * 0.9:
        cut = rng.randint(y0 + (y1 - y0) // 3, y1 - (y1 - y0) // 3)
        first, second = (x0, y0, x1, cut - gutter // 2), (x0, cut + gutter // 2, x1, y1)
    else:
        cut = rng.randint(x0 + (x1 - x0) // 3, x1 - (x1 - x0) // 3)
        first, second = (x0, y0, cut - gutter // 2, y1), (cut + gutter // 2, y0, x1, y1)
    return _panels(rng, first, depth - 1) + _panels(rng, second, depth - 1)


def _draw_panel(rng: random.Random, w: int, h: int) -> Image.Image:
    # Drawn on its own canvas so figures are clipped by the panel frame, as in print.
    panel = Image.new("L", (w, h), rng.choice([255, 240, 225, 200]))
    draw = ImageDraw.Draw(panel)
    x0, y0, x1, y1 = 0, 0, w, h
    # Background: screentone-like hatching or a gradient of bands.
    if rng.random() < 0.5:
        step = rng.randint(6, 14)
        for offset in range(-h, w, step):
            draw.line(
                [(x0 + offset, y1), (x0 + offset + h, y0)], fill=rng.randint(120, 200), width=1
            )
    else:
        bands = rng.randint(3, 8)
        for i in range(bands):
            top = y0 + i * h // bands
            draw.rectangle((x0 + 3, top, x1 - 3, top + h // bands), fill=rng.randint(90, 250))
    # Figures: filled shapes in several greys.
    for _ in range(rng.randint(3, 8)):
        cx, cy = rng.randint(x0, x1), rng.randint(y0, y1)
        r = rng.randint(min(w, h) // 10, max(min(w, h) // 3, min(w, h) // 10 + 1))
        shade = rng.randint(0, 160)
        shape = rng.random()
        if shape < 0.4:
            draw.ellipse(
                (cx - r, cy - r, cx + r, cy + int(r * 1.3)), fill=shade, outline=0, width=3
            )
        elif shape < 0.75:
            points = [
                (cx + rng.randint(-r, r), cy + rng.randint(-r, r)) for _ in range(rng.randint(3, 6))
            ]
            draw.polygon(points, fill=shade, outline=0)
        else:
            draw.rectangle(
                (cx - r, cy - r // 2, cx + r, cy + r // 2), fill=shade, outline=0, width=3
            )
    # Speech bubble with "text" strokes.
    if rng.random() < 0.8 and w > 160 and h > 160:
        bw, bh = rng.randint(w // 4, w // 2), rng.randint(h // 5, h // 3)
        bx, by = rng.randint(x0 + 8, x1 - bw - 8), rng.randint(y0 + 8, y1 - bh - 8)
        draw.ellipse((bx, by, bx + bw, by + bh), fill=255, outline=0, width=3)
        for line in range(rng.randint(2, 4)):
            ty = by + bh // 4 + line * 14
            if ty > by + bh * 3 // 4:
                break
            tx = bx + bw // 5
            while tx < bx + bw * 4 // 5:
                glyph = rng.randint(6, 11)
                draw.rectangle((tx, ty, tx + glyph, ty + 9), fill=0)
                tx += glyph + 3
    draw.rectangle((0, 0, w - 1, h - 1), outline=0, width=4)
    return panel


def render_page(title: str, number: int) -> Image.Image:
    """Page ``number`` (1-based) of the sample work ``title``."""
    rng = random.Random(zlib.crc32(f"{title}#{number}".encode()))  # noqa: S311 (art, not crypto)
    page = Image.new("L", PAGE_SIZE, 255)
    margin = 40
    for x0, y0, x1, y1 in _panels(
        rng, (margin, margin, PAGE_SIZE[0] - margin, PAGE_SIZE[1] - margin), 3
    ):
        page.paste(_draw_panel(rng, x1 - x0, y1 - y0), (x0, y0))
    return page.filter(ImageFilter.SMOOTH).convert("RGB")


def write_sample_work(work: SampleWork, folder: Path) -> list[Path]:
    """Write the work's pages as PNG files into ``folder`` (created); return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(1, work.pages + 1):
        path = folder / f"page-{number:03d}.png"
        if not path.exists():
            render_page(work.title, number).save(path, format="PNG", optimize=True)
        paths.append(path)
    return paths


def slug(title: str) -> str:
    return "".join(ch.lower() if ch.isalnum() else "-" for ch in title).strip("-")
