"""Sign-in, sign-out, the current user and the decorators that guard views.

Sessions are Flask's signed cookies holding the user id and a digest of the password hash: a
password change or a deactivation ends every session of that user at its next request. Failed
logins are counted from ``audit_log`` (the record exists anyway), per email and address and per
address alone, so throttling needs no table and holds across gunicorn workers.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Final, ParamSpec

from flask import (
    Blueprint,
    abort,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue

from admin.users import User, authenticate, get_user, record_audit, record_login
from admin.web.resources import get_db
from admin.web.security import safe_next

bp = Blueprint("auth", __name__)

P = ParamSpec("P")
View = Callable[P, ResponseReturnValue]

FAILURE_WINDOW: Final = "15 minutes"
MAX_FAILURES_PER_EMAIL: Final = 5
MAX_FAILURES_PER_ADDRESS: Final = 30


def current_user() -> User | None:
    user = g.get("user")
    return user if isinstance(user, User) else None


def remote_addr() -> str | None:
    return request.remote_addr


def actor_name(user: User | None = None) -> str:
    """How audit rows name who acted: the user's email, or 'web' before sign-in."""
    user = user or current_user()
    return user.email if user is not None else "web"


@bp.before_app_request
def load_user() -> None:
    if request.blueprint in ("api", "health") or request.endpoint == "static":
        # The API authenticates with tokens only, never with the session cookie; the health
        # check needs no user (and must not wait on the database to load one).
        return
    user_id = session.get("uid")
    if not isinstance(user_id, int):
        return
    user = get_user(get_db(), user_id)
    if user is None or not user.is_active or session.get("pwv") != user.password_version:
        session.clear()
        return
    g.user = user


def login_required(view: View[P]) -> View[P]:
    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
        if current_user() is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped


def roles_required(*roles: str) -> Callable[[View[P]], View[P]]:
    """Signed in with one of ``roles``; others get 403 (the area exists for every user)."""

    def decorate(view: View[P]) -> View[P]:
        @wraps(view)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
            user = current_user()
            if user is None:
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            if user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorate


def _throttled(email: str, address: str | None) -> bool:
    with get_db().connection() as conn:
        row = conn.execute(
            """
            select count(*) filter (where lower(details->>'email') = lower(%(email)s)),
                   count(*)
            from audit_log
            where action = 'login_failed' and remote_addr is not distinct from %(addr)s
              and occurred_at > now() - %(window)s::interval
            """,
            {"email": email, "addr": address, "window": FAILURE_WINDOW},
        ).fetchone()
    assert row is not None
    return int(row[0]) >= MAX_FAILURES_PER_EMAIL or int(row[1]) >= MAX_FAILURES_PER_ADDRESS


def _record_failure(email: str, address: str | None) -> None:
    with get_db().connection() as conn:
        record_audit(
            conn,
            actor="web",
            action="login_failed",
            remote_addr=address,
            details={"email": email[:254]},
        )


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    target = safe_next(request.values.get("next"), url_for("dashboard.index"))
    if request.method == "GET":
        if current_user() is not None:
            return redirect(target)
        return render_template("login.html", next=target, email="")
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    address = remote_addr()
    if _throttled(email, address):
        message = "Too many failed sign-ins. Wait 15 minutes and try again."
        return render_template("login.html", next=target, email=email, error=message), 429
    user = authenticate(get_db(), email, password) if email and password else None
    if user is None:
        _record_failure(email, address)
        error = "Wrong email or password."
        return render_template("login.html", next=target, email=email, error=error), 401
    session.clear()
    session.permanent = True
    session["uid"] = user.id
    session["pwv"] = user.password_version
    record_login(get_db(), user, address)
    return redirect(target)


@bp.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    user = current_user()
    if user is not None:
        with get_db().connection() as conn:
            record_audit(
                conn,
                actor=user.email,
                action="logout",
                user_id=user.id,
                target_type="user",
                target_id=user.id,
                remote_addr=remote_addr(),
            )
    session.clear()
    return redirect(url_for("auth.login"))
