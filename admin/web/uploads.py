"""Registering a work from uploaded files, with the same checks as ``mamoru works add``.

Uploads are written to a private temporary folder, expanded with ``matcher.sources`` (every
file opened and checked before anything is hashed) and registered in one transaction; any
problem leaves the database as it was. Messages name the files as the user uploaded them,
never the temporary folder.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from werkzeug.datastructures import FileStorage

from admin.web.resources import get_db, ingest_limits, page_store, settings
from matcher.errors import InputError
from matcher.registry import RegistrationResult, register_work
from matcher.sources import expand_paths, natural_key

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


class UploadError(ValueError):
    """The upload cannot be registered; the message is meant for the uploader."""


def upload_name(filename: str | None, position: int) -> str:
    """A file name safe to create, as close as possible to the one uploaded."""
    name = Path((filename or "").replace("\\", "/")).name
    name = _UNSAFE.sub("", name).strip()
    if not name or name.startswith("."):
        name = f"upload-{position}{name}"
    if len(name) > 200:
        stem, dot, suffix = name.rpartition(".")
        name = stem[:190] + dot + suffix[:9] if dot else name[:200]
    return name


def register_upload(
    files: Sequence[FileStorage],
    *,
    publisher: str,
    title: str,
    kind: str = "volume",
    isbn: str | None = None,
    official_url: str | None = None,
    identifiers: dict[str, Any] | None = None,
) -> RegistrationResult:
    chosen = [f for f in files if f.filename]
    if not chosen:
        raise UploadError("choose at least one file: images, a CBZ/ZIP archive or a PDF")
    # Browsers send files in no promised order; pages are ordered as a folder would be.
    chosen.sort(key=lambda f: natural_key(f.filename or ""))
    with tempfile.TemporaryDirectory(prefix="mamoru-upload-") as tmp:
        paths = []
        for position, upload in enumerate(chosen, 1):
            # One folder per file: two uploads with the same name stay two files.
            folder = Path(tmp) / f"{position:05d}"
            folder.mkdir()
            path = folder / upload_name(upload.filename, position)
            upload.save(path)
            paths.append(path)
        prefix = re.compile(re.escape(tmp) + r"/\d{5}/")
        try:
            sources = expand_paths(paths, ingest_limits(settings()))
            sources = [replace(s, name=prefix.sub("", s.name)) for s in sources]
            return register_work(
                get_db(),
                publisher=publisher,
                title=title,
                sources=sources,
                kind=kind,
                isbn=isbn or None,
                official_url=official_url or None,
                identifiers=identifiers,
                store=page_store(),
            )
        except (InputError, ValueError) as exc:
            raise UploadError(prefix.sub("", str(exc))) from exc
