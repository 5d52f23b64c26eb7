"""``mamoru notices recheck / escalate / removal-times / delisting``: the follow-up of sent
notices, run in this process (the workers and the scheduler do the same on their own)."""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from admin.cli import Context, emit_json, pass_context, user_errors
from admin.cli_notices import notices
from takedown.escalate import (
    DiscoveryOptions,
    DiscoveryUnavailable,
    EscalationResult,
    escalate_notice,
)
from takedown.exports import search_engine_csv
from takedown.followup import RemovalStat, delisting_contents, due_rechecks, removal_times
from takedown.probe import ProbeLimits, Prober
from takedown.recheck import RecheckReport, recheck_notice


@notices.command("recheck")
@click.argument("notice_ids", type=int, nargs=-1)
@click.option("--due", is_flag=True, help="Every notice with a recheck round due now.")
@click.option("--escalate", "and_escalate", is_flag=True, help="Escalate what the SLA let pass.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def notices_recheck(
    state: Context, notice_ids: tuple[int, ...], due: bool, and_escalate: bool, as_json: bool
) -> None:
    """Fetch the reported URLs of sent notices again: removed, still up, or moved?

    Notices named by id are rechecked now, whether or not a round is due; --due runs the rounds
    due, as the workers would."""
    if not notice_ids and not due:
        raise click.UsageError("give notice ids, or --due")
    db = state.db()
    # A notice named is forced (the round records who asked); one found due is a scheduled
    # round, skipped if a worker has done it meanwhile.
    asked = {notice_id: True for notice_id in notice_ids}
    if due:
        with db.connection() as conn:
            for found in due_rechecks(conn, now=dt.datetime.now(dt.UTC)):
                asked.setdefault(found.notice_id, False)
    limits = ProbeLimits(
        max_image_bytes=state.settings.max_image_bytes,
        max_image_pixels=state.settings.max_image_pixels,
    )
    reports: list[RecheckReport] = []
    escalations: list[EscalationResult] = []
    for notice_id, forced in asked.items():
        with user_errors(), _discovery_errors():
            # A prober per notice: what it keeps of the bodies it fetched goes with it.
            report = recheck_notice(
                db,
                notice_id,
                prober=Prober(limits),
                only_if_due=not forced,
                actor="cli",
                requested_by=_login() if forced else None,
            )
            reports.append(report)
            if and_escalate and report.escalation_due:
                escalations.append(
                    escalate_notice(
                        db, notice_id, discovery=DiscoveryOptions(state.settings), actor="cli"
                    )
                )
    if as_json:
        emit_json(
            {
                "rechecks": [_report_json(r) for r in reports],
                "escalations": [e.__dict__ for e in escalations],
            }
        )
        return
    if not reports:
        click.echo("no recheck due")
    for report in reports:
        click.echo(_report_line(report))
    for result in escalations:
        click.echo(_escalation_line(result))


@notices.command("escalate")
@click.argument("notice_id", type=int)
@click.option("--no-discovery", is_flag=True, help="Only recipients already known for the site.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def notices_escalate(state: Context, notice_id: int, no_discovery: bool, as_json: bool) -> None:
    """Send a notice still up (or undeliverable) to the next recipient on the ladder."""
    discovery = None if no_discovery else DiscoveryOptions(state.settings)
    with user_errors(), _discovery_errors():
        result = escalate_notice(state.db(), notice_id, discovery=discovery, actor="cli")
    if as_json:
        emit_json(result.__dict__)
        return
    click.echo(_escalation_line(result))


@notices.command("removal-times")
@click.option("--since-days", type=click.IntRange(min=1), help="Only notices sent this recently.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def notices_removal_times(state: Context, since_days: int | None, as_json: bool) -> None:
    """How many notices each recipient (and site) acted on, and how fast."""
    since = None
    if since_days is not None:
        since = dt.datetime.now(dt.UTC) - dt.timedelta(days=since_days)
    with state.db().connection() as conn:
        times = removal_times(conn, since=since)
    if as_json:
        emit_json(
            {
                "by_recipient": [s.as_dict() for s in times.by_recipient],
                "by_site": [s.as_dict() for s in times.by_site],
            }
        )
        return
    for title, stats in (("recipient", times.by_recipient), ("site", times.by_site)):
        click.echo(f"by {title}:")
        if not stats:
            click.echo("  no notices sent")
        for stat in stats:
            click.echo("  " + _stat_line(stat))


@notices.command("delisting")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="File (default stdout).")
@pass_context
def notices_delisting(state: Context, output: Path | None) -> None:
    """CSV of the URLs still up past the last rung of the ladder, for a search engine's
    bulk removal form."""
    with state.db().connection() as conn:
        contents = delisting_contents(conn)
    text = search_engine_csv(contents)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8", newline="")
        click.echo(f"{len(contents)} notice(s) written to {output}", err=True)


@contextmanager
def _discovery_errors() -> Iterator[None]:
    try:
        yield
    except DiscoveryUnavailable as exc:
        raise click.ClickException(f"{exc} (nothing changed; try again later)") from exc


def _login() -> str:
    """Who runs the command, for the record (the CLI has no signed-in user)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "unknown"


def _report_json(report: RecheckReport) -> dict[str, object]:
    return {
        "notice_id": report.notice_id,
        "checked_at": report.checked_at.isoformat(),
        "state": report.state,
        "skipped": report.skipped,
        "escalation_due": report.escalation_due,
        "counts": report.counts,
        "items": [c.__dict__ for c in report.items],
    }


def _report_line(report: RecheckReport) -> str:
    if report.skipped:
        return f"notice {report.notice_id}: not rechecked ({report.skipped})"
    counts = ", ".join(f"{n} {outcome.replace('_', ' ')}" for outcome, n in report.counts.items())
    line = f"notice {report.notice_id}: {counts} -> {report.state}"
    if report.escalation_due:
        line += f"  (SLA passed: mamoru notices escalate {report.notice_id})"
    return line


def _escalation_line(result: EscalationResult) -> str:
    line = f"notice {result.notice_id}: {result.outcome}"
    if result.new_notices:
        line += " to notice(s) " + ", ".join(map(str, result.new_notices))
    if result.invalid:
        line += " (refused by the validator: " + ", ".join(map(str, result.invalid)) + ")"
    return line + (f"; {result.detail}" if result.detail else "")


def _stat_line(stat: RemovalStat) -> str:
    scope = f" ({stat.scope})" if stat.scope else ""
    median = "-" if stat.median_hours is None else f"{stat.median_hours:.1f} h"
    return (
        f"{stat.name}{scope}: {stat.sent} sent, {stat.removed} removed "
        f"({stat.removal_rate:.0%}), {stat.escalated} escalated, median {median}"
    )
