"""``mamoru match``: which registered works do these images copy?"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from admin.cli import Context, cli, emit_json, pass_context, user_errors
from admin.cli_works import ingest_limits
from matcher.decode import check_byte_size, decode_image
from matcher.errors import InputError
from matcher.identify import Match, ReferenceIndex


def match_json(match: Match) -> dict[str, Any]:
    return {
        "work_id": match.page.work_id,
        "work_title": match.page.work_title,
        "publisher": match.page.publisher,
        "page_id": match.page.page_id,
        "page_number": match.page.page_number,
        "decision": match.decision,
        "confidence": match.confidence,
        "scores": match.scores,
        "explanation": match.explanation,
    }


@cli.command("match")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def match(state: Context, images: tuple[Path, ...], as_json: bool) -> None:
    """Print which registered works each of IMAGES copies.

    Every image is tried; unreadable ones are reported and make the exit status 1.
    """
    limits = ingest_limits(state.settings).decode
    with user_errors():
        index = ReferenceIndex(state.db())
        index.refresh()
    results: list[dict[str, Any]] = []
    failed = False
    for path in images:
        entry: dict[str, Any] = {"image": str(path), "matches": [], "error": None}
        try:
            try:
                check_byte_size(path.stat().st_size, source=str(path), limits=limits)
                data = path.read_bytes()
            except OSError as exc:
                raise InputError(str(path), exc.strerror or str(exc)) from exc
            with decode_image(data, source=str(path), limits=limits) as image:
                entry["matches"] = [match_json(m) for m in index.identify(image)]
        except InputError as exc:
            entry["error"] = str(exc)
            failed = True
        results.append(entry)
        if not as_json:
            click.echo(_describe(entry))
    if as_json:
        emit_json(results)
    if failed:
        raise SystemExit(1)


def _describe(entry: dict[str, Any]) -> str:
    if entry["error"]:
        return f"{entry['error']}"
    if not entry["matches"]:
        return f"{entry['image']}: no match"
    lines = [f"{entry['image']}:"]
    for m in entry["matches"]:
        lines.append(
            f"  {m['decision']:9} {m['work_title']!r} page {m['page_number']} "
            f"({m['publisher']}), confidence {m['confidence']:.2f}: {m['explanation']}"
        )
    return "\n".join(lines)


__all__ = ["match"]
