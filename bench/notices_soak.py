"""Notices soak: kill -9 a worker at a random moment while it sends, many times; count losses.

Usage::

    .venv/bin/python bench/notices_soak.py [--trials 100] [--notices 6] [--broker postgres]

Each trial adds approved matches at ``--notices`` new recipients, asks a real ``mamoru worker``
(1 process, ``--threads`` threads) to compose and send them through the broker to an SMTP
server on 127.0.0.1 that is slow at the end of DATA (a random delay before it accepts each
message and another before it replies), waits until sending has begun, kills the worker's whole
process group with SIGKILL at a random moment of the sending, starts a new worker and plays the
scheduler (a ``sweep`` every two seconds) until every notice of the trial is sent.

Per trial and in total it prints: notices, sent, lost (never sent: must be 0), duplicates
(notices the SMTP server accepted more than once) and whether every duplicate carried the
notice's own Message-ID and was explained by the kill: its earlier copy was caught between the
server's acceptance and the worker's commit (accepted before the killed worker was gone, or
accepted without its client hearing the 250), and whether Mamoru itself recorded each one as a
possible duplicate (an attempt without outcome before the copy that was committed). The kill's
moment is shown as the sink saw it: ``accept`` (a message waiting to be accepted), ``reply``
(an accepted message waiting for its reply: a duplicate is then unavoidable), ``both``, or
``idle``.

The database is an embedded PostgreSQL in a temporary folder, or a scratch database on the
server of ``MAMORU_DATABASE_URL`` when that is set. ``--broker redis`` or ``rabbitmq`` uses this
machine's services (127.0.0.1). Exit status 1 when anything was lost or a duplicate was not
explained. About five to eight seconds per trial.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from store.config import get_settings  # noqa: E402
from store.db import Database  # noqa: E402
from tests.takedown_data import build  # noqa: E402
from tests.workers import (  # noqa: E402
    BROKERS,
    AcceptedMessage,
    BrokerKind,
    ControlledSink,
    Enqueuer,
    Worker,
    add_notice_targets,
    broker_for,
    broker_unreachable,
    scratch_database,
    worker_env,
)


@dataclass
class Trial:
    number: int
    notices: int
    sent: int
    duplicates: int
    same_message_id: int  # duplicates whose every copy carried the notice's Message-ID
    explained: int  # duplicates whose earlier copy was accepted before the kill
    flagged: int  # duplicates Mamoru recorded as possible duplicates (a possible_duplicate event)
    kill_phase: str
    kill_after: float  # seconds after sending began
    recovery: float  # seconds from the kill until every notice was sent

    @property
    def lost(self) -> int:
        return self.notices - self.sent

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.same_message_id == self.duplicates
            and self.explained == self.duplicates
            and self.flagged == self.duplicates
        )


def trial_notices(db: Database, match_ids: list[int]) -> dict[int, tuple[str, str]]:
    """The trial's notices: id -> (state, Message-ID)."""
    with db.connection() as conn:
        rows = conn.execute(
            """
            select distinct n.id, n.state, coalesce(n.message_id, '')
            from notices n join notice_items i on i.notice_id = n.id
            where i.match_id = any(%s)
            """,
            (match_ids,),
        ).fetchall()
    return {int(i): (str(s), str(m)) for i, s, m in rows}


def possible_duplicates(db: Database, notice_ids: list[int]) -> set[int]:
    """Those of ``notice_ids`` whose send recorded a possible duplicate."""
    with db.connection() as conn:
        rows = conn.execute(
            "select subject_id from events where subject_type = 'notice' "
            "and event_type = 'possible_duplicate' and subject_id = any(%s)",
            (notice_ids,),
        ).fetchall()
    return {int(r[0]) for r in rows}


def run_trial(
    number: int,
    *,
    db: Database,
    page_ids: list[int],
    notices: int,
    sink: ControlledSink,
    queue: Enqueuer,
    worker: Worker,
    rng: random.Random,
    timeout: float,
) -> Trial:
    match_ids = add_notice_targets(db, page_ids, notices, prefix=f"soak-{number}")
    sink.accept_delay = rng.uniform(0.02, 0.3)
    sink.reply_delay = rng.uniform(0.02, 0.3)
    seen = len(sink.messages)
    if not worker.running:
        worker.start()
    queue.send("compose")

    deadline = time.monotonic() + 60
    while sink.in_flight() == (0, 0) and len(sink.messages) == seen:
        if time.monotonic() > deadline:
            raise RuntimeError(f"trial {number}: nothing was sent in 60 s\n{worker.log_tail()}")
        time.sleep(0.005)
    began = time.monotonic()
    # Sending all of them takes about this long; kill somewhere inside it.
    span = notices * (sink.accept_delay + sink.reply_delay) / worker.threads
    time.sleep(rng.uniform(0, span))
    awaiting_accept, awaiting_reply = sink.in_flight()
    kill = worker.kill()
    phase = {
        (False, False): "idle",
        (True, False): "accept",
        (False, True): "reply",
        (True, True): "both",
    }[(awaiting_accept > 0, awaiting_reply > 0)]
    worker.start()

    deadline = time.monotonic() + timeout
    next_sweep = 0.0
    while True:
        found = trial_notices(db, match_ids)
        if len(found) == notices and all(s == "sent" for s, _ in found.values()):
            break
        if time.monotonic() > deadline:
            break
        if time.monotonic() >= next_sweep:
            queue.send("sweep", kwargs={"older_than_seconds": 0})
            next_sweep = time.monotonic() + 2.0
        time.sleep(0.1)
    recovery = time.monotonic() - kill.signalled

    groups = sink.by_notice()
    duplicates = same = explained = flagged = 0
    flagged_ids = possible_duplicates(db, list(found))
    for notice_id, (_, message_id) in found.items():
        copies: list[AcceptedMessage] = groups.get(str(notice_id), [])
        if len(copies) <= 1:
            continue
        duplicates += 1
        if {c.message_id for c in copies} == {message_id}:
            same += 1
        if notice_id in flagged_ids:
            flagged += 1
        # The earlier copy was caught by the kill: accepted before the worker was gone, or
        # its client gone before the 250 went out (the sink may take a message a few ms after
        # the process died, before it reads the closed connection); the later one came after.
        if all(
            (a.accepted_at <= kill.gone or not sink.replied(a)) and b.accepted_at > kill.signalled
            for a, b in itertools.pairwise(copies)
        ):
            explained += 1
        else:
            print(
                f"  trial {number}, notice {notice_id}: copies accepted at "
                + ", ".join(
                    f"{c.accepted_at - kill.signalled:+.4f} (replied: {sink.replied(c)})"
                    for c in copies
                )
                + f" s from the kill; the worker was gone at {kill.gone - kill.signalled:+.4f} s",
                file=sys.stderr,
            )
    return Trial(
        number=number,
        notices=notices,
        sent=sum(1 for s, _ in found.values() if s == "sent"),
        duplicates=duplicates,
        same_message_id=same,
        explained=explained,
        flagged=flagged,
        kill_phase=phase,
        kill_after=kill.signalled - began,
        recovery=recovery,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--notices", type=int, default=6, help="notices per trial")
    parser.add_argument("--threads", type=int, default=2, help="worker threads")
    parser.add_argument("--broker", choices=BROKERS, default="postgres")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=180.0, help="per trial, seconds")
    args = parser.parse_args(argv)
    kind: BrokerKind = args.broker
    reason = broker_unreachable(kind)
    if reason:
        parser.error(reason)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)

    with tempfile.TemporaryDirectory(prefix="mamoru-soak-") as temp:
        tmp = Path(temp)
        os.environ["MAMORU_DATA_DIR"] = str(tmp / "data")
        server_url = os.environ.pop("MAMORU_DATABASE_URL", None)
        get_settings.cache_clear()
        with (
            scratch_database(server_url, tmp / "pg") as database_url,
            broker_for(kind) as broker_url,
            ControlledSink() as sink,
            Enqueuer(database_url, broker_url) as queue,
        ):
            db = Database(database_url, min_size=0, max_size=2)
            scenario = build(db, tmp)
            env = worker_env(database_url, tmp / "data", smtp_url=sink.url, broker_url=broker_url)
            worker = Worker(env, log_path=tmp / "worker.log", threads=args.threads)
            print(
                f"notices soak: {args.trials} trials x {args.notices} notices, broker {kind}, "
                f"1 worker process x {args.threads} threads, seed {seed}"
            )
            header = (
                f"{'trial':>5} {'notices':>7} {'sent':>5} {'lost':>4} {'dups':>4} "
                f"{'same-id':>7} {'in-window':>9} {'flagged':>7} {'kill at':>8} {'phase':>6} "
                f"{'recovery':>8}"
            )
            print(header)
            trials: list[Trial] = []
            started = time.monotonic()
            try:
                for number in range(1, args.trials + 1):
                    t = run_trial(
                        number,
                        db=db,
                        page_ids=scenario.page_ids,
                        notices=args.notices,
                        sink=sink,
                        queue=queue,
                        worker=worker,
                        rng=rng,
                        timeout=args.timeout,
                    )
                    trials.append(t)
                    print(
                        f"{t.number:>5} {t.notices:>7} {t.sent:>5} {t.lost:>4} "
                        f"{t.duplicates:>4} {t.same_message_id:>7} {t.explained:>9} "
                        f"{t.flagged:>7} "
                        f"{t.kill_after:>7.2f}s {t.kill_phase:>6} {t.recovery:>7.1f}s"
                        + ("" if t.ok else "   <-- FAILED"),
                        flush=True,
                    )
                    if t.lost:
                        print(worker.log_tail(), file=sys.stderr)
            finally:
                worker.stop()
                db.close()
        elapsed = time.monotonic() - started

    total = Trial(
        number=len(trials),
        notices=sum(t.notices for t in trials),
        sent=sum(t.sent for t in trials),
        duplicates=sum(t.duplicates for t in trials),
        same_message_id=sum(t.same_message_id for t in trials),
        explained=sum(t.explained for t in trials),
        flagged=sum(t.flagged for t in trials),
        kill_phase="",
        kill_after=0.0,
        recovery=max((t.recovery for t in trials), default=0.0),
    )
    phases = {p: sum(1 for t in trials if t.kill_phase == p) for p in ("accept", "reply", "both")}
    phases["idle"] = sum(1 for t in trials if t.kill_phase == "idle")
    print()
    print(f"trials: {len(trials)} in {elapsed:.0f} s; kills landed: {phases}")
    print(f"notices: {total.notices}  sent: {total.sent}  lost: {total.lost}")
    print(
        f"duplicates: {total.duplicates} (same Message-ID: {total.same_message_id}, "
        f"caught by the kill between acceptance and commit: {total.explained}, "
        f"recorded by Mamoru as possible duplicates: {total.flagged})"
    )
    print(f"slowest recovery (kill to all sent): {total.recovery:.1f} s")
    failed = [t.number for t in trials if not t.ok]
    print("result:", "OK" if not failed else f"FAILED in trials {failed}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
