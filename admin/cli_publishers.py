"""``mamoru publishers``: rightsholders whose works are protected."""

from __future__ import annotations

import dataclasses

import click

from admin.cli import Context, cli, emit_json, pass_context, user_errors
from admin.publishers import add_publisher, list_publishers, update_publisher


@cli.group()
def publishers() -> None:
    """Publishers (rightsholders or their agents)."""


@publishers.command("add")
@click.argument("name")
@click.option("--agent-org", help="Organisation that signs notices (e.g. the rights office).")
@click.option("--email", help="Contact email printed in notices.")
@click.option("--address", help="Postal address printed in notices.")
@click.option("--phone", help="Telephone number printed in notices.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def publishers_add(
    state: Context,
    name: str,
    agent_org: str | None,
    email: str | None,
    address: str | None,
    phone: str | None,
    as_json: bool,
) -> None:
    """Add a publisher named NAME."""
    with user_errors():
        publisher = add_publisher(
            state.db(),
            name,
            agent_organisation=agent_org,
            contact_email=email,
            contact_address=address,
            contact_phone=phone,
        )
    if as_json:
        emit_json(dataclasses.asdict(publisher))
    else:
        click.echo(f"added publisher {publisher.id}: {publisher.name}")


@publishers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def publishers_list(state: Context, as_json: bool) -> None:
    """List publishers."""
    with user_errors():
        rows = list_publishers(state.db())
    if as_json:
        emit_json([dataclasses.asdict(p) for p in rows])
        return
    for p in rows:
        click.echo(f"{p.id:>5}  {p.name}  ({p.agent_organisation or 'no agent organisation'})")


@publishers.command("edit")
@click.argument("name")
@click.option("--agent-org", help="Organisation that signs notices (e.g. the rights office).")
@click.option("--email", help="Contact email printed in notices (and their Reply-To).")
@click.option("--address", help="Postal address printed in notices.")
@click.option("--phone", help="Telephone number printed in notices.")
@click.option(
    "--auto-approve",
    type=click.FloatRange(0, 1),
    help="Approve confident matches at or above this confidence without review (opt-in).",
)
@click.option("--review-all", is_flag=True, help="Turn auto-approval off: review every match.")
@pass_context
def publishers_edit(
    state: Context,
    name: str,
    agent_org: str | None,
    email: str | None,
    address: str | None,
    phone: str | None,
    auto_approve: float | None,
    review_all: bool,
) -> None:
    """Change the identity printed in NAME's notices, or its auto-approval."""
    if auto_approve is not None and review_all:
        raise click.UsageError("--auto-approve and --review-all contradict each other")
    changes: dict[str, object] = {
        column: value
        for column, value in (
            ("agent_organisation", agent_org),
            ("contact_email", email),
            ("contact_address", address),
            ("contact_phone", phone),
            ("auto_approve_min_confidence", auto_approve),
        )
        if value is not None
    }
    if review_all:
        changes["auto_approve_min_confidence"] = None
    with user_errors():
        publisher = update_publisher(state.db(), name, **changes)
    auto = publisher.auto_approve_min_confidence
    click.echo(
        f"publisher {publisher.name}: signed by {publisher.agent_organisation or '(nobody yet)'}, "
        + (f"auto-approves confident matches >= {auto:.2f}" if auto is not None else "reviews all")
    )
