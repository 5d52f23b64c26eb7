"""From approved matches to drafted notices, through the gates, in order.

1. **Auto-approval** (opt-in): a publisher with ``auto_approve_min_confidence`` set has its
   *confident* matches at or above that confidence approved by the system; everything else
   waits for an operator's review.
2. **Allowlist**: a match whose page or image is on a domain licensed for the work or the
   publisher is set to ``licensed`` and never noticed.
3. **Review**: only ``approved`` matches not yet listed in a notice go further.
4. **Flood guard** (``takedown.floodguard``): when one work or one registered page suddenly
   has far more approved matches than its usual rate, or most URLs of the site's last crawl
   were dead, the notices carrying them are drafted but *held* for an operator (the field has
   seen notices sent by the hundred thousand for URLs that did not exist).

Then one notice per (publisher, recipient) lists every remaining match at that recipient,
rendered in the recipient's legal format; a notice the validator refuses stays ``drafted``
with the reasons in ``last_error``. Each gate's verdict is an ``events`` row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import Connection
from psycopg.types.json import Jsonb

from store.db import Database
from takedown.floodguard import FloodGuard, held_reasons
from takedown.formats import NoticeIncomplete, render
from takedown.mail import make_message_id
from takedown.notice_content import (
    EvidenceRef,
    NoticeContent,
    NoticeItem,
    Recipient,
    Sender,
    WorkRef,
)
from takedown.recipients import recipients_for_site
from takedown.states import record_event, transition

__all__ = [
    "Candidate",
    "ComposeReport",
    "FloodGuard",
    "compose_notices",
    "draft_notice",
    "finish_notice",
    "notice_content",
    "reference_of",
]

MESSAGE_ID_DOMAIN = "notices.mamoru.invalid"
# Notices per commit while composing (see compose_notices).
COMPOSE_CHUNK = 32
DEFAULT_GUARD = FloodGuard()


@dataclass
class ComposeReport:
    auto_approved: int = 0
    allowlisted: int = 0
    notices: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)
    # site id -> matches that wait because the site has no recipient with an email address
    no_recipient: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    match_id: int
    publisher_id: int
    work_id: int
    site_id: int
    page_url: str
    image_url: str
    page_id: int | None = None  # the registered page it copies (the flood guard counts them)


def reference_of(notice_id: int, created: dt.datetime) -> str:
    return f"MAMORU-{created.year}-{notice_id:06d}"


def compose_notices(
    db: Database,
    *,
    guard: FloodGuard = DEFAULT_GUARD,
    on_ready: Callable[[list[int]], None] | None = None,
    chunk: int = COMPOSE_CHUNK,
) -> ComposeReport:
    """Run the gates and draft notices for every approved, not yet noticed match.

    The notices are committed ``chunk`` at a time and ``on_ready`` is called after each commit
    with the ids approved for sending in it, so that sends start while the rest is composed and
    only committed notices are ever handed on.
    """
    report = ComposeReport()
    with db.connection() as conn:
        # One composer at a time, across the chunk commits: two would list the same matches in
        # two notices. A session lock, released below or by the server if this process dies.
        conn.execute("select pg_advisory_lock(hashtext('mamoru.compose_notices'))")
        try:
            _compose(conn, report, guard, on_ready, max(1, chunk))
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
                conn.execute("select pg_advisory_unlock(hashtext('mamoru.compose_notices'))")
                conn.commit()
    return report


def _compose(
    conn: Connection[Any],
    report: ComposeReport,
    guard: FloodGuard,
    on_ready: Callable[[list[int]], None] | None,
    chunk: int,
) -> None:
    report.auto_approved = _auto_approve(conn)
    report.allowlisted = _apply_allowlist(conn)
    candidates = _approved_unlisted(conn)
    flooded = held_reasons(conn, candidates, guard)
    groups: dict[tuple[int, int], list[Candidate]] = defaultdict(list)
    recipients_by_site: dict[int, int | None] = {}
    for candidate in candidates:
        if candidate.site_id not in recipients_by_site:
            recipients_by_site[candidate.site_id] = _recipient_for(conn, candidate.site_id)
        recipient_id = recipients_by_site[candidate.site_id]
        if recipient_id is None:
            report.no_recipient[candidate.site_id] = (
                report.no_recipient.get(candidate.site_id, 0) + 1
            )
            continue
        groups[(candidate.publisher_id, recipient_id)].append(candidate)
    secret = deployment_secret(conn)
    ready: list[int] = []
    for (publisher_id, recipient_id), items in groups.items():
        held = sorted({flooded[c.match_id] for c in items if c.match_id in flooded})
        reason = "; ".join(held) or None
        notice_id = draft_notice(conn, publisher_id, recipient_id, items, reason)
        report.notices.append(notice_id)
        if held:
            report.held.append(notice_id)
        elif finish_notice(conn, notice_id, secret=secret):
            ready.append(notice_id)
        else:
            report.invalid.append(notice_id)
        if len(ready) >= chunk:
            _hand_on(conn, ready, on_ready)
            ready = []
    _hand_on(conn, ready, on_ready)


def _hand_on(
    conn: Connection[Any], ready: list[int], on_ready: Callable[[list[int]], None] | None
) -> None:
    conn.commit()
    if ready and on_ready is not None:
        on_ready(ready)


def _auto_approve(conn: Connection[Any]) -> int:
    rows = conn.execute(
        """
        update matches m set review_state = 'approved', reviewed_at = now()
        from sightings s, pages pg, works w, publishers p
        where m.review_state = 'pending' and m.decision = 'confident'
          and s.id = m.sighting_id and pg.id = m.page_id and w.id = pg.work_id
          and p.id = w.publisher_id and p.auto_approve_min_confidence is not null
          and m.confidence >= p.auto_approve_min_confidence
        returning m.id, m.confidence, p.auto_approve_min_confidence
        """
    ).fetchall()
    for match_id, confidence, minimum in rows:
        _match_event(
            conn,
            match_id,
            "pending",
            "approved",
            "auto_approved",
            {"confidence": float(confidence), "publisher_minimum": float(minimum)},
        )
    return len(rows)


def _match_event(
    conn: Connection[Any],
    match_id: int,
    from_state: str,
    to_state: str,
    reason: str,
    details: dict[str, Any],
) -> None:
    conn.execute(
        """
        insert into events (subject_type, subject_id, event_type, from_state, to_state, details)
        values ('match', %s, %s, %s, %s, %s)
        """,
        (match_id, reason, from_state, to_state, Jsonb({"reason": reason, **details})),
    )


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower().rstrip(".")


def on_domain(host: str, domain: str) -> bool:
    """``host`` is ``domain`` or one of its subdomains.

    >>> on_domain("img.example.com", "example.com"), on_domain("badexample.com", "example.com")
    (True, False)
    """
    return host == domain or host.endswith("." + domain)


def _apply_allowlist(conn: Connection[Any]) -> int:
    rows = conn.execute(
        """
        select m.id, m.review_state, s.page_url, s.image_url, w.publisher_id, w.id
        from matches m
        join sightings s on s.id = m.sighting_id
        join pages pg on pg.id = m.page_id
        join works w on w.id = pg.work_id
        where m.review_state in ('pending', 'approved')
          and exists (select 1 from allowlist_entries a where a.publisher_id = w.publisher_id)
        """
    ).fetchall()
    if not rows:
        return 0
    entries: dict[int, list[tuple[int | None, str]]] = defaultdict(list)
    for publisher_id, work_id, domain in conn.execute(
        "select publisher_id, work_id, domain from allowlist_entries"
    ):
        entries[int(publisher_id)].append((work_id, domain))
    count = 0
    for match_id, state, page_url, image_url, publisher_id, work_id in rows:
        hosts = {host_of(page_url), host_of(image_url)}
        licensed = next(
            (
                domain
                for entry_work, domain in entries[int(publisher_id)]
                if entry_work in (None, work_id) and any(on_domain(h, domain) for h in hosts)
            ),
            None,
        )
        if licensed is None:
            continue
        conn.execute(
            "update matches set review_state = 'licensed', reviewed_at = now() where id = %s",
            (match_id,),
        )
        _match_event(conn, match_id, state, "licensed", "allowlisted", {"domain": licensed})
        count += 1
    return count


def _approved_unlisted(conn: Connection[Any]) -> list[Candidate]:
    rows = conn.execute(
        """
        select m.id, w.publisher_id, w.id, s.site_id, s.page_url, s.image_url, m.page_id
        from matches m
        join sightings s on s.id = m.sighting_id
        join pages pg on pg.id = m.page_id
        join works w on w.id = pg.work_id
        where m.review_state = 'approved'
          and not exists (select 1 from notice_items i where i.match_id = m.id)
        order by m.id
        """
    ).fetchall()
    return [
        Candidate(int(r[0]), int(r[1]), int(r[2]), int(r[3]), str(r[4]), str(r[5]), int(r[6]))
        for r in rows
    ]


def _recipient_for(conn: Connection[Any], site_id: int) -> int | None:
    for recipient in recipients_for_site(conn, site_id):
        if recipient.email:
            return recipient.id
    return None


def draft_notice(
    conn: Connection[Any],
    publisher_id: int,
    recipient_id: int,
    items: Sequence[Candidate],
    held_reason: str | None,
) -> int:
    row = conn.execute(
        """
        insert into notices (publisher_id, recipient_id, format, held_reason)
        select %s, r.id, r.notice_format, %s from recipients r where r.id = %s
        returning id
        """,
        (publisher_id, held_reason, recipient_id),
    ).fetchone()
    assert row is not None
    notice_id = int(row[0])
    with conn.cursor() as cur:
        cur.executemany(
            "insert into notice_items (notice_id, match_id, infringing_url) values (%s, %s, %s)",
            [(notice_id, c.match_id, c.image_url) for c in items],
        )
    details: dict[str, Any] = {"matches": len(items)}
    if held_reason:
        details["held"] = held_reason
    record_event(conn, "notice", notice_id, "drafted", details=details)
    return notice_id


def notice_content(conn: Connection[Any], notice_id: int) -> NoticeContent:
    """What notice ``notice_id`` says, from its rows (also used to re-render it)."""
    head = conn.execute(
        """
        select n.format, n.created_at, p.name, coalesce(p.agent_organisation, ''),
               coalesce(p.contact_address, ''), coalesce(p.contact_email, ''),
               coalesce(p.contact_phone, ''), r.name, r.scope, r.email, r.language
        from notices n
        join publishers p on p.id = n.publisher_id
        join recipients r on r.id = n.recipient_id
        where n.id = %s
        """,
        (notice_id,),
    ).fetchone()
    if head is None:
        raise LookupError(f"no notice {notice_id}")
    fmt, created, publisher, agent, address, email, phone, r_name, scope, r_email, lang = head
    items = conn.execute(
        """
        select s.image_url, s.page_url, w.title, w.kind, w.isbn, w.identifiers, w.official_url,
               pg.page_number, s.evidence_ref
        from notice_items i
        join matches m on m.id = i.match_id
        join sightings s on s.id = m.sighting_id
        join pages pg on pg.id = m.page_id
        join works w on w.id = pg.work_id
        where i.notice_id = %s
        order by i.id
        """,
        (notice_id,),
    ).fetchall()
    return NoticeContent(
        format=fmt,
        # The Japanese guideline's form exists in Japanese only.
        language="ja" if fmt == "jp_provider" else lang,
        date=created.date(),
        reference=reference_of(notice_id, created),
        sender=Sender(
            publisher=publisher,
            agent_organisation=agent,
            address=address,
            email=email,
            phone=phone,
        ),
        recipient=Recipient(name=r_name, scope=scope, email=r_email),
        items=tuple(_item(*row) for row in items),
    )


def _item(
    image_url: str,
    page_url: str,
    title: str,
    kind: Any,
    isbn: str | None,
    identifiers: dict[str, Any],
    official_url: str | None,
    page_number: int,
    evidence: str | None,
) -> NoticeItem:
    return NoticeItem(
        image_url=image_url,
        page_url=page_url,
        work=WorkRef(
            title=title,
            kind=kind,
            identifiers=_identifiers(isbn, identifiers),
            official_url=official_url,
        ),
        page_number=page_number,
        evidence=(EvidenceRef(ref=evidence),) if evidence else (),
    )


def _identifiers(isbn: str | None, extra: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    pairs = [("ISBN", isbn)] if isbn else []
    pairs += [(str(k), str(v)) for k, v in sorted(extra.items())]
    return tuple(pairs)


def deployment_secret(conn: Connection[Any]) -> bytes:
    row = conn.execute("select secret from deployment").fetchone()
    assert row is not None, "migration 0003 inserts the deployment row"
    return bytes(row[0])


def finish_notice(conn: Connection[Any], notice_id: int, *, secret: bytes | None = None) -> bool:
    """Render and validate; approve the notice for sending when it is complete.

    ``secret``: the deployment secret, when the caller has it already."""
    content = notice_content(conn, notice_id)
    try:
        # render() validates what it rendered: one rendering, not one to check and one to keep.
        rendered = render(content)
    except NoticeIncomplete as exc:
        problems = list(exc.problems)
        conn.execute(
            "update notices set last_error = %s where id = %s",
            ("refused by the validator: " + "; ".join(p.message for p in problems), notice_id),
        )
        record_event(
            conn,
            "notice",
            notice_id,
            "validation_failed",
            details={"problems": [p.message for p in problems]},
        )
        return False
    salt = secret if secret is not None else deployment_secret(conn)
    message_id = make_message_id(notice_id, salt=salt, domain=MESSAGE_ID_DOMAIN)
    conn.execute(
        """
        update notices set subject = %s, body_text = %s, body_html = %s, message_id = %s,
                           last_error = null
        where id = %s
        """,
        (rendered.subject, rendered.text, rendered.html, message_id, notice_id),
    )
    # Every match in it was approved by review (or by the publisher's opt-in): the notice is
    # approved with them.
    transition(conn, notice_id, "drafted", "approved", details={"reason": "matches approved"})
    return True


def release(conn: Connection[Any], notice_id: int, *, user_id: int | None, actor: str) -> bool:
    """An operator releases a held notice: it is validated and approved like any other."""
    row = conn.execute(
        "update notices set held_reason = null where id = %s and state = 'drafted' "
        "and held_reason is not null returning id",
        (notice_id,),
    ).fetchone()
    if row is None:
        return False
    record_event(conn, "notice", notice_id, "released", actor=actor, user_id=user_id)
    return finish_notice(conn, notice_id)
