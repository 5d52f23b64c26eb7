"""Escalation: content still up after the recipient's SLA goes to the next party on the ladder.

The ladder (``FollowupPolicy.ladder``, default host -> CDN -> registrar) is walked per site of
the notice's still-up items, skipping every scope and mailbox the escalation chain
(``escalates_notice_id``) has already tried: a site first noticed through its CDN still gets
its host, once known. Recipients are the site's rows (``recipients_for_site``: configured ones
first); when none of the remaining scopes has one, discovery runs
(:func:`takedown.recipients.discover`, RDAP and security.txt through the SSRF policy) and what
it finds is stored.

The new notice lists the still-up items and is drafted, validated and approved exactly as
``takedown.compose`` drafts any notice (its own functions), with ``escalates_notice_id`` set;
the old one moves to ``escalated``. Past the last rung there is nobody left to ask the content
be removed, only to make it harder to find: the items are marked for the search engines'
delisting export (a ``delisting_export`` event; :func:`takedown.followup.delisting_contents`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from psycopg import Connection

from store.config import Settings
from store.db import Database
from takedown.compose import Candidate, draft_notice, finish_notice, host_of
from takedown.followup import DEFAULT_POLICY, DELISTING_EVENT, FollowupPolicy
from takedown.rdap import DEFAULT_TIMEOUT
from takedown.recipients import (
    Contact,
    LookupRefused,
    Problem,
    Recipient,
    discover_report,
    ensure_recipients,
    recipients_for_site,
)
from takedown.states import record_event, transition

__all__ = [
    "ESCALATABLE",
    "DiscoveryOptions",
    "DiscoveryUnavailable",
    "EscalationResult",
    "escalate_notice",
]

log = logging.getLogger(__name__)

#: A notice still up past its SLA, or one its recipient could not be reached at.
ESCALATABLE: Final = ("still_up", "delivery_failed")
# RDAP failures that say nothing about whether a contact exists (reasons of takedown.rdap).
_TRANSIENT: Final = ("network:", "timeout:", "dns:")


class DiscoveryUnavailable(Exception):
    """Recipient discovery failed for a reason that may pass (an RDAP server down): the ladder
    is not exhausted, only unreadable for now. Nothing was changed; retry later."""

    def __init__(self, site_id: int, problems: Sequence[Problem]) -> None:
        self.site_id = site_id
        self.problems = list(problems)
        detail = "; ".join(f"{p.step}: {p.message}" for p in problems)
        super().__init__(f"site {site_id}: recipient discovery unavailable: {detail}")


@dataclass(frozen=True)
class DiscoveryOptions:
    """How to discover recipients a site has none of (``None`` settings: the process's)."""

    settings: Settings | None = None
    bootstrap_url: str | None = None
    timeout: float = DEFAULT_TIMEOUT


_DISCOVER: Final = DiscoveryOptions()


@dataclass(frozen=True)
class EscalationResult:
    notice_id: int
    outcome: str  # escalated | exhausted | skipped
    new_notices: tuple[int, ...] = ()
    approved: tuple[int, ...] = ()  # of new_notices: ready to send
    invalid: tuple[int, ...] = ()  # of new_notices: refused by the validator, left drafted
    delisted_items: tuple[int, ...] = ()  # handed to the delisting export
    detail: str = ""


@dataclass(frozen=True)
class _Tried:
    recipients: frozenset[int]
    scopes: frozenset[str]
    emails: frozenset[str]


def escalate_notice(
    db: Database,
    notice_id: int,
    *,
    policy: FollowupPolicy = DEFAULT_POLICY,
    discovery: DiscoveryOptions | None = _DISCOVER,
    actor: str = "worker",
) -> EscalationResult:
    """Escalate ``notice_id`` if it is still up or undeliverable; idempotent (a notice already
    escalated is skipped). ``discovery=None``: use only the recipients already stored."""
    with db.connection() as conn:
        head = conn.execute(
            "select state, publisher_id from notices where id = %s", (notice_id,)
        ).fetchone()
        if head is None:
            raise LookupError(f"no notice {notice_id}")
        state, publisher_id = str(head[0]), int(head[1])
        if state not in ESCALATABLE:
            return EscalationResult(notice_id, "skipped", detail=f"the notice is {state}")
        tried = _tried(conn, notice_id)
        by_site = _items_by_site(conn, notice_id, state)
        if not by_site:
            return EscalationResult(notice_id, "skipped", detail="no item is still up")
        chosen = {s: _next_recipient(conn, s, policy.ladder, tried) for s in by_site}
    if discovery is not None:
        for site_id in [s for s, r in chosen.items() if r is None]:
            contacts, problems = _discover(db, site_id, discovery)
            if contacts:
                with db.connection() as conn:
                    ensure_recipients(conn, site_id, contacts)
                    chosen[site_id] = _next_recipient(conn, site_id, policy.ladder, tried)
            transient = [p for p in problems if _is_transient(p)]
            if chosen[site_id] is None and transient:
                raise DiscoveryUnavailable(site_id, transient)
    with db.connection() as conn:
        row = conn.execute(
            "select state from notices where id = %s for update", (notice_id,)
        ).fetchone()
        if row is None or row[0] != state:
            return EscalationResult(notice_id, "skipped", detail="escalated meanwhile")
        return _escalate(conn, notice_id, state, publisher_id, by_site, chosen, actor)


def _escalate(
    conn: Connection[Any],
    notice_id: int,
    state: str,
    publisher_id: int,
    by_site: dict[int, list[tuple[int, Candidate]]],
    chosen: dict[int, Recipient | None],
    actor: str,
) -> EscalationResult:
    new: list[int] = []
    approved: list[int] = []
    invalid: list[int] = []
    delisted: list[int] = []
    for site_id, items in by_site.items():
        recipient = chosen[site_id]
        if recipient is None:
            delisted += [item_id for item_id, _ in items]
            continue
        new_id = draft_notice(conn, publisher_id, recipient.id, [c for _, c in items], None)
        conn.execute(
            "update notices set escalates_notice_id = %s where id = %s", (notice_id, new_id)
        )
        record_event(
            conn,
            "notice",
            new_id,
            "escalation",
            actor=actor,
            details={"escalates": notice_id, "scope": recipient.scope, "site_id": site_id},
        )
        new.append(new_id)
        (approved if finish_notice(conn, new_id) else invalid).append(new_id)
    details: dict[str, Any] = {"to": new}
    if delisted:
        details["delisting_items"] = len(delisted)
    transition(conn, notice_id, state, "escalated", actor=actor, details=details)
    if delisted:
        record_event(
            conn, "notice", notice_id, DELISTING_EVENT, actor=actor, details={"items": delisted}
        )
    return EscalationResult(
        notice_id,
        "escalated" if new else "exhausted",
        tuple(new),
        tuple(approved),
        tuple(invalid),
        tuple(delisted),
        "" if new else "the ladder is exhausted: marked for the search engines' delisting export",
    )


def _tried(conn: Connection[Any], notice_id: int) -> _Tried:
    rows = conn.execute(
        """
        with recursive chain(id, parent) as (
            select id, escalates_notice_id from notices where id = %s
            union
            select n.id, n.escalates_notice_id from notices n join chain c on n.id = c.parent
        )
        select r.id, r.scope, lower(r.email)
        from chain c join notices n on n.id = c.id join recipients r on r.id = n.recipient_id
        """,
        (notice_id,),
    ).fetchall()
    return _Tried(
        frozenset(int(r[0]) for r in rows),
        frozenset(str(r[1]) for r in rows),
        frozenset(str(r[2]) for r in rows if r[2]),
    )


def _items_by_site(
    conn: Connection[Any], notice_id: int, state: str
) -> dict[int, list[tuple[int, Candidate]]]:
    # Still up: the items a recheck saw up. Undeliverable: nothing was checked; all but removed.
    wanted = "i.state = 'still_up'" if state == "still_up" else "i.state <> 'removed'"
    rows = conn.execute(
        f"""
        select i.id, m.id, w.publisher_id, w.id, s.site_id, s.page_url, s.image_url
        from notice_items i
        join matches m on m.id = i.match_id
        join sightings s on s.id = m.sighting_id
        join pages pg on pg.id = m.page_id
        join works w on w.id = pg.work_id
        where i.notice_id = %s and {wanted}
        order by i.id
        """,
        (notice_id,),
    ).fetchall()
    by_site: dict[int, list[tuple[int, Candidate]]] = defaultdict(list)
    for item_id, match_id, publisher, work, site, page_url, image_url in rows:
        candidate = Candidate(
            int(match_id), int(publisher), int(work), int(site), page_url, image_url
        )
        by_site[int(site)].append((int(item_id), candidate))
    return dict(by_site)


def _next_recipient(
    conn: Connection[Any], site_id: int, ladder: Sequence[str], tried: _Tried
) -> Recipient | None:
    recipients = recipients_for_site(conn, site_id)
    for scope in ladder:
        if scope in tried.scopes:
            continue
        for recipient in recipients:
            if (
                recipient.scope == scope
                and recipient.email
                and recipient.id not in tried.recipients
                and recipient.email.lower() not in tried.emails
            ):
                return recipient
    return None


def _discover(
    db: Database, site_id: int, options: DiscoveryOptions
) -> tuple[list[Contact], list[Problem]]:
    with db.connection() as conn:
        row = conn.execute(
            "select start_urls[1], allow_private_addresses from sites where id = %s", (site_id,)
        ).fetchone()
    if row is None or not row[0]:
        return [], []
    start_url, allow_private = str(row[0]), bool(row[1])
    parts = urlsplit(start_url)
    try:
        found = discover_report(
            host_of(start_url),
            None,
            settings=options.settings,
            bootstrap_url=options.bootstrap_url,
            site_url=f"{parts.scheme}://{parts.netloc}",
            allow_private=allow_private,
            timeout=options.timeout,
        )
    except LookupRefused as exc:
        log.warning("site %s: no recipient discovery: %s", site_id, exc)
        return [], []
    return found.contacts, found.problems


def _is_transient(problem: Problem) -> bool:
    # Only the RDAP steps name hosts and registrars (the ladder's scopes).
    if problem.step not in ("rdap_ip", "rdap_domain") or problem.refused:
        return False
    message = problem.message
    server_trouble = message.startswith("status:") and (
        "HTTP 5" in message or "HTTP 429" in message
    )
    return message.startswith(_TRANSIENT) or server_trouble
