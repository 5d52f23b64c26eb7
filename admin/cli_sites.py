"""``mamoru sites``: crawl targets and their policy, and the origin host behind a CDN."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import click

from admin.cli import Context, cli, emit_json, pass_context, user_errors
from crawler.sites import (
    RENDERING_MODES,
    SitePolicy,
    add_site,
    get_site,
    list_sites,
    update_site,
)
from store.rows import Site
from takedown.escalate import (
    DiscoveryOptions,
    DiscoveryUnavailable,
    EscalationResult,
    follow_up_origin,
)


def _pairs(values: tuple[str, ...], sep: str, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, found, value = item.partition(sep)
        if not found or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY{sep}VALUE", param_hint=option)
        out[key.strip()] = value.strip()
    return out


def policy_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `sites add` and `sites edit` (unset ones are not changed by edit)."""
    options = [
        click.option("--start-url", "start_urls", multiple=True, help="Where crawls start."),
        click.option(
            "--domain",
            "allowed_domains",
            multiple=True,
            help="Domain the crawl may follow links into (repeatable; default: the "
            "start URLs' hosts).",
        ),
        click.option(
            "--include",
            "include_patterns",
            multiple=True,
            metavar="REGEX",
            help="Only follow URLs matching (repeatable).",
        ),
        click.option(
            "--exclude",
            "exclude_patterns",
            multiple=True,
            metavar="REGEX",
            help="Never follow URLs matching (repeatable).",
        ),
        click.option("--max-depth", type=int, help="Link depth from the start URLs."),
        click.option("--max-pages", type=int, help="Pages per crawl."),
        click.option(
            "--rendering",
            type=click.Choice(RENDERING_MODES),
            help="Render with Chromium: never, auto (when a page needs it), always.",
        ),
        click.option(
            "--robots/--ignore-robots",
            "obey_robots",
            default=None,
            help="Obey robots.txt (default) or not; the change is audited.",
        ),
        click.option("--concurrency", type=int, help="Parallel requests to the site."),
        click.option("--delay", "delay_seconds", type=float, help="Seconds between requests."),
        click.option(
            "--header",
            "request_headers",
            multiple=True,
            metavar="NAME:VALUE",
            help="Extra request header (repeatable).",
        ),
        click.option(
            "--cookie",
            "cookies",
            multiple=True,
            metavar="NAME=VALUE",
            help="Cookie sent with requests (repeatable).",
        ),
        click.option(
            "--time-budget", "time_budget_seconds", type=int, help="Seconds a crawl may take."
        ),
        click.option(
            "--allow-private/--no-allow-private",
            "allow_private_addresses",
            default=None,
            help="Allow private/loopback addresses (tests, intranets).",
        ),
        click.option("--schedule", help="Cron expression for scheduled crawls."),
        click.option(
            "--active/--inactive", "is_active", default=None, help="Whether scheduled crawls run."
        ),
        click.option("--notes", help="Free text for operators."),
        click.option(
            "--origin",
            "origin_addresses",
            multiple=True,
            metavar="ADDRESS",
            help="Behind a CDN: an IP address of the origin host, once learnt (repeatable; "
            "replaces the recorded ones). Its host is noticed after the CDN.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _changes(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None or value == ():
            continue
        if key == "request_headers":
            value = _pairs(value, ":", "--header")
        elif key == "cookies":
            value = _pairs(value, "=", "--cookie")
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


def site_json(site: Site) -> dict[str, Any]:
    return dataclasses.asdict(site)


@cli.group()
def sites() -> None:
    """Sites to crawl and their crawl policy."""


@sites.command("add")
@click.argument("name")
@click.argument("urls", nargs=-1)
@policy_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def sites_add(state: Context, name: str, urls: tuple[str, ...], as_json: bool, **raw: Any) -> None:
    """Add a site NAME crawled from URLS (or --start-url)."""
    changes = _changes(raw)
    changes["start_urls"] = [*urls, *changes.get("start_urls", [])]
    with user_errors():
        site = add_site(state.db(), name, SitePolicy(**changes))
    if as_json:
        emit_json(site_json(site))
    else:
        click.echo(f"added site {site.id}: {site.name} ({', '.join(site.start_urls)})")


@sites.command("edit")
@click.argument("name")
@policy_options
@click.option("--clear-origin", is_flag=True, help="Forget the recorded origin addresses.")
@click.option(
    "--followup/--no-followup",
    default=True,
    help="When --origin records a new origin, follow the site's notices that went to its CDN "
    "up to the origin's host now (default; discovers the host over RDAP).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def sites_edit(
    state: Context, name: str, clear_origin: bool, followup: bool, as_json: bool, **raw: Any
) -> None:
    """Change the policy of site NAME (only the options given)."""
    changes = _changes(raw)
    if clear_origin:
        if "origin_addresses" in changes:
            raise click.UsageError("--origin and --clear-origin contradict each other")
        changes["origin_addresses"] = []
    with user_errors():
        before = get_site(state.db(), name)
        site = update_site(state.db(), name, changes)
    results: list[EscalationResult] = []
    learnt = site.origin_addresses and site.origin_addresses != before.origin_addresses
    if followup and learnt:
        try:
            with user_errors():
                results = follow_up_origin(
                    state.db(), site.id, discovery=DiscoveryOptions(state.settings), actor="cli"
                )
        except DiscoveryUnavailable as exc:
            # The origin is recorded either way; only the follow-up waits.
            click.echo(
                f"warning: {exc}; retry with: mamoru sites origin-followup {site.name}", err=True
            )
    if as_json:
        emit_json({**site_json(site), "origin_followups": [r.__dict__ for r in results]})
        return
    click.echo(f"updated site {site.id}: {site.name}")
    for result in results:
        click.echo(_followup_line(result))


@sites.command("origin-followup")
@click.argument("name")
@click.option("--no-discovery", is_flag=True, help="Use only the recipients already stored.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def sites_origin_followup(state: Context, name: str, no_discovery: bool, as_json: bool) -> None:
    """Follow the notices of site NAME that went to its CDN up to the recorded origin's host."""
    discovery = None if no_discovery else DiscoveryOptions(state.settings)
    with user_errors():
        site = get_site(state.db(), name)
        if not site.origin_addresses:
            raise click.ClickException(f"site {site.name} has no origin (sites edit --origin)")
        try:
            results = follow_up_origin(state.db(), site.id, discovery=discovery, actor="cli")
        except DiscoveryUnavailable as exc:
            raise click.ClickException(f"{exc}; nothing was changed, retry later") from exc
    if as_json:
        emit_json([r.__dict__ for r in results])
        return
    if not results:
        click.echo("no notice of this site waits on its CDN")
    for result in results:
        click.echo(_followup_line(result))


def _followup_line(result: EscalationResult) -> str:
    line = f"notice {result.notice_id}: {result.outcome}"
    if result.approved:
        line += f" -> notice(s) {', '.join(map(str, result.approved))} approved, ready to send"
    if result.invalid:
        line += f"; refused by the validator: {', '.join(map(str, result.invalid))}"
    return line + (f" ({result.detail})" if result.detail else "")


@sites.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def sites_list(state: Context, as_json: bool) -> None:
    """List sites."""
    with user_errors():
        rows = list_sites(state.db())
    if as_json:
        emit_json([site_json(s) for s in rows])
        return
    if not rows:
        click.echo("no sites")
    for s in rows:
        status = "active" if s.is_active else "inactive"
        click.echo(f"{s.id:>5}  {s.name}  {s.start_urls[0]}  rendering={s.rendering}  {status}")


@sites.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def sites_show(state: Context, name: str, as_json: bool) -> None:
    """Show site NAME (or id) with its whole policy."""
    with user_errors():
        site = get_site(state.db(), name)
    if as_json:
        emit_json(site_json(site))
        return
    for key, value in site_json(site).items():
        click.echo(f"{key:24} {value}")
