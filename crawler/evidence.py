"""The evidence store: content-addressed files, one JSON manifest per matched sighting.

Every artefact (the HTML as served, the full-page screenshot, the image bytes) is stored once
under its SHA-256, in sharded folders (``ab/cd/abcd...``), written atomically and never
changed: a file's name is its proof of integrity, and the same logo on a thousand pages costs
one file. A manifest ties artefacts to a sighting (page URL, image URL, crawl, timestamps,
response headers, resolved addresses, matches) and is itself stored by its SHA-256, which
becomes the sighting's ``evidence_ref``. A later crawl's manifest names the one before it
(``previous``), so the history of a sighting is a chain no one can edit unnoticed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from crawler.items import ImageItem, PageCapture, utc_now
from store.blobs import Blob, BlobStore

__all__ = ["MANIFEST_KIND", "Artefact", "EvidenceStore", "build_manifest"]

MANIFEST_KIND: Final = "mamoru.evidence/1"


# An evidence artefact is a blob: the HTML, screenshot or image bytes, stored once by content.
Artefact = Blob


class EvidenceStore(BlobStore):
    """Blobs plus manifests that tie them to a sighting."""

    def put_manifest(self, manifest: Mapping[str, Any]) -> str:
        """Store ``manifest`` as canonical JSON; return its SHA-256 (the evidence reference)."""
        text = json.dumps(manifest, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return self.put(text.encode("utf-8"), "application/json").sha256

    def manifest(self, digest: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.read(digest))
        return loaded


def build_manifest(
    store: EvidenceStore,
    item: ImageItem,
    *,
    image_bytes: bytes | None,
    image_sha256: str,
    site: Mapping[str, Any],
    crawl_id: int,
    matches: Sequence[Mapping[str, Any]],
    previous: str | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Store the artefacts of one matched sighting and return its manifest (not yet stored)."""
    page: PageCapture = item.page
    artefacts: dict[str, dict[str, Any]] = {}

    def keep(data: bytes, media_type: str, role: str) -> dict[str, Any]:
        artefact = store.put(data, media_type)
        artefacts.setdefault(artefact.sha256, {**artefact.as_json(), "roles": []})
        artefacts[artefact.sha256]["roles"].append(role)
        return artefact.as_json()

    html = keep(page.html, page.media_type, "html")
    screenshot = keep(page.screenshot, "image/png", "screenshot") if page.screenshot else None
    if image_bytes is not None:
        image_artefact: dict[str, Any] | None = keep(
            image_bytes, item.media_type or "application/octet-stream", "image"
        )
    elif store.has(image_sha256):
        # Unchanged since an earlier crawl stored it (a 304): the same content, same name.
        size = store.path(image_sha256).stat().st_size
        image_artefact = {"sha256": image_sha256, "bytes": size, "media_type": item.media_type}
        artefacts.setdefault(image_sha256, {**image_artefact, "roles": []})
        artefacts[image_sha256]["roles"].append("image")
    else:
        image_artefact = None
    return {
        "kind": MANIFEST_KIND,
        "captured_at": utc_now().isoformat(),
        "site": dict(site),
        "crawl_id": crawl_id,
        "page_url": page.url,
        "image_url": item.image_url,
        "page": {
            "url": page.url,
            "status": page.status,
            "fetched_at": page.fetched_at.isoformat(),
            "ip_address": page.ip_address,
            "headers": page.headers,
            "rendered": page.rendered,
            "html": html,
            "screenshot": screenshot,
        },
        "image": {
            "url": item.image_url,
            "found_by": item.source,
            "fetched_at": item.fetched_at.isoformat(),
            "ip_address": item.ip_address,
            "referer": item.referer,
            "headers": item.headers,
            "sha256": image_sha256,
            "artefact": image_artefact,
        },
        "matches": [dict(m) for m in matches],
        "artefacts": artefacts,
        "previous": previous,
        **(dict(extra) if extra else {}),
    }
