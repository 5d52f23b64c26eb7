"""``mamoru web``: the web admin on Flask's development server.

Production runs the same app under gunicorn: ``gunicorn 'admin.web.wsgi:app'``.
"""

from __future__ import annotations

import click

from admin.cli import Context, cli, pass_context, user_errors


@cli.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--debug", is_flag=True, help="Reload on code changes, show tracebacks.")
@click.option(
    "--secure-cookies/--insecure-cookies",
    default=None,
    help="Mark the session cookie Secure (HTTPS only). Default: Secure unless --debug; "
    "plain http on another host than localhost needs --insecure-cookies.",
)
@pass_context
def web(state: Context, host: str, port: int, debug: bool, secure_cookies: bool | None) -> None:
    """Serve the web admin (development server; use gunicorn in production)."""
    from admin.web import create_app

    with user_errors():
        db = state.db()  # migrates the embedded database, refuses an outdated configured one
    config: dict[str, object] = {"DEBUG": debug, "MAMORU_DATABASE_URL": db.url}
    if secure_cookies is not None:
        config["SESSION_COOKIE_SECURE"] = secure_cookies
    app = create_app(config)
    click.echo(f"Mamoru admin on http://{host}:{port}/ (Ctrl+C stops it)", err=True)
    app.run(host=host, port=port, debug=debug, use_reloader=debug)
