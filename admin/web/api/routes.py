"""JSON API routes. Authentication is ``Authorization: Bearer <token>`` (``mamoru users
token``), never the session cookie, so the API needs no CSRF token and a browser session
cannot be ridden into it. Every error is ``{"error": "message"}`` with its HTTP status.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Final

from flask import Blueprint, g, jsonify, request
from flask.typing import ResponseReturnValue

from admin.users import User, record_audit, user_for_token
from admin.web import notice_actions
from admin.web.api.openapi import document
from admin.web.auth import current_user, remote_addr
from admin.web.decisions import ACTIONS as DECISIONS
from admin.web.decisions import decide
from admin.web.lookup import LookupFailed, fetch_image, lookup_image
from admin.web.queries import notices as notice_q
from admin.web.queries import review as review_q
from admin.web.queries import works as works_q
from admin.web.resources import get_db, settings
from admin.web.scope import current_scope, visible_publishers
from admin.web.uploads import UploadError, register_upload
from matcher.registry import WORK_KINDS

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_LIMIT: Final = 500
STAFF: Final = ("admin", "operator")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> ResponseReturnValue:
    return jsonify(error=exc.message), exc.status


@bp.before_request
def authenticate() -> ResponseReturnValue | None:
    if request.endpoint == "api.openapi":
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    user = user_for_token(get_db(), token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        response = jsonify(error="missing, invalid or revoked API token")
        response.headers["WWW-Authenticate"] = 'Bearer realm="mamoru"'
        return response, 401
    g.user = user
    return None


def _int_arg(
    name: str, default: int | None = None, *, low: int = 0, high: int | None = None
) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(400, f"{name} must be {bounds}")
    return value


def _staff(doing: str) -> User:
    """The token's user if it is staff; publishers' tokens get 403 for ``doing``."""
    user = current_user()
    assert user is not None
    if user.role not in STAFF:
        raise ApiError(403, f"only operators and admins may {doing}")
    return user


def _json_object(example: str) -> dict[str, Any]:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise ApiError(400, f"send a JSON object as the body, e.g. {example}")
    return payload


def _page() -> tuple[int, int]:
    limit = _int_arg("limit", 100, low=1, high=MAX_LIMIT)
    offset = _int_arg("offset", 0)
    assert limit is not None and offset is not None
    return limit, offset


def _work_json(work: works_q.WorkRow) -> dict[str, Any]:
    return {
        "id": work.id,
        "publisher_id": work.publisher_id,
        "publisher": work.publisher,
        "title": work.title,
        "kind": work.kind,
        "isbn": work.isbn,
        "official_url": work.official_url,
        "identifiers": work.identifiers,
        "pages": work.pages,
        "fingerprints": work.fingerprints,
        "matches": work.matches,
        "created_at": work.created_at.isoformat(),
    }


@bp.route("/openapi.json")
def openapi() -> ResponseReturnValue:
    return jsonify(document())


@bp.route("/works")
def list_works() -> ResponseReturnValue:
    publisher_id = _int_arg("publisher_id")
    rows = works_q.list_works(get_db(), current_scope(), publisher_id=publisher_id)
    return jsonify(works=[_work_json(w) for w in rows])


@bp.route("/works/<int:work_id>")
def get_work(work_id: int) -> ResponseReturnValue:
    db = get_db()
    work = works_q.get_work(db, current_scope(), work_id)
    if work is None:
        raise ApiError(404, f"no work with id {work_id}")
    payload = _work_json(work)
    payload["pages_list"] = [asdict(p) for p in works_q.work_pages(db, work_id)]
    return jsonify(work=payload)


@bp.route("/works", methods=["POST"])
def register() -> ResponseReturnValue:
    db, scope = get_db(), current_scope()
    user = current_user()
    assert user is not None
    publishers = dict(visible_publishers(db, scope))
    by_name = {name: pid for pid, name in publishers.items()}
    form = request.form
    publisher = form.get("publisher", "").strip()
    if not publisher and len(publishers) == 1:
        publisher = next(iter(publishers.values()))
    if publisher not in by_name:
        raise ApiError(
            404 if publisher else 400,
            "publisher: unknown or not yours" if publisher else "publisher is required",
        )
    kind = form.get("kind", "volume").strip() or "volume"
    if kind not in WORK_KINDS:
        raise ApiError(400, f"kind must be one of {', '.join(WORK_KINDS)}")
    try:
        identifiers = json.loads(form.get("identifiers") or "{}")
    except json.JSONDecodeError:
        raise ApiError(400, "identifiers must be a JSON object") from None
    if not isinstance(identifiers, dict):
        raise ApiError(400, "identifiers must be a JSON object")
    try:
        result = register_upload(
            request.files.getlist("pages"),
            publisher=publisher,
            title=form.get("title", "").strip(),
            kind=kind,
            isbn=form.get("isbn", "").strip() or None,
            official_url=form.get("official_url", "").strip() or None,
            identifiers={str(k): str(v) for k, v in identifiers.items()},
        )
    except UploadError as exc:
        raise ApiError(400, str(exc)) from None
    with db.connection() as conn:
        record_audit(
            conn,
            actor=user.email,
            action="work.register",
            user_id=user.id,
            target_type="work",
            target_id=result.work.id,
            remote_addr=remote_addr(),
            details={"via": "api", "pages_added": len(result.added)},
        )
    work = works_q.get_work(db, scope, result.work.id)
    assert work is not None
    body = {
        "work": _work_json(work),
        "created": result.created,
        "pages_added": [
            {"id": p.id, "page_number": p.page_number, "source_name": p.source_name}
            for p in result.added
        ],
        "pages_skipped": [{"source": name, "reason": why} for name, why in result.skipped],
        "fingerprints_added": result.fingerprints_added,
    }
    return jsonify(body), 201 if result.created else 200


def _match_json(row: review_q.MatchRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "review_state": row.review_state,
        "decision": row.decision,
        "confidence": row.confidence,
        "scores": row.scores,
        "explanation": row.explanation,
        "created_at": row.created_at.isoformat(),
        "reviewed_at": row.reviewed_at.isoformat() if row.reviewed_at else None,
        "work": {"id": row.work_id, "title": row.work_title, "page_number": row.page_number},
        "publisher": {"id": row.publisher_id, "name": row.publisher},
        "site": {"id": row.site_id, "name": row.site_name},
        "page_url": row.page_url,
        "image_url": row.image_url,
    }


@bp.route("/matches")
def list_matches() -> ResponseReturnValue:
    args = request.args
    state = args.get("state", "all")
    if state not in (*review_q.STATES, "all"):
        raise ApiError(400, f"state must be one of {', '.join(review_q.STATES)} or all")
    flt = review_q.ReviewFilter.from_args(
        {
            "state": state,
            "site": args.get("site_id", ""),
            "work": args.get("work_id", ""),
            "decision": args.get("decision", ""),
            "min_confidence": args.get("min_confidence", ""),
            "sort": args.get("sort", "newest"),
        }
    )
    limit, offset = _page()
    db, scope = get_db(), current_scope()
    rows = review_q.list_matches(db, scope, flt, limit=limit, offset=offset)
    return jsonify(
        matches=[_match_json(r) for r in rows], total=review_q.count_matches(db, scope, flt)
    )


@bp.route("/matches/<int:match_id>")
def get_match(match_id: int) -> ResponseReturnValue:
    row = review_q.get_match(get_db(), current_scope(), match_id)
    if row is None:
        raise ApiError(404, f"no match with id {match_id}")
    return jsonify(match=_match_json(row))


@bp.route("/matches/<int:match_id>/decision", methods=["POST"])
def decide_match(match_id: int) -> ResponseReturnValue:
    """Review one match, as the review page does (same guard, event and audit row)."""
    user = _staff("review matches")
    db, scope = get_db(), current_scope()
    if review_q.get_match(db, scope, match_id) is None:
        raise ApiError(404, f"no match with id {match_id}")
    decision = _json_object('{"decision": "approve"}').get("decision")
    if not isinstance(decision, str) or decision not in DECISIONS:
        raise ApiError(400, f"decision must be one of {', '.join(DECISIONS)}")
    decided = decide(db, scope, match_id, decision, user=user, remote_addr=remote_addr(), via="api")
    row = review_q.get_match(db, scope, match_id)
    if row is None:
        raise ApiError(404, f"no match with id {match_id}")
    if not decided:
        raise ApiError(
            409,
            f"match {match_id} is no longer pending (it was {row.review_state} by "
            f"{row.reviewed_by or 'someone else'}); nothing changed",
        )
    return jsonify(_match_json(row))


def _notice_json(row: notice_q.NoticeRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": row.state,
        "format": row.format,
        "subject": row.subject,
        "publisher": {"id": row.publisher_id, "name": row.publisher},
        "recipient": {"id": row.recipient_id, "name": row.recipient},
        "items": row.items,
        "removed_items": row.removed_items,
        "held_reason": row.held_reason,
        "created_at": row.created_at.isoformat(),
        "state_changed_at": row.state_changed_at.isoformat(),
    }


@bp.route("/notices")
def list_notices() -> ResponseReturnValue:
    state = request.args.get("state") or None
    if state is not None and state not in notice_q.STATES:
        raise ApiError(400, f"state must be one of {', '.join(notice_q.STATES)}")
    limit, offset = _page()
    rows = notice_q.list_notices(
        get_db(),
        current_scope(),
        state=state,
        recipient_id=_int_arg("recipient_id"),
        limit=limit,
        offset=offset,
    )
    return jsonify(notices=[_notice_json(n) for n in rows])


@bp.route("/notices/<int:notice_id>")
def get_notice(notice_id: int) -> ResponseReturnValue:
    db = get_db()
    found = notice_q.get_notice(db, current_scope(), notice_id)
    if found is None:
        raise ApiError(404, f"no notice with id {notice_id}")
    body = _notice_json(found.notice)
    body["body_text"] = found.body_text
    body["items_list"] = [
        {
            "match_id": i.match_id,
            "infringing_url": i.infringing_url,
            "state": i.state,
            "removed_at": i.removed_at.isoformat() if i.removed_at else None,
            "work": {"id": i.work_id, "title": i.work_title, "page_number": i.page_number},
        }
        for i in notice_q.notice_items(db, notice_id)
    ]
    body["timeline"] = [
        {
            "occurred_at": e.occurred_at.isoformat(),
            "subject_type": e.subject_type,
            "event_type": e.event_type,
            "from_state": e.from_state,
            "to_state": e.to_state,
        }
        for e in notice_q.notice_timeline(db, notice_id)
    ]
    user = current_user()
    if user is not None and user.role in STAFF:
        body["actions"] = [
            {"action": o.action, "available": o.blocked is None, "reason": o.blocked}
            for o in notice_actions.offers(db, notice_id)
        ]
    return jsonify(notice=body)


@bp.route("/notices/<int:notice_id>/actions", methods=["POST"])
def notice_action(notice_id: int) -> ResponseReturnValue:
    """Release, resend, recheck, escalate or close a notice, as its page does."""
    user = _staff("act on notices")
    db, scope = get_db(), current_scope()
    if notice_q.get_notice(db, scope, notice_id) is None:
        raise ApiError(404, f"no notice with id {notice_id}")
    action = _json_object('{"action": "close"}').get("action")
    if not isinstance(action, str) or action not in notice_actions.ACTIONS:
        raise ApiError(400, f"action must be one of {', '.join(notice_actions.ACTIONS)}")
    outcome = notice_actions.perform(
        db, notice_id, action, user=user, remote_addr=remote_addr(), via="api"
    )
    if outcome.status >= 400:
        raise ApiError(outcome.status, outcome.message)
    found = notice_q.get_notice(db, scope, notice_id)
    assert found is not None
    return jsonify(
        notice=_notice_json(found.notice),
        action=action,
        message=outcome.message,
        enqueued=list(outcome.enqueued),
    )


@bp.route("/lookup", methods=["POST"])
def lookup() -> ResponseReturnValue:
    upload = request.files.get("image")
    try:
        if upload is not None and upload.filename:
            data, source = upload.read(settings().max_image_bytes + 1), upload.filename
        else:
            payload = request.get_json(silent=True) if request.is_json else None
            url = payload.get("url") if isinstance(payload, dict) else request.form.get("url")
            if not isinstance(url, str) or not url.strip():
                raise ApiError(400, "send an image file as 'image' or a JSON body {\"url\": ...}")
            data, source = fetch_image(url), url
        hits = lookup_image(data, source, current_scope())
    except LookupFailed as exc:
        raise ApiError(422, str(exc)) from None
    return jsonify(matches=[asdict(h) for h in hits])
