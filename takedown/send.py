"""Sending one notice, exactly once in effect.

The notice row is locked (``FOR UPDATE SKIP LOCKED``) for the whole send, so two workers given
the same notice cannot both send it: the second skips. The state moves to ``sent`` in the same
transaction as the hand-over is recorded. What remains is the window between the relay
accepting the message and that commit: a worker killed there leaves the notice ``queued``, and
the retry sends it again *with the same Message-ID* (derived from the notice id), so the
duplicate is recognisable by the recipient's mail system and by the outbox, which refuses to
write the same Message-ID twice.

Mamoru notices such a retry itself: each attempt is recorded (``send_attempts``) and committed
from a second connection before the relay is contacted, and finished with the outcome. An
attempt still unfinished when the notice is sent again was cut short, perhaps after the relay
accepted it, so that send records a ``possible_duplicate`` event (and says so in the receipt).

Just before sending, the allowlist is checked again: a domain licensed after the notice was
drafted holds the notice instead.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from crawler.evidence import EvidenceStore
from store.config import Settings
from store.db import Database
from takedown.compose import MESSAGE_ID_DOMAIN, deployment_secret, host_of, on_domain
from takedown.delivery import (
    DeliveryReceipt,
    PermanentDeliveryError,
    Sender,
    TransientDeliveryError,
)
from takedown.mail import Attachment, attachments_fit, build_message
from takedown.states import record_event, transition

__all__ = ["SendOutcome", "send_notice"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendOutcome:
    notice_id: int
    result: str  # sent | duplicate | skipped | held | failed
    detail: str = ""


def send_notice(db: Database, notice_id: int, sender: Sender, settings: Settings) -> SendOutcome:
    """Send ``notice_id`` if it is approved or queued; TransientDeliveryError is re-raised for
    the caller's retry policy after the attempt is recorded."""
    attempt: int | None = None
    try:
        with db.connection() as conn:
            row = conn.execute(
                """
                select n.state, n.subject, n.body_text, n.body_html, n.held_reason,
                       r.email, p.agent_organisation, p.name, p.contact_email, n.message_id,
                       -- The row is locked below, so no live worker is sending it: attempts
                       -- still open were cut short (see _start_attempt).
                       (select count(*) from send_attempts a
                        where a.notice_id = n.id and a.finished_at is null)
                from notices n
                join recipients r on r.id = n.recipient_id
                join publishers p on p.id = n.publisher_id
                where n.id = %s and n.state in ('approved', 'queued')
                for update of n skip locked
                """,
                (notice_id,),
            ).fetchone()
            if row is None:
                return SendOutcome(notice_id, "skipped", "not approved/queued, or being sent")
            state, subject, text, html, held, to, agent, publisher, reply_to, message_id = row[:10]
            cut_short = int(row[10])
            if held:
                return SendOutcome(notice_id, "held", held)
            licensed = _now_allowlisted(conn, notice_id)
            if licensed:
                reason = f"allowlisted since drafted: {licensed}"
                conn.execute(
                    "update notices set held_reason = %s where id = %s", (reason, notice_id)
                )
                record_event(conn, "notice", notice_id, "held", details={"reason": reason})
                return SendOutcome(notice_id, "held", reason)
            if to is None:
                raise PermanentDeliveryError("the recipient has no email address (web form only)")
            if state == "approved":
                transition(conn, notice_id, "approved", "queued", actor="worker")
            message = build_message(
                attachments=_screenshots(conn, notice_id, settings),
                notice_id=notice_id,
                subject=subject,
                text=text,
                html=html,
                sender_name=agent or publisher,
                from_address=settings.mail_from,
                to_address=to,
                reply_to=reply_to,
                # Stored when composed; computed again only for a notice composed without one.
                message_id=message_id,
                message_id_salt=b"" if message_id else deployment_secret(conn),
                message_id_domain=MESSAGE_ID_DOMAIN,
            )
            attempt = _start_attempt(db, notice_id)
            receipt = sender.send(message)
            _record_sent(conn, notice_id, receipt, attempt, cut_short)
            detail = receipt.reply_text
            if cut_short:
                detail += f" (possible duplicate: {cut_short} earlier attempt(s) without outcome)"
            return SendOutcome(notice_id, "duplicate" if receipt.duplicate else "sent", detail)
    except TransientDeliveryError as exc:
        _record_failure(db, notice_id, exc, permanent=False, attempt=attempt)
        raise
    except PermanentDeliveryError as exc:
        _record_failure(db, notice_id, exc, permanent=True, attempt=attempt)
        return SendOutcome(notice_id, "failed", str(exc))


def _screenshots(conn: Connection[Any], notice_id: int, settings: Settings) -> list[Attachment]:
    """Screenshots of the infringing pages, from the evidence store, as many as fit the size
    cap (in item order); the notice lists every item's evidence reference either way."""
    refs = [
        str(r[0])
        for r in conn.execute(
            """
            select s.evidence_ref from notice_items i
            join matches m on m.id = i.match_id
            join sightings s on s.id = m.sighting_id
            where i.notice_id = %s and s.evidence_ref is not null
            group by s.evidence_ref order by min(i.id)
            """,
            (notice_id,),
        )
    ]
    store = EvidenceStore(settings.evidence_path)
    attachments: list[Attachment] = []
    seen: set[str] = set()
    for ref in refs:
        try:
            shot = (store.manifest(ref).get("page") or {}).get("screenshot") or {}
            digest = str(shot.get("sha256", ""))
            if not digest or digest in seen or not store.has(digest):
                continue
            candidate = Attachment(store.read(digest), f"page-{len(seen) + 1}.png", "image/png")
        except (OSError, ValueError):
            continue  # evidence missing or unreadable here: the reference is still listed
        if not attachments_fit([*attachments, candidate]):
            break
        attachments.append(candidate)
        seen.add(digest)
    return attachments


def _now_allowlisted(conn: Connection[Any], notice_id: int) -> str | None:
    rows = conn.execute(
        """
        select s.page_url, s.image_url, a.domain
        from notice_items i
        join matches m on m.id = i.match_id
        join sightings s on s.id = m.sighting_id
        join pages pg on pg.id = m.page_id
        join works w on w.id = pg.work_id
        join allowlist_entries a on a.publisher_id = w.publisher_id
             and (a.work_id is null or a.work_id = w.id)
        where i.notice_id = %s
        """,
        (notice_id,),
    ).fetchall()
    for page_url, image_url, domain in rows:
        if on_domain(host_of(page_url), domain) or on_domain(host_of(image_url), domain):
            return str(domain)
    return None


def _start_attempt(db: Database, notice_id: int) -> int:
    """Record an attempt and commit it now, from a second connection, before the relay is
    contacted (the sending transaction commits only after the relay has answered)."""
    with db.connection() as conn:
        # Durable enough without waiting for the disk (synchronous_commit off for this
        # transaction only, set in the same statement to spare a round trip): losing the row to
        # a server crash loses only the duplicate warning.
        row = conn.execute(
            """
            insert into send_attempts (notice_id, worker)
            select %s, %s from (select set_config('synchronous_commit', 'off', true)) unused
            returning id
            """,
            (notice_id, f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _finish_attempts(
    conn: Connection[Any], notice_id: int, attempt: int, outcome: str, *, all_open: bool
) -> None:
    """Close ``attempt`` with ``outcome``; with ``all_open``, close the cut-short ones too (a
    notice that was sent has nothing left to warn about)."""
    conn.execute(
        """
        update send_attempts set finished_at = now(),
               outcome = case when id = %s then %s end
        where notice_id = %s and finished_at is null and (id = %s or %s)
        """,
        (attempt, outcome, notice_id, attempt, all_open),
    )


def _record_sent(
    conn: Connection[Any],
    notice_id: int,
    receipt: DeliveryReceipt,
    attempt: int,
    cut_short: int,
) -> None:
    _finish_attempts(
        conn, notice_id, attempt, "duplicate" if receipt.duplicate else "sent", all_open=True
    )
    if cut_short:
        record_event(
            conn,
            "notice",
            notice_id,
            "possible_duplicate",
            actor="worker",
            details={
                "message_id": receipt.message_id,
                "attempts_cut_short": cut_short,
                "reason": "an earlier attempt has no known outcome (a worker died mid-send, or "
                "the connection broke after the whole message went out); the relay may have "
                "accepted that copy too, with the same Message-ID",
            },
        )
    conn.execute(
        """
        update notices set sent_at = %s, send_attempts = send_attempts + 1, last_error = null,
                           delivery_receipt = %s
        where id = %s
        """,
        (
            receipt.accepted_at,
            Jsonb(
                {
                    "message_id": receipt.message_id,
                    "reply_code": receipt.reply_code,
                    "reply_text": receipt.reply_text,
                    "duplicate": receipt.duplicate,
                    "possible_duplicate": cut_short > 0,
                }
            ),
            notice_id,
        ),
    )
    transition(
        conn,
        notice_id,
        "queued",
        "sent",
        actor="worker",
        details={
            "message_id": receipt.message_id,
            "duplicate": receipt.duplicate,
            "possible_duplicate": cut_short > 0,
        },
    )


def _record_failure(
    db: Database, notice_id: int, exc: Exception, *, permanent: bool, attempt: int | None
) -> None:
    log.warning("notice %s: delivery %s: %s", notice_id, "failed" if permanent else "deferred", exc)
    with db.connection() as conn:
        # Only this attempt, and not when the connection broke after the whole message went out
        # (the relay may have it): an attempt left open makes the next copy a possible duplicate.
        if attempt is not None and not getattr(exc, "maybe_delivered", False):
            outcome = "failed" if permanent else "deferred"
            _finish_attempts(conn, notice_id, attempt, outcome, all_open=False)
        conn.execute(
            "update notices set send_attempts = send_attempts + 1, last_error = %s where id = %s",
            (str(exc), notice_id),
        )
        if permanent:
            transition(
                conn,
                notice_id,
                ("approved", "queued"),
                "delivery_failed",
                actor="worker",
                details={"error": str(exc)},
            )
        else:
            transition(conn, notice_id, "approved", "queued", actor="worker")
            record_event(conn, "notice", notice_id, "send_deferred", details={"error": str(exc)})
