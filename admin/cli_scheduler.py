"""``mamoru scheduler``: one per deployment; enqueues crawls, composition, sweeps, rechecks."""

from __future__ import annotations

import contextlib

import click

from admin.cli import Context, cli, pass_context, user_errors
from takedown.scheduler import serve


@cli.command()
@pass_context
def scheduler(state: Context) -> None:
    """Enqueue nightly crawls (each site's cron schedule), notice composition, sweeps and due
    rechecks until interrupted. A second scheduler stands by until the first stops."""
    with user_errors():
        db = state.db()
    with contextlib.suppress(KeyboardInterrupt):
        serve(db, on_state=lambda message: click.echo(message, err=True))
