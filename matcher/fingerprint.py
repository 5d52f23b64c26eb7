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
PIPELINE = 1
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


def fingerprint_image(image: Image.Image) -> list[Fingerprint]:
    """All fingerprints Mamoru stores for one decoded RGB image."""
    return [
        Fingerprint(kind=kind.name, value=hash_to_int(kind.compute(image)), params=kind.params)
        for kind in HASH_KINDS
    ]
