"""Reading submitted forms: trimmed, bounded values; parsing problems become messages.

Forms are plain HTML with the CSRF token Flask-WTF checks on every POST; validation lives in
the domain functions (``crawler.sites.validate``, ``admin.users``), so the web and the CLI
refuse the same things with the same words.
"""

from __future__ import annotations

from flask import request


class FormError(ValueError):
    pass


def text(name: str, *, max_len: int = 2000) -> str:
    value = request.form.get(name, "")
    return value.strip()[:max_len]


def optional_int(name: str, *, source: str = "form") -> int | None:
    raw = (request.form if source == "form" else request.args).get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise FormError(f"{name.replace('_', ' ')} must be a whole number") from None


def optional_float(name: str) -> float | None:
    raw = request.form.get(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise FormError(f"{name.replace('_', ' ')} must be a number") from None


def checkbox(name: str) -> bool:
    return request.form.get(name) in ("on", "1", "true", "yes")


def lines(name: str) -> list[str]:
    return [line.strip() for line in request.form.get(name, "").splitlines() if line.strip()]


def pairs(name: str, separator: str) -> dict[str, str]:
    """``KEY<sep>VALUE`` lines (headers, cookies, identifiers) as a dict."""
    out: dict[str, str] = {}
    for line in lines(name):
        key, found, value = line.partition(separator)
        if not found or not key.strip():
            raise FormError(f"{line!r} is not NAME{separator}VALUE")
        out[key.strip()] = value.strip()
    return out


def page_number() -> int:
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1
