"""Admin-only pages: users (create, deactivate, operator assignments, API tokens) and the
audit log."""

from __future__ import annotations

from typing import Final

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from admin.publishers import list_publishers
from admin.users import (
    ROLES,
    UserError,
    assign_operator,
    create_user,
    get_user,
    list_tokens,
    list_users,
    operator_publishers,
    revoke_token,
    set_active,
    unassign_operator,
)
from admin.web import forms
from admin.web.auth import current_user, remote_addr, roles_required
from admin.web.forms import page_number
from admin.web.queries.audit import audit_actions, list_audit
from admin.web.resources import get_db

bp = Blueprint("staff", __name__)

PER_PAGE: Final = 100


@bp.route("/users")
@roles_required("admin")
def users() -> ResponseReturnValue:
    db = get_db()
    everyone = list_users(db)
    return render_template(
        "staff/users.html",
        users=everyone,
        assignments={u.id: operator_publishers(db, u.id) for u in everyone if u.role == "operator"},
        publishers=list_publishers(db),
        tokens=list_tokens(db),
        roles=ROLES,
        form=request.form,
    )


@bp.route("/users", methods=["POST"])
@roles_required("admin")
def create() -> ResponseReturnValue:
    admin = current_user()
    assert admin is not None
    try:
        user = create_user(
            get_db(),
            email=forms.text("email", max_len=254),
            role=forms.text("role"),
            password=request.form.get("password", ""),
            publisher=forms.text("publisher") or None,
            display_name=forms.text("display_name", max_len=200) or None,
            actor=admin.email,
            actor_user_id=admin.id,
            remote_addr=remote_addr(),
        )
    except UserError as exc:
        flash(str(exc), "error")
        return redirect(url_for("staff.users"), 303)
    flash(f"Created {user.role} {user.email}.", "success")
    return redirect(url_for("staff.users"), 303)


@bp.route("/users/<int:user_id>/active", methods=["POST"])
@roles_required("admin")
def activate(user_id: int) -> ResponseReturnValue:
    admin = current_user()
    assert admin is not None
    target = get_user(get_db(), user_id)
    if target is None:
        abort(404)
    active = request.form.get("active") == "1"
    if target.id == admin.id and not active:
        flash("You cannot deactivate yourself.", "error")
        return redirect(url_for("staff.users"), 303)
    set_active(
        get_db(),
        user_id,
        active,
        actor=admin.email,
        actor_user_id=admin.id,
        remote_addr=remote_addr(),
    )
    flash(f"{target.email} {'activated' if active else 'deactivated'}.", "success")
    return redirect(url_for("staff.users"), 303)


@bp.route("/users/<int:user_id>/assign", methods=["POST"])
@roles_required("admin")
def assign(user_id: int) -> ResponseReturnValue:
    admin = current_user()
    assert admin is not None
    target = get_user(get_db(), user_id)
    if target is None:
        abort(404)
    try:
        assign_operator(
            get_db(),
            target.email,
            forms.text("publisher"),
            actor=admin.email,
            actor_user_id=admin.id,
            remote_addr=remote_addr(),
        )
    except UserError as exc:
        flash(str(exc), "error")
    return redirect(url_for("staff.users"), 303)


@bp.route("/users/<int:user_id>/unassign/<int:publisher_id>", methods=["POST"])
@roles_required("admin")
def unassign(user_id: int, publisher_id: int) -> ResponseReturnValue:
    admin = current_user()
    assert admin is not None
    if not unassign_operator(
        get_db(),
        user_id,
        publisher_id,
        actor=admin.email,
        actor_user_id=admin.id,
        remote_addr=remote_addr(),
    ):
        abort(404)
    return redirect(url_for("staff.users"), 303)


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@roles_required("admin")
def revoke(token_id: int) -> ResponseReturnValue:
    admin = current_user()
    assert admin is not None
    try:
        revoke_token(get_db(), token_id, actor=admin.email, actor_user_id=admin.id)
    except UserError:
        abort(404)
    flash(f"API token {token_id} revoked.", "success")
    return redirect(url_for("staff.users"), 303)


@bp.route("/audit")
@roles_required("admin")
def audit() -> ResponseReturnValue:
    db = get_db()
    action = request.args.get("action", "").strip()[:100]
    actor = request.args.get("actor", "").strip()[:254]
    page = page_number()
    rows = list_audit(
        db, action=action, actor=actor, limit=PER_PAGE + 1, offset=(page - 1) * PER_PAGE
    )
    return render_template(
        "staff/audit.html",
        rows=rows[:PER_PAGE],
        has_more=len(rows) > PER_PAGE,
        page=page,
        action=action,
        actor=actor,
        actions=audit_actions(db),
    )
