"""The review queue: staff decide pending matches one by one or in bulk; publishers read.

Filters travel in the query string (and as hidden fields through decisions), so the next item
after a decision is the next one of the same filtered, sorted queue.
"""

from __future__ import annotations

from typing import Final

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from admin.web.auth import current_user, login_required, remote_addr, roles_required
from admin.web.decisions import ACTIONS, decide
from admin.web.evidence import load_evidence
from admin.web.forms import page_number
from admin.web.queries import review as q
from admin.web.resources import evidence_store, get_db
from admin.web.scope import current_scope

bp = Blueprint("review", __name__)

PER_PAGE: Final = 50
BULK_LIMIT: Final = 500
STAFF: Final = ("admin", "operator")
_DONE: Final = {"approve": "Approved", "reject": "Rejected", "licensed": "Marked licensed"}
_ASK: Final = {"approve": "Approve", "reject": "Reject", "licensed": "Mark licensed"}


@bp.route("/review")
@login_required
def queue() -> ResponseReturnValue:
    db, scope = get_db(), current_scope()
    flt = q.ReviewFilter.from_args(request.args)
    page = page_number()
    total = q.count_matches(db, scope, flt)
    sites, works = q.filter_choices(db, scope)
    return render_template(
        "review/queue.html",
        flt=flt,
        rows=q.list_matches(db, scope, flt, limit=PER_PAGE, offset=(page - 1) * PER_PAGE),
        total=total,
        page=page,
        pages=max(1, -(-total // PER_PAGE)),
        sites=sites,
        works=works,
        states=q.STATES,
        decisions=q.DECISIONS,
        sorts=q.SORTS,
    )


@bp.route("/review/<int:match_id>")
@login_required
def item(match_id: int) -> ResponseReturnValue:
    db, scope = get_db(), current_scope()
    row = q.get_match(db, scope, match_id)
    if row is None:
        abort(404)
    flt = q.ReviewFilter.from_args(request.args)
    next_id = q.neighbour(db, scope, flt, row, forward=True)
    return render_template(
        "review/item.html",
        row=row,
        flt=flt,
        prev_id=q.neighbour(db, scope, flt, row, forward=False),
        next_id=next_id,
        next_row=q.get_match(db, scope, next_id) if next_id is not None else None,
        evidence=load_evidence(evidence_store(), row.evidence_ref),
        preview=q.notice_preview(db, row),
        queue_total=q.count_matches(db, scope, flt),
    )


@bp.route("/review/<int:match_id>/decide", methods=["POST"])
@roles_required(*STAFF)
def decide_one(match_id: int) -> ResponseReturnValue:
    db, scope = get_db(), current_scope()
    user = current_user()
    assert user is not None
    action = request.form.get("action", "")
    if action not in ACTIONS:
        abort(400, description="Unknown decision.")
    row = q.get_match(db, scope, match_id)
    if row is None:
        abort(404)
    flt = q.ReviewFilter.from_args(request.form)
    if decide(db, scope, match_id, action, user=user, remote_addr=remote_addr()):
        flash(
            f"{_DONE[action]} match {match_id} ({row.work_title}, page {row.page_number}).",
            "success",
        )
    else:
        current = q.get_match(db, scope, match_id)
        state = current.review_state if current else "gone"
        flash(f"Match {match_id} was already decided ({state}); nothing changed.", "warning")
    next_id = q.neighbour(db, scope, flt, row, forward=True)
    if next_id is None:
        flash("End of the queue for these filters.", "info")
        return redirect(url_for("review.queue", **flt.args()), 303)
    return redirect(url_for("review.item", match_id=next_id, **flt.args()), 303)


def _ids(raw: str) -> list[int]:
    ids = []
    for part in raw.split(","):
        part = part.strip()
        if part.isdigit():
            ids.append(int(part))
    return ids[:BULK_LIMIT]


@bp.route("/review/bulk", methods=["POST"])
@roles_required(*STAFF)
def bulk() -> ResponseReturnValue:
    db, scope = get_db(), current_scope()
    user = current_user()
    assert user is not None
    action = request.form.get("action", "")
    if action not in ACTIONS:
        abort(400, description="Unknown decision.")
    # Bulk actions only ever touch pending matches, whatever the list showed.
    flt = q.ReviewFilter.from_args(request.form).pending_only()
    if request.form.get("confirmed") != "1":
        ids = q.filtered_ids(db, scope, flt, limit=BULK_LIMIT)
        return render_template(
            "review/confirm.html",
            flt=flt,
            action=action,
            verb=_ASK[action],
            ids=ids,
            total=q.count_matches(db, scope, flt),
            limit=BULK_LIMIT,
        )
    # The ids confirmed are the ones acted on: matches that arrived after the confirmation
    # page was shown are not swept in unseen.
    ids = _ids(request.form.get("ids", ""))
    applied = sum(
        decide(db, scope, match_id, action, user=user, remote_addr=remote_addr(), bulk=True)
        for match_id in ids
    )
    skipped = len(ids) - applied
    note = f"; {skipped} had been decided meanwhile and were left as they were" if skipped else ""
    flash(f"{_DONE[action]} {applied} match(es){note}.", "success")
    return redirect(url_for("review.queue", **flt.args()), 303)
