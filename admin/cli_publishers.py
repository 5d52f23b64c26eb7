"""``mamoru publishers``: rightsholders whose works are protected."""

from __future__ import annotations

import dataclasses

import click

from admin.cli import Context, cli, emit_json, pass_context, user_errors
from admin.publishers import add_publisher, list_publishers


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
