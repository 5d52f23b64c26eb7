"""The web admin: a Flask app with one blueprint per area and a JSON API.

``create_app`` builds an app from the process's settings (or ``test_config``); nothing opens a
database or reads a key at import time, so ``admin.web.wsgi:app`` is safe to import before
gunicorn forks.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect  # type: ignore[import-untyped]

from admin.web import errors
from admin.web.api.routes import bp as api_bp
from admin.web.auth import bp as auth_bp
from admin.web.auth import current_user
from admin.web.secret import secret_key
from admin.web.security import apply_headers, http_url
from admin.web.views import (
    dashboard,
    health,
    lookup,
    media,
    notices,
    review,
    sites,
    staff,
    works,
)
from crawler.netguard import AddressPolicy
from store.config import get_settings

__all__ = ["create_app"]

csrf = CSRFProtect()

SESSION_LIFETIME = timedelta(hours=12)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    overrides = dict(test_config or {})
    app = Flask(__name__)
    conf = overrides.get("MAMORU_SETTINGS") or get_settings()
    app.config.from_mapping(
        MAMORU_SETTINGS=conf,
        MAMORU_INDEX_REFRESH_SECONDS=30.0,
        # Rights lookups by URL fetch only public addresses; tests allow their loopback server.
        LOOKUP_FETCH_POLICY=AddressPolicy(),
        MAX_CONTENT_LENGTH=conf.max_archive_bytes,
        # A volume uploaded as separate images is one form part per page.
        MAX_FORM_PARTS=conf.max_archive_members + 50,
        SESSION_COOKIE_NAME="mamoru_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        WTF_CSRF_TIME_LIMIT=int(SESSION_LIFETIME.total_seconds()),
    )
    app.config.update(overrides)
    if "SECRET_KEY" not in overrides:
        app.config["SECRET_KEY"] = secret_key(conf)
    if "SESSION_COOKIE_SECURE" not in overrides:
        # Plain-HTTP development needs cookies a browser will send back over http.
        app.config["SESSION_COOKIE_SECURE"] = not app.debug

    csrf.init_app(app)
    for blueprint in (
        auth_bp,
        dashboard.bp,
        works.bp,
        media.bp,
        sites.bp,
        review.bp,
        notices.bp,
        lookup.bp,
        staff.bp,
        health.bp,
        api_bp,
    ):
        app.register_blueprint(blueprint)
    # Token-authenticated: no cookie rides along, so there is nothing to forge.
    csrf.exempt(api_bp)
    errors.register(app)
    app.after_request(apply_headers)
    app.jinja_env.filters["http_url"] = http_url
    app.jinja_env.filters["when"] = _when
    app.jinja_env.filters["duration"] = _duration
    app.context_processor(lambda: {"current_user": current_user()})
    return app


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "—"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
