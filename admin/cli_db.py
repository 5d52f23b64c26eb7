"""``mamoru db``: schema migrations and where the database is."""

from __future__ import annotations

import click

from admin.cli import Context, cli, emit_json, pass_context, user_errors
from store.db import resolve_database_url
from store.migrate import available_migrations, pending, upgrade


@cli.group()
def db() -> None:
    """The PostgreSQL database (embedded unless MAMORU_DATABASE_URL is set)."""


@db.command("upgrade")
@pass_context
def db_upgrade(state: Context) -> None:
    """Apply pending migrations (safe to run twice, and from two processes at once)."""
    with user_errors():
        url = resolve_database_url(state.settings)
        applied = upgrade(url)
    if applied:
        for migration in applied:
            click.echo(f"applied {migration.filename}")
    else:
        click.echo("database is up to date")


@db.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def db_status(state: Context, as_json: bool) -> None:
    """List migrations and whether each is applied."""
    with user_errors():
        url = resolve_database_url(state.settings)
        waiting = {m.version for m in pending(url)}
    rows = [
        {"migration": m.filename, "applied": m.version not in waiting}
        for m in available_migrations()
    ]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{'applied' if row['applied'] else 'pending':8} {row['migration']}")


@db.command("url")
@pass_context
def db_url(state: Context) -> None:
    """Print the database URL in use (starts the embedded server if needed)."""
    with user_errors():
        click.echo(resolve_database_url(state.settings))
