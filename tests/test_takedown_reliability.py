"""Notices survive crashes: real ``mamoru worker`` processes, real brokers, a real SMTP server.

Every test runs against each broker: PostgreSQL (the default: queues in the test's own
database), Redis (a database number claimed on this machine's 127.0.0.1:6379) and RabbitMQ
(127.0.0.1:5672; the guest account cannot create a private virtual host, so RabbitMQ tests hold
a machine-wide lock and purge Mamoru's queues; see tests/workers.py). A Redis or RabbitMQ
variant is skipped only when that service is not reachable.

Recovery after a crash comes from two places: the broker redelivers what a dead worker held
(RabbitMQ at once; Redis and dramatiq-postgres after their 60 s heartbeat timeout), and the
``sweep`` actor re-enqueues every notice approved but not sent. The scheduler runs the sweep
every few minutes in production; these tests play the scheduler and run it every two seconds,
with ``older_than_seconds=0``, so that each test takes seconds rather than minutes.

The SMTP server is ``tests.workers.ControlledSink``: slow at the end of DATA, first before it
accepts a message (a client killed then has sent nothing) and then before it replies (a client
killed then has had its message accepted without hearing so: the one window in which a
duplicate is unavoidable, and then it carries the same Message-ID).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from store.db import Database
from takedown.compose import compose_notices
from tests.takedown_data import build
from tests.workers import (
    BROKERS,
    REDIS_HOST,
    REDIS_PORT,
    AcceptedMessage,
    BrokerKind,
    ControlledSink,
    Enqueuer,
    PrivatePostgres,
    PrivateRedis,
    Worker,
    add_notice_targets,
    broker_for,
    broker_unreachable,
    claimed_redis_database,
    notice_states,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.slow

# Recovery must come well within this; a healthy run needs a few seconds.
RECOVERY_TIMEOUT = 120.0


@pytest.fixture(params=BROKERS)
def broker_kind(request: pytest.FixtureRequest) -> BrokerKind:
    kind: BrokerKind = request.param
    reason = broker_unreachable(kind)
    if reason:
        pytest.skip(reason)
    return kind


@pytest.fixture
def broker_url(broker_kind: BrokerKind) -> Iterator[str | None]:
    with broker_for(broker_kind) as url:
        yield url


# --- helpers ----------------------------------------------------------------------------------


def message_ids(database_url: str) -> dict[str, str]:
    """Each notice's Message-ID (as set when it was composed), by notice id as text."""
    with psycopg.connect(database_url) as conn:
        return {
            str(i): str(m)
            for i, m in conn.execute("select id, message_id from notices where message_id <> ''")
        }


def sent_events(database_url: str) -> dict[int, int]:
    """How many times each notice entered ``sent`` (an event row per transition)."""
    with psycopg.connect(database_url) as conn:
        return {
            int(i): int(n)
            for i, n in conn.execute(
                "select subject_id, count(*) from events where subject_type = 'notice' "
                "and to_state = 'sent' group by subject_id"
            )
        }


def possible_duplicates(database_url: str) -> set[int]:
    """Notices whose send recorded that an earlier attempt may have been delivered too."""
    with psycopg.connect(database_url) as conn:
        return {
            int(r[0])
            for r in conn.execute(
                "select subject_id from events where subject_type = 'notice' "
                "and event_type = 'possible_duplicate'"
            )
        }


def sweep_until_all_sent(
    database_url: str,
    queue: Enqueuer,
    worker: Worker,
    expected: int,
    *,
    timeout: float = RECOVERY_TIMEOUT,
    every: float = 2.0,
) -> dict[int, str]:
    """Play the scheduler (a sweep every ``every`` seconds) until ``expected`` notices are sent.

    Failures to reach the database or the broker while a service restarts are retried.
    """
    deadline = time.monotonic() + timeout
    next_sweep = 0.0
    states: dict[int, str] = {}
    while time.monotonic() < deadline:
        try:
            states = notice_states(database_url)
        except psycopg.OperationalError:
            states = {}
        if len(states) == expected and set(states.values()) == {"sent"}:
            return states
        if time.monotonic() >= next_sweep:
            # The broker may still be coming back.
            with contextlib.suppress(Exception):
                queue.send("sweep", kwargs={"older_than_seconds": 0})
            next_sweep = time.monotonic() + every
        time.sleep(0.2)
    raise AssertionError(
        f"not all {expected} notices sent after {timeout:g}s: {states}\n{worker.log_tail()}"
    )


def assert_delivered_once_or_duplicated_in_window(
    sink: ControlledSink,
    database_url: str,
    expected: int,
    windows: list[tuple[float, float]],
) -> list[list[AcceptedMessage]]:
    """Every notice reached the sink, always under its own Message-ID; a notice reached it
    again only after a crash caught its previous copy between the sink's acceptance and the
    worker's commit. Returns the duplicated groups.

    ``windows`` are the crashes, (start, end) in ``time.monotonic()``: a kill from the signal
    until the last process was gone, or an outage. A copy was caught when it was accepted
    before a crash ended, or when its client was gone before the 250 went out (the sink may
    take the message a few milliseconds after the process died, before it reads the closed
    connection); the next copy must come after that crash began.
    """
    ids = message_ids(database_url)
    groups = sink.by_notice()
    assert len(ids) == expected
    assert set(groups) == set(ids), f"notices never delivered: {set(ids) - set(groups)}"
    duplicated = []
    for notice, copies in groups.items():
        assert notice is not None
        assert {c.message_id for c in copies} == {ids[notice]}, copies
        for previous, copy in itertools.pairwise(copies):
            caught = any(
                (previous.accepted_at <= end or not sink.replied(previous))
                and copy.accepted_at > start
                for start, end in windows
            )
            assert caught, (
                f"notice {notice} delivered again at {copy.accepted_at:.3f} though its copy of "
                f"{previous.accepted_at:.3f} (replied: {sink.replied(previous)}) was not "
                f"caught by a crash {windows}"
            )
        if len(copies) > 1:
            duplicated.append(copies)
    return duplicated


def scenario(db: Database, tmp_path: Path, notices: int) -> None:
    s = build(db, tmp_path)
    add_notice_targets(db, s.page_ids, notices)


# --- kill -9 ----------------------------------------------------------------------------------


def test_kill_9_mid_send_loses_nothing_and_duplicates_only_what_was_accepted(
    broker_url: str | None, db: Database, db_url: str, tmp_path: Path
) -> None:
    """Two kill -9s of the worker's whole process group during sends, a restart after each.

    The first lands while a message waits to be accepted (its sender has sent nothing), the
    second while an accepted message waits for its 250 (the sender dies without knowing): that
    notice is necessarily delivered again, under the same Message-ID. Nothing is lost.
    """
    count = 8
    scenario(db, tmp_path, count)
    with (
        ControlledSink(accept_delay=0.4, reply_delay=0.1) as sink,
        Enqueuer(db_url, broker_url) as queue,
    ):
        env = worker_env(db_url, tmp_path / "data", smtp_url=sink.url, broker_url=broker_url)
        worker = Worker(env, log_path=tmp_path / "worker.log", threads=2)
        with worker:
            queue.send("compose")
            wait_until(lambda: sink.in_flight()[0] > 0, timeout=60, message=worker.log_tail)
            first = worker.kill()
            # A long wait for the reply: the second kill surely lands inside it.
            sink.reply_delay = 1.5
            worker.start()
            queue.send("sweep", kwargs={"older_than_seconds": 0})
            wait_until(lambda: sink.in_flight()[1] > 0, timeout=60, message=worker.log_tail)
            second = worker.kill()
            sink.reply_delay = 0.1
            worker.start()
            states = sweep_until_all_sent(db_url, queue, worker, count)
        assert set(states.values()) == {"sent"}
        duplicated = assert_delivered_once_or_duplicated_in_window(
            sink, db_url, count, [first, second]
        )
    # The second kill caught at least one accepted message; a kill can catch at most one
    # message per worker thread.
    assert 1 <= len(duplicated) <= 2 * 2, duplicated
    assert all(len(copies) == 2 for copies in duplicated)
    # Each notice entered `sent` once: the records show one delivery, whatever the relay saw.
    assert set(sent_events(db_url).values()) == {1}
    # And Mamoru knows which notices may have reached the relay twice.
    assert {int(str(copies[0].notice)) for copies in duplicated} <= possible_duplicates(db_url)


# --- SMTP server down, then up ----------------------------------------------------------------


def test_smtp_server_down_then_up_is_retried_with_backoff_and_delivered_once(
    broker_url: str | None, db: Database, db_url: str, tmp_path: Path
) -> None:
    """Sends to a relay that refuses connections fail as transient errors, are recorded and
    retried by Dramatiq with backoff; once the relay is back each notice arrives once.

    The backoff is shortened for these messages only (message options ``min_backoff`` and
    ``max_backoff``); the actor's own policy (30 s doubling to an hour) is what runs in
    production.
    """
    count = 2
    scenario(db, tmp_path, count)
    report = compose_notices(db)
    assert len(report.notices) == count
    sink = ControlledSink()
    sink.start()
    sink.stop()  # a port of our own, with nothing listening on it
    env = worker_env(db_url, tmp_path / "data", smtp_url=sink.url, broker_url=broker_url)
    with (
        Enqueuer(db_url, broker_url) as queue,
        Worker(env, log_path=tmp_path / "worker.log", threads=2) as worker,
    ):
        for notice_id in report.notices:
            queue.send("send_notice", notice_id, min_backoff=200, max_backoff=1500)
        wait_until(
            lambda: min(deferrals(db_url, report.notices).values(), default=0) >= 3,
            timeout=60,
            message=worker.log_tail,
        )
        assert set(notice_states(db_url).values()) == {"queued"}
        with psycopg.connect(db_url) as conn:
            errors = [r[0] for r in conn.execute("select last_error from notices")]
        assert all("connection refused" in (e or "") for e in errors), errors
        try:
            sink.start()
            wait_until(
                lambda: set(notice_states(db_url).values()) == {"sent"},
                timeout=60,
                message=worker.log_tail,
            )
            time.sleep(1.0)  # a stray second delivery would arrive now
        finally:
            sink.stop()
    assert sorted(len(c) for c in sink.by_notice().values()) == [1] * count
    assert set(sent_events(db_url).values()) == {1}
    for notice_id, times in deferral_times(db_url, report.notices).items():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap >= 0.2 for gap in gaps), (notice_id, gaps)
    # Dramatiq's backoff: min_backoff doubled per retry, jittered up to x2, and from
    # max_backoff on between half of it and all of it. (The gaps above also include the
    # brokers' polling of delayed messages, about a second, so the delays are read from
    # Dramatiq's log.)
    retries = RETRYING.findall(worker.log_tail(1_000_000))
    by_message: dict[str, list[int]] = {}
    for message_id, delay in retries:
        by_message.setdefault(message_id, []).append(int(delay))
    assert len(by_message) == count, retries
    for delays in by_message.values():
        assert len(delays) >= 3
        for attempt, delay in enumerate(delays):
            assert min(200 * 2**attempt, 750) <= delay <= 1500, delays


RETRYING = re.compile(r"Retrying message '([0-9a-f-]+)' in (\d+) milliseconds")


def test_a_batch_meeting_a_relay_that_is_down_defers_each_notice_to_its_own_retry(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    """``send_notices`` does not try every notice of a batch against a relay that is down:
    the first transient error hands the rest to ``send_notice`` messages of their own, delayed,
    which back off like any single send; a sweep once the relay is back sends each once."""
    count = 3
    scenario(db, tmp_path, count)
    report = compose_notices(db)
    sink = ControlledSink()
    sink.start()
    sink.stop()  # a port of our own, with nothing listening on it
    env = worker_env(db_url, tmp_path / "data", smtp_url=sink.url)
    with (
        Enqueuer(db_url, None) as queue,
        Worker(env, log_path=tmp_path / "worker.log", threads=1) as worker,
    ):
        queue.send("send_notices", report.notices)

        def deferred() -> list[tuple[str, list[Any], bool]]:
            with psycopg.connect(db_url) as conn:
                return [
                    (str(actor), list(args), bool(later))
                    for actor, args, later in conn.execute(
                        # Dramatiq keeps a delayed message on the queue's delay queue, with the
                        # moment it is due (eta, in ms).
                        "select message->>'actor_name', message->'args',"
                        " (message->'options'->>'eta')::bigint > extract(epoch from now()) * 1000"
                        " from dramatiq.queue where queue_name like 'notices%'"
                        " and message->>'actor_name' = 'send_notice' order by position"
                    )
                ]

        wait_until(lambda: len(deferred()) == count, timeout=60, message=worker.log_tail)
        assert deferred() == [("send_notice", [n], True) for n in report.notices]
        # One attempt reached the relay's port; the others were not tried against it.
        assert list(deferrals(db_url, report.notices).values()) == [1, 0, 0]
        assert "3 notice(s) retried on their own" in worker.log_tail()
        try:
            sink.start()
            queue.send("sweep", kwargs={"older_than_seconds": 0})
            wait_until(
                lambda: set(notice_states(db_url).values()) == {"sent"},
                timeout=60,
                message=worker.log_tail,
            )
        finally:
            sink.stop()
    assert sorted(len(c) for c in sink.by_notice().values()) == [1] * count
    assert set(sent_events(db_url).values()) == {1}


def deferrals(database_url: str, notice_ids: list[int]) -> dict[int, int]:
    return {n: len(t) for n, t in deferral_times(database_url, notice_ids).items()}


def deferral_times(database_url: str, notice_ids: list[int]) -> dict[int, list[float]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select subject_id, extract(epoch from occurred_at) from events "
            "where subject_type = 'notice' and event_type = 'send_deferred' "
            "and subject_id = any(%s) order by id",
            (notice_ids,),
        ).fetchall()
    found: dict[int, list[float]] = {n: [] for n in notice_ids}
    for notice_id, at in rows:
        found[int(notice_id)].append(float(at))
    return found


# --- the same message twice -------------------------------------------------------------------


def test_the_same_message_delivered_twice_sends_one_notice(
    broker_url: str | None, db: Database, db_url: str, tmp_path: Path
) -> None:
    """A duplicated compose job drafts each notice once; a send message delivered twice (the
    very same message, and a second message for the same notice, all at once to four threads)
    sends each notice once; a send after it was sent does nothing."""
    count = 3
    scenario(db, tmp_path, count)
    with (
        ControlledSink(accept_delay=0.5) as sink,
        Enqueuer(db_url, broker_url) as queue,
    ):
        env = worker_env(db_url, tmp_path / "data", smtp_url=sink.url, broker_url=broker_url)
        with Worker(env, log_path=tmp_path / "worker.log", threads=4) as worker:
            queue.send("compose")
            queue.send("compose")
            wait_until(lambda: len(sink.messages) >= count, timeout=60, message=worker.log_tail)
            ids = sorted(notice_states(db_url))
            for notice_id in ids:
                message = queue.send("send_notice", notice_id)
                queue.enqueue(message)
                queue.send("send_notice", notice_id)
            wait_until(
                lambda: outcomes(worker) >= count * 3,
                timeout=60,
                message=worker.log_tail,
            )
            time.sleep(1.0)
    assert len(ids) == count
    assert sorted(len(c) for c in sink.by_notice().values()) == [1] * count
    assert set(notice_states(db_url).values()) == {"sent"}
    assert set(sent_events(db_url).values()) == {1}
    with psycopg.connect(db_url) as conn:
        listed = conn.execute("select count(*), count(distinct match_id) from notice_items")
        assert listed.fetchone() == (count, count)


def outcomes(worker: Worker) -> int:
    """How many send_notice messages the worker finished (its log line per outcome)."""
    log = worker.log_tail(1_000_000)
    return sum(log.count(f": {r} ") for r in ("sent", "skipped", "duplicate", "held"))


# --- services restarted -----------------------------------------------------------------------


def run_through_an_outage(
    tmp_path: Path,
    database_url: str,
    broker_url: str | None,
    outage: Any,
    *,
    count: int = 8,
) -> None:
    """Compose and send ``count`` notices; after two are accepted call ``outage()`` (which
    returns the monotonic span it covered); then everything must be sent, a duplicate only
    for a copy accepted during the outage."""
    with (
        ControlledSink(accept_delay=0.2, reply_delay=0.2) as sink,
        Enqueuer(database_url, broker_url) as queue,
    ):
        env = worker_env(database_url, tmp_path / "data", smtp_url=sink.url, broker_url=broker_url)
        with Worker(env, log_path=tmp_path / "worker.log", threads=2) as worker:
            queue.send("compose")
            wait_until(lambda: len(sink.messages) >= 2, timeout=60, message=worker.log_tail)
            window = outage()
            sweep_until_all_sent(database_url, queue, worker, count)
            assert worker.running, worker.log_tail()
        assert_delivered_once_or_duplicated_in_window(sink, database_url, count, [window])
    assert set(sent_events(database_url).values()) == {1}


def test_postgresql_restarted_mid_run(broker_kind: BrokerKind, tmp_path: Path) -> None:
    """The database (with the default broker, the queues too) crashes mid-run and comes back
    three seconds later: the worker reconnects and every notice is sent.

    Runs on a PostgreSQL of the test's own (an embedded server in a temporary folder, stopped
    in ``immediate`` mode, i.e. every connection dropped as in a crash), since the server the
    rest of the suite uses may be the machine's shared service.
    """
    with PrivatePostgres(tmp_path / "pg") as pg, broker_for(broker_kind) as broker_url:
        db = Database(pg.url, min_size=0, max_size=2)
        try:
            scenario(db, tmp_path, 8)
        finally:
            db.close()

        def outage() -> tuple[float, float]:
            start = time.monotonic()
            pg.crash()
            time.sleep(3)
            pg.restart()
            return start, time.monotonic()

        run_through_an_outage(tmp_path, pg.url, broker_url, outage)


def test_database_connections_dropped_mid_run(
    broker_url: str | None, db: Database, db_url: str, tmp_path: Path
) -> None:
    """Every connection to the test's database is terminated (``pg_terminate_backend``) twice
    mid-run, as a failover or a restarted proxy would: the worker reconnects and every notice
    is sent. Works on the shared PostgreSQL service, which tests cannot restart."""
    scenario(db, tmp_path, 8)
    dbname = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]

    def outage() -> tuple[float, float]:
        start = time.monotonic()
        for _ in range(2):
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity "
                    "where datname = %s and pid <> pg_backend_pid()",
                    (dbname,),
                )
            time.sleep(0.5)
        return start, time.monotonic()

    run_through_an_outage(tmp_path, db_url, broker_url, outage)


def test_redis_restarted_mid_run(db: Database, db_url: str, tmp_path: Path) -> None:
    """The Redis broker is killed (SIGKILL) mid-run and started again two seconds later with
    its append-only file: the worker reconnects and every notice is sent.

    Runs on a ``redis-server`` of the test's own, since restarting the machine's shared Redis
    would disturb everyone else. Without the ``redis-server`` program, the fallback drops every
    connection to a Redis database claimed for this test (``CLIENT KILL ID``) on the shared
    server instead.
    """
    reason = broker_unreachable("redis")
    if not PrivateRedis.available() and reason:
        pytest.skip(reason)
    scenario(db, tmp_path, 8)
    if PrivateRedis.available():
        with PrivateRedis(tmp_path / "redis") as redis_server:

            def outage() -> tuple[float, float]:
                start = time.monotonic()
                redis_server.kill()
                time.sleep(2)
                redis_server.start()
                return start, time.monotonic()

            run_through_an_outage(tmp_path, db_url, redis_server.url, outage)
        return
    with claimed_redis_database() as url:

        def drop_connections() -> tuple[float, float]:
            start = time.monotonic()
            kill_redis_clients(int(url.rsplit("/", 1)[1]))
            return start, time.monotonic()

        run_through_an_outage(tmp_path, db_url, url, drop_connections)


def kill_redis_clients(database: int) -> None:
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=database)
    try:
        own = client.client_id()
        for info in client.client_list():
            if int(info["db"]) == database and int(info["id"]) != own:
                client.client_kill_filter(_id=str(info["id"]))
    finally:
        client.close()
