"""``mamoru worker``: Dramatiq workers for crawls, notice composition, sending and sweeps."""

from __future__ import annotations

import os
import sys

import click

from admin.cli import Context, cli, pass_context, user_errors
from takedown.broker import describe_broker

QUEUES = ("crawl", "notices", "followup")


@cli.command()
@click.option("--processes", "-p", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--threads", "-t", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option(
    "--queue",
    "-Q",
    "queues",
    type=click.Choice(QUEUES),
    multiple=True,
    help="Consume only these queues (repeatable); default: all.",
)
@pass_context
def worker(state: Context, processes: int, threads: int, queues: tuple[str, ...]) -> None:
    """Run Dramatiq workers on the configured broker until interrupted (Ctrl-C / SIGTERM)."""
    with user_errors():
        # Checked (and, for the embedded database, migrated) before any worker starts, so a
        # worker never consumes against a schema it does not know.
        state.db()
    click.echo(
        f"workers: {processes} process(es) x {threads} thread(s) on "
        f"{describe_broker(state.settings)}, queues {', '.join(queues or QUEUES)}",
        err=True,
    )
    state.close()
    args = [sys.executable, "-m", "dramatiq", "takedown.actors"]
    args += ["--processes", str(processes), "--threads", str(threads)]
    for queue in queues:
        args += ["--queues", queue]
    if state.settings.worker_metrics_port is not None:
        # Read by Dramatiq's metrics server, which runs in a process of its own supervisor.
        os.environ["dramatiq_prom_port"] = str(state.settings.worker_metrics_port)  # noqa: SIM112
        os.environ.setdefault("dramatiq_prom_host", "127.0.0.1")
    sys.stdout.flush()
    sys.stderr.flush()
    # Replaced by Dramatiq's own supervisor: signals and exit codes are Dramatiq's.
    os.execv(sys.executable, args)  # noqa: S606 (fixed argv, no shell)
