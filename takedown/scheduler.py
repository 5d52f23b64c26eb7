"""``mamoru scheduler``: enqueue nightly crawls, notice composition, sweeps and rechecks.

APScheduler fires the jobs; the scheduler itself never crawls or sends, it only enqueues
Dramatiq messages, so it is light and one per deployment is enough. Two safeguards:

- **One active scheduler.** It holds a PostgreSQL advisory lock on a dedicated connection for
  as long as it runs. A second one started by mistake (or a standby) waits for the lock and
  enqueues nothing meanwhile; if the first dies, its connection closes, the lock is released
  and the standby takes over.
- **Missed runs are caught up once.** Each job's last run is kept in ``scheduler_runs``. On
  start, a job whose cron time passed since its last run (the machine was down at 03:00) runs
  once at once, however many runs were missed; APScheduler's ``coalesce`` does the same for
  runs missed while running.

Site crawls follow each site's cron expression (``sites.schedule``, default nightly), delayed
by a per-site offset within ``spread_seconds`` so that sites do not all start at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from store.db import Database

__all__ = ["LOCK_KEY", "Enqueue", "Job", "SchedulerLock", "build_jobs", "catch_up", "run_job"]

log = logging.getLogger(__name__)

LOCK_KEY = "mamoru.scheduler"
# (actor name, arguments, delay in milliseconds)
Enqueue = Callable[[str, tuple[Any, ...], int], None]


@dataclass(frozen=True)
class Job:
    key: str  # stable: the row in scheduler_runs
    trigger: BaseTrigger
    actor: str
    args: tuple[Any, ...] = ()
    delay_ms: int = 0


def spread_offset(site_id: int, spread_seconds: int) -> int:
    """A stable offset in [0, spread_seconds) for a site, in milliseconds.

    >>> spread_offset(1, 1800) == spread_offset(1, 1800)
    True
    """
    if spread_seconds <= 0:
        return 0
    digest = hashlib.sha256(f"site-{site_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % spread_seconds * 1000


def build_jobs(
    db: Database,
    *,
    compose_minutes: int = 10,
    sweep_minutes: int = 5,
    recheck_minutes: int = 60,
    spread_seconds: int = 1800,
    timezone: str = "UTC",
) -> list[Job]:
    """The jobs of this deployment: one crawl per active site, plus periodic notice jobs."""
    with db.connection() as conn:
        sites = conn.execute(
            "select id, name, schedule from sites where is_active order by id"
        ).fetchall()
    jobs = []
    for site_id, name, schedule in sites:
        try:
            trigger = CronTrigger.from_crontab(schedule, timezone=timezone)
        except ValueError as exc:
            log.error("site %s: schedule %r is not a cron expression: %s", name, schedule, exc)
            continue
        offset = spread_offset(int(site_id), spread_seconds)
        jobs.append(Job(f"crawl:{site_id}", trigger, "crawl_site", (int(site_id),), offset))
    jobs.append(Job("compose", IntervalTrigger(minutes=compose_minutes), "compose"))
    jobs.append(Job("sweep", IntervalTrigger(minutes=sweep_minutes), "sweep"))
    jobs.append(Job("rechecks", IntervalTrigger(minutes=recheck_minutes), "recheck_due"))
    return jobs


def run_job(db: Database, job: Job, enqueue: Enqueue, now: dt.datetime | None = None) -> None:
    """Enqueue ``job``'s message and record when it ran."""
    enqueue(job.actor, job.args, job.delay_ms)
    with db.connection() as conn:
        conn.execute(
            """
            insert into scheduler_runs (job, last_run_at) values (%s, %s)
            on conflict (job) do update set last_run_at = excluded.last_run_at
            """,
            (job.key, now or dt.datetime.now(dt.UTC)),
        )


def catch_up(
    db: Database, jobs: list[Job], enqueue: Enqueue, now: dt.datetime | None = None
) -> list[str]:
    """Run once each job whose scheduled time passed since its last recorded run."""
    now = now or dt.datetime.now(dt.UTC)
    with db.connection() as conn:
        last = dict(conn.execute("select job, last_run_at from scheduler_runs").fetchall())
    ran = []
    for job in jobs:
        previous = last.get(job.key)
        if previous is None or not isinstance(job.trigger, CronTrigger):
            continue  # never ran here, or a periodic job that simply runs at its next interval
        due = job.trigger.get_next_fire_time(None, previous)
        if due is not None and previous < due <= now:
            log.info("catching up %s (due %s, last run %s)", job.key, due, previous)
            run_job(db, job, enqueue, now)
            ran.append(job.key)
    return ran


class SchedulerLock:
    """A session-level advisory lock on a dedicated connection: held while the process lives."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection[Any] | None = None

    def try_acquire(self) -> bool:
        conn = psycopg.connect(self._url, autocommit=True)
        row = conn.execute("select pg_try_advisory_lock(hashtext(%s))", (LOCK_KEY,)).fetchone()
        if row is not None and row[0]:
            self._conn = conn
            return True
        conn.close()
        return False

    def held(self) -> bool:
        if self._conn is None or self._conn.closed:
            return False
        try:
            self._conn.execute("select 1")
        except psycopg.Error:
            return False
        return True

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def broker_enqueue(actor_name: str, args: tuple[Any, ...], delay_ms: int) -> None:
    import dramatiq

    from takedown import actors  # noqa: F401  (declares the actors on the configured broker)

    actor = dramatiq.get_broker().get_actor(actor_name)
    actor.send_with_options(args=args, delay=delay_ms or None)


def serve(
    db: Database,
    *,
    enqueue: Enqueue = broker_enqueue,
    standby_poll_seconds: float = 15.0,
    reload_seconds: float = 300.0,
    stop: threading.Event | None = None,
    on_state: Callable[[str], None] | None = None,
) -> None:
    """Run until ``stop`` is set (or forever): wait for the lock, catch up, then schedule."""
    stop = stop or threading.Event()
    lock = SchedulerLock(db.url)
    say = on_state or (lambda message: log.info("%s", message))
    while not lock.try_acquire():
        say("another scheduler is active; standing by")
        if stop.wait(standby_poll_seconds):
            return
    say("scheduler active")
    scheduler = BackgroundScheduler(timezone="UTC")
    try:
        installed: dict[str, str] = {}

        def install(jobs: list[Job] | None = None) -> None:
            jobs = build_jobs(db) if jobs is None else jobs
            wanted = {job.key: job for job in jobs}
            for key in set(installed) - set(wanted):
                scheduler.remove_job(key)
                del installed[key]
            for key, job in wanted.items():
                fingerprint = f"{job.trigger}|{job.args}|{job.delay_ms}"
                if installed.get(key) == fingerprint:
                    continue
                scheduler.add_job(
                    run_job,
                    job.trigger,
                    args=(db, job, enqueue),
                    id=key,
                    replace_existing=True,
                    coalesce=True,
                    max_instances=1,
                    misfire_grace_time=3600,
                )
                installed[key] = fingerprint

        jobs = build_jobs(db)
        catch_up(db, jobs, enqueue)
        install(jobs)
        # Sites added or rescheduled while running are picked up at the next reload.
        scheduler.add_job(install, IntervalTrigger(seconds=reload_seconds), id="reload")
        scheduler.start()
        while not stop.wait(1.0):
            if not lock.held():
                say("lost the scheduler lock (database connection gone); stopping")
                break
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=False)
        lock.release()
