"""``mamoru notices``: compose, list, show, render, send and export takedown notices, and
check the SMTP relay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from admin.cli import Context, cli, emit_json, pass_context, user_errors
from takedown.compose import compose_notices, notice_content, release
from takedown.delivery import DeliveryError, SmtpSender, sender_from_settings
from takedown.exports import lumen_json, search_engine_csv
from takedown.send import send_notice


@cli.group()
def notices() -> None:
    """Takedown notices: drafted from approved matches, sent by workers, followed up."""


@notices.command("compose")
@click.option("--enqueue", is_flag=True, help="Ask a worker to do it (through the broker).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def notices_compose(state: Context, enqueue: bool, as_json: bool) -> None:
    """Draft notices for every approved match not yet in a notice."""
    db = state.db()
    if enqueue:
        from takedown import actors

        actors.compose.send()
        click.echo("compose job enqueued")
        return
    with user_errors():
        report = compose_notices(db)
    if as_json:
        emit_json(report.__dict__)
        return
    click.echo(
        f"{len(report.notices)} notice(s) drafted: {len(report.held)} held by the flood guard, "
        f"{len(report.invalid)} refused by the validator; {report.auto_approved} match(es) "
        f"auto-approved, {report.allowlisted} allowlisted"
    )
    for site_id, count in report.no_recipient.items():
        click.echo(f"site {site_id}: {count} match(es) wait for a recipient with an email address")


@notices.command("list")
@click.option("--state", "state_filter", help="Only notices in this state.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def notices_list(state: Context, state_filter: str | None, as_json: bool) -> None:
    """List notices, newest first."""
    with state.db().connection() as conn:
        rows = conn.execute(
            """
            select n.id, n.state, n.format, p.name, r.name, r.email,
                   (select count(*) from notice_items i where i.notice_id = n.id),
                   n.held_reason, n.last_error, n.created_at
            from notices n join publishers p on p.id = n.publisher_id
            join recipients r on r.id = n.recipient_id
            where %(state)s::text is null or n.state = %(state)s
            order by n.id desc
            """,
            {"state": state_filter},
        ).fetchall()
    keys = ("id", "state", "format", "publisher", "recipient", "email", "urls", "held", "error")
    payload: list[dict[str, Any]] = [dict(zip(keys, r[:9], strict=True)) for r in rows]
    if as_json:
        emit_json(payload)
        return
    if not payload:
        click.echo("no notices")
    for n in payload:
        note = f"  HELD: {n['held']}" if n["held"] else ""
        note = note or (f"  error: {n['error']}" if n["error"] else "")
        click.echo(
            f"{n['id']:>5}  {n['state']:<15} {n['format']:<11} {n['publisher']} -> "
            f"{n['recipient']} <{n['email']}>  {n['urls']} URL(s){note}"
        )


@notices.command("show")
@click.argument("notice_id", type=int)
@pass_context
def notices_show(state: Context, notice_id: int) -> None:
    """Show a notice as it will be (or was) sent, and its timeline."""
    with state.db().connection() as conn:
        row = conn.execute(
            "select state, subject, body_text, held_reason, last_error, message_id "
            "from notices where id = %s",
            (notice_id,),
        ).fetchone()
        if row is None:
            raise click.ClickException(f"no notice {notice_id}")
        timeline = conn.execute(
            "select occurred_at, event_type, from_state, to_state, actor from events "
            "where subject_type = 'notice' and subject_id = %s order by id",
            (notice_id,),
        ).fetchall()
    notice_state, subject, text, held, error, message_id = row
    click.echo(f"notice {notice_id}: {notice_state}  Message-ID {message_id or '-'}")
    if held:
        click.echo(f"HELD: {held}")
    if error:
        click.echo(f"error: {error}")
    for at, kind, before, after, actor in timeline:
        move = f" {before} -> {after}" if after else ""
        click.echo(f"  {at:%Y-%m-%d %H:%M:%S}  {kind}{move}  ({actor})")
    click.echo(f"\nSubject: {subject or '(not rendered)'}\n\n{text or ''}")


@notices.command("render")
@click.argument("notice_id", type=int)
@click.option("--html", "as_html", is_flag=True, help="The HTML part instead of the text.")
@pass_context
def notices_render(state: Context, notice_id: int, as_html: bool) -> None:
    """Render a notice from its current rows (validated; nothing is stored or sent)."""
    from takedown.formats import render

    with user_errors(), state.db().connection() as conn:
        rendered = render(notice_content(conn, notice_id))
    click.echo(rendered.html if as_html else f"Subject: {rendered.subject}\n\n{rendered.text}")


@notices.command("release")
@click.argument("notice_id", type=int)
@pass_context
def notices_release(state: Context, notice_id: int) -> None:
    """Release a notice held by the flood guard (it is validated, then approved)."""
    with user_errors(), state.db().connection() as conn:
        released = release(conn, notice_id, user_id=None, actor="cli")
    click.echo(f"notice {notice_id}: {'approved' if released else 'not released'}")


@notices.command("send")
@click.argument("notice_ids", type=int, nargs=-1, required=True)
@pass_context
def notices_send(state: Context, notice_ids: tuple[int, ...]) -> None:
    """Send approved notices now, in this process (workers do it on their own)."""
    sender = sender_from_settings(state.settings)
    db = state.db()
    failed = False
    for notice_id in notice_ids:
        with user_errors():
            outcome = send_notice(db, notice_id, sender, state.settings)
        click.echo(f"notice {notice_id}: {outcome.result} {outcome.detail}".rstrip())
        failed |= outcome.result == "failed"
    if failed:
        raise SystemExit(1)


@notices.command("check-relay")
@pass_context
def notices_check_relay(state: Context) -> None:
    """Log in to the configured SMTP relay and out again, sending nothing."""
    settings = state.settings
    if not settings.smtp_url:
        click.echo(
            f"no relay configured (MAMORU_SMTP_URL unset): notices are written to "
            f"{settings.outbox_path} and nothing leaves this machine"
        )
        return
    with user_errors():
        sender = SmtpSender(settings.smtp_url)
    try:
        click.echo(f"relay OK: {sender.check()}; notices are sent from {settings.mail_from}")
    except DeliveryError as exc:
        kind = "permanent" if exc.permanent else "transient: try again later"
        click.echo(f"relay check failed ({kind}): {exc}", err=True)
        raise SystemExit(1) from None


@notices.command("export")
@click.option("--format", "fmt", type=click.Choice(["lumen", "csv"]), required=True)
@click.option("--state", "states", multiple=True, default=("sent",), show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="File (default stdout).")
@pass_context
def notices_export(state: Context, fmt: str, states: tuple[str, ...], output: Path | None) -> None:
    """Lumen-compatible JSON, or a CSV of URLs for a search engine's bulk removal form."""
    with state.db().connection() as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "select id from notices where state = any(%s) order by id", (list(states),)
            )
        ]
        contents = [notice_content(conn, i) for i in ids]
    text = lumen_json(contents) if fmt == "lumen" else search_engine_csv(contents)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8", newline="")
        click.echo(f"{len(contents)} notice(s) written to {output}", err=True)
