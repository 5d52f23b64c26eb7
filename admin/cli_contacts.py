"""``mamoru contacts``: who receives a site's notices (configured, or discovered)."""

from __future__ import annotations

import dataclasses
from typing import cast

import click

from admin.cli import Context, cli, emit_json, pass_context, user_errors
from crawler.sites import get_site
from takedown.contacts import discover_missing_recipients
from takedown.notice_content import FORMATS
from takedown.recipients import Contact, Scope, ensure_recipients, recipients_for_site

SCOPES = ("site_operator", "host", "cdn", "registrar", "platform", "other")


@cli.group()
def contacts() -> None:
    """Recipients of a site's notices: configured ones win over discovered ones."""


@contacts.command("add")
@click.argument("site")
@click.option("--name", required=True, help="Who this is, e.g. 'Example Hosting abuse desk'.")
@click.option("--email", help="Where notices are emailed.")
@click.option("--web-form", help="A web form that takes notices (listed, not submitted).")
@click.option("--scope", type=click.Choice(SCOPES), default="host", show_default=True)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="dmca", show_default=True)
@click.option("--language", default="en", show_default=True, help="Template language (en, ja).")
@click.option("--designated-platform", is_flag=True, help="Designated under Japan's 情プラ法.")
@pass_context
def contacts_add(
    state: Context,
    site: str,
    name: str,
    email: str | None,
    web_form: str | None,
    scope: str,
    fmt: str,
    language: str,
    designated_platform: bool,
) -> None:
    """Configure a recipient for SITE (name or id)."""
    db = state.db()
    with user_errors():
        target = get_site(db, site)
        contact = Contact(name, email, web_form, cast(Scope, scope), "configured", None)
        with db.connection() as conn:
            [recipient_id] = ensure_recipients(conn, target.id, [contact])
            conn.execute(
                "update recipients set notice_format = %s, language = %s, "
                "is_designated_platform = %s where id = %s",
                (fmt, language, designated_platform, recipient_id),
            )
    click.echo(f"recipient {recipient_id} for site {target.name}: {name} ({fmt}, {language})")


@contacts.command("list")
@click.argument("site")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def contacts_list(state: Context, site: str, as_json: bool) -> None:
    """List SITE's recipients, in the order they are used."""
    db = state.db()
    with user_errors():
        target = get_site(db, site)
        with db.connection() as conn:
            rows = recipients_for_site(conn, target.id)
    if as_json:
        emit_json([dataclasses.asdict(r) for r in rows])
        return
    if not rows:
        click.echo(f"site {target.name}: no recipients (run: mamoru contacts discover)")
    for r in rows:
        where = r.email or r.web_form_url
        click.echo(
            f"{r.id:>5}  {r.scope:<13} {r.source:<12} {r.notice_format:<11} {r.name} <{where}>"
        )


@contacts.command("discover")
@pass_context
def contacts_discover(state: Context) -> None:
    """Discover recipients (RDAP, security.txt, abuse@) for sites with approved matches and
    no recipient that takes email."""
    with user_errors():
        report = discover_missing_recipients(state.db(), state.settings)
    if not report.discovered:
        click.echo("no site needs a recipient")
    for site_id, added in report.discovered.items():
        click.echo(f"site {site_id}: {added} recipient(s)")
        for problem in report.problems.get(site_id, []):
            click.echo(f"  {problem}")
