"""Which fingerprints a registered page stores and a crawled image is looked up with.

Two families, each versioned on its own (``Fingerprint.version``):

- global pHash and dHash of the whole image (``matcher.fingerprint``): cheap, exact re-encodes;
  kept as corroborating scores in a match's explanation;
- region pHashes (``matcher.robust``): what identification decides on, because they survive
  crops, splits, joins, mirroring, rotation and reader layouts.

``CURRENT_VERSIONS`` is what the index loads and what the re-fingerprint job brings every page
to: a stored fingerprint of any other (kind, version) is never compared with a new one.
"""

from __future__ import annotations

from types import MappingProxyType

from PIL import Image

from matcher import robust
from matcher.decode import DEFAULT_DECODE_LIMITS, DecodeLimits, decode_image
from matcher.fingerprint import FINGERPRINT_VERSION, HASH_KINDS, Fingerprint, fingerprint_image

__all__ = [
    "CURRENT_VERSIONS",
    "fingerprint_bytes",
    "query_fingerprints",
    "reference_fingerprints",
]

CURRENT_VERSIONS = MappingProxyType(
    {**{kind.name: FINGERPRINT_VERSION for kind in HASH_KINDS}, robust.KIND: robust.VERSION}
)


def reference_fingerprints(image: Image.Image) -> list[Fingerprint]:
    """Every fingerprint stored for one registered page."""
    return fingerprint_image(image) + robust.reference_fingerprints(image)


def query_fingerprints(image: Image.Image) -> list[Fingerprint]:
    """Every fingerprint a crawled image is identified with (never stored)."""
    return fingerprint_image(image) + robust.query_fingerprints(image)


def fingerprint_bytes(
    data: bytes, *, source: str, limits: DecodeLimits = DEFAULT_DECODE_LIMITS
) -> list[Fingerprint]:
    """Safe decode of an image file's bytes, then the fingerprints a registered page stores."""
    with decode_image(data, source=source, limits=limits) as image:
        return reference_fingerprints(image)
