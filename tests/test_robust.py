"""The robust region fingerprints: copies found at the benchmark's threshold, look-alikes not.

No database here: the scheme is pure. The full measurement is bench/matching_quality.py; these
are its smallest cases, one per transform family, so a regression shows up in seconds.
"""

from __future__ import annotations

import io
import random
from functools import cache

import pytest
from PIL import Image, ImageOps

from admin.samples import render_page
from bench.corpus import draw_page, filler_pages
from bench.transforms import by_name, encode
from matcher import robust
from matcher.fingerprint import Fingerprint

TITLE = "Robust Harbor"


@cache
def page(number: int) -> Image.Image:
    return render_page(TITLE, number)


@cache
def reference(number: int) -> tuple[Fingerprint, ...]:
    return tuple(robust.reference_fingerprints(page(number)))


def best(image: Image.Image, pages: range = range(1, 4)) -> tuple[int, float]:
    """The registered page the image matches best, and that score."""
    query = robust.query_fingerprints(image)
    scores = {n: robust.score(query, reference(n))[0] for n in pages}
    number = max(scores, key=lambda n: scores[n])
    return number, scores[number]


@pytest.mark.parametrize(
    "transform",
    ["jpeg", "combo", "pad", "crop_small", "mirror", "rotate", "split", "join", "embed"],
)
def test_transformed_copy_is_identified(transform: str) -> None:
    rng = random.Random(f"test|{transform}")
    copy = by_name(transform).apply(page(2), rng, filler_pages(7, 4))
    number, score = best(copy)
    assert number == 2
    assert score > robust.THRESHOLD


def test_lookalike_pages_are_not_identified() -> None:
    # Same generators, other seeds: the near-misses that set the threshold.
    lookalikes = [render_page("Never registered", n) for n in (1, 2)]
    lookalikes += [draw_page(random.Random(f"test-lookalike|{n}")) for n in range(2)]
    lookalikes.append(encode(ImageOps.mirror(lookalikes[0]), "JPEG", 50))
    for image in lookalikes:
        _, score = best(image)
        assert score <= robust.THRESHOLD


def test_score_explains_what_agreed() -> None:
    copy = by_name("mirror").apply(page(1), random.Random(1), [])
    score, explanation = robust.score(robust.query_fingerprints(copy), reference(1))
    assert score > robust.THRESHOLD
    assert "mirror view" in explanation
    assert robust.score([], reference(1)) == (0.0, "no comparable fingerprints")


def test_reference_fingerprints_are_bounded_and_labelled() -> None:
    fps = reference(3)
    assert 9 <= len(fps) <= robust.MAX_REFERENCE_FINGERPRINTS
    assert {fp.kind for fp in fps} == {robust.KIND}
    assert {fp.version for fp in fps} == {robust.VERSION}
    assert all(0 <= fp.value < 2**64 and fp.bits == 64 for fp in fps)
    assert fps[0].variant == "image"
    assert robust.reference_fingerprints(page(3)) == list(fps)  # deterministic


def test_border_stripping_survives_letterbox_and_jpeg() -> None:
    original = page(1)
    boxed = ImageOps.expand(original, border=(180, 90, 180, 90), fill=(0, 0, 0))
    buffer = io.BytesIO()
    boxed.save(buffer, "JPEG", quality=35)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        letterboxed = decoded.convert("RGB")

    clean = robust.normalise(original)
    stripped = robust.normalise(letterboxed)
    # Both lose the bars *and* the page's blank margin, ending at the same drawn content.
    assert abs(stripped.width / stripped.height - clean.width / clean.height) < 0.02
    grey = robust.work_image(letterboxed)
    x0, y0, x1, y1 = robust.border_box(grey)
    scale = grey.width / letterboxed.width
    assert x0 > 180 * scale and y0 > 90 * scale
    assert x1 < (180 + original.width) * scale and y1 < (90 + original.height) * scale


def test_blank_and_tiny_images_do_not_crash() -> None:
    assert robust.query_fingerprints(Image.new("RGB", (300, 200), (255, 255, 255))) == []
    assert robust.reference_fingerprints(Image.new("RGB", (5, 5), (0, 0, 0))) == []
    tiny = robust.query_fingerprints(Image.new("RGB", (40, 40), (10, 200, 30)))
    assert robust.score(tiny, reference(1))[0] == 0.0
