"""Perceptual fingerprints of an image: pure code, decoded image in, 64-bit integers out.

Hashes are plain unsigned integers; the distance between two is the popcount of their XOR.
Every fingerprint carries its kind, parameters and version so a stored value is never compared
with one computed differently (see ``FINGERPRINT_VERSION``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import imagehash
from PIL import Image

# Bump PIPELINE when decoding or normalisation changes what gets hashed; a different imagehash
# release may also change values. Either way stored fingerprints of another version are
# re-computed by a re-fingerprint job, never mixed with new ones.
# 2: hashed from a greyscale image box-reduced to about 128 pixels (see ``prepare``).
PIPELINE = 2
FINGERPRINT_VERSION = f"imagehash-{imagehash.__version__}/mamoru-{PIPELINE}"

_U64 = 1 << 64

# Smallest side, in pixels, that fingerprinting needs from a JPEG decoded with DCT scaling
# (``decode_image(..., draft_size=DRAFT_SIZE)``): pHash works on 32x32, dHash on 9x8, so a
# quarter- or eighth-scale decode of a typical page gives the same bits at a fraction of the cost.
DRAFT_SIZE = 256


@dataclass(frozen=True)
class Fingerprint:
    kind: str
    value: int  # unsigned, 0 <= value < 2**bits
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    variant: str = "full"
    version: str = FINGERPRINT_VERSION
    bits: int = 64


@dataclass(frozen=True)
class HashKind:
    name: str
    params: Mapping[str, Any]
    compute: Callable[[Image.Image], imagehash.ImageHash]


HASH_KINDS: tuple[HashKind, ...] = (
    HashKind(
        "phash",
        MappingProxyType({"hash_size": 8, "highfreq_factor": 4}),
        lambda im: imagehash.phash(im, hash_size=8, highfreq_factor=4),
    ),
    HashKind(
        "dhash", MappingProxyType({"hash_size": 8}), lambda im: imagehash.dhash(im, hash_size=8)
    ),
)


def hash_to_int(value: imagehash.ImageHash) -> int:
    """The hash's bits as an unsigned integer, first bit most significant.

    >>> hash_to_int(imagehash.hex_to_hash("8000000000000001"))
    9223372036854775809
    """
    return int(str(value), 16)


def to_signed64(value: int) -> int:
    """Map an unsigned 64-bit value onto PostgreSQL's signed bigint.

    >>> to_signed64(2**64 - 1)
    -1
    >>> to_signed64(5)
    5
    """
    if not 0 <= value < _U64:
        raise ValueError(f"{value} does not fit in 64 unsigned bits")
    return value - _U64 if value >= 1 << 63 else value


def from_signed64(value: int) -> int:
    """Inverse of ``to_signed64``.

    >>> from_signed64(-1) == 2**64 - 1
    True
    """
    return value + _U64 if value < 0 else value


def hamming(a: int, b: int) -> int:
    """Number of differing bits.

    >>> hamming(0b1011, 0b0001)
    2
    """
    return (a ^ b).bit_count()


# Side, in pixels, to which ``prepare`` box-reduces an image before hashing.
PREPARED_SIDE = 128


def prepare(image: Image.Image) -> Image.Image:
    """Greyscale, box-reduced by an integer factor to about ``PREPARED_SIDE`` on its short side.

    imagehash converts to grey and resamples to 32x32 (pHash) or 9x8 (dHash) with LANCZOS,
    whose cost grows with the input's area; averaging blocks first costs a fraction of that and
    leaves the low frequencies both hashes keep (the same pHash on the benchmark's pages, dHash
    within a bit or two), so hashing costs little more than decoding.
    """
    grey = image.convert("L")
    factor = min(grey.width, grey.height) // PREPARED_SIDE
    return grey.reduce(factor) if factor > 1 else grey


def fingerprint_image(image: Image.Image) -> list[Fingerprint]:
    """The whole-image fingerprints of one decoded image."""
    prepared = prepare(image)
    return [
        Fingerprint(kind=kind.name, value=hash_to_int(kind.compute(prepared)), params=kind.params)
        for kind in HASH_KINDS
    ]
