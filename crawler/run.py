"""Running one crawl: the ``crawls`` row, the child process, the summary.

:func:`run_crawl` records the crawl (refusing a second one while the site has one queued or
running), runs Scrapy in a child process (:mod:`crawler.worker`: the reactor runs once per
process and the address policy is per process), relays its progress, and writes the outcome:
``crawls.state`` finished or failed with the error, ``crawls.stats``, and ``crawl`` events for
the start and the end. The child's log is kept under ``data_dir/logs/crawl-<id>.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg.types.json import Jsonb

from crawler.config import CrawlConfig
from store.config import Settings
from store.db import Database
from store.rows import Site

__all__ = ["CrawlAlreadyActive", "CrawlProgress", "CrawlSummary", "run_crawl"]

#: Finish reasons that end a crawl normally: done, or a limit of the site's policy reached.
_NORMAL_ENDINGS: Final = frozenset({"finished", "closespider_pagecount", "closespider_timeout"})
# Grace beyond the time budget before the parent kills a child that ignores it.
_KILL_GRACE_SECONDS: Final = 120.0
_PACKAGE_ROOT: Final = Path(__file__).resolve().parent.parent


class CrawlAlreadyActive(ValueError):
    """The site already has a queued or running crawl."""


@dataclass(frozen=True)
class CrawlProgress:
    pages: int = 0
    images: int = 0
    matches: int = 0
    errors: int = 0


@dataclass
class CrawlSummary:
    crawl_id: int
    site_id: int
    site_name: str
    state: str  # finished | failed | cancelled
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    log_path: Path | None = None

    def _get(self, key: str) -> int:
        return int(self.stats.get(key, 0))

    @property
    def pages(self) -> int:
        return self._get("pages")

    @property
    def images(self) -> int:
        return self._get("images")

    @property
    def new_images(self) -> int:
        return self._get("images_new")

    @property
    def matches(self) -> int:
        return self._get("matches")

    @property
    def errors(self) -> dict[str, int]:
        return dict(self.stats.get("errors", {}))

    def as_json(self) -> dict[str, Any]:
        return {
            "crawl_id": self.crawl_id,
            "site_id": self.site_id,
            "site": self.site_name,
            "state": self.state,
            "error": self.error,
            "log": str(self.log_path) if self.log_path else None,
            "stats": self.stats,
        }


def _start(db: Database, site: Site, trigger: str, actor: str) -> int:
    try:
        with db.connection() as conn:
            row = conn.execute(
                """
                insert into crawls (site_id, state, trigger, started_at)
                values (%s, 'running', %s, now()) returning id
                """,
                (site.id, trigger),
            ).fetchone()
            assert row is not None
            crawl_id = int(row[0])
            conn.execute(
                """
                insert into events (subject_type, subject_id, event_type, from_state, to_state,
                                    actor, details)
                values ('crawl', %s, 'started', 'queued', 'running', %s, %s)
                """,
                (crawl_id, actor, Jsonb({"site_id": site.id, "trigger": trigger})),
            )
    except psycopg.errors.UniqueViolation as exc:
        with db.connection() as conn:
            active = conn.execute(
                "select id, state from crawls where site_id = %s and state in"
                " ('queued', 'running')",
                (site.id,),
            ).fetchone()
        which = f" (crawl {active[0]}, {active[1]})" if active else ""
        raise CrawlAlreadyActive(
            f"site {site.name!r} already has a crawl queued or running{which}"
        ) from exc
    return crawl_id


def _finish(
    db: Database, crawl_id: int, state: str, stats: dict[str, Any], error: str | None, actor: str
) -> None:
    with db.connection() as conn:
        conn.execute(
            # Merged: the pipeline already stored the incremental state under its own key.
            "update crawls set state = %s, finished_at = now(), stats = stats || %s,"
            " error = %s where id = %s",
            (state, Jsonb(stats), error, crawl_id),
        )
        conn.execute(
            """
            insert into events (subject_type, subject_id, event_type, from_state, to_state,
                                actor, details)
            values ('crawl', %s, %s, 'running', %s, %s, %s)
            """,
            (
                crawl_id,
                "finished" if state == "finished" else state,
                state,
                actor,
                Jsonb(
                    {
                        "pages": stats.get("pages", 0),
                        "images": stats.get("images", 0),
                        "matches": stats.get("matches", 0),
                        "errors": stats.get("errors", {}),
                        "error": error,
                    }
                ),
            ),
        )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def run_crawl(
    db: Database,
    site: Site,
    settings: Settings,
    *,
    trigger: str = "manual",
    progress: Callable[[CrawlProgress], None] | None = None,
    overrides: dict[str, Any] | None = None,
    actor: str = "system",
) -> CrawlSummary:
    """Crawl ``site`` once, in the foreground, and return what it found.

    ``overrides`` replace :class:`CrawlConfig` fields (tests: short timeouts, small limits,
    ``allowed_hosts``). Raises :class:`CrawlAlreadyActive` before doing anything when the
    site already has a crawl queued or running.
    """
    config = CrawlConfig.from_site(site, settings, **(overrides or {}))
    crawl_id = _start(db, site, trigger, actor)
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"crawl-{crawl_id}.log"
    summary = CrawlSummary(crawl_id, site.id, site.name, "failed", log_path=log_path)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
    )
    job = {"config": config.to_json(), "crawl_id": crawl_id, "database_url": db.url}
    deadline = time.monotonic() + config.time_budget_seconds + _KILL_GRACE_SECONDS
    stats: dict[str, Any] | None = None
    try:
        with log_path.open("w", encoding="utf-8") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "crawler.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                text=True,
                encoding="utf-8",
            )
            try:
                assert child.stdin is not None and child.stdout is not None
                stdout = child.stdout
                child.stdin.write(json.dumps(job))
                child.stdin.close()
                for line in stdout:
                    message = _parse(line)
                    if message.get("type") == "done":
                        stats = dict(message.get("stats", {}))
                    elif message.get("type") == "progress" and progress is not None:
                        progress(
                            CrawlProgress(
                                int(message.get("pages", 0)),
                                int(message.get("images", 0)),
                                int(message.get("matches", 0)),
                                int(message.get("errors", 0)),
                            )
                        )
                    if time.monotonic() > deadline:
                        child.kill()
                        break
                returncode = child.wait(timeout=max(1.0, deadline - time.monotonic()))
                stdout.close()
            except BaseException:
                # Ctrl-C or a dying parent: the child must not outlive the crawl's row.
                with contextlib.suppress(OSError):
                    child.kill()
                child.wait()
                child.stdout.close() if child.stdout else None
                raise
    except KeyboardInterrupt:
        summary.state = "cancelled"
        summary.error = "interrupted"
        _finish(db, crawl_id, "cancelled", stats or {}, "interrupted", actor)
        raise
    except BaseException as exc:
        _finish(db, crawl_id, "failed", stats or {}, f"{type(exc).__name__}: {exc}", actor)
        raise
    if stats is None:
        summary.error = f"crawl process exited with status {returncode}: {_tail(log_path)}"
        _finish(db, crawl_id, "failed", {}, summary.error, actor)
        return summary
    summary.stats = stats
    reason = str(stats.get("finish_reason", ""))
    if returncode == 0 and reason in _NORMAL_ENDINGS:
        summary.state = "finished"
    else:
        summary.error = f"crawl ended: {reason or f'exit status {returncode}'}"
    _finish(db, crawl_id, summary.state, stats, summary.error, actor)
    return summary


def _parse(line: str) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}
