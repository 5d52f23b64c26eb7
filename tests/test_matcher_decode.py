"""Safe decoding: supported formats come out as upright RGB, every bad input as InputError."""

from __future__ import annotations

import io
import pickle
import struct
import warnings
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image

from matcher.decode import DecodeLimits, decode_image, probe_image
from matcher.errors import InputError

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(width: int = 120, height: int = 80) -> Image.Image:
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def gradient(width: int = 120, height: int = 80) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    channels = (x * 255 // width, y * 255 // height, np.full_like(x, 90))
    return Image.fromarray(np.dstack(channels).astype(np.uint8))


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares any size, with only a few bytes of pixel data."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + body))
        return struct.pack(">I", len(body)) + tag + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def close_to(actual: object, expected: tuple[int, ...], tolerance: int = 8) -> bool:
    assert isinstance(actual, tuple)
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def error_text(data: bytes, source: str, limits: DecodeLimits | None = None) -> str:
    with pytest.raises(InputError) as caught:
        decode_image(data, source=source, limits=limits or DecodeLimits())
    return str(caught.value)


@pytest.mark.parametrize(
    ("fmt", "media_type", "tolerance"),
    [
        ("JPEG", "image/jpeg", 3),
        ("PNG", "image/png", 0),
        ("WEBP", "image/webp", 3),
        ("BMP", "image/bmp", 0),
        ("TIFF", "image/tiff", 0),
    ],
)
def test_supported_formats_decode_to_rgb(fmt: str, media_type: str, tolerance: int) -> None:
    original = gradient()
    data = encode(original, fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))

    info = probe_image(data, source="p")
    assert (info.media_type, info.width, info.height) == (media_type, 120, 80)
    decoded = decode_image(data, source="p")

    assert decoded.mode == "RGB"
    assert decoded.size == (120, 80)
    difference = np.abs(np.asarray(decoded, dtype=int) - np.asarray(original, dtype=int))
    assert difference.mean() <= tolerance


@pytest.mark.parametrize(
    ("fmt", "options"), [("GIF", {}), ("WEBP", {"lossless": True}), ("PNG", {})]
)
def test_animation_yields_first_frame(fmt: str, options: dict[str, Any]) -> None:
    frames = [Image.new("RGB", (32, 24), RED), Image.new("RGB", (32, 24), BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **options)
    with Image.open(io.BytesIO(data)) as check:
        assert getattr(check, "n_frames", 1) == 2

    decoded = decode_image(data, source="anim")

    assert decoded.mode == "RGB"
    assert close_to(decoded.getpixel((16, 12)), RED)


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    cmyk = Image.new("CMYK", (40, 30), (0, 255, 255, 0))
    decoded = decode_image(encode(cmyk, "JPEG", quality=95), source="cmyk.jpg")

    assert decoded.mode == "RGB"
    assert close_to(decoded.getpixel((20, 15)), RED)


def test_16_bit_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "I;16"

    decoded = decode_image(data, source="deep.png")

    assert decoded.mode == "RGB"
    assert [decoded.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128,) * 3, (255,) * 3]


def test_alpha_is_composited_onto_white() -> None:
    rgba = Image.new("RGBA", (3, 1))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (255, 0, 0, 128))
    rgba.putpixel((2, 0), (0, 0, 255, 255))

    decoded = decode_image(encode(rgba, "PNG"), source="alpha.png")

    assert decoded.mode == "RGB"
    assert decoded.getpixel((0, 0)) == (255, 255, 255)
    assert close_to(decoded.getpixel((1, 0)), (255, 127, 127), tolerance=1)
    assert decoded.getpixel((2, 0)) == BLUE


@pytest.mark.parametrize("mode", ["LA", "P"])
def test_gray_alpha_and_palette_transparency_become_white(mode: str) -> None:
    image = Image.new("LA", (4, 4), (0, 0)) if mode == "LA" else Image.new("P", (4, 4), 0)
    options = {"transparency": 0} if mode == "P" else {}

    decoded = decode_image(encode(image, "PNG", **options), source="t.png")

    assert decoded.getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied() -> None:
    stored = Image.new("RGB", (40, 20), RED)
    stored.paste(BLUE, (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; viewers turn it 90 degrees clockwise
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())

    decoded = decode_image(data, source="phone.jpg")

    assert decoded.size == (20, 40)
    assert close_to(decoded.getpixel((10, 5)), RED, tolerance=40)
    assert close_to(decoded.getpixel((10, 35)), BLUE, tolerance=40)


def test_empty_data() -> None:
    assert error_text(b"", "empty.jpg") == "empty.jpg: empty file (0 bytes)"


def test_too_many_bytes() -> None:
    data = encode(noise(8, 8), "PNG")
    text = error_text(data, "big.png", DecodeLimits(max_bytes=100))
    assert text == f"big.png: too large ({len(data):,} bytes, limit is 100)"


def test_text_is_not_an_image() -> None:
    text = error_text(b"chapter 3 notes\n", "pages/003.jpg")
    assert text == "pages/003.jpg: not an image (cannot identify image format)"


@pytest.mark.parametrize(
    "data",
    [
        encode(noise(16, 16), "ICO"),
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
        encode(noise(16, 16), "PDF"),
    ],
    ids=["ico", "eps", "pdf"],
)
def test_formats_we_cannot_hash_are_refused(data: bytes) -> None:
    assert error_text(data, "x.img") == "x.img: not an image (cannot identify image format)"


def test_corrupt_header() -> None:
    text = error_text(b"\x89PNG\r\n\x1a\n" + b"x" * 30, "bad.png")
    assert text == "bad.png: corrupt image header (Truncated File Read)"


def test_corrupt_pixel_data() -> None:
    data = bytearray(encode(noise(), "PNG"))
    data[len(data) // 2 : len(data) // 2 + 16] = b"\xff" * 16
    probe_image(bytes(data), source="bad.png")  # the header is intact
    text = error_text(bytes(data), "bad.png")
    assert text == (
        "bad.png: corrupt image data (unrecognized data stream contents when reading image file)"
    )


def test_truncated_jpeg_passes_probe_but_not_decode() -> None:
    data = encode(noise(), "JPEG")
    cut = data[: len(data) // 2]

    assert probe_image(cut, source="cut.jpg").media_type == "image/jpeg"
    assert error_text(cut, "cut.jpg") == "cut.jpg: truncated image data"


def test_bomb_beyond_pillows_hard_limit() -> None:
    text = error_text(png_header(20_000, 20_000), "scan.png")
    assert text == (
        "scan.png: image has 400,000,000 pixels, limit is 50,000,000 (possible decompression bomb)"
    )


def test_bomb_in_pillows_warning_band_emits_no_warning() -> None:
    data = png_header(10_000, 9_000)  # above Pillow's warning threshold, below its error
    before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        text = error_text(data, "scan.png")
        with pytest.raises(InputError):
            probe_image(data, source="scan.png")

    assert seen == []
    assert before == Image.MAX_IMAGE_PIXELS
    assert text == (
        "scan.png: image has 90,000,000 pixels, limit is 50,000,000 (possible decompression bomb)"
    )


def test_own_pixel_limit_is_checked_before_decoding() -> None:
    # The pixel data is only a few bytes: decoding it would fail, so the limit must come first.
    text = error_text(png_header(100, 100), "scan.png", DecodeLimits(max_pixels=1000))
    assert text == "scan.png: image has 10,000 pixels, limit is 1,000 (possible decompression bomb)"


def test_real_solid_bomb_is_refused() -> None:
    data = encode(Image.new("1", (8000, 7000)), "PNG")
    assert len(data) < 100_000
    assert error_text(data, "solid.png") == (
        "solid.png: image has 56,000,000 pixels, limit is 50,000,000 (possible decompression bomb)"
    )


def test_input_error_is_one_line_and_picklable() -> None:
    error = InputError("vol.cbz:evil\nname.png", "not an image\r(x)")

    assert isinstance(error, ValueError)
    assert str(error) == "vol.cbz:evil\\nname.png: not an image\\r(x)"
    assert error.source == "vol.cbz:evil\\nname.png"
    assert error.reason == "not an image\\r(x)"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.source, copy.reason, str(copy)) == (error.source, error.reason, str(error))
