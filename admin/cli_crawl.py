"""``mamoru crawl SITE``: one crawl in the foreground, with live counters and a summary."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from admin.cli import Context, cli, emit_json, pass_context, user_errors
from crawler.run import CrawlProgress, CrawlSummary, run_crawl
from crawler.sites import RENDERING_MODES, get_site


class _Display:
    """Counters on stderr: rewritten in place on a terminal, a line every few seconds else."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, progress: CrawlProgress) -> None:
        text = (
            f"pages {progress.pages}  images {progress.images}  "
            f"matches {progress.matches}  errors {progress.errors}"
        )
        now = time.monotonic()
        if self.tty:
            click.echo(f"\r{text}\x1b[K", nl=False, err=True)
        elif now - self._last >= 5.0:
            click.echo(text, err=True)
        self._last = now

    def done(self) -> None:
        if self.tty:
            click.echo("", err=True)


def describe(summary: CrawlSummary) -> str:
    stats = summary.stats
    lines = [
        f"crawl {summary.crawl_id} of {summary.site_name}: {summary.state}"
        + (f" ({summary.error})" if summary.error else ""),
        f"  pages:      {stats.get('pages', 0)} parsed, {stats.get('pages_not_modified', 0)} "
        f"not modified, {stats.get('pages_unchanged', 0)} unchanged, "
        f"{stats.get('pages_rendered', 0)} rendered",
        f"  images:     {stats.get('images', 0)} seen, {stats.get('images_new', 0)} new, "
        f"{stats.get('images_decoded', 0)} decoded, {stats.get('images_reused', 0)} known",
        f"  matches:    {stats.get('matches', 0)} new "
        f"({stats.get('images_matched', 0)} image(s) matched)",
        f"  downloaded: {stats.get('bytes', 0):,} bytes in {stats.get('requests', 0)} requests, "
        f"{stats.get('duration_seconds', 0)} s",
    ]
    errors: dict[str, Any] = stats.get("errors", {})
    if errors:
        listed = ", ".join(f"{kind} {count}" for kind, count in sorted(errors.items()))
        lines.append(f"  errors:     {listed}")
    else:
        lines.append("  errors:     none")
    if summary.log_path:
        lines.append(f"  log:        {summary.log_path}")
    return "\n".join(lines)


@cli.command("crawl")
@click.argument("site")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.option("--max-pages", type=click.IntRange(min=1), help="Page limit for this crawl only.")
@click.option(
    "--rendering",
    type=click.Choice(RENDERING_MODES),
    help="Rendering for this crawl only (default: the site's policy).",
)
@click.option(
    "--enqueue",
    is_flag=True,
    help="Have a worker crawl it (through the broker) instead of crawling here.",
)
@pass_context
def crawl(
    state: Context,
    site: str,
    as_json: bool,
    max_pages: int | None,
    rendering: str | None,
    enqueue: bool,
) -> None:
    """Crawl SITE once in the foreground and print what was found.

    Exit status 1 when the crawl failed.
    """
    if enqueue:
        if max_pages is not None or rendering is not None:
            raise click.UsageError("--max-pages and --rendering apply to foreground crawls only")
        with user_errors():
            target = get_site(state.db(), site)
        from takedown import actors

        actors.crawl_site.send(target.id, "manual")
        click.echo(f"crawl of {target.name} enqueued")
        return
    overrides: dict[str, Any] = {}
    if max_pages is not None:
        overrides["max_pages"] = max_pages
    if rendering is not None:
        overrides["rendering"] = rendering
    display = _Display()
    with user_errors():
        db = state.db()
        row = get_site(db, site)
        try:
            summary = run_crawl(
                db, row, state.settings, progress=display, overrides=overrides, actor="cli"
            )
        finally:
            display.done()
    if as_json:
        emit_json(summary.as_json())
    else:
        click.echo(describe(summary))
    if summary.state != "finished":
        raise SystemExit(1)


__all__ = ["crawl", "describe"]
