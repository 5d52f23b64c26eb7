"""Response headers, redirect targets and links: the places where hostile text could escape.

Everything scraped from pirate pages (URLs, titles, file names) reaches templates as data.
Jinja's autoescaping keeps it out of markup, but an escaped ``javascript:`` URL is still a
working link, so every untrusted URL that becomes an ``href`` goes through :func:`http_url`.
The Content-Security-Policy forbids inline script, so even an escaping mistake cannot run code.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from flask import Response, request

CSP: Final = (
    "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
# A stored notice body is shown in a sandboxed frame of its own: no script, no same-origin
# access, no network; its inline styles are allowed because they cannot run anything.
NOTICE_BODY_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; "
    "base-uri 'none'; form-action 'none'; sandbox"
)
# Images served from the stores: nothing in them may run or load anything, even if a browser
# were talked into rendering one as a document.
MEDIA_CSP: Final = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"


def apply_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    if request.is_secure:
        # Only over HTTPS: a plain-HTTP development server must not pin browsers to HTTPS.
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if response.headers["Content-Security-Policy"] == CSP:
        response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    return response


def safe_next(target: str | None, default: str) -> str:
    """``target`` if it is a path on this site, else ``default`` (no open redirects).

    Browsers read ``//evil.example``, ``/\\evil.example`` and ``\\\\evil.example`` as other
    hosts, and drop tabs and newlines inside URLs, so all of those are refused.
    """
    if not target:
        return default
    if any(ch in target for ch in "\\\t\r\n") or any(ord(ch) < 0x20 for ch in target):
        return default
    if not target.startswith("/") or target.startswith("//"):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def http_url(value: object) -> str | None:
    """``value`` if it is an absolute http(s) URL that may become a link, else None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if any(ord(ch) < 0x20 for ch in text):
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return text
