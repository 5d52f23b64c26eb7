"""``mamoru works``: register the works a publisher protects, and look at them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from admin.cli import Context, cli, emit_json, pass_context, progress, user_errors
from matcher.catalog import WorkSummary, get_work, list_works
from matcher.decode import DecodeLimits
from matcher.pagestore import page_store
from matcher.refingerprint import RefingerprintReport, refingerprint
from matcher.registry import WORK_KINDS, RegistrationResult, register_work
from matcher.sources import IngestLimits, PageSource, expand_paths
from store.config import Settings
from store.rows import Page


def ingest_limits(settings: Settings) -> IngestLimits:
    return IngestLimits(
        decode=DecodeLimits(
            max_pixels=settings.max_image_pixels, max_bytes=settings.max_image_bytes
        ),
        max_archive_bytes=settings.max_archive_bytes,
        max_archive_members=settings.max_archive_members,
        pdf_dpi=settings.pdf_dpi,
    )


def page_json(page: Page) -> dict[str, Any]:
    return {
        "id": page.id,
        "page_number": page.page_number,
        "source_name": page.source_name,
        "sha256": page.sha256.hex(),
        "media_type": page.media_type,
        "width": page.width,
        "height": page.height,
    }


def summary_json(summary: WorkSummary) -> dict[str, Any]:
    return dataclasses.asdict(summary)


def result_json(result: RegistrationResult) -> dict[str, Any]:
    work = result.work
    return {
        "work": {
            "id": work.id,
            "publisher": result.publisher.name,
            "title": work.title,
            "kind": work.kind,
            "isbn": work.isbn,
            "official_url": work.official_url,
            "identifiers": work.identifiers,
        },
        "created": result.created,
        "pages_added": [page_json(p) for p in result.added],
        "pages_skipped": [{"source": name, "reason": why} for name, why in result.skipped],
        "fingerprints_added": result.fingerprints_added,
    }


def describe(result: RegistrationResult, *, max_skipped: int = 5) -> str:
    work = result.work
    head = f"work {work.id} {work.title!r} ({result.publisher.name})"
    if not result.created and not result.added:
        return f"{head}: already registered, {len(result.skipped)} page(s) unchanged"
    verb = "registered" if result.created else "updated"
    lines = [
        f"{verb} {head}: {len(result.added)} page(s) added, {len(result.skipped)} skipped, "
        f"{result.fingerprints_added} fingerprints"
    ]
    lines += [f"  skipped {name}: {why}" for name, why in result.skipped[:max_skipped]]
    if len(result.skipped) > max_skipped:
        lines.append(f"  ... and {len(result.skipped) - max_skipped} more skipped")
    return "\n".join(lines)


def register_paths(
    state: Context,
    *,
    publisher: str,
    title: str,
    paths: list[Path],
    kind: str = "volume",
    isbn: str | None = None,
    official_url: str | None = None,
    identifiers: dict[str, str] | None = None,
    show_progress: bool = True,
) -> RegistrationResult:
    # Every path is opened and checked before any page is hashed or written.
    sources = expand_paths(paths, ingest_limits(state.settings))
    db = state.db()

    def register(on_page: Callable[[PageSource], None] | None = None) -> RegistrationResult:
        return register_work(
            db,
            publisher=publisher,
            title=title,
            sources=sources,
            kind=kind,
            isbn=isbn,
            official_url=official_url,
            identifiers=identifiers,
            on_page=on_page,
            store=page_store(state.settings),
        )

    if not show_progress or len(sources) < 2:
        return register()
    with progress(len(sources), f"fingerprinting {title}") as bar:
        return register(lambda _: bar.update(1))


@cli.group()
def works() -> None:
    """Works (volumes, chapters, illustrations) and their fingerprinted pages."""


@works.command("add")
@click.option("--publisher", "-p", required=True, help="Publisher name (see `mamoru publishers`).")
@click.option("--title", "-t", required=True, help="Title of the work; adds pages if it exists.")
@click.option("--kind", type=click.Choice(WORK_KINDS), default="volume", show_default=True)
@click.option("--isbn", help="ISBN of the work.")
@click.option("--official-url", help="Where the work is legitimately available.")
@click.option(
    "--id",
    "identifiers",
    multiple=True,
    metavar="KEY=VALUE",
    help="Another identifier (repeatable), e.g. --id asin=B0XXXX.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@pass_context
def works_add(
    state: Context,
    publisher: str,
    title: str,
    kind: str,
    isbn: str | None,
    official_url: str | None,
    identifiers: tuple[str, ...],
    as_json: bool,
    paths: tuple[Path, ...],
) -> None:
    """Register a work from PATHS: image files, folders of pages, CBZ/ZIP archives or PDFs."""
    extra: dict[str, str] = {}
    for item in identifiers:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--id")
        extra[key.strip()] = value.strip()
    with user_errors():
        result = register_paths(
            state,
            publisher=publisher,
            title=title,
            paths=list(paths),
            kind=kind,
            isbn=isbn,
            official_url=official_url,
            identifiers=extra,
        )
    if as_json:
        emit_json(result_json(result))
    else:
        click.echo(describe(result))


@works.command("list")
@click.option("--publisher", "-p", help="Only this publisher's works.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def works_list(state: Context, publisher: str | None, as_json: bool) -> None:
    """List registered works."""
    with user_errors():
        rows = list_works(state.db(), publisher)
    if as_json:
        emit_json([summary_json(r) for r in rows])
        return
    if not rows:
        click.echo("no works registered")
    for r in rows:
        click.echo(
            f"{r.id:>5}  {r.publisher}  {r.title!r}  {r.pages} pages  {r.fingerprints} fingerprints"
        )


@works.command("show")
@click.argument("work_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def works_show(state: Context, work_id: int, as_json: bool) -> None:
    """Show one work with its pages and fingerprints."""
    with user_errors():
        detail = get_work(state.db(), work_id)
    if detail is None:
        raise click.ClickException(f"no work with id {work_id}")
    if as_json:
        payload = summary_json(detail.summary)
        payload["identifiers"] = detail.work.identifiers
        payload["pages"] = [
            page_json(p)
            | {
                "fingerprints": [
                    {
                        "kind": f.kind,
                        "variant": f.variant,
                        "version": f.version,
                        "params": f.params,
                        "value": f"{f.value & (2**64 - 1):016x}",
                    }
                    for f in detail.fingerprints.get(p.id, [])
                ]
            }
            for p in detail.pages
        ]
        emit_json(payload)
        return
    s = detail.summary
    click.echo(f"work {s.id}: {s.title!r} ({s.kind}) by {s.publisher}")
    if s.isbn:
        click.echo(f"  ISBN: {s.isbn}")
    if s.official_url:
        click.echo(f"  official URL: {s.official_url}")
    for key, value in detail.work.identifiers.items():
        click.echo(f"  {key}: {value}")
    for p in detail.pages:
        fps = detail.fingerprints.get(p.id, [])
        # The whole-page hashes identify a page at a glance; region hashes are only counted.
        shown = [f"{f.kind}={f.value & (2**64 - 1):016x}" for f in fps if f.variant == "full"]
        regions = sum(1 for f in fps if f.variant != "full")
        hashes = " ".join([*shown, f"+{regions} region hashes"] if regions else shown)
        click.echo(f"  page {p.page_number:>3}  {p.width}x{p.height}  {p.source_name}  {hashes}")


@works.command("refingerprint")
@click.option("--dry-run", is_flag=True, help="Only count the pages that need it.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def works_refingerprint(state: Context, dry_run: bool, as_json: bool) -> None:
    """Re-hash pages whose fingerprints are not of the current versions.

    Run after an upgrade that changes fingerprints (the release notes say so): until then the
    affected pages are not matched, because fingerprints of different versions are never mixed.
    Exits 1 when a page could not be re-hashed (e.g. registered before page images were kept).
    """
    db = state.db()
    limits = ingest_limits(state.settings).decode
    store = page_store(state.settings)
    with user_errors():
        if dry_run or as_json:
            report = refingerprint(db, store, limits=limits, dry_run=dry_run)
        else:
            todo = refingerprint(db, store, dry_run=True).pages
            with progress(todo, "re-fingerprinting pages") as bar:
                report = refingerprint(db, store, limits=limits, on_page=lambda _: bar.update(1))
    if as_json:
        emit_json(dataclasses.asdict(report))
    else:
        click.echo(describe_refingerprint(report, dry_run=dry_run))
    if report.failed:
        raise SystemExit(1)


def describe_refingerprint(report: RefingerprintReport, *, dry_run: bool) -> str:
    if dry_run:
        return f"{report.pages} page(s) need re-fingerprinting"
    lines = [
        f"{report.updated} of {report.pages} page(s) re-fingerprinted: "
        f"{report.fingerprints_added} fingerprints added, "
        f"{report.fingerprints_removed} of other versions removed"
    ]
    lines += [f"  page {page_id}: {why}" for page_id, why in report.failed]
    return "\n".join(lines)
