"""Sites: the crawl targets and their policy (staff only; sites are not per publisher).

Adding and editing go through ``crawler.sites``, which validates the policy and writes every
change to the audit log with old and new values, as ``mamoru sites edit`` does. "Crawl now"
enqueues a crawl for the workers (``admin.web.jobs``), as ``mamoru crawl SITE --enqueue`` does.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from admin.web import forms, jobs
from admin.web.auth import actor_name, current_user, remote_addr, roles_required
from admin.web.queries import sites as q
from admin.web.resources import get_db
from crawler.sites import (
    RENDERING_MODES,
    SiteError,
    SitePolicy,
    add_site,
    default_domains,
    update_site,
)
from store.rows import Site

bp = Blueprint("sites", __name__)

STAFF = ("admin", "operator")


def _policy_from_form() -> dict[str, Any]:
    values: dict[str, Any] = {
        "start_urls": forms.lines("start_urls"),
        "allowed_domains": forms.lines("allowed_domains"),
        "include_patterns": forms.lines("include_patterns"),
        "exclude_patterns": forms.lines("exclude_patterns"),
        "rendering": forms.text("rendering") or "auto",
        "obey_robots": forms.checkbox("obey_robots"),
        "request_headers": forms.pairs("request_headers", ":"),
        "cookies": forms.pairs("cookies", "="),
        "allow_private_addresses": forms.checkbox("allow_private_addresses"),
        "schedule": forms.text("schedule") or "0 3 * * *",
        "is_active": forms.checkbox("is_active"),
        "notes": forms.text("notes") or None,
        "origin_addresses": forms.lines("origin_addresses"),
    }
    for key in ("max_depth", "max_pages", "concurrency", "time_budget_seconds"):
        number = forms.optional_int(key)
        if number is None:
            raise forms.FormError(f"{key.replace('_', ' ')} is required")
        values[key] = number
    delay = forms.optional_float("delay_seconds")
    values["delay_seconds"] = 0.5 if delay is None else delay
    if not values["allowed_domains"]:
        values["allowed_domains"] = default_domains(values["start_urls"])
    return values


def _form(site: Site | None, error: str | None = None, status: int = 200) -> ResponseReturnValue:
    return (
        render_template(
            "sites/form.html",
            site=site,
            defaults=SitePolicy(start_urls=[]),
            renderings=RENDERING_MODES,
            error=error,
            form=request.form if request.method == "POST" else None,
        ),
        status,
    )


@bp.route("/sites")
@roles_required(*STAFF)
def index() -> ResponseReturnValue:
    return render_template("sites/list.html", sites=q.list_site_rows(get_db()))


@bp.route("/sites/new", methods=["GET", "POST"])
@roles_required(*STAFF)
def new() -> ResponseReturnValue:
    if request.method == "GET":
        return _form(None)
    try:
        name = forms.text("name", max_len=200)
        site = add_site(get_db(), name, SitePolicy(**_policy_from_form()), actor=actor_name())
    except (forms.FormError, SiteError) as exc:
        return _form(None, str(exc), 400)
    flash(f"Site {site.name} added.", "success")
    return redirect(url_for("sites.detail", site_id=site.id), 303)


def _site(site_id: int) -> Site:
    site = q.site_by_id(get_db(), site_id)
    if site is None:
        abort(404)
    return site


@bp.route("/sites/<int:site_id>")
@roles_required(*STAFF)
def detail(site_id: int) -> ResponseReturnValue:
    site = _site(site_id)
    db = get_db()
    return render_template(
        "sites/detail.html",
        site=site,
        crawls=q.site_crawls(db, site.id),
        summary=q.crawl_summary,
        crawl_block=jobs.crawl_block(db, site),
    )


@bp.route("/sites/<int:site_id>/crawl", methods=["POST"])
@roles_required(*STAFF)
def crawl_now(site_id: int) -> ResponseReturnValue:
    site = _site(site_id)
    user = current_user()
    assert user is not None
    try:
        jobs.request_crawl(get_db(), site, user=user, remote_addr=remote_addr())
    except jobs.CrawlRefused as exc:
        flash(f"{exc} No crawl was enqueued.", "warning")
    except jobs.EnqueueFailed:
        flash("The job queue could not be reached; no crawl was enqueued. Try again.", "error")
    else:
        flash(
            f"Crawl of {site.name} enqueued: a worker starts it shortly, and it appears under "
            "Last crawls.",
            "success",
        )
    return redirect(url_for("sites.detail", site_id=site.id), 303)


@bp.route("/sites/<int:site_id>/edit", methods=["GET", "POST"])
@roles_required(*STAFF)
def edit(site_id: int) -> ResponseReturnValue:
    site = _site(site_id)
    if request.method == "GET":
        return _form(site)
    try:
        updated = update_site(get_db(), site.name, _policy_from_form(), actor=actor_name())
    except (forms.FormError, SiteError) as exc:
        return _form(site, str(exc), 400)
    flash(f"Site {updated.name} saved.", "success")
    if updated.origin_addresses and updated.origin_addresses != site.origin_addresses:
        # Discovery talks to RDAP servers for seconds: a worker does it, not this request.
        try:
            jobs.origin_followup(updated.id)
        except jobs.EnqueueFailed:
            flash(
                "Origin recorded, but the follow-up could not be queued (the broker is not "
                "reachable). Notices that went to the CDN reach the origin's host at their next "
                f"escalation, or now with: mamoru sites origin-followup {updated.name}",
                "warning",
            )
        else:
            flash(
                "Origin recorded: a worker now sends the site's notices that went to its CDN on "
                "to the origin's host.",
                "info",
            )
    return redirect(url_for("sites.detail", site_id=updated.id), 303)
