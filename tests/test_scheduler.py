"""The scheduler: jobs from site schedules, catch-up of missed runs once, one active scheduler."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from store.db import Database
from takedown.scheduler import SchedulerLock, build_jobs, catch_up, serve, spread_offset

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], int]] = []
        self.lock = threading.Lock()

    def __call__(self, actor: str, args: tuple[Any, ...], delay_ms: int) -> None:
        with self.lock:
            self.calls.append((actor, args, delay_ms))


def add_sites(db: Database) -> list[int]:
    with db.connection() as conn:
        rows = conn.execute(
            """
            insert into sites (name, start_urls, schedule, is_active) values
              ('nightly', '{http://a.test/}', '0 3 * * *', true),
              ('hourly', '{http://b.test/}', '15 * * * *', true),
              ('broken', '{http://c.test/}', 'every night please', true),
              ('paused', '{http://d.test/}', '0 3 * * *', false)
            returning id
            """
        ).fetchall()
    return [int(r[0]) for r in rows]


def test_jobs_follow_site_schedules_spread_over_time(db: Database) -> None:
    nightly, hourly, _, _ = add_sites(db)
    jobs = {job.key: job for job in build_jobs(db, spread_seconds=1800)}
    # The broken schedule is skipped (and logged), the paused site has no job.
    assert set(jobs) == {f"crawl:{nightly}", f"crawl:{hourly}", "compose", "sweep", "rechecks"}
    crawl = jobs[f"crawl:{nightly}"]
    assert (crawl.actor, crawl.args) == ("crawl_site", (nightly,))
    assert 0 <= crawl.delay_ms < 1800 * 1000
    assert crawl.delay_ms == spread_offset(nightly, 1800)
    assert len({spread_offset(n, 1800) for n in range(1, 50)}) > 40  # sites do not bunch up


def test_a_missed_run_is_caught_up_once(db: Database) -> None:
    nightly, hourly, _, _ = add_sites(db)
    jobs = build_jobs(db)
    recorder = Recorder()
    assert catch_up(db, jobs, recorder, NOW) == []  # never ran: nothing to catch up
    with db.connection() as conn:
        # The nightly crawl missed two runs (down for two days), the hourly one its 11:15 run.
        conn.execute(
            "insert into scheduler_runs values (%s, %s), (%s, %s)",
            (f"crawl:{nightly}", NOW - dt.timedelta(days=2),
             f"crawl:{hourly}", NOW - dt.timedelta(minutes=50)),
        )  # fmt: skip
    ran = catch_up(db, jobs, recorder, NOW)
    assert sorted(ran) == sorted([f"crawl:{nightly}", f"crawl:{hourly}"])
    assert [c[:2] for c in recorder.calls].count(("crawl_site", (nightly,))) == 1
    # Caught up: running again at the same moment does nothing more.
    assert catch_up(db, jobs, recorder, NOW) == []
    assert len(recorder.calls) == 2


def test_two_schedulers_never_both_enqueue(db: Database) -> None:
    nightly, _, _, _ = add_sites(db)
    with db.connection() as conn:
        conn.execute(
            "insert into scheduler_runs values (%s, now() - interval '3 days')",
            (f"crawl:{nightly}",),
        )
    recorder = Recorder()
    states: dict[str, list[str]] = {"a": [], "b": []}
    stops = {"a": threading.Event(), "b": threading.Event()}
    threads = {
        name: threading.Thread(
            target=serve,
            args=(db,),
            kwargs={
                "enqueue": recorder,
                "standby_poll_seconds": 0.2,
                "stop": stops[name],
                "on_state": states[name].append,
            },
            daemon=True,
        )
        for name in ("a", "b")
    }
    threads["a"].start()
    deadline = time.monotonic() + 20
    while "scheduler active" not in states["a"] and time.monotonic() < deadline:
        time.sleep(0.05)
    threads["b"].start()
    while "another scheduler is active; standing by" not in states["b"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    assert "scheduler active" not in states["b"]
    assert [c[:2] for c in recorder.calls] == [("crawl_site", (nightly,))]  # caught up once
    # The first stops: the standby takes over, and finds nothing left to catch up.
    stops["a"].set()
    threads["a"].join(timeout=10)
    while "scheduler active" not in states["b"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stops["b"].set()
    threads["b"].join(timeout=10)
    assert len(recorder.calls) == 1


def test_lock_is_released_when_its_connection_goes(db: Database) -> None:
    first, second = SchedulerLock(db.url), SchedulerLock(db.url)
    assert first.try_acquire() and first.held()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()


def test_mamoru_scheduler_starts_and_stops(mamoru_env: Path, db_url: str) -> None:
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("mamoru")), "scheduler"],
        env=dict(os.environ),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "scheduler active" in line
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=30)
    assert process.returncode == 0
