"""The notice lifecycle: an explicit state machine, one event row per transition.

Every change of ``notices.state`` goes through ``transition``, which updates the row only if
it is still in the expected state (so two workers, a retry and an operator can race without a
notice jumping states twice) and writes the ``events`` row in the same transaction. Durations
such as time-to-removal per recipient are then queries over ``events``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from psycopg import Connection
from psycopg.types.json import Jsonb

__all__ = ["TRANSITIONS", "IllegalTransition", "transition"]

# state -> states it may move to
TRANSITIONS: Final[Mapping[str, frozenset[str]]] = {
    "drafted": frozenset({"approved", "closed"}),
    "approved": frozenset({"queued", "delivery_failed", "closed"}),
    "queued": frozenset({"sent", "delivery_failed", "closed"}),
    "sent": frozenset({"acknowledged", "removed", "still_up", "closed"}),
    "delivery_failed": frozenset({"queued", "escalated", "closed"}),
    "acknowledged": frozenset({"removed", "still_up", "closed"}),
    "still_up": frozenset({"removed", "escalated", "closed"}),
    "escalated": frozenset({"removed", "closed"}),
    "removed": frozenset({"closed"}),
    "closed": frozenset(),
}


class IllegalTransition(ValueError):
    def __init__(self, notice_id: int, from_state: str, to_state: str) -> None:
        super().__init__(f"notice {notice_id}: {from_state} -> {to_state} is not allowed")


def transition(
    conn: Connection[Any],
    notice_id: int,
    from_states: str | tuple[str, ...],
    to_state: str,
    *,
    actor: str = "system",
    user_id: int | None = None,
    details: Mapping[str, Any] | None = None,
    event_type: str = "state_changed",
) -> str | None:
    """Move a notice from one of ``from_states`` to ``to_state``; return the state it left.

    Returns None (and changes nothing) when the notice is no longer in any of ``from_states``:
    someone else moved it first, which callers treat as "already done".
    """
    expected = (from_states,) if isinstance(from_states, str) else from_states
    for state in expected:
        if to_state not in TRANSITIONS[state]:
            raise IllegalTransition(notice_id, state, to_state)
    row = conn.execute(
        """
        update notices n set state = %s, state_changed_at = now()
        from (select id, state from notices where id = %s and state = any(%s) for update) old
        where n.id = old.id
        returning old.state
        """,
        (to_state, notice_id, list(expected)),
    ).fetchone()
    if row is None:
        return None
    left: str = row[0]
    conn.execute(
        """
        insert into events (subject_type, subject_id, event_type, from_state, to_state,
                            actor_user_id, actor, details)
        values ('notice', %s, %s, %s, %s, %s, %s, %s)
        """,
        (notice_id, event_type, left, to_state, user_id, actor, Jsonb(dict(details or {}))),
    )
    return left


def record_event(
    conn: Connection[Any],
    subject_type: str,
    subject_id: int,
    event_type: str,
    *,
    actor: str = "system",
    user_id: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """An event that is not a state change (a gate's verdict, a send attempt)."""
    conn.execute(
        """
        insert into events (subject_type, subject_id, event_type, actor_user_id, actor, details)
        values (%s, %s, %s, %s, %s, %s)
        """,
        (subject_type, subject_id, event_type, user_id, actor, Jsonb(dict(details or {}))),
    )
