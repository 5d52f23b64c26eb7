"""The matching-quality corpus, built on the fly and deterministic by seed.

References are what a publisher registers: scikit-image's bundled photographs (only those that
ship inside the wheel, nothing is downloaded) and manga-like pages drawn by code, from
``admin.samples.render_page`` and from a second generator here with other panel layouts,
screentone, speed lines, balloons and vertical text. Some pages are tinted to stand in for colour
illustrations.

Unrelated images are what a crawler sees that is *not* registered. Most are near-misses on
purpose, because those are what set a threshold: pages from the same generators with other seeds,
crops of pages and photographs that look like references but are not registered, thumbnails of
many pages on one sheet, and a tail of plainer images (textures, faces, gradients, noise). A
share of them goes through a pirate transform too, since a pirate site frames and re-encodes
everything it serves, not only the copies.
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from admin.samples import render_page

# Photographs registered as references, and those kept back so their crops can serve as
# unrelated near-misses (same camera statistics, never registered).
REFERENCE_PHOTOS = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "coins",
    "clock",
    "moon",
    "page",
    "text",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "cell",
    "horse",
    "logo",
    "colorwheel",
    "motorcycle_left",
)
HELD_OUT_PHOTOS = ("brick", "grass", "gravel", "microaneurysms", "shepp_logan_phantom")

REFERENCE_SIZE = (720, 1080)  # generated reference pages; render_page draws 800x1200
UNRELATED_SIZE = (240, 360)  # small is enough: every method resamples far below this


@dataclass(frozen=True)
class Reference:
    key: str
    kind: str  # "photo", "sample-page" (render_page), "page" (this module's generator)
    image: Image.Image


@dataclass(frozen=True)
class Unrelated:
    key: str
    kind: str  # "lookalike", "crop", "sheet", "other"
    image: Image.Image


# --------------------------------------------------------------------------------------------
# Photographs


def _to_rgb_image(array: np.ndarray) -> Image.Image:
    if array.dtype == bool:
        array = np.where(array, 255, 0).astype(np.uint8)
    elif array.dtype != np.uint8:
        lo, hi = float(array.min()), float(array.max())
        array = ((array - lo) * (255.0 / max(hi - lo, 1e-9))).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 4:
        rgba = Image.fromarray(array, "RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return Image.fromarray(array).convert("RGB")


@cache
def photo(name: str) -> Image.Image:
    """A scikit-image sample picture as RGB (bundled with the wheel, never downloaded)."""
    import skimage.data  # type: ignore[import-untyped]  # only the benchmark needs it

    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()  # type: ignore[no-untyped-call]
        return _to_rgb_image(left if name.endswith("left") else right)
    return _to_rgb_image(getattr(skimage.data, name)())


@cache
def _faces() -> np.ndarray:
    import skimage.data

    faces: np.ndarray = skimage.data.lfw_subset()  # type: ignore[no-untyped-call]
    return faces


# --------------------------------------------------------------------------------------------
# A second page generator, parameterised by size so unrelated pages can be drawn small and fast.


def _screentone(rng: random.Random, w: int, h: int, scale: float) -> np.ndarray:
    """A boolean mask of a dot or line screen, as printed tone looks."""
    period = max(3.0, rng.uniform(5, 10) * scale)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u = (xx * np.cos(angle) + yy * np.sin(angle)) % period - period / 2
    if rng.random() < 0.6:
        v = (-xx * np.sin(angle) + yy * np.cos(angle)) % period - period / 2
        radius = period * rng.uniform(0.2, 0.45)
        return np.asarray(u * u + v * v < radius * radius)
    return np.asarray(np.abs(u) < period * rng.uniform(0.1, 0.3))


def _speed_lines(draw: ImageDraw.ImageDraw, rng: random.Random, w: int, h: int) -> None:
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    reach = 2 * max(w, h)
    for _ in range(rng.randint(20, 60)):
        angle = rng.uniform(0, 2 * np.pi)
        inner = rng.uniform(0.15, 0.4) * min(w, h)
        x0, y0 = cx + inner * np.cos(angle), cy + inner * np.sin(angle)
        x1, y1 = cx + reach * np.cos(angle), cy + reach * np.sin(angle)
        draw.line([(x0, y0), (x1, y1)], fill=rng.randint(0, 60), width=1)


def _figure(draw: ImageDraw.ImageDraw, rng: random.Random, w: int, h: int, scale: float) -> None:
    """A character-like shape: head with eyes and hair, or a body, or an object."""
    cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.15, 0.95) * h
    r = rng.uniform(0.12, 0.35) * min(w, h)
    line = max(1, round(2.5 * scale))
    kind = rng.random()
    if kind < 0.45:
        draw.ellipse((cx - r, cy - r, cx + r, cy + 1.25 * r), fill=rng.randint(200, 255))
        draw.ellipse((cx - r, cy - r, cx + r, cy + 1.25 * r), outline=0, width=line)
        hair = [(cx - r * 1.1, cy)] + [
            (cx + r * rng.uniform(-1.1, 1.1), cy - r * rng.uniform(0.6, 1.4)) for _ in range(7)
        ]
        hair.append((cx + r * 1.1, cy))
        draw.polygon(hair, fill=rng.randint(0, 90), outline=0)
        for side in (-1, 1):
            ex = cx + side * r * 0.4
            draw.ellipse((ex - r * 0.15, cy, ex + r * 0.15, cy + r * 0.35), fill=0)
            draw.ellipse((ex - r * 0.05, cy + r * 0.05, ex + r * 0.04, cy + r * 0.14), fill=255)
    elif kind < 0.75:
        points = [
            (cx + r * rng.uniform(-1, 1), cy + r * rng.uniform(-1.5, 1.5))
            for _ in range(rng.randint(4, 8))
        ]
        draw.polygon(points, fill=rng.randint(0, 230), outline=0, width=line)
    else:
        top = cy - r * rng.uniform(0.3, 1)
        draw.rectangle(
            (cx - r, top, cx + r, cy + r * rng.uniform(0.3, 1)),
            fill=rng.randint(40, 230),
            outline=0,
            width=line,
        )


def _text(
    draw: ImageDraw.ImageDraw,
    rng: random.Random,
    box: tuple[float, float, float, float],
    scale: float,
    vertical: bool,
) -> None:
    """Glyph-like strokes: vertical columns read right to left, or horizontal lines."""
    x0, y0, x1, y1 = box
    glyph = max(3.0, rng.uniform(7, 11) * scale)
    gap = glyph * 0.35
    if vertical:
        x = x1 - glyph * 1.2
        while x > x0 + glyph * 0.2:
            y = y0 + glyph * 0.2
            end = y1 - rng.uniform(0.1, 0.6) * (y1 - y0)
            while y < end:
                draw.rectangle((x, y, x + glyph * rng.uniform(0.6, 1), y + glyph * 0.8), fill=0)
                y += glyph + gap
            x -= glyph * 1.5
    else:
        y = y0 + glyph * 0.2
        while y < y1 - glyph:
            x = x0 + glyph * 0.2
            end = x1 - rng.uniform(0.1, 0.5) * (x1 - x0)
            while x < end:
                width = glyph * rng.uniform(0.5, 1.1)
                draw.rectangle((x, y, x + width, y + glyph * 0.8), fill=0)
                x += width + gap
            y += glyph * 1.4


def _balloon(draw: ImageDraw.ImageDraw, rng: random.Random, w: int, h: int, scale: float) -> None:
    bw, bh = rng.uniform(0.25, 0.5) * w, rng.uniform(0.25, 0.5) * h
    bx, by = rng.uniform(0.02, 0.98) * (w - bw), rng.uniform(0.02, 0.98) * (h - bh)
    line = max(1, round(2 * scale))
    style = rng.random()
    if style < 0.5:
        draw.ellipse((bx, by, bx + bw, by + bh), fill=255, outline=0, width=line)
    elif style < 0.8:
        draw.rounded_rectangle(
            (bx, by, bx + bw, by + bh), radius=min(bw, bh) / 4, fill=255, outline=0, width=line
        )
    else:  # a shout: spiky outline
        cx, cy, spikes = bx + bw / 2, by + bh / 2, rng.randint(10, 18)
        points = []
        for i in range(spikes * 2):
            angle = np.pi * i / spikes
            k = 0.5 if i % 2 == 0 else rng.uniform(0.62, 0.75)
            points.append((cx + k * bw * np.cos(angle), cy + k * bh * np.sin(angle)))
        draw.polygon(points, fill=255, outline=0, width=line)
        bx, by, bw, bh = bx + bw * 0.1, by + bh * 0.1, bw * 0.8, bh * 0.8
    inset = 0.22
    _text(
        draw,
        rng,
        (bx + bw * inset, by + bh * inset, bx + bw * (1 - inset), by + bh * (1 - inset)),
        scale,
        vertical=rng.random() < 0.7,
    )


def _panel(rng: random.Random, w: int, h: int, scale: float) -> Image.Image:
    panel = Image.new("L", (w, h), rng.choice([255, 255, 245, 230, 40]))
    background = rng.random()
    if background < 0.35:
        tone = _screentone(rng, w, h, scale)
        level = rng.randint(60, 170)
        array = np.asarray(panel).copy()
        array[tone] = level
        panel = Image.fromarray(array)
    draw = ImageDraw.Draw(panel)
    if 0.35 <= background < 0.55:
        _speed_lines(draw, rng, w, h)
    elif 0.55 <= background < 0.75:
        bands = rng.randint(2, 6)
        for i in range(bands):
            draw.rectangle((0, i * h / bands, w, (i + 1) * h / bands), fill=rng.randint(120, 250))
    for _ in range(rng.randint(1, 5)):
        _figure(draw, rng, w, h, scale)
    if w > 40 * scale and h > 40 * scale:
        for _ in range(rng.choice([0, 1, 1, 1, 2])):
            _balloon(draw, rng, w, h, scale)
    if rng.random() < 0.15:  # a sound effect: a few heavy strokes
        x, y = rng.uniform(0.1, 0.7) * w, rng.uniform(0.1, 0.7) * h
        for _ in range(rng.randint(2, 4)):
            dx, dy = rng.uniform(0.05, 0.2) * w, rng.uniform(-0.1, 0.2) * h
            draw.line([(x, y), (x + dx, y + dy)], fill=0, width=max(2, round(6 * scale)))
            x += dx * 1.2
    return panel


def _layout(
    rng: random.Random, w: int, h: int, margin: int, gutter: int
) -> list[tuple[int, int, int, int]]:
    """Panel boxes: rows of panels (the common shōnen page) or a recursive split."""
    boxes: list[tuple[int, int, int, int]] = []
    if rng.random() < 0.6:
        rows = rng.randint(2, 5)
        cuts = sorted(rng.sample(range(1, 100), rows - 1))
        edges = [0, *cuts, 100]
        for top, bottom in itertools.pairwise(edges):
            y0 = margin + (h - 2 * margin) * top // 100
            y1 = margin + (h - 2 * margin) * bottom // 100
            columns = rng.choice([1, 1, 2, 2, 3])
            xcuts = sorted(rng.sample(range(15, 86), columns - 1))
            xedges = [0, *xcuts, 100]
            for left, right in itertools.pairwise(xedges):
                x0 = margin + (w - 2 * margin) * left // 100
                x1 = margin + (w - 2 * margin) * right // 100
                boxes.append(
                    (x0 + gutter // 2, y0 + gutter // 2, x1 - gutter // 2, y1 - gutter // 2)
                )
        return [b for b in boxes if b[2] - b[0] > 4 and b[3] - b[1] > 4]

    def split(box: tuple[int, int, int, int], depth: int) -> None:
        x0, y0, x1, y1 = box
        if depth == 0 or min(x1 - x0, y1 - y0) < 6 * gutter or rng.random() < 0.15:
            boxes.append(box)
            return
        if (y1 - y0) >= (x1 - x0):
            cut = rng.randint(y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4)
            split((x0, y0, x1, cut - gutter // 2), depth - 1)
            split((x0, cut + gutter // 2, x1, y1), depth - 1)
        else:
            cut = rng.randint(x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4)
            split((x0, y0, cut - gutter // 2, y1), depth - 1)
            split((cut + gutter // 2, y0, x1, y1), depth - 1)

    split((margin, margin, w - margin, h - margin), rng.randint(2, 4))
    return boxes


def draw_page(rng: random.Random, size: tuple[int, int] = REFERENCE_SIZE) -> Image.Image:
    """A manga-like greyscale page (RGB), drawn proportionally to ``size``."""
    w, h = size
    scale = w / 720
    page = Image.new("L", size, rng.choice([255, 255, 250, 242]))
    margin = round(rng.uniform(0.03, 0.07) * w)
    gutter = max(2, round(rng.uniform(8, 18) * scale))
    line = max(1, round(rng.uniform(2, 4) * scale))
    draw = ImageDraw.Draw(page)
    for x0, y0, x1, y1 in _layout(rng, w, h, margin, gutter):
        page.paste(_panel(rng, x1 - x0, y1 - y0, scale), (x0, y0))
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=0, width=line)
    if rng.random() < 0.3:  # a balloon breaking out over the gutters
        _balloon(draw, rng, w, h, scale)
    if rng.random() < 0.5:  # page number in the margin
        x = rng.choice([margin, w - margin - 12 * scale])
        draw.rectangle((x, h - margin * 0.7, x + 10 * scale, h - margin * 0.7 + 8 * scale), fill=0)
    return page.filter(ImageFilter.SMOOTH).convert("RGB")


def tint(image: Image.Image, rng: random.Random) -> Image.Image:
    """Map grey levels through a random colour ramp: a stand-in for a colour illustration."""
    stops = sorted(rng.sample(range(1, 255), 2))
    anchors = [0, *stops, 255]
    colours = [(0, 0, 0)] + [
        (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)) for _ in stops
    ]
    colours.append((255, 255, 255) if rng.random() < 0.7 else (255, 240, 220))
    lut = np.stack(
        [np.interp(np.arange(256), anchors, [c[channel] for c in colours]) for channel in range(3)],
        axis=1,
    ).astype(np.uint8)
    grey = np.asarray(image.convert("L"))
    return Image.fromarray(lut[grey])


# --------------------------------------------------------------------------------------------
# References and unrelated images


def _rng(seed: int, *parts: object) -> random.Random:
    # Strings seed Random through SHA-512, stable across runs and platforms.
    return random.Random(f"{seed}|" + "|".join(map(str, parts)))


def build_references(seed: int = 1, count: int = 300) -> list[Reference]:
    """``count`` references: all bundled photos first, then generated and sample pages."""
    refs: list[Reference] = [
        Reference(f"photo:{name}", "photo", photo(name)) for name in REFERENCE_PHOTOS[:count]
    ]
    index = 0
    while len(refs) < count:
        rng = _rng(seed, "reference", index)
        if index % 3 == 2:
            # render_page draws from crc32(title#n): vary the title with the seed.
            title = f"Reference {seed}-{index}"
            image = render_page(title, 1 + index % 7)
            kind = "sample-page"
        else:
            image = draw_page(rng)
            kind = "page"
        if rng.random() < 0.15:
            image = tint(image, rng)
        refs.append(Reference(f"{kind}:{seed}:{index}", kind, image))
        index += 1
    return refs


def _random_crop(image: Image.Image, rng: random.Random, low: float, high: float) -> Image.Image:
    w, h = image.size
    cw, ch = round(w * rng.uniform(low, high)), round(h * rng.uniform(low, high))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return image.crop((x, y, x + cw, y + ch))


@cache
def _held_out_pages(seed: int, count: int) -> tuple[Image.Image, ...]:
    """Full-size pages that are never registered: the source of unrelated crops and sheets."""
    pages = []
    for i in range(count):
        rng = _rng(seed, "held-out", i)
        if i % 4 == 3:
            pages.append(render_page(f"Never registered {seed}-{i}", 1 + i % 5))
        else:
            pages.append(draw_page(rng))
    return tuple(pages)


def _lookalike(seed: int, index: int) -> Image.Image:
    rng = _rng(seed, "lookalike", index)
    image = draw_page(rng, UNRELATED_SIZE)
    return tint(image, rng) if rng.random() < 0.15 else image


def _crop(seed: int, index: int) -> Image.Image:
    rng = _rng(seed, "crop", index)
    if rng.random() < 0.2:
        source = photo(rng.choice(HELD_OUT_PHOTOS))
    else:
        pages = _held_out_pages(seed, 40)
        source = pages[rng.randrange(len(pages))]
    crop = _random_crop(source, rng, 0.3, 0.9)
    crop.thumbnail((300, 300), Image.Resampling.BOX)
    return crop


def _sheet(seed: int, index: int) -> Image.Image:
    """A grid of thumbnails of unregistered pages, as a chapter index shows."""
    rng = _rng(seed, "sheet", index)
    pages = _held_out_pages(seed, 40)
    columns, rows = rng.randint(2, 4), rng.randint(1, 3)
    tw, th = 80, 120
    sheet = Image.new("RGB", (columns * (tw + 8) + 8, rows * (th + 8) + 8), (250, 250, 250))
    for r in range(rows):
        for c in range(columns):
            page = pages[rng.randrange(len(pages))].resize((tw, th), Image.Resampling.BOX)
            sheet.paste(page, (8 + c * (tw + 8), 8 + r * (th + 8)))
    return sheet


def _other(seed: int, index: int) -> Image.Image:
    rng = _rng(seed, "other", index)
    nrng = np.random.default_rng(zlib.crc32(f"{seed}|other|{index}".encode()))
    choice = rng.random()
    if choice < 0.3:
        faces = _faces()
        face = faces[rng.randrange(len(faces))]
        image = _to_rgb_image(face).resize((150, 150), Image.Resampling.BICUBIC)
    elif choice < 0.5:
        source = photo(rng.choice(HELD_OUT_PHOTOS))
        image = _random_crop(source, rng, 0.2, 0.6)
    elif choice < 0.7:
        w, h = rng.randint(120, 300), rng.randint(120, 300)
        yy, xx = np.mgrid[0:h, 0:w]
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (xx * np.cos(angle) + yy * np.sin(angle)).astype(np.float64)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
        colour = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float64)
        array = ramp[..., None] * colour + (1 - ramp[..., None]) * (255 - colour)
        image = Image.fromarray(array.astype(np.uint8))
    elif choice < 0.85:
        noise = nrng.normal(0, 1, (rng.randint(6, 24), rng.randint(6, 24), 3))
        small = Image.fromarray(np.clip(128 + 60 * noise, 0, 255).astype(np.uint8))
        image = small.resize((240, 240), Image.Resampling.BICUBIC)
    else:  # a banner or logo: text-like strokes on a flat colour
        image = Image.new("RGB", (rng.randint(200, 400), rng.randint(60, 150)), (255, 255, 255))
        fill = (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
        ImageDraw.Draw(image).rectangle((0, 0, image.width, image.height), fill=fill)
        _text(
            ImageDraw.Draw(image),
            rng,
            (10, 10, image.width - 10, image.height - 10),
            2.0,
            vertical=False,
        )
    return image


_UNRELATED_KINDS: tuple[tuple[str, float, Callable[[int, int], Image.Image]], ...] = (
    ("lookalike", 0.6, _lookalike),
    ("crop", 0.2, _crop),
    ("sheet", 0.05, _sheet),
    ("other", 0.15, _other),
)


def make_unrelated(seed: int, index: int) -> Unrelated:
    """Unrelated image number ``index``: computable on its own, so workers can share the work."""
    pick = _rng(seed, "kind", index).random()
    for kind, share, make in _UNRELATED_KINDS:
        if pick < share:
            return Unrelated(f"{kind}:{seed}:{index}", kind, make(seed, index))
        pick -= share
    kind, _, make = _UNRELATED_KINDS[-1]
    return Unrelated(f"{kind}:{seed}:{index}", kind, make(seed, index))


def iter_unrelated(seed: int = 1, count: int = 10_000) -> Iterator[Unrelated]:
    """``count`` unrelated images, untransformed: the caller frames/re-encodes a share of them."""
    for index in range(count):
        yield make_unrelated(seed, index)


def filler_pages(seed: int = 1, count: int = 24) -> list[Image.Image]:
    """Unregistered pages that transforms put beside a copy (spreads, reader sidebars)."""
    return [draw_page(_rng(seed, "filler", i), (360, 540)) for i in range(count)]
