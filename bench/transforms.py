"""What pirate sites do to a page before serving it, in two families.

``typical``: what nearly every copy goes through (re-encoding, resizing, a site's watermark, a
trimmed edge, letterboxing, colour changes). ``hard``: geometry that defeats a single global hash
(mirroring, a few degrees of rotation, heavy cropping, a page split in halves or joined into a
spread, a page shown inside a reader's chrome).

Every transform is deterministic given its ``random.Random`` and ends, like a pirate page, as a
lossy JPEG unless the transform *is* a lossy re-encode. ``fillers`` are unregistered pages the
transforms may draw next to the copy (the other half of a spread, thumbnails in a sidebar).
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

Apply = Callable[[Image.Image, random.Random, Sequence[Image.Image]], Image.Image]


@dataclass(frozen=True)
class Transform:
    name: str
    family: str  # "typical" or "hard"
    description: str
    apply: Apply


def encode(image: Image.Image, fmt: str, quality: int) -> Image.Image:
    """Round-trip through a lossy encoder, as a served file would be."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, fmt, quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def _finish(image: Image.Image, rng: random.Random) -> Image.Image:
    return encode(image, "JPEG", rng.randint(70, 90))


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


_SITE_NAMES = ("mangafree.example", "READ-RAW.example", "hentai.example", "komik.example", "漫画")


# --- typical ---------------------------------------------------------------------------------


def _jpeg(image: Image.Image, rng: random.Random, _: Sequence[Image.Image]) -> Image.Image:
    return encode(image, "JPEG", rng.randint(30, 70))


def _webp(image: Image.Image, rng: random.Random, _: Sequence[Image.Image]) -> Image.Image:
    return encode(image, "WEBP", rng.randint(30, 70))


def _resize(image: Image.Image, rng: random.Random, _: Sequence[Image.Image]) -> Image.Image:
    factor = rng.uniform(0.5, 1.5)
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    method = rng.choice(
        [Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS]
    )
    return _finish(image.resize(size, method), rng)


def stamp(image: Image.Image, rng: random.Random) -> Image.Image:
    """A site's name, and often a logo badge, stamped into one corner."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    size = max(10, round(image.width * rng.uniform(0.03, 0.06)))
    text = rng.choice(_SITE_NAMES)
    font = _font(size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tw, th = right - left, bottom - top
    badge = size * 2 if rng.random() < 0.6 else 0
    margin = max(4, image.width // 50)
    x = margin if rng.random() < 0.5 else image.width - margin - tw - badge
    y = margin if rng.random() < 0.3 else image.height - margin - max(th, badge)
    colour = (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
    if badge:
        draw.ellipse((x, y, x + badge - 4, y + badge - 4), fill=colour, outline=(255, 255, 255))
        x += badge
    if rng.random() < 0.5:  # a plate behind the text, as most sites do for legibility
        draw.rectangle((x - 2, y - 2, x + tw + 2, y + th + 6), fill=(255, 255, 255))
    draw.text((x, y - top), text, fill=colour, font=font)
    return out


def _watermark(image: Image.Image, rng: random.Random, _: Sequence[Image.Image]) -> Image.Image:
    return _finish(stamp(image, rng), rng)


def _trim(image: Image.Image, rng: random.Random, low: float, high: float) -> Image.Image:
    """Remove a fraction in [low, high] of the width and of the height, split between sides."""
    w, h = image.size
    cut_w, cut_h = round(w * rng.uniform(low, high)), round(h * rng.uniform(low, high))
    left, top = rng.randint(0, cut_w), rng.randint(0, cut_h)
    return image.crop((left, top, left + w - cut_w, top + h - cut_h))


def _crop_small(image: Image.Image, rng: random.Random, _: Sequence[Image.Image]) -> Image.Image:
    return _finish(_trim(image, rng, 0.02, 0.10), rng)


def _pad(image: Image.Image, rng: random.Random, _: Sequence[Image.Image]) -> Image.Image:
    """Letterbox or pillarbox onto a fixed canvas with uniform bars, as players and feeds do."""
    colour = rng.choice([(0, 0, 0), (255, 255, 255), (24, 24, 24), (128, 128, 128)])
    w, h = image.size
    style = rng.random()
    if style < 0.4:  # letterbox: bars top and bottom
        extra = round(h * rng.uniform(0.1, 0.5))
        box = (0, extra // 2, 0, extra - extra // 2)
    elif style < 0.8:  # pillarbox: bars left and right
        extra = round(w * rng.uniform(0.1, 0.8))
        box = (extra // 2, 0, extra - extra // 2, 0)
    else:
        bw, bh = round(w * rng.uniform(0.02, 0.15)), round(h * rng.uniform(0.02, 0.15))
        box = (bw, bh, bw, bh)
    return _finish(ImageOps.expand(image, border=box, fill=colour), rng)


def _colour(image: Image.Image, rng: random.Random, _: Sequence[Image.Image]) -> Image.Image:
    style = rng.random()
    if style < 0.3:
        out = ImageOps.grayscale(image).convert("RGB")
    elif style < 0.6:  # gamma
        gamma = rng.choice([rng.uniform(0.5, 0.8), rng.uniform(1.25, 2.0)])
        lut = [round(255 * (i / 255) ** gamma) for i in range(256)] * 3
        out = image.convert("RGB").point(lut)
    else:  # colour cast plus brightness / contrast / saturation changes
        gains = np.array([rng.uniform(0.75, 1.25) for _ in range(3)])
        array = np.asarray(image.convert("RGB"), dtype=np.float64) * gains
        out = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
        out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.7, 1.3))
        out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.8, 1.2))
        out = ImageEnhance.Color(out).enhance(rng.uniform(0.5, 1.5))
    return _finish(out, rng)


def _combo(image: Image.Image, rng: random.Random, _: Sequence[Image.Image]) -> Image.Image:
    """The usual pipeline: downscale for the reader, stamp the site, re-encode hard."""
    factor = rng.uniform(0.5, 0.9)
    out = image.resize((round(image.width * factor), round(image.height * factor)))
    return encode(stamp(out, rng), "JPEG", rng.randint(30, 60))


# --- hard ------------------------------------------------------------------------------------


def _mirror(image: Image.Image, rng: random.Random, _: Sequence[Image.Image]) -> Image.Image:
    return _finish(ImageOps.mirror(image), rng)


def _rotate(image: Image.Image, rng: random.Random, _: Sequence[Image.Image]) -> Image.Image:
    angle = rng.uniform(2, 5) * rng.choice([-1, 1])
    fill = rng.choice([(255, 255, 255), (0, 0, 0)])
    out = image.rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=fill)
    return _finish(out, rng)


def _crop_large(image: Image.Image, rng: random.Random, _: Sequence[Image.Image]) -> Image.Image:
    return _finish(_trim(image, rng, 0.10, 0.25), rng)


def _split(image: Image.Image, rng: random.Random, _: Sequence[Image.Image]) -> Image.Image:
    """One half of the page, cut along its long side, as long strips are served in parts."""
    w, h = image.size
    first = rng.random() < 0.5
    if h >= w:
        box = (0, 0, w, h // 2) if first else (0, h // 2, w, h)
    else:
        box = (0, 0, w // 2, h) if first else (w // 2, 0, w, h)
    return _finish(image.crop(box), rng)


def _join(image: Image.Image, rng: random.Random, fillers: Sequence[Image.Image]) -> Image.Image:
    """A two-page spread: the copy beside an unregistered page of the same height."""
    other = fillers[rng.randrange(len(fillers))]
    other = other.resize((max(1, round(other.width * image.height / other.height)), image.height))
    gutter = rng.choice([0, 0, round(image.width * 0.02)])
    spread = Image.new("RGB", (image.width + other.width + gutter, image.height), (255, 255, 255))
    if rng.random() < 0.5:  # manga reads right to left: the copy may be either half
        spread.paste(image, (0, 0))
        spread.paste(other, (image.width + gutter, 0))
    else:
        spread.paste(other, (0, 0))
        spread.paste(image, (other.width + gutter, 0))
    if rng.random() < 0.5:
        spread = spread.resize((spread.width * 2 // 3, spread.height * 2 // 3))
    return _finish(spread, rng)


def _embed(image: Image.Image, rng: random.Random, fillers: Sequence[Image.Image]) -> Image.Image:
    """The page inside a web reader: header, navigation, a sidebar of thumbnails and ads."""
    dark = rng.random() < 0.5
    level = rng.randint(15, 45) if dark else rng.randint(225, 250)
    background = (level, level, level)
    ink = (230, 230, 230) if dark else (30, 30, 30)
    scale = rng.uniform(0.5, 0.9)
    page = image.resize((round(image.width * scale), round(image.height * scale)))
    header = round(page.height * rng.uniform(0.06, 0.12))
    sidebar = round(page.width * rng.uniform(0.3, 0.6))
    pad = round(page.width * 0.05)
    canvas_w = pad + page.width + pad + sidebar + pad
    canvas_h = header + pad + page.height + pad + header // 2
    canvas = Image.new("RGB", (canvas_w, canvas_h), background)
    draw = ImageDraw.Draw(canvas)
    accent = (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
    draw.rectangle((0, 0, canvas_w, header), fill=accent)
    font = _font(max(10, header // 2))
    draw.text((pad, header // 4), rng.choice(_SITE_NAMES), fill=(255, 255, 255), font=font)
    for i in range(rng.randint(2, 5)):  # navigation buttons
        x = canvas_w - (i + 1) * header * 2
        draw.rounded_rectangle(
            (x, header // 4, x + header * 1.6, header * 3 // 4), radius=4, fill=background
        )
    page_x, page_y = pad, header + pad
    canvas.paste(page, (page_x, page_y))
    side_x, y = page_x + page.width + pad, page_y
    thumb_w = sidebar
    while y < canvas_h - pad - thumb_w // 2:
        if rng.random() < 0.6 and fillers:
            thumb = fillers[rng.randrange(len(fillers))]
            th = round(thumb_w * thumb.height / thumb.width)
            canvas.paste(thumb.resize((thumb_w, th)), (side_x, y))
        else:  # an ad
            th = round(thumb_w * rng.uniform(0.4, 1.0))
            fill = (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
            draw.rectangle((side_x, y, side_x + thumb_w, y + th), fill=fill)
            draw.text((side_x + 4, y + 4), "AD", fill=ink, font=_font(12))
        y += th + pad // 2
    footer_y = page_y + page.height + pad // 3
    draw.text((pad, footer_y), "< prev   page 1/24   next >", fill=ink, font=_font(12))
    return _finish(canvas, rng)


TRANSFORMS: tuple[Transform, ...] = (
    Transform("jpeg", "typical", "JPEG quality 30-70", _jpeg),
    Transform("webp", "typical", "WebP quality 30-70", _webp),
    Transform("resize", "typical", "uniform resize 0.5x-1.5x", _resize),
    Transform("watermark", "typical", "site name / logo stamped in a corner", _watermark),
    Transform("crop_small", "typical", "2-10% of width and of height trimmed", _crop_small),
    Transform("pad", "typical", "letterbox / pillarbox / frame, uniform colour", _pad),
    Transform("colour", "typical", "greyscale, gamma, or colour cast + contrast", _colour),
    Transform("combo", "typical", "resize 0.5-0.9x + watermark + JPEG 30-60", _combo),
    Transform("mirror", "hard", "horizontal flip", _mirror),
    Transform("rotate", "hard", "rotated 2-5 degrees, corners filled", _rotate),
    Transform("crop_large", "hard", "10-25% of width and of height trimmed", _crop_large),
    Transform("split", "hard", "one half of the page (cut across its long side)", _split),
    Transform("join", "hard", "two-page spread with an unregistered page", _join),
    Transform("embed", "hard", "inside a web reader's chrome (header, sidebar)", _embed),
)
FAMILIES = ("typical", "hard")


def by_name(name: str) -> Transform:
    for transform in TRANSFORMS:
        if transform.name == name:
            return transform
    raise KeyError(name)
