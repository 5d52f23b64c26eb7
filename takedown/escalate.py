"""Escalation: content still up after the recipient's SLA goes to the next party on the ladder.

The ladder (``FollowupPolicy.ladder``, default host -> CDN -> registrar) is walked per site of
the notice's still-up items, skipping every scope and mailbox the escalation chain
(``escalates_notice_id``) has already tried. For a site behind a CDN (it has a CDN recipient,
the chain went to one, or an operator recorded its origin) the ladder starts CDN -> host: the
CDN can act on or disclose the origin, and the "host" is then the origin's, which only its
recorded addresses (``sites.origin_addresses``) name, since the site's own addresses are the
CDN's. Until the origin is learnt the host rung is passed over; once it is,
:func:`follow_up_origin` sends the site's notices that went to the CDN on to the origin's host,
even those whose ladder ran out meanwhile.

Recipients are the site's rows (``recipients_for_site``: configured ones first); when none of
the remaining scopes has one, or the origin is known but its host is not yet stored, discovery
runs (:func:`takedown.recipients.discover`, RDAP and security.txt through the SSRF policy) and
what it finds is stored.

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
from takedown.cdn import Cdn
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
    "follow_up_origin",
    "ladder_for",
]

log = logging.getLogger(__name__)

#: A notice still up past its SLA, or one its recipient could not be reached at.
ESCALATABLE: Final = ("still_up", "delivery_failed")
#: Event on a notice whose CDN recipient was followed up by a notice to the origin's host.
ORIGIN_FOLLOWUP_EVENT: Final = "origin_followup"
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
    cdns: tuple[Cdn, ...] | None = None  # None: the bundled CDN table


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


@dataclass(frozen=True)
class _Site:
    id: int
    start_url: str | None
    allow_private: bool
    origin_addresses: tuple[str, ...]
    has_cdn_recipient: bool


def ladder_for(ladder: Sequence[str], *, behind_cdn: bool) -> tuple[str, ...]:
    """The ladder for one site: behind a CDN, the CDN first and then the (origin's) host.

    >>> ladder_for(("host", "cdn", "registrar"), behind_cdn=True)
    ('cdn', 'host', 'registrar')
    >>> ladder_for(("host", "cdn", "registrar"), behind_cdn=False)
    ('host', 'cdn', 'registrar')
    """
    if not behind_cdn or "cdn" not in ladder or "host" not in ladder:
        return tuple(ladder)
    return ("cdn", "host", *(scope for scope in ladder if scope not in ("cdn", "host")))


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
        sites = {s: _site(conn, s) for s in by_site}
    ladders = {
        s: ladder_for(policy.ladder, behind_cdn=_behind_cdn(f, tried)) for s, f in sites.items()
    }
    chosen = _choose(db, sites, ladders, tried, discovery)
    with db.connection() as conn:
        row = conn.execute(
            "select state from notices where id = %s for update", (notice_id,)
        ).fetchone()
        if row is None or row[0] != state:
            return EscalationResult(notice_id, "skipped", detail="escalated meanwhile")
        return _escalate(conn, notice_id, state, publisher_id, by_site, chosen, actor)


def follow_up_origin(
    db: Database,
    site_id: int,
    *,
    policy: FollowupPolicy = DEFAULT_POLICY,
    discovery: DiscoveryOptions | None = _DISCOVER,
    actor: str = "worker",
) -> list[EscalationResult]:
    """Send the site's notices that went to its CDN on to the origin's host, now that the
    origin is known (``sites.origin_addresses``); idempotent.

    A chain still waiting on its CDN notice's SLA is left to the ladder (it reaches the host
    next). One still up or undeliverable is escalated now (:func:`escalate_notice`). One whose
    ladder ran out before the origin was known (``escalated``, nobody after it) gets a new
    notice to the host for the items not removed, escalating it, and an ``origin_followup``
    event; it stays ``escalated`` (it already was, and its items stay on the delisting export
    until removed).
    """
    with db.connection() as conn:
        site = _site(conn, site_id)
        if not site.origin_addresses:
            return []
        heads = conn.execute(
            """
            select n.id, n.state from notices n join recipients r on r.id = n.recipient_id
            where r.site_id = %s and n.state in ('still_up', 'delivery_failed', 'escalated')
              and not exists (select 1 from notices c where c.escalates_notice_id = n.id)
            order by n.id
            """,
            (site_id,),
        ).fetchall()
        waiting = [
            (int(i), str(s), t)
            for i, s in heads
            if "cdn" in (t := _tried(conn, int(i))).scopes and "host" not in t.scopes
        ]
    results: list[EscalationResult] = []
    for notice_id, state, tried in waiting:
        if state in ESCALATABLE:
            results.append(escalate_notice(db, notice_id, policy=policy, discovery=discovery,
                                           actor=actor))  # fmt: skip
        else:
            results.append(_follow_up_exhausted(db, notice_id, site, tried, discovery, actor))
    return results


def _follow_up_exhausted(
    db: Database,
    notice_id: int,
    site: _Site,
    tried: _Tried,
    discovery: DiscoveryOptions | None,
    actor: str,
) -> EscalationResult:
    with db.connection() as conn:
        items = _items_by_site(conn, notice_id, "escalated").get(site.id, [])
    if not items:
        return EscalationResult(notice_id, "skipped", detail="no item is still up")
    chosen = _choose(db, {site.id: site}, {site.id: ("host",)}, tried, discovery)[site.id]
    if chosen is None:
        return EscalationResult(notice_id, "skipped", detail="the origin's host is not known")
    with db.connection() as conn:
        row = conn.execute(
            "select state, publisher_id, exists (select 1 from notices c"
            " where c.escalates_notice_id = n.id) from notices n where id = %s for update",
            (notice_id,),
        ).fetchone()
        if row is None or row[0] != "escalated" or row[2]:
            return EscalationResult(notice_id, "skipped", detail="followed up meanwhile")
        new_id, valid = _draft_successor(
            conn, notice_id, int(row[1]), site.id, items, chosen, actor, origin=True
        )
        record_event(
            conn,
            "notice",
            notice_id,
            ORIGIN_FOLLOWUP_EVENT,
            actor=actor,
            details={"to": new_id, "origin_addresses": list(site.origin_addresses)},
        )
    return EscalationResult(
        notice_id,
        "escalated",
        (new_id,),
        (new_id,) if valid else (),
        () if valid else (new_id,),
        detail="followed up to the origin's host",
    )


def _choose(
    db: Database,
    sites: dict[int, _Site],
    ladders: dict[int, tuple[str, ...]],
    tried: _Tried,
    discovery: DiscoveryOptions | None,
) -> dict[int, Recipient | None]:
    """The next recipient per site, discovering (and storing) recipients when the ladder has
    nobody left, or when the origin's host would be passed over for want of a stored row."""
    with db.connection() as conn:
        chosen = {s: _next_recipient(conn, s, ladders[s], tried) for s in sites}
        wants_origin_host = {
            s
            for s, site in sites.items()
            if site.origin_addresses and _passes_over_host(chosen[s], ladders[s], tried)
        }
    if discovery is None:
        return chosen
    for site_id in [s for s, r in chosen.items() if r is None or s in wants_origin_host]:
        contacts, problems = _discover(sites[site_id], discovery)
        if contacts:
            with db.connection() as conn:
                ensure_recipients(conn, site_id, contacts)
                chosen[site_id] = _next_recipient(conn, site_id, ladders[site_id], tried)
        transient = [p for p in problems if _is_transient(p)]
        found = chosen[site_id]
        # An RDAP server down must not skip a rung (least of all the origin's host) for good.
        missed_host = site_id in wants_origin_host and _passes_over_host(
            found, ladders[site_id], tried
        )
        if transient and (found is None or missed_host):
            raise DiscoveryUnavailable(site_id, transient)
    return chosen


def _passes_over_host(chosen: Recipient | None, ladder: Sequence[str], tried: _Tried) -> bool:
    """Whether ``chosen`` comes after an untried host rung that has nobody to take it."""
    if "host" not in ladder or "host" in tried.scopes:
        return False
    if chosen is None:
        return True
    return ladder.index(chosen.scope) > ladder.index("host")


def _site(conn: Connection[Any], site_id: int) -> _Site:
    row = conn.execute(
        "select start_urls[1], allow_private_addresses, origin_addresses,"
        " exists (select 1 from recipients r where r.site_id = s.id and r.scope = 'cdn')"
        " from sites s where id = %s",
        (site_id,),
    ).fetchone()
    if row is None:
        return _Site(site_id, None, False, (), False)
    return _Site(site_id, row[0], bool(row[1]), tuple(row[2] or ()), bool(row[3]))


def _behind_cdn(site: _Site, tried: _Tried) -> bool:
    return bool(site.origin_addresses) or site.has_cdn_recipient or "cdn" in tried.scopes


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
        new_id, valid = _draft_successor(
            conn, notice_id, publisher_id, site_id, items, recipient, actor, origin=False
        )
        new.append(new_id)
        (approved if valid else invalid).append(new_id)
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


def _draft_successor(
    conn: Connection[Any],
    notice_id: int,
    publisher_id: int,
    site_id: int,
    items: list[tuple[int, Candidate]],
    recipient: Recipient,
    actor: str,
    *,
    origin: bool,
) -> tuple[int, bool]:
    """Draft, validate and approve the notice escalating ``notice_id``; its id and whether it
    passed the validator."""
    new_id = draft_notice(conn, publisher_id, recipient.id, [c for _, c in items], None)
    conn.execute("update notices set escalates_notice_id = %s where id = %s", (notice_id, new_id))
    details: dict[str, Any] = {"escalates": notice_id, "scope": recipient.scope, "site_id": site_id}
    if origin:
        details["origin"] = True
    record_event(conn, "notice", new_id, "escalation", actor=actor, details=details)
    return new_id, finish_notice(conn, new_id)


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
    # Still up: the items a recheck saw up. Undeliverable, or past the ladder's end: all but
    # the removed ones.
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


def _discover(site: _Site, options: DiscoveryOptions) -> tuple[list[Contact], list[Problem]]:
    if not site.start_url:
        return [], []
    parts = urlsplit(site.start_url)
    try:
        found = discover_report(
            host_of(site.start_url),
            None,
            settings=options.settings,
            bootstrap_url=options.bootstrap_url,
            site_url=f"{parts.scheme}://{parts.netloc}",
            origin_addresses=site.origin_addresses,
            allow_private=site.allow_private,
            timeout=options.timeout,
            cdns=options.cdns,
        )
    except LookupRefused as exc:
        log.warning("site %s: no recipient discovery: %s", site.id, exc)
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
