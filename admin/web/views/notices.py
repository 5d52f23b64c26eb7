"""Notices: the list by state and recipient, one notice with its items and timeline, and the
staff's actions on it (``admin.web.notice_actions``: release, resend, recheck, escalate, close).

A notice's HTML body was rendered from templates fed with scraped text; it is shown only inside
a sandboxed frame served with its own CSP (no script, no network, an opaque origin), never
inlined into the admin's pages.
"""

from __future__ import annotations

from typing import Final

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from admin.web import notice_actions
from admin.web.auth import current_user, login_required, remote_addr, roles_required
from admin.web.forms import page_number
from admin.web.queries import notices as q
from admin.web.resources import get_db
from admin.web.scope import current_scope
from admin.web.security import NOTICE_BODY_CSP

bp = Blueprint("notices", __name__)

PER_PAGE: Final = 100
STAFF: Final = ("admin", "operator")


@bp.route("/notices")
@login_required
def index() -> ResponseReturnValue:
    db, scope = get_db(), current_scope()
    state = request.args.get("state") or None
    if state not in q.STATES:
        state = None
    recipient_id = request.args.get("recipient", type=int)
    page = page_number()
    rows = q.list_notices(
        db,
        scope,
        state=state,
        recipient_id=recipient_id,
        limit=PER_PAGE + 1,
        offset=(page - 1) * PER_PAGE,
    )
    return render_template(
        "notices/list.html",
        notices=rows[:PER_PAGE],
        has_more=len(rows) > PER_PAGE,
        page=page,
        state=state,
        recipient_id=recipient_id,
        state_choices=[(s, s.replace("_", " ")) for s in q.STATES],
        filter_args={
            k: v for k, v in (("state", state), ("recipient", recipient_id)) if v is not None
        },
        recipients=q.recipients_in_scope(db, scope),
    )


@bp.route("/notices/<int:notice_id>")
@login_required
def detail(notice_id: int) -> ResponseReturnValue:
    db = get_db()
    found = q.get_notice(db, current_scope(), notice_id)
    if found is None:
        abort(404)
    user = current_user()
    staff = user is not None and user.role in STAFF
    return render_template(
        "notices/detail.html",
        detail=found,
        notice=found.notice,
        items=q.notice_items(db, notice_id),
        timeline=q.notice_timeline(db, notice_id),
        offers=notice_actions.offers(db, notice_id) if staff else [],
    )


@bp.route("/notices/<int:notice_id>/actions", methods=["POST"])
@roles_required(*STAFF)
def act(notice_id: int) -> ResponseReturnValue:
    db = get_db()
    user = current_user()
    assert user is not None
    if q.get_notice(db, current_scope(), notice_id) is None:
        abort(404)
    action = request.form.get("action", "")
    if action not in notice_actions.ACTIONS:
        abort(400, description="Unknown notice action.")
    outcome = notice_actions.perform(db, notice_id, action, user=user, remote_addr=remote_addr())
    category = "success" if outcome.ok else "warning" if outcome.status == 409 else "error"
    flash(outcome.message, category)
    return redirect(url_for("notices.detail", notice_id=notice_id), 303)


@bp.route("/notices/<int:notice_id>/body.html")
@login_required
def body(notice_id: int) -> ResponseReturnValue:
    html = q.notice_html(get_db(), current_scope(), notice_id)
    if html is None:
        abort(404)
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = NOTICE_BODY_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "private, no-store"
    return response
