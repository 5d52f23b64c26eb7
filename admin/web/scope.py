"""Which publishers a user may see: the one place that decides it.

Every query over works, pages, matches, notices and allowlists takes a :class:`Scope` and
filters with ``publisher_id = any(%(publishers)s)`` in SQL, so an object outside the scope is
never read at all; views answer 404 for it, the same as for an id that does not exist, so a
publisher cannot probe for another's objects.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import g

from admin.users import User
from admin.web.auth import current_user
from admin.web.resources import get_db
from store.db import Database


@dataclass(frozen=True)
class Scope:
    publisher_ids: list[int]
    # Admins see every publisher, including ones created after this request began.
    everything: bool = False

    def allows(self, publisher_id: int | None) -> bool:
        return publisher_id is not None and (self.everything or publisher_id in self.publisher_ids)

    @property
    def params(self) -> dict[str, object]:
        """Query parameters for ``publisher_id = any(%(publishers)s)``."""
        return {"publishers": self.publisher_ids}


def scope_for(db: Database, user: User) -> Scope:
    with db.connection() as conn:
        if user.role == "admin":
            rows = conn.execute("select id from publishers order by id").fetchall()
            return Scope([int(r[0]) for r in rows], everything=True)
        if user.role == "operator":
            rows = conn.execute(
                "select publisher_id from operator_assignments where user_id = %s"
                " order by publisher_id",
                (user.id,),
            ).fetchall()
            return Scope([int(r[0]) for r in rows])
    return Scope([user.publisher_id] if user.publisher_id is not None else [])


def current_scope() -> Scope:
    """The signed-in user's scope, computed once per request."""
    scope = g.get("scope")
    if scope is None:
        user = current_user()
        scope = scope_for(get_db(), user) if user is not None else Scope([])
        g.scope = scope
    assert isinstance(scope, Scope)
    return scope


def visible_publishers(db: Database, scope: Scope) -> list[tuple[int, str]]:
    """(id, name) of the publishers in scope, by name (for filters and upload forms)."""
    with db.connection() as conn:
        rows = conn.execute(
            "select id, name from publishers where id = any(%(publishers)s) order by name",
            scope.params,
        ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]
