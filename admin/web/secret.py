"""The key that signs session cookies: configured, or generated once and kept on disk.

A key generated per process would log everyone out on every restart and, under gunicorn, make
each worker reject the others' cookies; so it is created once in ``data_dir/secret_key``
(mode 0600) and read by every process after that.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from store.config import Settings

FILENAME = "secret_key"


def secret_key(settings: Settings) -> str:
    if settings.web_secret_key:
        return settings.web_secret_key
    return _stored_key(settings.data_dir / FILENAME)


def _stored_key(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written under a private name and linked into place: two workers starting at once both
        # end up reading the one key that won, never a half-written file.
        tmp = path.with_name(f".{FILENAME}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fp:
                fp.write(secrets.token_urlsafe(48))
                fp.flush()
                os.fsync(fp.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_text().strip()
    if len(key) < 32:
        raise ValueError(f"{path}: secret key is too short; delete the file to generate a new one")
    return key
