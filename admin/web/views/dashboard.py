"""The dashboard: activity over time, removal figures, top sites, crawl health."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from admin.web.auth import current_user, login_required
from admin.web.charts import bar_chart
from admin.web.queries import dashboard as q
from admin.web.resources import get_db
from admin.web.scope import current_scope

bp = Blueprint("dashboard", __name__)

DAYS = 30


@bp.route("/")
@login_required
def index() -> ResponseReturnValue:
    db, scope = get_db(), current_scope()
    user = current_user()
    assert user is not None
    days = q.per_day(db, scope, days=DAYS)
    charts = [
        bar_chart("Matches found", [(d.day, d.matches) for d in days]),
        bar_chart("Notices created", [(d.day, d.notices) for d in days]),
        bar_chart("Removals confirmed", [(d.day, d.removals) for d in days]),
    ]
    return render_template(
        "dashboard.html",
        counts=q.counts(db, scope),
        charts=charts,
        days=DAYS,
        by_recipient=q.removal_by_recipient(db, scope),
        by_site=q.removal_by_site(db, scope),
        top_sites=q.top_sites(db, scope),
        # Sites and crawls are shared infrastructure: staff see their health, publishers not.
        crawl_health=q.crawl_health(db) if user.role != "publisher" else None,
    )
