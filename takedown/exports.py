"""Exports of notices for the transparency database Lumen and for search engines' bulk forms.

Lumen: the shape follows the "Create notice" request of Lumen's API documentation
(berkmancenter/lumendatabase, ``doc/api_documentation.mkd``, since moved to the project wiki page
"Lumen API documentation"): one ``{"notice": {...}}`` object per ``POST /notices``, with
``works_attributes`` (``kind``, ``description``, ``copyrighted_urls_attributes``,
``infringing_urls_attributes``) and the parties as ``entity_notice_roles_attributes``, each
``{"name": <role>, "entity_attributes": {...}}``. That nested role list is what Lumen accepts;
a flat ``entities_attributes`` list with a ``role`` key is not part of its API. Every notice is
``type: "DMCA"``, Lumen's type for copyright notices, whatever law it was sent under; the
``authentication_token`` is left to the submitting code so it never lands in an export file.

CSV: one row per infringing URL with the columns a search engine's bulk copyright removal form
asks for (the infringing URL, the work, where an authorised copy is, a description), quoted per
RFC 4180, so URLs with commas, quotes or line breaks survive.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any, Final

from takedown.notice_content import NoticeContent, NoticeFormat, NoticeItem, WorkKind, WorkRef

__all__ = [
    "SEARCH_ENGINE_CSV_HEADER",
    "lumen_json",
    "lumen_notice",
    "search_engine_csv",
]

SEARCH_ENGINE_CSV_HEADER: Final = (
    "Infringing URL",
    "Copyrighted work",
    "Authorised URL",
    "Description",
)

_LUMEN_TITLES: Final[dict[NoticeFormat, str]] = {
    "dmca": "DMCA (Copyright) Complaint",
    "jp_provider": "Copyright takedown request under Japanese law (送信防止措置依頼)",
    "eu_dsa": "Copyright notice under Art. 16 of the Digital Services Act",
}

_LUMEN_WORK_KINDS: Final[dict[WorkKind, str]] = {
    "volume": "book",
    "chapter": "book",
    "illustration": "illustration",
    "photo": "photograph",
    "other": "other",
}

# A cell starting with one of these is a formula to spreadsheet programs, where these files are
# usually reviewed before upload (CSV injection).
_FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")


def lumen_notice(content: NoticeContent) -> dict[str, Any]:
    """One notice as the body of a Lumen ``POST /notices`` (without the token)."""
    sender = content.sender
    works = [
        _lumen_work(work, [item for item in content.items if item.work == work])
        for work in content.works
    ]
    roles = [
        _lumen_role(
            "sender",
            name=sender.agent_organisation,
            address=sender.address,
            email=sender.email,
            phone=sender.phone,
            country_code=sender.country_code,
        ),
        _lumen_role("principal", name=sender.publisher, country_code=sender.country_code),
        _lumen_role("recipient", name=content.recipient.name, email=content.recipient.email),
    ]
    titles = len(content.works)
    notice: dict[str, Any] = {
        "title": f"{_LUMEN_TITLES[content.format]} to {content.recipient.name}",
        "type": "DMCA",
        "subject": (
            f"Copyright infringement of {titles} work{'' if titles == 1 else 's'}"
            f" of {sender.publisher}"
        ),
        "date_sent": content.date.isoformat(),
        # Lumen takes two-letter codes only ("ja", not "ja-JP").
        "language": content.language.split("-")[0].lower(),
        "works_attributes": works,
        "entity_notice_roles_attributes": roles,
    }
    return {"notice": notice}


def lumen_json(notices: Iterable[NoticeContent]) -> str:
    """A JSON array of Lumen submissions, one per notice, in order."""
    return json.dumps([lumen_notice(notice) for notice in notices], ensure_ascii=False, indent=2)


def search_engine_csv(notices: Iterable[NoticeContent]) -> str:
    """CSV text (CRLF line ends); write it to a file opened with ``newline=""``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(SEARCH_ENGINE_CSV_HEADER)
    for row in _csv_rows(notices):
        writer.writerow([_inert(cell) for cell in row])
    return buffer.getvalue()


def _lumen_work(work: WorkRef, items: list[NoticeItem]) -> dict[str, Any]:
    urls: dict[str, None] = {}
    for item in items:
        urls.setdefault(item.image_url)
        urls.setdefault(item.page_url)
    return {
        "kind": _LUMEN_WORK_KINDS.get(work.kind, "other"),
        "description": _work_description(work),
        "copyrighted_urls_attributes": [{"url": work.official_url}] if work.official_url else [],
        "infringing_urls_attributes": [{"url": url} for url in urls],
    }


def _lumen_role(
    role: str,
    *,
    name: str,
    address: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    country_code: str | None = None,
) -> dict[str, Any]:
    lines = [line.strip() for line in (address or "").splitlines() if line.strip()]
    entity: dict[str, str | None] = {
        "name": name,
        "kind": "organization",
        "address_line_1": lines[0] if lines else None,
        "address_line_2": ", ".join(lines[1:]) or None,
        "country_code": country_code,
        "phone": phone,
        "email": email,
    }
    return {"name": role, "entity_attributes": {k: v for k, v in entity.items() if v}}


def _work_description(work: WorkRef) -> str:
    identifiers = ", ".join(f"{scheme} {value}" for scheme, value in work.identifiers)
    return f"{work.title} ({identifiers})" if identifiers else work.title


def _csv_rows(notices: Iterable[NoticeContent]) -> Iterator[tuple[str, str, str, str]]:
    # One row per (URL, work): a reader page showing twenty pages of a volume is one row that
    # names them all, and a URL listed in several notices is not submitted twice.
    images: dict[tuple[str, WorkRef], NoticeItem] = {}
    pages: dict[tuple[str, WorkRef], list[int]] = {}
    for notice in notices:
        for item in notice.items:
            images.setdefault((item.image_url, item.work), item)
            numbers = pages.setdefault((item.page_url, item.work), [])
            if item.page_number is not None:
                numbers.append(item.page_number)
    for (url, work), item in images.items():
        description = (
            f"Image copying {_pages([item.page_number] if item.page_number else [])}"
            f"“{_work_description(work)}”, shown on {item.page_url}"
        )
        yield url, work.title, work.official_url or "", description
    for (url, work), numbers in pages.items():
        if (url, work) in images:
            continue
        description = (
            f"Web page showing {_pages(numbers)}“{_work_description(work)}” without authorisation"
        )
        yield url, work.title, work.official_url or "", description


def _pages(numbers: list[int]) -> str:
    distinct = sorted(set(numbers))
    if not distinct:
        return ""
    label = "page" if len(distinct) == 1 else "pages"
    return f"{label} {', '.join(map(str, distinct))} of "


def _inert(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_PREFIXES) else cell
