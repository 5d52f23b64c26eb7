"""Sites: crawl targets and their crawl policy (one row of ``sites`` each)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from store.db import Database
from store.rows import Site

RENDERING_MODES = ("never", "auto", "always")


class SiteError(ValueError):
    pass


@dataclass
class SitePolicy:
    """What an operator may set on a site; every field has the schema's default."""

    start_urls: list[str]
    allowed_domains: list[str] = field(default_factory=list)
    include_patterns: list[str] = field(default_factory=list)
    exclude_patterns: list[str] = field(default_factory=list)
    max_depth: int = 5
    max_pages: int = 2000
    rendering: str = "auto"
    obey_robots: bool = True
    concurrency: int = 4
    delay_seconds: float = 0.5
    request_headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    time_budget_seconds: int = 3600
    allow_private_addresses: bool = False
    schedule: str = "0 3 * * *"
    is_active: bool = True
    notes: str | None = None
    # Behind a CDN: the real host's addresses once learnt, so notices can follow up to it.
    origin_addresses: list[str] = field(default_factory=list)


POLICY_FIELDS = tuple(f.name for f in fields(SitePolicy))
_JSON_FIELDS = {"request_headers", "cookies"}


def validate(values: dict[str, Any]) -> dict[str, Any]:
    """Check operator-supplied policy values; return them normalised or raise SiteError."""
    out = dict(values)
    if "start_urls" in out:
        urls = [u.strip() for u in out["start_urls"] if u.strip()]
        if not urls:
            raise SiteError("a site needs at least one start URL")
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise SiteError(f"start URL {url!r} is not an http(s) URL")
        out["start_urls"] = urls
    if "allowed_domains" in out:
        out["allowed_domains"] = [d.strip().lower().lstrip(".") for d in out["allowed_domains"]]
    for key in ("include_patterns", "exclude_patterns"):
        for pattern in out.get(key, []):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise SiteError(f"{key}: {pattern!r} is not a regular expression ({exc})") from exc
    if "rendering" in out and out["rendering"] not in RENDERING_MODES:
        raise SiteError(f"rendering must be one of {', '.join(RENDERING_MODES)}")
    for key, low, high in (
        ("max_depth", 0, 100),
        ("max_pages", 1, 10_000_000),
        ("concurrency", 1, 64),
        ("time_budget_seconds", 1, 7 * 86400),
    ):
        if key in out and not low <= int(out[key]) <= high:
            raise SiteError(f"{key} must be between {low} and {high}")
    if "delay_seconds" in out and float(out["delay_seconds"]) < 0:
        raise SiteError("delay_seconds must not be negative")
    if "origin_addresses" in out:
        out["origin_addresses"] = _addresses(out["origin_addresses"])
    if "schedule" in out and len(str(out["schedule"]).split()) != 5:
        raise SiteError("schedule must be a cron expression with 5 fields, e.g. '0 3 * * *'")
    return out


def _addresses(values: list[str]) -> list[str]:
    found: list[str] = []
    for value in (v.strip() for v in values):
        if not value:
            continue
        try:
            address = ipaddress.ip_address(value.strip("[]"))
        except ValueError:
            raise SiteError(f"origin address {value!r} is not an IP address") from None
        found.append(str(address))
    return list(dict.fromkeys(found))


def default_domains(start_urls: list[str]) -> list[str]:
    return sorted({(urlsplit(u).hostname or "").lower() for u in start_urls} - {""})


def _params(values: dict[str, Any]) -> dict[str, Any]:
    return {k: Jsonb(v) if k in _JSON_FIELDS else v for k, v in values.items()}


def _audit(
    conn: psycopg.Connection, actor: str, action: str, site_id: int, details: dict[str, Any]
) -> None:
    conn.execute(
        "insert into audit_log (actor, action, target_type, target_id, details)"
        " values (%s, %s, 'site', %s, %s)",
        (actor, action, site_id, Jsonb(details)),
    )


def add_site(db: Database, name: str, policy: SitePolicy, *, actor: str = "cli") -> Site:
    name = name.strip()
    if not name:
        raise SiteError("a site needs a name")
    values = validate({f: getattr(policy, f) for f in POLICY_FIELDS})
    if not values["allowed_domains"]:
        values["allowed_domains"] = default_domains(values["start_urls"])
    columns = ["name", *values]
    query = sql.SQL("insert into sites ({}) values ({}) returning *").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder(c) for c in columns),
    )
    try:
        with db.connection() as conn, conn.cursor(row_factory=class_row(Site)) as cur:
            row = cur.execute(query, {"name": name, **_params(values)}).fetchone()
            assert row is not None
            _audit(conn, actor, "site.add", row.id, {"name": name, **values})
    except psycopg.errors.UniqueViolation as exc:
        raise SiteError(f"a site named {name!r} already exists") from exc
    assert row is not None
    return row


def update_site(db: Database, name: str, changes: dict[str, Any], *, actor: str = "cli") -> Site:
    """Change policy fields; every change is written to the audit log with old and new value.

    Turning ``obey_robots`` off is a decision someone must be able to answer for later.
    """
    unknown = set(changes) - set(POLICY_FIELDS)
    if unknown:
        raise SiteError(f"unknown site setting(s): {', '.join(sorted(unknown))}")
    if not changes:
        return get_site(db, name)
    values = validate(changes)
    query = sql.SQL(
        "update sites set {}, updated_at = now() where name = %(name)s returning *"
    ).format(
        sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in values
        )
    )
    with db.connection() as conn, conn.cursor(row_factory=class_row(Site)) as cur:
        old = cur.execute("select * from sites where name = %s for update", (name,)).fetchone()
        if old is None:
            raise SiteError(f"no site named {name!r}")
        row = cur.execute(query, {"name": name, **_params(values)}).fetchone()
        assert row is not None
        diff = {
            k: [getattr(old, k), getattr(row, k)]
            for k in values
            if getattr(old, k) != getattr(row, k)
        }
        if diff:
            _audit(conn, actor, "site.edit", row.id, diff)
    return row


def get_site(db: Database, name_or_id: str | int) -> Site:
    with db.connection() as conn, conn.cursor(row_factory=class_row(Site)) as cur:
        if isinstance(name_or_id, int) or str(name_or_id).isdigit():
            row = cur.execute(
                "select * from sites where id = %s or name = %s", (int(name_or_id), str(name_or_id))
            ).fetchone()
        else:
            row = cur.execute("select * from sites where name = %s", (name_or_id,)).fetchone()
    if row is None:
        raise SiteError(f"no site named {name_or_id!r}")
    return row


def list_sites(db: Database) -> list[Site]:
    with db.connection() as conn, conn.cursor(row_factory=class_row(Site)) as cur:
        return cur.execute("select * from sites order by name").fetchall()
