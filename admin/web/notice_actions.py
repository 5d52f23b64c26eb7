"""What staff may do to a notice, for the notice page and the API alike.

Which actions a notice offers follows from its state, by the rules of ``takedown``:

- **release**: drafted and held by the flood guard. ``takedown.compose.release`` validates and
  approves it, then its send is enqueued.
- **resend**: ``delivery_failed -> queued`` (``takedown.states.TRANSITIONS``), then its send
  is enqueued.
- **recheck**: open (``takedown.followup.OPEN_STATES``: sent, acknowledged, still up):
  ``recheck_notice`` is enqueued with ``force``, so the worker rechecks at once whether or not a
  scheduled round is due (scheduled messages go without it and run only due rounds), and the
  round's events name the operator who asked. A recheck requested and not yet run blocks
  another (``admin.web.jobs.recheck_block``), as a pending "crawl now" does: a forced round
  is real requests to a pirate site, and a double click must not send two.
- **escalate**: still up or undeliverable (``takedown.escalate.ESCALATABLE``, exactly the states
  ``TRANSITIONS`` lets move to ``escalated``): ``escalate`` is enqueued.
- **close**: any state but closed moves to ``closed``, by the operator.

A state change and its audit row commit together before anything is enqueued (workers read
committed state); if the broker then fails, the scheduler's sweep sends approved and queued
notices within minutes. Guarded transitions make a race with a worker or another operator
harmless: the loser is told the notice changed meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from psycopg import Connection

from admin.users import User, record_audit
from admin.web import jobs
from store.db import Database
from takedown.compose import release
from takedown.escalate import ESCALATABLE
from takedown.followup import OPEN_STATES
from takedown.states import TRANSITIONS, transition

ACTIONS: Final = ("release", "resend", "recheck", "escalate", "close")
LABELS: Final[Mapping[str, str]] = {
    "release": "Release",
    "resend": "Resend",
    "recheck": "Recheck now",
    "escalate": "Escalate",
    "close": "Close",
}
# What a button says it will do (its title), and what the form asks before doing it.
HINTS: Final[Mapping[str, str]] = {
    "release": "Validate and approve this held notice, then send it",
    "resend": "Queue this notice for sending again",
    "recheck": "Ask a worker to check now whether the reported copies are gone, even "
    "between scheduled rechecks",
    "escalate": "Ask a worker to send the still-up URLs to the next party (host, CDN, registrar)",
    "close": "Stop following this notice: no more rechecks, sends or escalations",
}
CONFIRM: Final[Mapping[str, str]] = {
    "release": "Release this held notice and send it?",
    "resend": "Send this notice again?",
    "escalate": "Escalate this notice to the next party?",
    "close": "Close this notice? Nothing more is sent or rechecked for it.",
}


@dataclass(frozen=True)
class Offer:
    """An action a notice offers now; ``blocked`` says why it cannot run yet."""

    action: str
    label: str
    hint: str
    confirm: str | None = None
    blocked: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What an action did. ``status`` is the API's: 200 done, 409 not possible in the notice's
    state (nothing changed), 422 done but refused by the validator, 503 the broker failed."""

    ok: bool
    status: int
    message: str
    enqueued: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class _Head:
    state: str
    held_reason: str | None


def _head(conn: Connection[Any], notice_id: int) -> _Head | None:
    row = conn.execute(
        "select state, held_reason from notices where id = %s", (notice_id,)
    ).fetchone()
    return _Head(str(row[0]), row[1]) if row is not None else None


def _offers(conn: Connection[Any], notice_id: int, head: _Head) -> list[Offer]:
    state, held = head.state, head.held_reason is not None
    valid: list[tuple[str, str | None]] = []
    if state == "drafted" and held:
        valid.append(("release", None))
    if state == "delivery_failed" and "queued" in TRANSITIONS[state]:
        valid.append(("resend", None))
    if state in OPEN_STATES:
        valid.append(("recheck", jobs.recheck_block(conn, notice_id)))
    if state in ESCALATABLE and "escalated" in TRANSITIONS[state]:
        valid.append(("escalate", None))
    if "closed" in TRANSITIONS[state]:
        valid.append(("close", None))
    return [
        Offer(action, LABELS[action], HINTS[action], CONFIRM.get(action), blocked)
        for action, blocked in valid
    ]


def offers(db: Database, notice_id: int) -> list[Offer]:
    """The actions ``notice_id`` offers in its current state (none for an unknown id)."""
    with db.connection() as conn:
        head = _head(conn, notice_id)
        return _offers(conn, notice_id, head) if head is not None else []


def perform(
    db: Database,
    notice_id: int,
    action: str,
    *,
    user: User,
    remote_addr: str | None,
    via: str = "web",
) -> Outcome:
    """Carry out ``action`` (one of :data:`ACTIONS`) on a notice the caller found in scope."""
    if action not in ACTIONS:
        raise ValueError(f"unknown notice action {action!r}")
    with db.connection() as conn:
        head = _head(conn, notice_id)
        if head is None:
            return Outcome(False, 409, f"Notice {notice_id} no longer exists.")
        offer = {o.action: o for o in _offers(conn, notice_id, head)}.get(action)
    if offer is None:
        return _not_now(notice_id, action, head.state)
    if offer.blocked is not None:
        return Outcome(False, 409, f"Notice {notice_id}: nothing enqueued. {offer.blocked}")
    audit = _Audit(user, remote_addr, via, notice_id, action, head.state)
    handler: Callable[[Database, int, _Head, _Audit], Outcome] = _HANDLERS[action]
    return handler(db, notice_id, head, audit)


def _not_now(notice_id: int, action: str, state: str) -> Outcome:
    return Outcome(
        False,
        409,
        f"Notice {notice_id} is {state.replace('_', ' ')}: "
        f"{LABELS[action].lower()} is not possible now; nothing changed.",
    )


@dataclass(frozen=True)
class _Audit:
    user: User
    remote_addr: str | None
    via: str
    notice_id: int
    action: str
    from_state: str

    def write(self, conn: Connection[Any], **details: Any) -> None:
        record_audit(
            conn,
            actor=self.user.email,
            action=f"notice.{self.action}",
            user_id=self.user.id,
            target_type="notice",
            target_id=self.notice_id,
            remote_addr=self.remote_addr,
            details={"via": self.via, "from_state": self.from_state, **details},
        )


def _close(db: Database, notice_id: int, head: _Head, audit: _Audit) -> Outcome:
    with db.connection() as conn:
        left = transition(
            conn,
            notice_id,
            head.state,
            "closed",
            actor=audit.via,
            user_id=audit.user.id,
            details={"reason": "closed by staff"},
        )
        if left is None:
            return _changed(notice_id)
        audit.write(conn, to_state="closed")
    return Outcome(True, 200, f"Notice {notice_id} closed.")


def _resend(db: Database, notice_id: int, head: _Head, audit: _Audit) -> Outcome:
    with db.connection() as conn:
        left = transition(
            conn,
            notice_id,
            "delivery_failed",
            "queued",
            actor=audit.via,
            user_id=audit.user.id,
            details={"reason": "resend requested"},
        )
        if left is None:
            return _changed(notice_id)
        audit.write(conn, to_state="queued")
    return _then_send(notice_id, f"Notice {notice_id} queued for sending again")


def _release(db: Database, notice_id: int, head: _Head, audit: _Audit) -> Outcome:
    with db.connection() as conn:
        # Locked while still held, so ``release`` returning False can only mean the validator
        # refused the notice (not that someone else released it first).
        held = conn.execute(
            "select 1 from notices where id = %s and state = 'drafted'"
            " and held_reason is not null for update",
            (notice_id,),
        ).fetchone()
        if held is None:
            return _changed(notice_id)
        approved = release(conn, notice_id, user_id=audit.user.id, actor=audit.via)
        after = conn.execute(
            "select state, last_error from notices where id = %s", (notice_id,)
        ).fetchone()
        assert after is not None
        state, refused = str(after[0]), after[1]
        details: dict[str, Any] = {"held_reason": head.held_reason, "to_state": state}
        if not approved:
            details["refused"] = refused
        audit.write(conn, **details)
    if not approved:
        return Outcome(
            False,
            422,
            f"Notice {notice_id} was released but the validator refused it, so it stays "
            f"drafted: {refused or 'see its timeline'}.",
        )
    return _then_send(notice_id, f"Notice {notice_id} released and approved")


def _then_send(notice_id: int, done: str) -> Outcome:
    try:
        jobs.send_notice(notice_id)
    except jobs.EnqueueFailed:
        return Outcome(
            True,
            200,
            f"{done}, but the job queue could not be reached: the scheduler's sweep sends it "
            "within minutes.",
        )
    return Outcome(True, 200, f"{done}; a worker sends it.", ("send_notice",))


_QUEUE_DOWN: Final = "The job queue could not be reached; nothing was enqueued. Try again."


def _enqueue_only(
    actor_name: str, enqueue: Callable[[int], str], done: str
) -> Callable[[Database, int, _Head, _Audit], Outcome]:
    def handler(db: Database, notice_id: int, head: _Head, audit: _Audit) -> Outcome:
        try:
            message_id = enqueue(notice_id)
        except jobs.EnqueueFailed:
            return Outcome(False, 503, _QUEUE_DOWN)
        with db.connection() as conn:
            audit.write(conn, enqueued=actor_name, message_id=message_id)
        return Outcome(True, 200, done.format(id=notice_id), (actor_name,))

    return handler


def _recheck(db: Database, notice_id: int, head: _Head, audit: _Audit) -> Outcome:
    # The audit row is the request's record, which the next request's check reads: written
    # in the transaction that holds the per-notice lock.
    with db.connection() as conn:
        try:
            asked = jobs.request_recheck(conn, notice_id, user=audit.user, via=audit.via)
        except jobs.RecheckRefused as exc:
            return Outcome(False, 409, f"Notice {notice_id}: nothing enqueued. {exc}")
        except jobs.EnqueueFailed:
            return Outcome(False, 503, _QUEUE_DOWN)
        audit.write(
            conn,
            enqueued="recheck_notice",
            message_id=asked.message_id,
            rechecked_through=asked.rechecked_through,
        )
    return Outcome(
        True,
        200,
        f"Recheck of notice {notice_id} enqueued; a worker checks its URLs now.",
        ("recheck_notice",),
    )


def _changed(notice_id: int) -> Outcome:
    return Outcome(
        False, 409, f"Notice {notice_id} changed meanwhile; nothing was done. Reload and retry."
    )


_HANDLERS: Final[Mapping[str, Callable[[Database, int, _Head, _Audit], Outcome]]] = {
    "close": _close,
    "resend": _resend,
    "release": _release,
    "recheck": _recheck,
    "escalate": _enqueue_only(
        "escalate",
        jobs.escalate,
        "Escalation of notice {id} enqueued; a worker drafts and sends the next notice.",
    ),
}
