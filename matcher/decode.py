"""Safe decoding of untrusted image bytes, shared by reference pages and crawled images."""

from __future__ import annotations

import io
import re
import threading
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from matcher.errors import InputError

# Restricting Image.open to these keeps untrusted bytes away from plugins we cannot hash
# or do not want to run at all (EPS hands the file to Ghostscript). Pillow's JPEG opener
# returns camera multi-picture files as "MPO"; their first picture is an ordinary JPEG.
_OPEN_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
_MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}

# warnings.catch_warnings swaps process-wide state; serialise our own uses so two decoding
# threads cannot restore each other's filters out of order.
_WARNINGS_LOCK = threading.Lock()
_PILLOW_PIXELS = re.compile(r"\((\d+) pixels\)")


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = 50_000_000
    max_bytes: int = 100 * 1024 * 1024


DEFAULT_DECODE_LIMITS = DecodeLimits()


@dataclass(frozen=True)
class ImageInfo:
    media_type: str
    width: int
    height: int


def check_byte_size(size: int, *, source: str, limits: DecodeLimits) -> None:
    """Reject empty or oversized encoded data before it is read or parsed."""
    if size == 0:
        raise InputError(source, "empty file (0 bytes)")
    if size > limits.max_bytes:
        raise InputError(source, f"too large ({size:,} bytes, limit is {limits.max_bytes:,})")


def probe_image(
    data: bytes, *, source: str, limits: DecodeLimits = DEFAULT_DECODE_LIMITS
) -> ImageInfo:
    """Validate format and dimensions from the header alone, without decoding pixels."""
    with _open_checked(data, source, limits) as im:
        return ImageInfo(_MEDIA_TYPES[str(im.format)], im.width, im.height)


def decode_image(
    data: bytes,
    *,
    source: str,
    limits: DecodeLimits = DEFAULT_DECODE_LIMITS,
    draft_size: int | None = None,
) -> Image.Image:
    """Decode the first frame into a fully loaded, upright RGB image or raise InputError.

    With ``draft_size``, a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that still
    leaves both sides at least ``draft_size`` pixels: hashes computed on a 32x32 or 64x64
    thumbnail do not need the full resolution, and scaled decoding skips most of the work.
    """
    with _open_checked(data, source, limits) as im:
        try:
            if draft_size is not None and im.format in ("JPEG", "MPO"):
                im.draft(im.mode, (draft_size, draft_size))
            im.load()
            return _to_rgb(_upright(im))
        except MemoryError:
            raise
        except Exception as exc:  # decoders raise many types on hostile data; all mean "bad input"
            raise InputError(source, _decode_failure(exc)) from exc


def _pixel_limit(limits: DecodeLimits) -> int:
    # Never above Pillow's own threshold, so no later crop or frame step in Pillow can emit
    # a DecompressionBombWarning outside the guarded Image.open call.
    pillow_limit = Image.MAX_IMAGE_PIXELS
    return limits.max_pixels if pillow_limit is None else min(limits.max_pixels, pillow_limit)


def _bomb_reason(pixels: int | None, limit: int) -> str:
    if pixels is None:
        return f"image has more than {limit:,} pixels (possible decompression bomb)"
    return f"image has {pixels:,} pixels, limit is {limit:,} (possible decompression bomb)"


def _open_checked(data: bytes, source: str, limits: DecodeLimits) -> Image.Image:
    check_byte_size(len(data), source=source, limits=limits)
    limit = _pixel_limit(limits)
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            # Our own limit below is never looser than Pillow's, so its warning adds nothing.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
    except Image.DecompressionBombError as exc:
        found = _PILLOW_PIXELS.search(str(exc))
        raise InputError(source, _bomb_reason(int(found[1]) if found else None, limit)) from exc
    except UnidentifiedImageError as exc:
        raise InputError(source, "not an image (cannot identify image format)") from exc
    except MemoryError:
        raise
    except Exception as exc:  # header parsers raise many types on hostile data
        raise InputError(source, f"corrupt image header ({exc})") from exc
    pixels = im.width * im.height
    if pixels > limit:
        im.close()
        raise InputError(source, _bomb_reason(pixels, limit))
    if pixels == 0 or im.format not in _MEDIA_TYPES:
        im.close()
        raise InputError(source, "not an image (no pixels)")
    return im


def _decode_failure(exc: Exception) -> str:
    if "truncated" in str(exc):
        return "truncated image data"
    return f"corrupt image data ({exc or type(exc).__name__})"


def _upright(im: Image.Image) -> Image.Image:
    try:
        upright = ImageOps.exif_transpose(im)
    except Exception:  # a corrupt EXIF block costs the orientation, not the picture
        return im
    return im if upright is None else upright


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = _to_8bit_gray(im)
    if im.has_transparency_data:
        # Pages are viewed on white; a bare RGBA->RGB drop would reveal whatever colour
        # the encoder left under fully transparent pixels.
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _to_8bit_gray(im: Image.Image) -> Image.Image:
    # Pillow's own conversion clips these modes at 255, which turns most of a 16-bit
    # scan white; scale the value range down instead.
    # Float samples are taken as 0..1 when they fit, 32-bit integers as 16-bit when they
    # exceed 8 bits: the common encodings, as no file says which range it means.
    values = np.nan_to_num(np.asarray(im, dtype=np.float64))
    peak = values.max(initial=0.0)
    if im.mode == "F":
        values = values * 255.0 if peak <= 1.0 else values
    elif im.mode != "I" or peak > 255.0:
        values = values / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
