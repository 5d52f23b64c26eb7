"""Works: the list, registering a work by upload, a work's pages, and allowlists."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue

from admin.users import record_audit
from admin.web import forms
from admin.web.auth import current_user, login_required, remote_addr
from admin.web.queries import allowlist as allow
from admin.web.queries import works as q
from admin.web.resources import get_db, settings
from admin.web.scope import current_scope, visible_publishers
from admin.web.security import safe_next
from admin.web.uploads import UploadError, register_upload
from matcher.registry import WORK_KINDS, RegistrationResult

bp = Blueprint("works", __name__)


def wants_json() -> bool:
    """The upload script asks for JSON so it can show the outcome without leaving the page."""
    return request.accept_mimetypes.best == "application/json"


@bp.route("/works")
@login_required
def index() -> ResponseReturnValue:
    db, scope = get_db(), current_scope()
    publisher_id = request.args.get("publisher", type=int)
    query = request.args.get("q", "").strip()[:200]
    return render_template(
        "works/list.html",
        works=q.list_works(db, scope, publisher_id=publisher_id, query=query),
        publishers=visible_publishers(db, scope),
        publisher_id=publisher_id,
        query=query,
    )


@bp.route("/works/<int:work_id>")
@login_required
def detail(work_id: int) -> ResponseReturnValue:
    db, scope = get_db(), current_scope()
    work = q.get_work(db, scope, work_id)
    if work is None:
        abort(404)
    return render_template(
        "works/detail.html",
        work=work,
        pages=q.work_pages(db, work.id),
        entries=allow.list_entries(db, scope, work_id=work.id),
    )


def _upload_form(error: str | None = None, status: int = 200) -> ResponseReturnValue:
    db, scope = get_db(), current_scope()
    if error and wants_json():
        return jsonify(error=error), status
    return (
        render_template(
            "works/new.html",
            publishers=visible_publishers(db, scope),
            kinds=[(kind, kind) for kind in WORK_KINDS],
            error=error,
            max_bytes=settings().max_archive_bytes,
            form=request.form,
        ),
        status,
    )


def describe(result: RegistrationResult) -> str:
    if not result.created and not result.added:
        return f"{result.work.title}: already registered; {len(result.skipped)} page(s) unchanged."
    verb = "Registered" if result.created else "Updated"
    skipped = f", {len(result.skipped)} skipped" if result.skipped else ""
    return (
        f"{verb} {result.work.title}: {len(result.added)} page(s) added{skipped}, "
        f"{result.fingerprints_added} fingerprints."
    )


@bp.route("/works/new", methods=["GET", "POST"])
@login_required
def new() -> ResponseReturnValue:
    if request.method == "GET":
        return _upload_form()
    db, scope = get_db(), current_scope()
    user = current_user()
    assert user is not None
    publishers = dict(visible_publishers(db, scope))
    try:
        publisher_id = forms.optional_int("publisher_id")
        identifiers = forms.pairs("identifiers", "=")
    except forms.FormError as exc:
        return _upload_form(str(exc), 400)
    if publisher_id not in publishers:
        return _upload_form("Choose the publisher the work belongs to.", 400)
    kind = forms.text("kind") or "volume"
    try:
        result = register_upload(
            request.files.getlist("files"),
            publisher=publishers[publisher_id],
            title=forms.text("title", max_len=500),
            kind=kind,
            isbn=forms.text("isbn", max_len=40),
            official_url=forms.text("official_url", max_len=2000),
            identifiers=identifiers,
        )
    except UploadError as exc:
        return _upload_form(str(exc), 400)
    with db.connection() as conn:
        record_audit(
            conn,
            actor=user.email,
            action="work.register",
            user_id=user.id,
            target_type="work",
            target_id=result.work.id,
            remote_addr=remote_addr(),
            details={
                "title": result.work.title,
                "created": result.created,
                "pages_added": len(result.added),
                "pages_skipped": len(result.skipped),
            },
        )
    message = describe(result)
    flash(message, "success")
    target = url_for("works.detail", work_id=result.work.id)
    if wants_json():
        return jsonify(redirect=target, message=message)
    return redirect(target, 303)


@bp.route("/allowlist")
@login_required
def allowlist() -> ResponseReturnValue:
    db, scope = get_db(), current_scope()
    publisher_id = request.args.get("publisher", type=int)
    return render_template(
        "works/allowlist.html",
        entries=allow.list_entries(db, scope, publisher_id=publisher_id),
        publishers=visible_publishers(db, scope),
        works=q.list_works(db, scope, publisher_id=publisher_id),
        publisher_id=publisher_id,
    )


@bp.route("/allowlist", methods=["POST"])
@login_required
def allowlist_add() -> ResponseReturnValue:
    db, scope = get_db(), current_scope()
    user = current_user()
    assert user is not None
    back = _back(url_for("works.allowlist"))
    try:
        work_id = forms.optional_int("work_id")
        publisher_id = forms.optional_int("publisher_id")
        if work_id is not None:
            work = q.get_work(db, scope, work_id)
            if work is None:
                abort(404)
            publisher_id = work.publisher_id
        if publisher_id is None or not scope.allows(publisher_id):
            raise forms.FormError("Choose a publisher or a work.")
        domain = allow.normalise_domain(forms.text("domain", max_len=300))
        allow.add_entry(
            db,
            scope,
            publisher_id=publisher_id,
            work_id=work_id,
            domain=domain,
            note=forms.text("note", max_len=500),
            user=user,
            remote_addr=remote_addr(),
        )
    except (forms.FormError, allow.AllowlistError) as exc:
        flash(str(exc), "error")
        return redirect(back, 303)
    except LookupError:
        abort(404)
    flash(f"{domain} added to the allowlist: it will never be noticed.", "success")
    return redirect(back, 303)


@bp.route("/allowlist/<int:entry_id>/delete", methods=["POST"])
@login_required
def allowlist_remove(entry_id: int) -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    if not allow.remove_entry(
        get_db(), current_scope(), entry_id, user=user, remote_addr=remote_addr()
    ):
        abort(404)
    flash("Allowlist entry removed.", "success")
    return redirect(_back(url_for("works.allowlist")), 303)


def _back(default: str) -> str:
    return safe_next(request.form.get("next"), default)
