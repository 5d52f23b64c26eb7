"""Review decisions: approve, reject, or reject as licensed (and allowlist the domain).

A decision applies only to a match that is still pending (``where review_state =
'pending'``): two reviewers deciding the same match at once, or a bulk action over a list that
changed meanwhile, decide it once and the second is told. The state change, its ``events``
row, its audit row and a licensed domain's allowlist entry commit together.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from psycopg.types.json import Jsonb

from admin.users import User, record_audit
from admin.web.scope import Scope
from store.db import Database

ACTIONS: Final = {"approve": "approved", "reject": "rejected", "licensed": "licensed"}


def decide(
    db: Database,
    scope: Scope,
    match_id: int,
    action: str,
    *,
    user: User,
    remote_addr: str | None,
    bulk: bool = False,
    via: str = "web",
) -> bool:
    """Apply ``action`` to a pending match in scope; False when it is not pending (any more).

    ``via`` names the channel (``web`` or ``api``) as the event's actor and in the details."""
    to_state = ACTIONS[action]
    with db.connection() as conn:
        row = conn.execute(
            """
            update matches m set review_state = %(to)s, reviewed_by = %(user)s,
                                 reviewed_at = now()
            from pages pg, works w, sightings s
            where m.id = %(id)s and m.review_state = 'pending'
              and pg.id = m.page_id and w.id = pg.work_id and s.id = m.sighting_id
              and w.publisher_id = any(%(publishers)s)
            returning w.id, w.publisher_id, s.page_url
            """,
            {**scope.params, "to": to_state, "user": user.id, "id": match_id},
        ).fetchone()
        if row is None:
            return False
        work_id, publisher_id, page_url = int(row[0]), int(row[1]), str(row[2])
        details: dict[str, object] = {"action": action, "bulk": bulk, "via": via}
        if action == "licensed":
            domain = (urlsplit(page_url).hostname or "").lower().rstrip(".")
            if domain:
                conn.execute(
                    """
                    insert into allowlist_entries (publisher_id, work_id, domain, note,
                                                   created_by)
                    values (%s, %s, %s, %s, %s) on conflict do nothing
                    """,
                    (
                        publisher_id,
                        work_id,
                        domain,
                        f"licensed (review of match {match_id})",
                        user.id,
                    ),
                )
                details["allowlisted"] = domain
        conn.execute(
            """
            insert into events (subject_type, subject_id, event_type, from_state, to_state,
                                actor_user_id, actor, details)
            values ('match', %s, 'reviewed', 'pending', %s, %s, %s, %s)
            """,
            (match_id, to_state, user.id, via, Jsonb(details)),
        )
        record_audit(
            conn,
            actor=user.email,
            action=f"match.{action}",
            user_id=user.id,
            target_type="match",
            target_id=match_id,
            remote_addr=remote_addr,
            details=details,
        )
    return True
