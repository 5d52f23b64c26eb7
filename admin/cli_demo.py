"""``mamoru demo``: the main job on embedded defaults.

At this stage it starts the embedded database, migrates it and registers the bundled sample
works for a sample publisher; later stages add the crawl of a loopback sample site, matching,
notices and the admin.
"""

from __future__ import annotations

import click

from admin.cli import Context, cli, pass_context, user_errors
from admin.cli_works import describe, register_paths
from admin.publishers import ensure_publisher
from admin.samples import SAMPLE_AGENT, SAMPLE_PUBLISHER, SAMPLE_WORKS, slug, write_sample_work
from matcher.catalog import list_works
from matcher.pagestore import page_store
from matcher.refingerprint import refingerprint


@cli.command()
@pass_context
def demo(state: Context) -> None:
    """Run the demo on embedded defaults: database, migrations, sample works."""
    settings = state.settings
    with user_errors():
        db = state.db(migrate=True)
        where = "embedded PostgreSQL" if settings.database_url is None else "configured PostgreSQL"
        applied = len(state.migrations_applied)
        click.echo(f"database: {where}, schema up to date ({applied} migration(s) applied now)")
        publisher, created = ensure_publisher(
            db,
            SAMPLE_PUBLISHER,
            agent_organisation=SAMPLE_AGENT,
            contact_email="rights@sample-comics.invalid",
        )
        click.echo(f"publisher: {publisher.name} ({'created' if created else 'exists'})")
        samples_dir = settings.data_dir / "samples"
        for work in SAMPLE_WORKS:
            paths = write_sample_work(work, samples_dir / slug(work.title))
            result = register_paths(
                state,
                publisher=publisher.name,
                title=work.title,
                paths=paths,
                kind=work.kind,
                isbn=work.isbn,
                show_progress=False,
            )
            click.echo(describe(result))
        # A demo folder from an older release holds fingerprints of older versions.
        report = refingerprint(db, page_store(settings))
        if report.pages:
            click.echo(f"re-fingerprinted {report.updated} of {report.pages} page(s)")
        works = list_works(db, publisher.name)
    click.echo(
        f"\n{len(works)} sample work(s), {sum(w.pages for w in works)} page(s), "
        f"{sum(w.fingerprints for w in works)} fingerprint(s) registered for {publisher.name}"
    )
    click.echo(f"Sample pages: {samples_dir}")
    click.echo("Next: .venv/bin/mamoru works list, works show ID, works add --help")
