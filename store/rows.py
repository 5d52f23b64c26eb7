"""Typed rows, one dataclass per table that code reads back (``psycopg.rows.class_row``).

Field names equal column names so ``select *`` maps without aliases; a test checks that every
dataclass here matches its table after migrating from empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Publisher:
    id: int
    name: str
    agent_organisation: str | None
    contact_email: str | None
    contact_address: str | None
    contact_phone: str | None
    auto_approve_min_confidence: float | None
    created_at: datetime


@dataclass(frozen=True)
class Work:
    id: int
    publisher_id: int
    title: str
    kind: str
    isbn: str | None
    official_url: str | None
    identifiers: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Page:
    id: int
    work_id: int
    page_number: int
    sha256: bytes
    source_name: str
    media_type: str
    width: int
    height: int
    created_at: datetime
    image_sha256: bytes | None = None
    image_media_type: str | None = None


@dataclass(frozen=True)
class FingerprintRow:
    id: int
    page_id: int
    kind: str
    params: dict[str, Any]
    version: str
    variant: str
    bits: int
    value: int  # signed bigint as stored; matcher.fingerprint.from_signed64 gives the hash
    created_at: datetime


# Table name for each row type, used by the schema test and by generic helpers.
TABLES: dict[type, str] = {
    Publisher: "publishers",
    Work: "works",
    Page: "pages",
    FingerprintRow: "fingerprints",
}


@dataclass(frozen=True)
class Site:
    id: int
    name: str
    start_urls: list[str]
    allowed_domains: list[str]
    include_patterns: list[str]
    exclude_patterns: list[str]
    max_depth: int
    max_pages: int
    rendering: str
    obey_robots: bool
    concurrency: int
    delay_seconds: float
    request_headers: dict[str, str]
    cookies: dict[str, str]
    time_budget_seconds: int
    allow_private_addresses: bool
    schedule: str
    is_active: bool
    notes: str | None
    created_at: datetime
    updated_at: datetime
    origin_addresses: list[str]


@dataclass(frozen=True)
class Crawl:
    id: int
    site_id: int
    state: str
    trigger: str
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    stats: dict[str, Any]
    error: str | None


TABLES[Site] = "sites"
TABLES[Crawl] = "crawls"


@dataclass(frozen=True)
class Notice:
    id: int
    publisher_id: int
    recipient_id: int
    format: str
    state: str
    message_id: str | None
    subject: str | None
    body_text: str | None
    body_html: str | None
    escalates_notice_id: int | None
    send_attempts: int
    last_error: str | None
    created_at: datetime
    state_changed_at: datetime
    held_reason: str | None
    sent_at: datetime | None
    delivery_receipt: dict[str, Any] | None


TABLES[Notice] = "notices"
