"""What the evidence store holds for a match: the found image, the page screenshot, the HTML.

A sighting's ``evidence_ref`` names a JSON manifest (``crawler.evidence``) that names the
artefacts by SHA-256. A missing or unreadable manifest is shown as "no evidence", never as an
error page: evidence is kept for matched sightings only, and stores can be restored partially.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from crawler.evidence import EvidenceStore


@dataclass(frozen=True)
class Evidence:
    ref: str
    captured_at: str | None
    image_sha256: str | None
    screenshot_sha256: str | None
    html_sha256: str | None
    page_ip: str | None
    rendered: bool


def _sha(part: Any) -> str | None:
    if isinstance(part, dict):
        value = part.get("sha256")
        if isinstance(value, str) and len(value) == 64:
            return value
    return None


def load_evidence(store: EvidenceStore, ref: str | None) -> Evidence | None:
    if not ref:
        return None
    try:
        manifest = store.manifest(ref)
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    page = manifest.get("page") if isinstance(manifest.get("page"), dict) else {}
    image = manifest.get("image") if isinstance(manifest.get("image"), dict) else {}
    assert isinstance(page, dict) and isinstance(image, dict)
    captured = manifest.get("captured_at")
    address = page.get("ip_address")
    return Evidence(
        ref=ref,
        captured_at=captured if isinstance(captured, str) else None,
        image_sha256=_sha(image.get("artefact")),
        screenshot_sha256=_sha(page.get("screenshot")),
        html_sha256=_sha(page.get("html")),
        page_ip=address if isinstance(address, str) else None,
        rendered=bool(page.get("rendered")),
    )
