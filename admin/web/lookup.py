"""Rights lookup: which registered works (and whose) an image copies.

Shared by the lookup page and the API. An image given by URL is fetched with the SSRF guard
the crawler and recipient discovery use (``takedown.rdap.fetch``: the URL and every resolved
address checked, connections pinned to the checked addresses, redirects checked again, size
and time bounded), because the admin runs inside the operator's network and a URL typed into
it must not reach that network. Results outside the user's scope are dropped, not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from flask import current_app

from admin.web.resources import ingest_limits, reference_index, settings
from admin.web.scope import Scope
from matcher.decode import decode_image
from matcher.errors import InputError
from takedown.rdap import FetchError, fetch

FETCH_TIMEOUT: Final = 15.0
_FETCH_REASONS: Final = {
    "refused": "that address is not allowed (private, loopback and link-local addresses and "
    "unusual ports are refused)",
    "scheme": "only http and https URLs can be fetched",
    "dns": "the host name could not be resolved",
    "network": "the server could not be reached",
    "timeout": "the server did not answer in time",
    "too-large": "the image is larger than the configured limit",
    "redirect": "too many or broken redirects",
}


class LookupFailed(ValueError):
    """The image could not be fetched or decoded; the message says why, for the user."""


@dataclass(frozen=True)
class LookupHit:
    work_id: int
    work_title: str
    publisher_id: int
    publisher: str
    page_id: int
    page_number: int
    decision: str
    confidence: float
    explanation: str


def fetch_image(url: str) -> bytes:
    conf = settings()
    try:
        fetched = fetch(
            url.strip(),
            policy=current_app.config["LOOKUP_FETCH_POLICY"],
            timeout=FETCH_TIMEOUT,
            max_bytes=conf.max_image_bytes,
            accept="image/*",
        )
    except FetchError as exc:
        raise LookupFailed(
            f"cannot fetch the URL: {_FETCH_REASONS.get(exc.reason, exc.reason)}"
        ) from None
    if fetched.status != 200:
        raise LookupFailed(f"cannot fetch the URL: the server answered HTTP {fetched.status}")
    return fetched.body


def lookup_image(data: bytes, source: str, scope: Scope) -> list[LookupHit]:
    limits = ingest_limits(settings()).decode
    try:
        image = decode_image(data, source=source, limits=limits)
    except InputError as exc:
        raise LookupFailed(str(exc)) from exc
    try:
        matches = reference_index().identify(image, limit=50)
    finally:
        image.close()
    return [
        LookupHit(
            work_id=m.page.work_id,
            work_title=m.page.work_title,
            publisher_id=m.page.publisher_id,
            publisher=m.page.publisher,
            page_id=m.page.page_id,
            page_number=m.page.page_number,
            decision=m.decision,
            confidence=m.confidence,
            explanation=m.explanation,
        )
        for m in matches
        if scope.allows(m.page.publisher_id)
    ]
