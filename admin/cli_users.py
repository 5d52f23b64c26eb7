"""``mamoru users``: admin accounts, operator assignments and API tokens."""

from __future__ import annotations

import sys

import click

from admin.cli import Context, cli, emit_json, pass_context, user_errors
from admin.users import (
    ROLES,
    assign_operator,
    create_token,
    create_user,
    list_tokens,
    list_users,
    revoke_token,
    set_password,
)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # One line: scripts pipe the password in; the trailing newline is not part of it.
        return sys.stdin.readline().rstrip("\r\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@cli.group()
def users() -> None:
    """Users of the web admin and API (admin, operator, publisher)."""


@users.command("create")
@click.option("--email", required=True, help="Login email (unique, case-insensitive).")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--publisher", help="Publisher a publisher user belongs to.")
@click.option("--name", "display_name", help="Display name.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_context
def users_create(
    state: Context,
    email: str,
    role: str,
    publisher: str | None,
    display_name: str | None,
    password_stdin: bool,
) -> None:
    """Create a user (the first admin too: `mamoru users create --role admin --email ...`)."""
    with user_errors():
        user = create_user(
            state.db(),
            email=email,
            role=role,
            password=_read_password(password_stdin),
            publisher=publisher,
            display_name=display_name,
        )
    suffix = f" of {user.publisher}" if user.publisher else ""
    click.echo(f"created {user.role} {user.id}: {user.email}{suffix}")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def users_list(state: Context, as_json: bool) -> None:
    """List users."""
    with user_errors():
        rows = list_users(state.db())
    if as_json:
        emit_json(
            [
                {
                    "id": u.id,
                    "email": u.email,
                    "role": u.role,
                    "publisher": u.publisher,
                    "active": u.is_active,
                    "last_login_at": u.last_login_at,
                }
                for u in rows
            ]
        )
        return
    if not rows:
        click.echo("no users (create the first admin: mamoru users create --role admin ...)")
    for u in rows:
        extra = f"  ({u.publisher})" if u.publisher else ""
        inactive = "  [inactive]" if not u.is_active else ""
        click.echo(f"{u.id:>5}  {u.role:<9} {u.email}{extra}{inactive}")


@users.command("assign")
@click.argument("operator_email")
@click.argument("publisher")
@pass_context
def users_assign(state: Context, operator_email: str, publisher: str) -> None:
    """Let operator OPERATOR_EMAIL review and follow PUBLISHER's matches and notices."""
    with user_errors():
        added = assign_operator(state.db(), operator_email, publisher)
    verb = "assigned" if added else "already assigned"
    click.echo(f"{operator_email} {verb} to {publisher}")


@users.command("password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_context
def users_password(state: Context, email: str, password_stdin: bool) -> None:
    """Set EMAIL's password (ends the user's open sessions)."""
    with user_errors():
        set_password(state.db(), email, _read_password(password_stdin))
    click.echo(f"password changed for {email}")


@users.command("token")
@click.argument("email")
@click.option("--name", required=True, help="What the token is for (e.g. 'catalogue sync').")
@pass_context
def users_token(state: Context, email: str, name: str) -> None:
    """Create an API token for EMAIL; it is shown once and stored only as a hash."""
    with user_errors():
        token_id, token = create_token(state.db(), email, name)
    click.echo(f"token {token_id} for {email} ({name}); keep it now, it is not shown again:")
    click.echo(token)


@users.command("tokens")
@click.argument("email", required=False)
@pass_context
def users_tokens(state: Context, email: str | None) -> None:
    """List API tokens (of EMAIL only, when given)."""
    with user_errors():
        rows = list_tokens(state.db(), email)
    if not rows:
        click.echo("no API tokens")
    for token, owner in rows:
        status = f"revoked {token.revoked_at:%Y-%m-%d}" if token.revoked_at else "active"
        used = f"last used {token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "unused"
        click.echo(f"{token.id:>5}  {owner}  {token.name!r}  {status}, {used}")


@users.command("revoke-token")
@click.argument("token_id", type=int)
@pass_context
def users_revoke_token(state: Context, token_id: int) -> None:
    """Revoke API token TOKEN_ID (see `mamoru users tokens`)."""
    with user_errors():
        revoked = revoke_token(state.db(), token_id)
    click.echo(f"token {token_id} {'revoked' if revoked else 'was already revoked'}")
