"""Notices speed: approved matches to an SMTP server through the broker, against bare smtplib.

Usage::

    .venv/bin/python bench/notices_speed.py [--notices 1000] [--threads 4] [--broker postgres]

For each worker configuration (1 and 2 ``mamoru worker`` processes of ``--threads`` threads),
``--notices`` approved matches at as many recipients (one notice per recipient and publisher)
are added, the workers are started and ready, then the clock runs from enqueueing one
``compose`` job until the SMTP server on 127.0.0.1 has accepted every notice and every notice
is ``sent`` in the database: composition (gates, rendering, validation, a commit per chunk of
notices) and the sends (a broker message per batch of notices, a row lock and a commit per
notice, SMTP sessions kept per worker thread) both count, overlapping as they do in production.
``composed`` is when every notice was approved for sending.

The baseline sends the very messages the server received (bytes as captured) with bare
``smtplib`` from a child process, one SMTP session per message (the plain way; Mamoru's sender
keeps sessions), with 1 thread and with as many threads as each worker configuration has in
total. The per-notice overhead is Mamoru's time per notice minus the baseline's at the same
concurrency.

CPU milliseconds per notice are shown by where they were spent: ``client`` (the worker
processes, composing included; for the baseline, the smtplib child), ``postgres`` (the embedded
server's processes; n/a on an external server) and ``sink`` (this process: the SMTP server and
the polling). On a machine with few CPUs their sum, not the waiting, sets the rate.

The database is an embedded PostgreSQL in a temporary folder, or a scratch database on the
server of ``MAMORU_DATABASE_URL`` when that is set; ``--broker redis`` or ``rabbitmq`` uses this
machine's services. The matches are spread over works of one page with at most 40 each so that
the flood guard (which holds a sudden burst of 200 or more for a work, 50 for a page) lets them
through. Goal (issue 5):
>= 100 notices/s.
"""

from __future__ import annotations

import argparse
import os
import resource
import smtplib
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from store.config import get_settings  # noqa: E402
from store.db import Database  # noqa: E402
from tests.takedown_data import build  # noqa: E402
from tests.workers import (  # noqa: E402
    ControlledSink,
    Enqueuer,
    Worker,
    add_notice_targets,
    broker_for,
    broker_unreachable,
    scratch_database,
    worker_env,
)

GOAL = 100.0
MATCHES_PER_WORK = 40


@dataclass(frozen=True)
class Result:
    name: str
    concurrency: int
    notices: int
    seconds: float
    composed: float | None = None  # seconds from the start until all were composed
    # CPU milliseconds per notice by where they were spent (None: not measured)
    cpu: dict[str, float | None] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.notices / self.seconds if self.seconds > 0 else 0.0

    @property
    def ms_per_notice(self) -> float:
        return 1000.0 * self.seconds / self.notices if self.notices else 0.0


def say(text: str) -> None:
    print(f"[notices_speed] {text}", file=sys.stderr, flush=True)


# --- the baseline, in a child process ---------------------------------------------------------


def bare_child(folder: Path, host: str, port: int, threads: int) -> None:
    """Send every ``*.eml`` of ``folder`` with bare smtplib; print the seconds it took."""
    messages = []
    for path in sorted(folder.glob("*.eml")):
        sender, recipient, data = path.read_bytes().split(b"\n", 2)
        messages.append((sender.decode(), recipient.decode(), data))

    def send(item: tuple[str, str, bytes]) -> None:
        sender, recipient, data = item
        with smtplib.SMTP(host, port, timeout=30) as client:
            client.sendmail(sender, [recipient], data)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(send, messages))
    print(f"{time.perf_counter() - started:.6f}")


def run_bare(folder: Path, port: int, threads: int, notices: int) -> Result:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = time.process_time()
    output = subprocess.run(
        [
            sys.executable,
            __file__,
            "--bare-child",
            str(folder),
            "--port",
            str(port),
            "--threads",
            str(threads),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    sink = time.process_time() - own
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    cpu: dict[str, float | None] = {
        "client": 1000 * client / notices,
        "postgres": 0.0,
        "sink": 1000 * sink / notices,
    }
    name = f"bare smtplib, {threads} thread(s)"
    return Result(name, threads, notices, float(output.stdout), cpu=cpu)


# --- CPU accounting ---------------------------------------------------------------------------


def cpu_of(processes: list[psutil.Process]) -> float:
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def group_processes(pgid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                found.append(proc)
        except (psutil.Error, ProcessLookupError):
            continue
    return found


def server_processes(pgdata: Path | None) -> list[psutil.Process]:
    """The embedded PostgreSQL's postmaster and its children (empty for an external server:
    its CPU is not attributable to this benchmark)."""
    if pgdata is None or not (pgdata / "postmaster.pid").exists():
        return []
    postmaster = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
    return [postmaster, *postmaster.children()]


# --- Mamoru -----------------------------------------------------------------------------------


def add_works(db: Database, publisher_id: int, count: int, label: str) -> list[int]:
    """``count`` works of one page each (rows only: nothing here is matched by pixels)."""
    page_ids = []
    with db.connection() as conn:
        for n in range(count):
            work = conn.execute(
                """
                insert into works (publisher_id, title, isbn, official_url)
                values (%s, %s, '978-4-00-000001-7', %s) returning id
                """,
                (
                    publisher_id,
                    f"Speed {label} Vol. {n + 1}",
                    f"https://publisher.test/{label}/{n}",
                ),
            ).fetchone()
            assert work is not None
            page = conn.execute(
                """
                insert into pages (work_id, page_number, sha256, source_name, media_type,
                                   width, height)
                values (%s, 1, %s, 'p001.png', 'image/png', 800, 1200) returning id
                """,
                (work[0], os.urandom(32)),
            ).fetchone()
            assert page is not None
            page_ids.append(int(page[0]))
    return page_ids


def run_mamoru(
    *,
    label: str,
    database_url: str,
    broker_url: str | None,
    publisher_id: int,
    notices: int,
    processes: int,
    threads: int,
    sink: ControlledSink,
    tmp: Path,
    pgdata: Path | None,
) -> Result:
    db = Database(database_url, min_size=0, max_size=2)
    try:
        works = -(-notices // MATCHES_PER_WORK)
        page_ids = add_works(db, publisher_id, works, label)
        match_ids = add_notice_targets(db, page_ids, notices, prefix=label)
        env = worker_env(database_url, tmp / "data", smtp_url=sink.url, broker_url=broker_url)
        worker = Worker(env, log_path=tmp / f"{label}.log", processes=processes, threads=threads)
        seen = len(sink.messages)
        with Enqueuer(database_url, broker_url) as queue, worker:
            say(f"{label}: {processes} process(es) x {threads} threads ready; composing")
            workers = group_processes(worker.pid)
            server = server_processes(pgdata)
            cpu_before = (cpu_of(workers), cpu_of(server), time.process_time())
            started = time.perf_counter()
            queue.send("compose")
            composed: float | None = None
            deadline = time.monotonic() + 900
            with db.connection() as conn:
                conn.autocommit = True
                while True:
                    row = conn.execute(
                        """
                        select count(*) filter (where n.state in ('approved', 'queued', 'sent')),
                               count(*) filter (where n.state = 'sent')
                        from notices n
                        where exists (select 1 from notice_items i
                                      where i.notice_id = n.id and i.match_id = any(%s))
                        """,
                        (match_ids,),
                    ).fetchone()
                    assert row is not None
                    ready, sent = int(row[0]), int(row[1])
                    now = time.perf_counter()
                    if composed is None and ready == notices:
                        composed = now - started
                    if sent == notices and len(sink.messages) - seen >= notices:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"{label}: {sent} of {notices} sent after 900 s\n{worker.log_tail()}"
                        )
                    time.sleep(0.05)
            elapsed = time.perf_counter() - started
            # Server backends that ended during the run took their CPU time with them.
            server = [p for p in server_processes(pgdata) if p in set(server)]
            cpu_after = (cpu_of(workers), cpu_of(server), time.process_time())
    finally:
        db.close()
    spent = [1000 * (b - a) / notices for a, b in zip(cpu_before, cpu_after, strict=True)]
    cpu: dict[str, float | None] = {
        "client": spent[0],
        "postgres": spent[1] if pgdata is not None else None,
        "sink": spent[2],
    }
    name = f"mamoru, {processes} process(es) x {threads} threads"
    return Result(name, processes * threads, notices, elapsed, composed, cpu)


def table(results: list[Result]) -> str:
    lines = [
        f"{'path':<36} {'conc.':>5} {'notices':>7} {'seconds':>7} {'composed':>8} "
        f"{'notices/s':>9} {'ms/notice':>9}  {'CPU ms/notice: client':>21} {'postgres':>8} "
        f"{'sink':>5}"
    ]
    for r in results:
        composed = f"{r.composed:.2f}" if r.composed is not None else "-"
        cpu = [r.cpu.get(k) for k in ("client", "postgres", "sink")]
        shown = [f"{v:.2f}" if v is not None else "n/a" for v in cpu]
        lines.append(
            f"{r.name:<36} {r.concurrency:>5} {r.notices:>7} {r.seconds:>7.2f} {composed:>8} "
            f"{r.rate:>9.1f} {r.ms_per_notice:>9.2f}  {shown[0]:>21} {shown[1]:>8} {shown[2]:>5}"
        )
    return "\n".join(lines)


def write_messages(sink: ControlledSink, folder: Path, first: int) -> int:
    """The messages the sink accepted from ``first`` on, as files for the baseline child."""
    folder.mkdir(parents=True, exist_ok=True)
    messages = sink.messages[first:]
    for m in messages:
        envelope = f"notices@mamoru.invalid\n{m.rcpt_tos[0]}\n".encode("ascii")
        (folder / f"{m.number:06d}.eml").write_bytes(envelope + m.data)
    return len(messages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notices", type=int, default=1000, help="per configuration")
    parser.add_argument("--threads", type=int, default=4, help="per worker process")
    parser.add_argument("--broker", choices=("postgres", "redis", "rabbitmq"), default="postgres")
    parser.add_argument("--bare-child", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_child:
        bare_child(Path(args.bare_child), "127.0.0.1", args.port, args.threads)
        return 0

    reason = broker_unreachable(args.broker)
    if reason:
        parser.error(reason)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mamoru-notices-bench-") as temp:
        tmp = Path(temp)
        os.environ["MAMORU_DATA_DIR"] = str(tmp / "data")
        server_url = os.environ.pop("MAMORU_DATABASE_URL", None)
        get_settings.cache_clear()
        say(
            "database: "
            + (
                "scratch database on MAMORU_DATABASE_URL"
                if server_url
                else "embedded PostgreSQL in a temporary folder"
            )
        )
        with (
            scratch_database(server_url, tmp / "pg") as database_url,
            broker_for(args.broker) as broker_url,
            ControlledSink() as sink,
        ):
            db = Database(database_url, min_size=0, max_size=2)
            try:
                publisher_id = build(db, tmp).publisher_id
            finally:
                db.close()
            results: list[Result] = []
            baselines: dict[int, Result] = {}
            for processes in (1, 2):
                first = len(sink.messages)
                result = run_mamoru(
                    label=f"p{processes}",
                    database_url=database_url,
                    broker_url=broker_url,
                    publisher_id=publisher_id,
                    notices=args.notices,
                    processes=processes,
                    threads=args.threads,
                    sink=sink,
                    tmp=tmp,
                    pgdata=None if server_url else (tmp / "pg" / "pgdata"),
                )
                say(f"{result.name}: {result.rate:.1f} notices/s")
                folder = tmp / f"messages-{processes}"
                count = write_messages(sink, folder, first)
                for threads in sorted({1, processes * args.threads}):
                    if threads not in baselines:
                        baselines[threads] = run_bare(folder, sink.port, threads, count)
                        say(f"{baselines[threads].name}: {baselines[threads].rate:.1f}/s")
                results.append(result)

    bare = sorted(baselines.values(), key=lambda r: r.concurrency)
    print(
        f"notices_speed: {args.notices} notices per configuration, broker {args.broker}, "
        f"SMTP server on 127.0.0.1 (aiosmtpd, in the benchmark's process)"
    )
    print(table(bare + results))
    print()
    for r in results:
        base = baselines[r.concurrency]
        overhead = r.ms_per_notice - base.ms_per_notice
        extra_cpu = (r.cpu["client"] or 0.0) - (base.cpu["client"] or 0.0)
        print(
            f"{r.name}: {r.rate:.1f} notices/s = {r.rate / base.rate:.2f}x bare smtplib at "
            f"{r.concurrency} threads; overhead {overhead:.2f} ms/notice of wall time "
            f"(composing {1000 * (r.composed or 0) / r.notices:.2f} of it), "
            f"{extra_cpu:.2f} ms/notice of client CPU"
        )
    best = max(r.rate for r in results)
    verdict = "PASS" if best >= GOAL else "FAIL"
    print(f"best: {best:.1f} notices/s (goal >= {GOAL:.0f}/s): {verdict}")
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; "
        f"total run time: {time.monotonic() - began:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
