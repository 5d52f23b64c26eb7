"""Content-addressed file storage: immutable files named by their SHA-256.

Shared by the evidence store (crawler) and the reference page store (matcher). Files sit in
sharded folders (``ab/cd/abcd...``), are written beside their target and renamed so a reader
never sees half a file, and are never changed: a file's name is its proof of integrity, and the
same bytes stored twice cost one file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Blob", "BlobStore"]

_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Blob:
    sha256: str  # hex
    size: int
    media_type: str

    def as_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "bytes": self.size, "media_type": self.media_type}


class BlobStore:
    """A folder of immutable files named by their SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        if len(digest) != 64 or not _HEX.issuperset(digest):
            raise ValueError(f"not a SHA-256 hex digest: {digest!r}")
        return self.root / digest[:2] / digest[2:4] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def read(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def put(self, data: bytes, media_type: str = "application/octet-stream") -> Blob:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            # Two writers storing the same bytes at once both end with the same complete file.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fp:
                    fp.write(data)
                    fp.flush()
                    os.fsync(fp.fileno())
                Path(tmp).chmod(0o444)
                Path(tmp).replace(target)
            except BaseException:
                with contextlib.suppress(OSError):
                    Path(tmp).unlink()
                raise
        return Blob(digest, len(data), media_type)
