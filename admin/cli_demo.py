"""``mamoru demo``: the main job on embedded defaults, end to end, on this machine only.

Starts the embedded PostgreSQL, registers the sample works, serves the sample pirate site on
127.0.0.1, starts a Dramatiq worker, has it crawl the site, identify copies and send notices
for the matches the sample publisher auto-approves (to the outbox folder: nothing leaves the
machine), and leaves the admin running with the other matches waiting for review. Ctrl-C stops
everything it started. ``--exit`` stops after the summary instead (tests, CI, timing).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import click

from admin import demo
from admin.cli import Context, cli, pass_context, user_errors
from admin.cli_works import describe, register_paths
from admin.publishers import ensure_publisher
from admin.samples import SAMPLE_AGENT, SAMPLE_PUBLISHER, SAMPLE_WORKS, slug, write_sample_work
from matcher.catalog import list_works
from matcher.pagestore import page_store
from matcher.refingerprint import refingerprint
from store.db import Database


def _step(message: str) -> None:
    click.echo(f"[{time.strftime('%H:%M:%S')}] {message}")


@cli.command("demo")
@click.option("--exit", "exit_after", is_flag=True, help="Stop after the summary.")
@click.option("--port", default=8000, show_default=True, help="Admin port (next free if taken).")
@pass_context
def demo_command(state: Context, exit_after: bool, port: int) -> None:
    """Run the whole job on embedded defaults: crawl the sample pirate site, match, notify."""
    settings = state.settings
    with user_errors():
        db = state.db(migrate=True)
    where = "embedded PostgreSQL" if settings.database_url is None else "configured PostgreSQL"
    applied = len(state.migrations_applied)
    _step(f"database: {where}, schema up to date ({applied} migration(s) applied now)")
    _register_samples(state, db)
    with contextlib.ExitStack() as stack:
        # The same port each run (when free) keeps the site's URLs, so a second run finds the
        # same copies again instead of new ones.
        site = demo.serve_demo_site(demo.free_port(demo.SITE_PORT))
        stack.callback(site.stop)
        start_url = site.url("/")
        site_id = demo.prepare_site(db, start_url)
        _step(f"sample pirate site {demo.SITE_NAME} serving at {start_url}")
        group = stack.enter_context(demo.children())
        env = demo.child_env(settings)
        logs = settings.data_dir / "logs"
        group.start(["worker", "--processes", "1", "--threads", "2"], env, logs / "worker.log")
        _step(f"worker started (log: {logs / 'worker.log'})")
        crawl_id = _crawl(db, site_id)
        _wait_for_notices(db)
        web = _start_admin(state, group, env, logs, port)
        _summary(db, settings.outbox_path, crawl_id, web)
        if exit_after:
            return
        click.echo("\nPress Ctrl-C to stop everything the demo started.")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    _step("stopped")


def _register_samples(state: Context, db: Database) -> None:
    settings = state.settings
    publisher, created = ensure_publisher(
        db,
        SAMPLE_PUBLISHER,
        agent_organisation=SAMPLE_AGENT,
        contact_email="rights@sample-comics.invalid",
    )
    demo.prepare_publisher(db)
    _step(f"publisher: {publisher.name} ({'created' if created else 'exists'})")
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
        _step(describe(result))
    # A demo folder from an older release holds fingerprints of older versions.
    report = refingerprint(db, page_store(settings))
    if report.pages:
        _step(f"re-fingerprinted {report.updated} of {report.pages} page(s)")
    works = list_works(db, publisher.name)
    _step(
        f"{len(works)} sample work(s), {sum(w.pages for w in works)} page(s), "
        f"{sum(w.fingerprints for w in works)} fingerprint(s) registered for {publisher.name}"
    )


def _crawl(db: Database, site_id: int) -> int:
    from takedown import actors

    with db.connection() as conn:
        row = conn.execute(
            "select coalesce(max(id), 0) from crawls where site_id = %s", (site_id,)
        ).fetchone()
    before = int(row[0]) if row else 0
    actors.crawl_site.send(site_id, "manual")
    _step("crawl enqueued; the worker crawls (Chromium renders the JavaScript reader)")
    crawl: dict[str, Any] = {}
    shown: list[str] = []

    def finished() -> bool:
        with db.connection() as conn:
            row = conn.execute(
                "select id, state, stats, error from crawls where site_id = %s and id > %s "
                "order by id desc limit 1",
                (site_id, before),
            ).fetchone()
        if row is None:
            return False
        crawl.update(id=row[0], state=row[1], stats=row[2] or {}, error=row[3])
        counters = crawl["stats"]  # written when the crawl ends
        line = (
            f"  crawl {row[0]}: {row[1]:<9} pages {counters.get('pages', 0):>4}  "
            f"images {counters.get('images', 0):>4}  matches {counters.get('matches', 0):>4}"
        )
        if not shown or shown[-1] != line:
            shown.append(line)
            click.echo(line)
        return row[1] in ("finished", "failed", "cancelled")

    demo.wait_for(finished, timeout=900, what="the crawl")
    if crawl["state"] != "finished":
        raise click.ClickException(f"crawl {crawl['id']} {crawl['state']}: {crawl['error']}")
    return int(crawl["id"])


def _wait_for_notices(db: Database) -> None:
    """Until every approved match is in a notice and no notice waits to be sent."""

    def settled() -> bool:
        with db.connection() as conn:
            row = conn.execute(
                """
                select
                  (select count(*) from matches m where m.review_state = 'approved'
                     and not exists (select 1 from notice_items i where i.match_id = m.id)),
                  (select count(*) from notices where state in ('approved', 'queued')
                     and held_reason is null)
                """
            ).fetchone()
        return row is not None and row == (0, 0)

    demo.wait_for(settled, timeout=180, what="notices to be composed and sent")
    _step("notices composed and sent to the outbox")


def _start_admin(
    state: Context, group: demo.Children, env: dict[str, str], logs: Any, port: int
) -> str | None:
    if "web" not in cli.commands:  # the admin is not part of this build yet
        return None
    password = demo.admin_password(state.settings)
    demo.ensure_admin(state.db(), demo.ADMIN_EMAIL, password)
    port = demo.free_port(port)
    group.start(["web", "--host", "127.0.0.1", "--port", str(port)], env, logs / "web.log")
    url = f"http://127.0.0.1:{port}/"
    demo.wait_for(lambda: _answers(url), timeout=60, what="the admin")
    return f"{url}  (log in as {demo.ADMIN_EMAIL} / {password})"


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url + "login", timeout=2):  # noqa: S310 (loopback URL)
            return True
    except (urllib.error.URLError, OSError):
        return False


def _summary(db: Database, outbox: Any, crawl_id: int, web: str | None) -> None:
    with db.connection() as conn:
        row = conn.execute(
            """
            select c.stats,
                   (select count(*) from sightings),
                   (select count(*) from matches),
                   (select count(*) from matches where review_state = 'pending'),
                   (select count(*) from matches where review_state = 'approved'),
                   (select count(*) from notices),
                   (select count(*) from notices where state = 'sent')
            from crawls c where c.id = %s
            """,
            (crawl_id,),
        ).fetchone()
    assert row is not None
    stats, sightings, matches, pending, approved, notices, sent = row
    counters = stats or {}
    click.echo(
        "\nsummary\n"
        f"  pages crawled        {counters.get('pages', 0)} changed, "
        f"{counters.get('pages_not_modified', 0)} not modified since the last crawl\n"
        f"  images               {counters.get('images', 0)} new, "
        f"{counters.get('sightings_seen_again', 0)} seen again ({sightings} sightings in all)\n"
        f"  matches              {matches}: {approved} auto-approved (confidence >= "
        f"{demo.AUTO_APPROVE}), {pending} waiting for review\n"
        f"  notices              {notices} drafted, {sent} sent to the outbox {outbox}\n"
        f"  admin                {web or 'not part of this build yet'}"
    )
