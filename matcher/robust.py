"""Robust fingerprints: 64-bit pHashes of a page's regions, matched by geometric agreement.

A single global hash survives re-encoding and resizing but not a copy that is cropped, split,
joined into a spread, mirrored, rotated or shown inside a web reader. This scheme hashes
*regions* instead, anchored on content so the same regions are found again in a copy:

1. Normalise: greyscale (colour casts vanish), reduce to at most ``WORK_SIDE`` pixels, strip
   uniform borders (letterbox bars and the page's own blank margin, see ``border_box``).
2. Regions: the whole normalised image with its halves and quarters (a split page is a half of
   the original; a spread holds the page as one of its halves), plus *components*: bounding
   boxes of connected edge regions, inset to leave their frame out. On a manga page these are
   the panels (white gutters separate them); they survive crops, splits and framing intact.
3. Hash each region: a 64-bit DCT pHash (the 64 lowest-frequency AC coefficients of a 32x32
   area-averaged thumbnail, thresholded at their median, so exactly 32 bits are set), skipping
   near-blank regions whose hash would be noise.

A reference stores at most ``MAX_REFERENCE_FINGERPRINTS`` hashes: the image's 9, then its
components, then halves of its largest components. A query (a crawled image) costs no storage,
so it hashes more (about 130-170 for a page, a few hundred at most): the same regions, the
halves and quarters of its six largest components, its halves and coarse "pictures" (a page
inside a reader, one page of a spread) each re-stripped of their own margins, all of that again
mirrored, and once more deskewed when the image looks rotated (``skew_angle``).

Every fingerprint carries its region (``params["box"]``, in thousandths of the normalised
image's height) and view (``params["group"]``) so ``score`` can demand that matching regions
agree on one placement of the reference inside the query: chance collisions of 64-bit hashes
scatter, real copies line up. Retrieval searches all ``KIND`` fingerprints by Hamming radius
``RETRIEVAL_RADIUS`` regardless of ``variant``: a query's whole image is a reference's top half
when the query is a split page, so variants are labels, not partitions of the index.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
import PIL
from PIL import Image
from scipy import ndimage  # type: ignore[import-untyped]

from matcher.fingerprint import Fingerprint
from matcher.index import popcount  # numpy < 2 has no bitwise_count

KIND = "rphash"
PIPELINE = 1
VERSION = f"pillow-{PIL.__version__}/numpy-dct/mamoru-robust-{PIPELINE}"
WORK_SIDE = 1024
PARAMS = MappingProxyType({"thumb": 32, "coefficients": "zigzag-ac-64", "work_side": WORK_SIDE})

MAX_REFERENCE_FINGERPRINTS = 36
RETRIEVAL_RADIUS = 10
# A match when ``score(...)[0] > THRESHOLD``: the false-positive rate is <= 1e-4 there, as set by
# `bench/matching_quality.py --seed 1` (300 references, 10,000 unrelated images, mostly
# look-alike pages; 1 of them scored above it). Re-measure when anything here changes.
THRESHOLD = 1.82

_THUMB = 32
_FloatArray = npt.NDArray[np.float64]
_HashArray = npt.NDArray[np.uint64]
_IntArray = npt.NDArray[np.intp]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the normalised image

# Halves and quarters of a region, relative to it: a split page is a half, a spread's page is
# a half of the spread, and their own halves are the page's quarters.
_SUBREGIONS: tuple[tuple[str, Box], ...] = (
    ("top", (0.0, 0.0, 1.0, 0.5)),
    ("bottom", (0.0, 0.5, 1.0, 1.0)),
    ("left", (0.0, 0.0, 0.5, 1.0)),
    ("right", (0.5, 0.0, 1.0, 1.0)),
    ("top-left", (0.0, 0.0, 0.5, 0.5)),
    ("top-right", (0.5, 0.0, 1.0, 0.5)),
    ("bottom-left", (0.0, 0.5, 0.5, 1.0)),
    ("bottom-right", (0.5, 0.5, 1.0, 1.0)),
)


def _dct_matrix(n: int) -> _FloatArray:
    k = np.arange(n, dtype=np.float64)[:, None]
    i = np.arange(n, dtype=np.float64)[None, :]
    return np.asarray(np.cos(np.pi * k * (2 * i + 1) / (2 * n)), dtype=np.float64)


_DCT = _dct_matrix(_THUMB)
# The DC term only says how bright the region is; the next 64 coefficients in order of
# frequency carry its layout. Exactly half the bits are set (median threshold).
_ZIGZAG = sorted(
    ((u + v, u, v) for u in range(12) for v in range(12) if (u, v) != (0, 0)),
)[:64]
_ROWS = np.array([u for _, u, _ in _ZIGZAG])
_COLS = np.array([v for _, _, v in _ZIGZAG])
_BIT_WEIGHTS = np.array([1 << (63 - i) for i in range(64)], dtype=np.uint64)
# Regions whose thumbnail AC energy is below this (grey levels) are near-blank: skip them.
_MIN_ENERGY = 1.5


# --- normalisation ---------------------------------------------------------------------------


def work_image(image: Image.Image) -> Image.Image:
    """Greyscale, area-reduced so the longer side is at most ``WORK_SIDE``."""
    grey = image.convert("L")
    if max(grey.size) > WORK_SIDE:
        factor = max(grey.size) / WORK_SIDE
        size = (max(1, round(grey.width / factor)), max(1, round(grey.height / factor)))
        grey = grey.resize(size, Image.Resampling.BOX)
    elif min(grey.size) < 2 * _THUMB:
        # Thumbnails and icons: enlarge so their halves still fill a hash's thumbnail.
        factor = min(2 * _THUMB / min(grey.size), WORK_SIDE / max(grey.size))
        size = (max(1, round(grey.width * factor)), max(1, round(grey.height * factor)))
        grey = grey.resize(size, Image.Resampling.BICUBIC)
    return grey


def _uniform_lines(
    pixels: npt.NDArray[np.float32], tolerance: float, share: float
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32]]:
    """Which rows are uniform, and the row medians.

    Uniform: ``share`` of the pixels within ``tolerance`` of the median, or every outlier
    within one end's 45% (a site's stamp in a corner of the margin). Outliers at both ends
    are what a panel's frame lines look like from inside it: not a border.
    """
    median = np.median(pixels[:, ::3], axis=1)  # every third pixel estimates it as well
    deviation = np.abs(pixels - median[:, None])
    outlier = deviation > tolerance
    length = pixels.shape[1]
    first = np.argmax(outlier, axis=1)
    last = length - 1 - np.argmax(outlier[:, ::-1], axis=1)
    # A stamp sits on a flat margin: nearly everything else is very calm. A photo's gentle
    # gradient drifting out of tolerance towards one end is not.
    stamp = ((last < 0.45 * length) | (first > 0.55 * length)) & (
        (deviation <= tolerance / 2).mean(axis=1) >= 0.9
    )
    uniform = (outlier.mean(axis=1) <= 1.0 - share) | stamp
    return np.asarray(uniform), np.asarray(median, dtype=np.float32)


def _run(uniform: npt.NDArray[np.bool_], colour: npt.NDArray[np.float32], last: float) -> int:
    """How many leading lines form one border: uniform, all of the first line's colour.

    ``last`` is the colour of the border stripped before on this side (NaN if none): a new
    border must start with a clear step from it (a bar's edge, the page's edge). Without the
    step the "border" is a smooth gradient of the picture itself, drifting a little per round.
    """
    if not len(uniform) or not uniform[0]:
        return 0
    first = float(colour[0])
    if not math.isnan(last) and abs(first - last) < _BORDER_STEP:
        return 0
    same = uniform & (np.abs(colour - first) <= _BORDER_DRIFT)
    stop = np.flatnonzero(~same)
    return int(stop[0]) if stop.size else len(uniform)


# Grey levels: a border's lines may differ this much from its first line; a second border
# (a bar, then the page's own blank margin) must differ from the first by at least the step.
_BORDER_DRIFT = 8.0
_BORDER_STEP = 24.0


def border_box(
    grey: Image.Image, *, tolerance: float = 10.0, share: float = 0.995, rounds: int = 4
) -> tuple[int, int, int, int]:
    """The box left after stripping uniform borders (letterbox bars, blank margins).

    Decided on a copy of at most 384 pixels, which averages JPEG noise away. A line belongs to
    a border when 99.5% of it lies within ``tolerance`` of its median (or all that is not lies
    at one end: a stamp in a corner): a panel frame crossing it, even one pixel wide, stops the
    strip. Rows and columns are stripped in turns because pillarbox bars keep the page's blank
    top rows from looking uniform until the bars are gone; each turn takes one border of one
    colour per side, and a side has at most two (a bar, then the page's margin). A thin run is
    a drawn line (a panel frame) and ends the side, unless it is the blend between two borders
    (its colour between theirs). An axis that would lose over 80% is left alone: an image
    nearly all one colour has no border to speak of.
    """
    factor = max(1, math.ceil(max(grey.size) / 384))
    small = grey.reduce(factor) if factor > 1 else grey
    pixels = np.asarray(small, dtype=np.float32)
    x0, y0, x1, y1 = 0, 0, pixels.shape[1], pixels.shape[0]
    last = [math.nan] * 4  # colour of the border last stripped: top, bottom, left, right
    stripped = [0] * 4
    for _ in range(rounds):
        inner = pixels[y0:y1, x0:x1]
        rows, row_colour = _uniform_lines(inner, tolerance, share)
        cols, col_colour = _uniform_lines(inner.T, tolerance, share)
        lines = [
            (rows, row_colour),
            (rows[::-1], row_colour[::-1]),
            (cols, col_colour),
            (cols[::-1], col_colour[::-1]),
        ]
        runs = [0] * 4
        for side, (uniform, colour) in enumerate(lines):
            if stripped[side] >= 2:
                continue
            count = _run(uniform, colour, last[side])
            thin = count < max(2, 0.01 * len(uniform))
            if count and thin and _blend(uniform, colour, count, last[side]):
                runs[side] = count  # strip the blend; the next turn takes the border behind
            elif count and thin:
                stripped[side] = 2
            elif count:
                runs[side] = count
                stripped[side] += 1
                last[side] = float(colour[0])
        top, bottom, left, right = runs
        h, w = inner.shape
        if h - top - bottom < 0.2 * h:
            top = bottom = 0
        if w - left - right < 0.2 * w:
            left = right = 0
        if top == bottom == left == right == 0:
            break
        x0, y0, x1, y1 = x0 + left, y0 + top, x1 - right, y1 - bottom
    if (x0, y0, x1, y1) == (0, 0, pixels.shape[1], pixels.shape[0]):
        return 0, 0, grey.width, grey.height
    # Back to full size, rounding inwards so no sliver of border survives the scaling.
    return (
        min(grey.width, x0 * factor + (factor - 1 if x0 else 0)),
        min(grey.height, y0 * factor + (factor - 1 if y0 else 0)),
        min(grey.width, x1 * factor - (factor - 1 if x1 < pixels.shape[1] else 0)),
        min(grey.height, y1 * factor - (factor - 1 if y1 < pixels.shape[0] else 0)),
    )


def _blend(
    uniform: npt.NDArray[np.bool_], colour: npt.NDArray[np.float32], count: int, last: float
) -> bool:
    """Whether the thin run ``[:count]`` is the resampled edge between two borders."""
    if math.isnan(last) or count >= len(uniform) or not uniform[count]:
        return False
    after = float(colour[count])
    low, high = min(last, after), max(last, after)
    between = bool(np.all((colour[:count] >= low - 8) & (colour[:count] <= high + 8)))
    return between and high - low >= _BORDER_STEP


def normalise(image: Image.Image) -> Image.Image:
    """The greyscale work image with uniform borders stripped: what every region lives in."""
    grey = work_image(image)
    return grey.crop(border_box(grey))


def _profile_peakiness(ys: _IntArray, xs: _IntArray, angle: float, pad: int) -> float:
    # Rotating by a small angle is nearly a shear: edge pixels project onto rows y + x*tan(a)
    # and columns x - y*tan(a). Straight lines at that angle pile up into few bins.
    t = math.tan(math.radians(angle))
    rows = np.rint(ys + xs * t).astype(np.intp) + pad
    cols = np.rint(xs - ys * t).astype(np.intp) + pad
    return float((np.bincount(rows) ** 2).sum() + (np.bincount(cols) ** 2).sum())


def skew_angle(grey: Image.Image) -> float:
    """Degrees by which ``grey`` looks rotated counter-clockwise (0.0 when it does not).

    Projection profiles of the edge map: panel frames, page edges and text lines make the
    profiles peakiest at the angle that undoes the rotation. Searched over +-7 degrees in half
    degrees, then refined to a quarter degree.
    """
    small = grey.copy()
    small.thumbnail((320, 320), Image.Resampling.BOX)
    ys, xs = np.nonzero(_edge_map(np.asarray(small, dtype=np.float64), 40.0))
    if len(xs) < 100:
        return 0.0
    step = max(1, len(xs) // 6000)  # a sample of the edge pixels votes as well as all of them
    ys, xs = ys[::step], xs[::step]
    pad = small.width + small.height
    level = _profile_peakiness(ys, xs, 0.0, pad)
    coarse = [a / 2 for a in range(-14, 15)]
    scores = [_profile_peakiness(ys, xs, a, pad) for a in coarse]
    best = coarse[int(np.argmax(scores))]
    fine = [best - 0.25, best, best + 0.25]
    scores = [_profile_peakiness(ys, xs, a, pad) for a in fine]
    best = fine[int(np.argmax(scores))]
    if abs(best) < 1.0 or max(scores) < 1.03 * level:
        return 0.0
    return best


# --- regions ---------------------------------------------------------------------------------


def _edge_map(pixels: _FloatArray, threshold: float = 28.0) -> npt.NDArray[np.bool_]:
    edges = np.zeros(pixels.shape, dtype=bool)
    edges[:, 1:] |= np.abs(np.diff(pixels, axis=1)) > threshold
    edges[1:, :] |= np.abs(np.diff(pixels, axis=0)) > threshold
    return edges


_INSET = 0.04


def components(
    grey: Image.Image, *, limit: int, min_share: float = 0.005, min_side: int = _THUMB
) -> list[Box]:
    """Bounding boxes of connected edge regions, largest first: panels, pages, pictures.

    Boxes covering nearly the whole image add nothing to the whole-image hash; tiny ones
    (balloons, single figures) look alike across pages, so both are left out.
    """
    pixels = np.asarray(grey, dtype=np.float64)
    h, w = pixels.shape
    labels, _ = ndimage.label(_edge_map(pixels), structure=np.ones((3, 3), dtype=bool))
    boxes: list[Box] = []
    for found in ndimage.find_objects(labels):
        if found is None:
            continue
        rows, cols = found
        bw, bh = cols.stop - cols.start, rows.stop - rows.start
        if bw < min_side or bh < min_side or bw * bh < min_share * w * h:
            continue
        if bw * bh > 0.85 * w * h:
            continue
        # Inside the frame: every panel's frame looks alike, and a blank panel should hash
        # as blank (and be skipped), not as "a rectangle".
        dx, dy = max(2.0, _INSET * bw), max(2.0, _INSET * bh)
        boxes.append((cols.start + dx, rows.start + dy, cols.stop - dx, rows.stop - dy))
    boxes.sort(key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
    return _distinct(boxes)[:limit]


def _distinct(boxes: Iterable[Box]) -> list[Box]:
    kept: list[Box] = []
    for box in boxes:
        if all(_iou(box, other) < 0.9 for other in kept):
            kept.append(box)
    return kept


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _subregion(box: Box, rel: Box) -> Box:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    return (x0 + rel[0] * w, y0 + rel[1] * h, x0 + rel[2] * w, y0 + rel[3] * h)


@dataclass(frozen=True)
class _Region:
    name: str
    box: Box


def _pyramid(name: str, box: Box) -> list[_Region]:
    regions = [_Region(name, box)]
    for sub, rel in _SUBREGIONS:
        regions.append(_Region(f"{name}/{sub}", _subregion(box, rel)))
    return regions


# --- hashing ---------------------------------------------------------------------------------


def _thumbnails(pixels: _FloatArray, boxes: Sequence[Box]) -> _FloatArray:
    """32x32 area averages of every box at once, from one integral image."""
    h, w = pixels.shape
    integral = np.zeros((h + 1, w + 1), dtype=np.float64)
    integral[1:, 1:] = pixels.cumsum(axis=0).cumsum(axis=1)
    steps = np.linspace(0.0, 1.0, _THUMB + 1)
    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    xs = np.rint(array[:, 0:1] + steps * (array[:, 2:3] - array[:, 0:1])).astype(np.intp)
    ys = np.rint(array[:, 1:2] + steps * (array[:, 3:4] - array[:, 1:2])).astype(np.intp)
    xs = np.clip(xs, 0, w)
    ys = np.clip(ys, 0, h)
    # Cells are at least one pixel wide: regions are never smaller than the thumbnail.
    xs[:, 1:] = np.maximum(xs[:, 1:], xs[:, :-1] + 1)
    ys[:, 1:] = np.maximum(ys[:, 1:], ys[:, :-1] + 1)
    xs = np.clip(xs, 0, w)
    ys = np.clip(ys, 0, h)
    corners = integral[ys[:, :, None], xs[:, None, :]]
    sums = corners[:, 1:, 1:] - corners[:, :-1, 1:] - corners[:, 1:, :-1] + corners[:, :-1, :-1]
    areas = np.diff(ys, axis=1)[:, :, None] * np.diff(xs, axis=1)[:, None, :]
    return np.asarray(sums / np.maximum(areas, 1), dtype=np.float64)


def _hash_thumbnails(thumbs: _FloatArray) -> tuple[_HashArray, _FloatArray]:
    coefficients = np.matmul(np.matmul(_DCT, thumbs), _DCT.T)[:, _ROWS, _COLS]
    bits = coefficients > np.median(coefficients, axis=1, keepdims=True)
    hashes = (bits.astype(np.uint64) * _BIT_WEIGHTS).sum(axis=1, dtype=np.uint64)
    # Mean |AC| in grey levels per pixel: the unnormalised DCT sums 32x32 cosines.
    energy = np.abs(coefficients).mean(axis=1) / (_THUMB * _THUMB / 4)
    return np.asarray(hashes, dtype=np.uint64), np.asarray(energy, dtype=np.float64)


def _fingerprints(
    thumbs: _FloatArray, regions: Sequence[_Region], height: int, group: str
) -> list[Fingerprint]:
    if not regions:
        return []
    hashes, energy = _hash_thumbnails(thumbs)
    out = []
    for region, value, strength in zip(regions, hashes, energy, strict=True):
        if strength < _MIN_ENERGY:
            continue
        params = dict(PARAMS)
        params["box"] = tuple(round(1000 * c / height) for c in region.box)
        params["group"] = group
        out.append(
            Fingerprint(
                kind=KIND,
                value=int(value),
                params=MappingProxyType(params),
                variant=region.name,
                version=VERSION,
            )
        )
    return out


def _regions(grey: Image.Image, *, component_limit: int, pyramids: int) -> list[_Region]:
    whole: Box = (0.0, 0.0, float(grey.width), float(grey.height))
    regions = [r for r in _pyramid("image", whole) if min(_size(r.box)) >= _THUMB]
    for n, box in enumerate(components(grey, limit=component_limit)):
        if n < pyramids:
            regions.extend(r for r in _pyramid(f"region{n}", box) if min(_size(r.box)) >= _THUMB)
        else:
            regions.append(_Region(f"region{n}", box))
    return regions


def _size(box: Box) -> tuple[float, float]:
    return box[2] - box[0], box[3] - box[1]


def reference_fingerprints(image: Image.Image) -> list[Fingerprint]:
    """What a registered page stores: at most ``MAX_REFERENCE_FINGERPRINTS`` region hashes.

    In order of priority: the whole image with its halves and quarters, then its components,
    then the halves of its largest components (one panel that survives a heavy crop intact
    still brings several hashes that must agree), until the cap.
    """
    grey = normalise(image)
    boxes = components(grey, limit=24)
    regions = _pyramid("image", (0.0, 0.0, float(grey.width), float(grey.height)))
    regions = [r for r in regions if min(_size(r.box)) >= _THUMB]
    regions += [_Region(f"region{n}", box) for n, box in enumerate(boxes)]
    for n, box in enumerate(boxes):
        regions += [r for r in _pyramid(f"region{n}", box)[1:5] if min(_size(r.box)) >= _THUMB]
    thumbs = _thumbnails(np.asarray(grey, dtype=np.float64), [r.box for r in regions])
    fps = _fingerprints(thumbs, regions, grey.height, "reference")
    return fps[:MAX_REFERENCE_FINGERPRINTS]


def pictures(grey: Image.Image, *, limit: int = 4) -> list[Box]:
    """Coarse proposals: blocks of busy content separated by flat background.

    A page or photo shown inside a reader, or one page of a spread, is such a block even when
    its panels are not separate components (a photo has none). Each block is then stripped of
    its own uniform border, so it lines up with the reference's normalised image.
    """
    small = grey.copy()
    small.thumbnail((256, 256), Image.Resampling.BOX)
    factor = grey.width / small.width
    busy = ndimage.binary_dilation(_edge_map(np.asarray(small, dtype=np.float64), 10.0))
    labels, _ = ndimage.label(busy, structure=np.ones((3, 3), dtype=bool))
    area = small.width * small.height
    boxes: list[Box] = []
    for found in ndimage.find_objects(labels):
        if found is None:
            continue
        rows, cols = found
        share = (rows.stop - rows.start) * (cols.stop - cols.start) / area
        if not 0.06 <= share <= 0.9:
            continue
        boxes.append(
            _restrip(
                grey,
                (cols.start * factor, rows.start * factor, cols.stop * factor, rows.stop * factor),
            )
        )
    boxes.sort(key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
    return [b for b in _distinct(boxes) if min(_size(b)) >= _THUMB][:limit]


def _restrip(grey: Image.Image, box: Box) -> Box:
    x0, y0 = math.floor(box[0]), math.floor(box[1])
    crop = grey.crop((x0, y0, math.ceil(box[2]), math.ceil(box[3])))
    left, top, right, bottom = border_box(crop)
    return (float(x0 + left), float(y0 + top), float(x0 + right), float(y0 + bottom))


def _query_regions(grey: Image.Image) -> list[_Region]:
    regions = _regions(grey, component_limit=48, pyramids=6)
    # The halves again, each stripped of its own margins: the page inside a spread, the
    # half-page of a split page whose cut edge has a margin of its own on the other side.
    halves = {"image/top", "image/bottom", "image/left", "image/right"}
    for region in [r for r in regions if r.name in halves]:
        box = _restrip(grey, region.box)
        if _iou(box, region.box) < 0.95 and min(_size(box)) >= _THUMB:
            regions.extend(_pyramid(f"{region.name}*", box))
    for n, box in enumerate(pictures(grey)):
        regions.extend(r for r in _pyramid(f"picture{n}", box) if min(_size(r.box)) >= _THUMB)
    return regions


def query_fingerprints(image: Image.Image) -> list[Fingerprint]:
    """What a crawled image is looked up with: regions of it, its mirror and its deskewed self."""
    grey = work_image(image)
    views = [("plain", grey.crop(border_box(grey)))]
    angle = skew_angle(grey)
    if angle:
        fill = int(np.median(np.asarray(grey)[[0, -1], :]))
        rotated = grey.rotate(-angle, Image.Resampling.BICUBIC, expand=True, fillcolor=fill)
        views.append((f"deskew{angle:+.1f}", rotated.crop(border_box(rotated))))
    out: list[Fingerprint] = []
    for name, view in views:
        regions = _query_regions(view)
        if not regions:
            continue
        thumbs = _thumbnails(np.asarray(view, dtype=np.float64), [r.box for r in regions])
        out.extend(_fingerprints(thumbs, regions, view.height, name))
        # The mirror image's regions are these regions mirrored; their thumbnails, these
        # thumbnails flipped. No second pass over the pixels.
        width = float(view.width)
        mirrored = [
            _Region(r.name, (width - r.box[2], r.box[1], width - r.box[0], r.box[3]))
            for r in regions
        ]
        out.extend(_fingerprints(thumbs[:, :, ::-1], mirrored, view.height, f"{name}-mirror"))
    return out


# --- scoring ---------------------------------------------------------------------------------

# Placements are tried from the closest pairs only: a real copy has several very close ones.
_ANCHORS = 24


@dataclass(frozen=True)
class _Pair:
    query: int
    reference: int
    distance: int
    scale: float  # query box size / reference box size
    shift: tuple[float, float]  # query centre - scale * reference centre
    reference_centre: tuple[float, float]
    query_size: float
    weight: float


def _pair(q: Fingerprint, r: Fingerprint, qi: int, ri: int, distance: int) -> _Pair | None:
    qx0, qy0, qx1, qy1 = q.params["box"]
    rx0, ry0, rx1, ry1 = r.params["box"]
    qw, qh, rw, rh = qx1 - qx0, qy1 - qy0, rx1 - rx0, ry1 - ry0
    if min(qw, qh, rw, rh) <= 0:
        return None
    # A region and its copy have about the same shape; a 2:1 strip matching a square is chance.
    if not 0.75 <= (qw / qh) / (rw / rh) <= 1.33:
        return None
    scale = math.sqrt((qw * qh) / (rw * rh))
    centre = ((rx0 + rx1) / 2, (ry0 + ry1) / 2)
    shift = ((qx0 + qx1) / 2 - scale * centre[0], (qy0 + qy1) / 2 - scale * centre[1])
    weight = (RETRIEVAL_RADIUS + 1 - distance) / (RETRIEVAL_RADIUS + 1)
    return _Pair(qi, ri, distance, scale, shift, centre, math.sqrt(qw * qh), weight)


def _agree(a: _Pair, b: _Pair) -> bool:
    """Whether b's reference region lands on b's query region under a's placement."""
    if abs(math.log(a.scale / b.scale)) > 0.2:
        return False
    # Placed by a, b's reference centre goes to shift_a + scale_a * centre; placed by b, to
    # b's own query centre (shift_b + scale_b * centre).
    dx = a.shift[0] - b.shift[0] + (a.scale - b.scale) * b.reference_centre[0]
    dy = a.shift[1] - b.shift[1] + (a.scale - b.scale) * b.reference_centre[1]
    # Boxes are in thousandths of the query's height: 20% of the region's size, plus 1.5% of
    # the image for small regions, whose centres rounding and stripping move the most.
    return math.hypot(dx, dy) <= 0.2 * b.query_size + 15.0


def score(
    query_fps: Sequence[Fingerprint], reference_fps: Sequence[Fingerprint]
) -> tuple[float, str]:
    """How strongly the query copies the reference, and why in one line.

    Pairs of fingerprints within ``RETRIEVAL_RADIUS`` bits vote for a placement of the
    reference in the query (scale and shift from their boxes). The score is the summed weight
    (1 at distance 0, falling linearly to 1/(radius+1)) of the largest set of pairs that agree on
    one placement, within one view of the query (plain, mirrored or deskewed), counting each
    reference region and each query region once.
    """
    q = [fp for fp in query_fps if fp.kind == KIND and fp.version == VERSION]
    r = [fp for fp in reference_fps if fp.kind == KIND and fp.version == VERSION]
    if not q or not r:
        return 0.0, "no comparable fingerprints"
    qv = np.array([fp.value for fp in q], dtype=np.uint64)
    rv = np.array([fp.value for fp in r], dtype=np.uint64)
    distances = popcount(qv[:, None] ^ rv[None, :])
    close = np.argwhere(distances <= RETRIEVAL_RADIUS)
    if close.size == 0:
        return 0.0, f"no fingerprint within {RETRIEVAL_RADIUS} bits"
    groups: dict[str, list[_Pair]] = {}
    for qi, ri in close:
        pair = _pair(q[qi], r[ri], int(qi), int(ri), int(distances[qi, ri]))
        if pair is not None:
            groups.setdefault(str(q[qi].params["group"]), []).append(pair)
    best, best_group, best_set = 0.0, "", []
    for group, pairs in groups.items():
        pairs.sort(key=lambda p: (p.distance, p.query, p.reference))
        for anchor in pairs[:_ANCHORS]:
            chosen = _consistent(anchor, pairs)
            total = sum(p.weight for p in chosen)
            if total > best:
                best, best_group, best_set = total, group, chosen
    if not best_set:
        return 0.0, "no consistent region pairs"
    shown = ", ".join(
        f"{q[p.query].variant}~{r[p.reference].variant}:{p.distance}" for p in best_set[:6]
    )
    more = f" (+{len(best_set) - 6} more)" if len(best_set) > 6 else ""
    return best, (
        f"{len(best_set)} region pairs agree in the {best_group} view "
        f"(scale {best_set[0].scale:.2f}): {shown}{more}"
    )


def _consistent(anchor: _Pair, pairs: Sequence[_Pair]) -> list[_Pair]:
    used_q: set[int] = set()
    used_r: set[int] = set()
    chosen: list[_Pair] = []
    for pair in pairs:  # closest first, so each region keeps its best partner
        if pair.query in used_q or pair.reference in used_r:
            continue
        if pair is anchor or _agree(anchor, pair):
            chosen.append(pair)
            used_q.add(pair.query)
            used_r.add(pair.reference)
    return chosen
