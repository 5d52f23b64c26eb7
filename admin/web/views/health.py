"""``GET /healthz``: is this web process able to serve, i.e. can it reach its database?

For load balancers and container health checks (deploy/compose.yaml), so no sign-in. It answers
within a few seconds whatever the database does: a fresh connection with a connect timeout
runs ``select 1``, rather than the request pool, whose checkout waits up to 30 s. The body says
only ``ok`` or what failed, never the URL, the error text or a version.
"""

from __future__ import annotations

from typing import Final

import psycopg
from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from admin.web.resources import database_url

bp = Blueprint("health", __name__)

CONNECT_TIMEOUT_SECONDS: Final = 3


@bp.route("/healthz")
def healthz() -> ResponseReturnValue:
    database = _database()
    ok = database == "ok"
    response = jsonify(status="ok" if ok else "unavailable", database=database)
    response.status_code = 200 if ok else 503
    response.headers["Cache-Control"] = "no-store"
    return response


def _database() -> str:
    try:
        url = database_url()
        with psycopg.connect(
            url, connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name="mamoru-healthz"
        ) as conn:
            row = conn.execute("select 1").fetchone()
    except Exception:
        # Logged in full for the operator; the response names no host, user or error text.
        current_app.logger.warning("health check: the database is unreachable", exc_info=True)
        return "unreachable"
    return "ok" if row == (1,) else "unexpected answer"
