"""Images from the page store and the evidence store, each behind the same scope checks as the
page that shows it.

Stored bytes are served only as the raster type their first bytes prove (PNG, JPEG, GIF, WebP,
BMP), whatever the crawl or the manifest claimed: a pirate site can serve HTML or SVG as an
"image", and the admin's origin must never render it. Anything else is re-encoded as PNG after
a safe decode, or refused.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Final

from flask import Blueprint, Response, abort, request
from flask.typing import ResponseReturnValue
from PIL import Image

from admin.web.auth import login_required
from admin.web.evidence import load_evidence
from admin.web.queries import review, works
from admin.web.resources import evidence_store, get_db, ingest_limits, page_store, settings
from admin.web.scope import current_scope
from admin.web.security import MEDIA_CSP
from matcher.decode import decode_image
from matcher.errors import InputError
from store.blobs import BlobStore

bp = Blueprint("media", __name__, url_prefix="/media")

THUMB_SIZE: Final = (240, 360)
_SIGNATURES: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def sniff(data: bytes) -> str | None:
    for magic, media_type in _SIGNATURES:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _image_response(data: bytes, media_type: str) -> Response:
    response = Response(data, mimetype=media_type)
    response.headers["Content-Security-Policy"] = MEDIA_CSP
    # Content-addressed, so never stale; private because access depends on the user.
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return response


def _decode_to(data: bytes, fmt: str, size: tuple[int, int] | None = None) -> bytes:
    image = decode_image(data, source="stored image", limits=ingest_limits(settings()).decode)
    try:
        if size is not None:
            image.thumbnail(size, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.convert("RGB").save(out, fmt, quality=85)
        return out.getvalue()
    finally:
        image.close()


def _serve_blob(store: BlobStore, digest: str) -> Response:
    try:
        data = store.read(digest)
    except (OSError, ValueError):
        abort(404)
    media_type = sniff(data)
    if media_type is not None:
        return _image_response(data, media_type)
    try:
        return _image_response(_decode_to(data, "PNG"), "image/png")
    except InputError:
        abort(404)


def _thumbnail(store: BlobStore, digest: str) -> Response:
    cache = settings().data_dir / "cache" / "thumbs" / digest[:2] / f"{digest}.jpg"
    if not cache.is_file():
        try:
            data = _decode_to(store.read(digest), "JPEG", THUMB_SIZE)
        except (OSError, ValueError):
            abort(404)
        _write_atomically(cache, data)
    return _image_response(cache.read_bytes(), "image/jpeg")


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as fp:
        fp.write(data)
    Path(tmp).replace(path)


@bp.route("/pages/<int:page_id>")
@login_required
def page(page_id: int) -> ResponseReturnValue:
    stored = works.page_image(get_db(), current_scope(), page_id)
    if stored is None:
        abort(404)
    if request.args.get("size") == "thumb":
        return _thumbnail(page_store(), stored.sha256)
    return _serve_blob(page_store(), stored.sha256)


def _evidence_of(match_id: int) -> tuple[str | None, str | None, str | None]:
    row = review.get_match(get_db(), current_scope(), match_id)
    if row is None:
        abort(404)
    found = load_evidence(evidence_store(), row.evidence_ref)
    if found is None:
        return None, None, None
    return found.image_sha256, found.screenshot_sha256, found.html_sha256


@bp.route("/matches/<int:match_id>/image")
@login_required
def found_image(match_id: int) -> ResponseReturnValue:
    image, _, _ = _evidence_of(match_id)
    if image is None:
        abort(404)
    if request.args.get("size") == "thumb":
        return _thumbnail(evidence_store(), image)
    return _serve_blob(evidence_store(), image)


@bp.route("/matches/<int:match_id>/screenshot")
@login_required
def screenshot(match_id: int) -> ResponseReturnValue:
    _, shot, _ = _evidence_of(match_id)
    if shot is None:
        abort(404)
    return _serve_blob(evidence_store(), shot)


@bp.route("/matches/<int:match_id>/page.html.txt")
@login_required
def page_html(match_id: int) -> ResponseReturnValue:
    """The pirate page's HTML as captured, as a plain-text download: evidence, never rendered."""
    _, _, html = _evidence_of(match_id)
    if html is None:
        abort(404)
    try:
        data = evidence_store().read(html)
    except (OSError, ValueError):
        abort(404)
    response = Response(data, mimetype="text/plain")
    response.headers["Content-Security-Policy"] = MEDIA_CSP
    response.headers["Content-Disposition"] = f'attachment; filename="match-{match_id}-page.txt"'
    return response


@bp.route("/matches/<int:match_id>/manifest.json")
@login_required
def manifest(match_id: int) -> ResponseReturnValue:
    row = review.get_match(get_db(), current_scope(), match_id)
    if row is None or not row.evidence_ref:
        abort(404)
    try:
        data = evidence_store().read(row.evidence_ref)
    except (OSError, ValueError):
        abort(404)
    response = Response(data, mimetype="application/json")
    response.headers["Content-Security-Policy"] = MEDIA_CSP
    response.headers["Content-Disposition"] = (
        f'attachment; filename="evidence-{row.evidence_ref}.json"'
    )
    return response
