"""The gunicorn entry point: ``gunicorn 'admin.web.wsgi:app'``.

Building the app reads settings and the session key only; the database pool opens in each
worker on its first request.
"""

from __future__ import annotations

from admin.web import create_app

app = create_app()
