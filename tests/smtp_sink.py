"""A real SMTP server on 127.0.0.1 for tests: captures what it is sent and misbehaves on request.

    with SmtpSink(tls="starttls", auth=("notices", "s3cret")) as sink:
        sender = SmtpSender(sink.url(user="notices", password="s3cret"))
        sender.send(message)
        [captured] = sink.messages
        captured.parse()["Subject"]

Modes (constructor arguments; the reply knobs may also be changed between sends):

- ``tls``: ``"none"`` (plain; clients need ``?starttls=off``), ``"starttls"`` (offers STARTTLS
  and, with ``require_starttls``, refuses mail before it), ``"implicit"`` (TLS from the first
  byte, for ``smtps://``). Certificates come from a trustme CA (``sink.ca``; PEM at
  ``sink.cafile``) issued for 127.0.0.1 and localhost.
- ``auth=(user, password)``: offers AUTH (``auth_mechanisms``, default PLAIN and LOGIN), accepts
  only that pair, and answers 530 to MAIL FROM before a successful AUTH.
- ``rcpt_reply`` / ``data_reply``: a full reply line such as ``"451 4.3.0 Try again later"`` or
  ``"550 5.1.1 No such user"`` returned instead of 250 to every RCPT TO / at the end of DATA
  (a refused DATA is not captured).
- ``drop_after_data``: capture the message, then close the connection without replying, as a
  relay that crashes after queueing would.
- ``data_size_limit``: advertised SIZE; bigger messages get 552.
- ``smtputf8``: whether SMTPUTF8 (non-ASCII addresses) is offered.

Only for tests: binds to a loopback address, on an ephemeral port chosen by the kernel.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ipaddress
import logging
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote, urlencode

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["CapturedMessage", "SmtpSink", "TlsMode"]


class _QuietDeprecations(logging.Filter):
    # aiosmtpd's own AUTH code sets Session.login_data and then logs a warning about it on every
    # successful login; that is noise in our test output, not something our code does.
    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_QuietDeprecations())

TlsMode = Literal["none", "starttls", "implicit"]


@dataclass(frozen=True)
class CapturedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # exactly as received after DATA, CRLF line ends, dot-unstuffed
    mail_options: tuple[str, ...]
    tls: bool  # STARTTLS or implicit TLS
    authenticated_as: str | None
    peer: Any = field(repr=False)

    def parse(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _BoundController(Controller):
    """aiosmtpd's Controller, listening on a socket bound in advance.

    Binding first to port 0 lets the kernel pick a free port without the find-then-bind race.
    """

    def __init__(self, handler: Any, sock: socket.socket, **kwargs: Any) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)
        self._sock = sock

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


class _Handler:
    """aiosmtpd hooks (found by their upper-case names, hence the noqa: N802)."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_EHLO(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        with self._sink._lock:
            self._sink.ehlos += 1
        if self._sink.auth is None:
            # aiosmtpd always advertises AUTH (with the mechanisms it has); a sink without
            # credentials should look like a relay without AUTH.
            responses = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        return responses

    async def handle_MAIL(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self._sink.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self._sink.rcpt_reply
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        sink = self._sink
        reply = sink.data_reply
        if reply is not None:
            return reply
        auth_data = session.auth_data
        login = auth_data.login if isinstance(auth_data, LoginPassword) else None
        captured = CapturedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=bytes(envelope.original_content or b""),
            mail_options=tuple(envelope.mail_options),
            tls=session.ssl is not None or sink.tls == "implicit",
            authenticated_as=login.decode("utf-8", "replace") if login else None,
            peer=session.peer,
        )
        number = sink._capture(captured)
        if sink.drop_after_data:
            # abort() rather than close(): no TLS close_notify exchange that could hang, and
            # connection_lost() cancels this coroutine before aiosmtpd could push a reply.
            transport = server.transport
            assert transport is not None
            transport.abort()  # type: ignore[attr-defined]
            await asyncio.sleep(30)
        return f"250 2.0.0 Ok: queued as SINK{number:04d}"


class SmtpSink:
    """An SMTP server on a loopback address; see the module docstring for the modes."""

    def __init__(
        self,
        *,
        tls: TlsMode = "none",
        require_starttls: bool = True,
        ca: trustme.CA | None = None,
        auth: tuple[str, str] | None = None,
        auth_mechanisms: Iterable[str] = ("PLAIN", "LOGIN"),
        rcpt_reply: str | None = None,
        data_reply: str | None = None,
        drop_after_data: bool = False,
        data_size_limit: int | None = 10 * 1024 * 1024,
        smtputf8: bool = True,
        host: str = "127.0.0.1",
        idle_timeout: float | None = None,
    ) -> None:
        if tls not in ("none", "starttls", "implicit"):
            raise ValueError(f"unknown tls mode {tls!r}")
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the SMTP sink listens on loopback addresses only, not {host}")
        self.tls: TlsMode = tls
        self.require_starttls = require_starttls
        self.ca = ca if ca is not None else trustme.CA()
        self.auth = auth
        self.auth_mechanisms = tuple(m.upper() for m in auth_mechanisms)
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.drop_after_data = drop_after_data
        self.data_size_limit = data_size_limit
        self.smtputf8 = smtputf8
        self.host = host
        # Seconds between commands after which the server closes a session (aiosmtpd: 300).
        self.idle_timeout = idle_timeout
        # EHLO commands seen: one per session in plain mode (two with STARTTLS).
        self.ehlos = 0
        self.port = 0
        self._messages: list[CapturedMessage] = []
        self._lock = threading.Condition()
        self._controller: _BoundController | None = None
        self._tempdir: Path | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        if self._controller is not None:
            raise RuntimeError("SMTP sink already started")
        self._tempdir = Path(tempfile.mkdtemp(prefix="mamoru-smtp-sink-"))
        self.ca.cert_pem.write_to_path(str(self._tempdir / "ca.pem"))
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost", "::1").configure_cert(server_context)

        # Everything not excluded here is offered; aiosmtpd only has PLAIN and LOGIN built in.
        excluded = [m for m in ("PLAIN", "LOGIN") if m not in self.auth_mechanisms]
        kwargs: dict[str, Any] = {
            "server_hostname": "smtp-sink.test",
            "ready_timeout": 10.0,
            "data_size_limit": self.data_size_limit,
            "enable_SMTPUTF8": self.smtputf8,
            "auth_exclude_mechanism": excluded,
            "authenticator": self._authenticate,
            # Over implicit TLS aiosmtpd does not see a STARTTLS and would withhold AUTH; and in
            # plain mode AUTH is only offered when a test asked for credentials on loopback.
            "auth_require_tls": self.tls == "starttls",
        }
        if self.idle_timeout is not None:
            kwargs["timeout"] = self.idle_timeout
        if self.tls == "starttls":
            kwargs["tls_context"] = server_context
            kwargs["require_starttls"] = self.require_starttls
        elif self.tls == "implicit":
            kwargs["ssl_context"] = server_context

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio only turns Nagle off for sockets that say they are TCP.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.bind((self.host, 0))
            sock.listen(16)
            sock.setblocking(False)
            self.port = sock.getsockname()[1]
            controller = _BoundController(_Handler(self), sock, **kwargs)
            controller.start()
        except BaseException:
            sock.close()
            self._remove_tempdir()
            raise
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
        self._remove_tempdir()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _remove_tempdir(self) -> None:
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    # --- what was sent ------------------------------------------------------------------------

    @property
    def messages(self) -> list[CapturedMessage]:
        """A copy of the messages captured so far, oldest first."""
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[CapturedMessage]:
        """Block until at least ``count`` messages arrived (for senders in other processes)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{len(self._messages)} of {count} messages after {timeout}s"
                    )
                self._lock.wait(remaining)
            return list(self._messages)

    def _capture(self, message: CapturedMessage) -> int:
        with self._lock:
            self._messages.append(message)
            self._lock.notify_all()
            return len(self._messages)

    # --- how to reach it ----------------------------------------------------------------------

    @property
    def cafile(self) -> Path:
        if self._tempdir is None:
            raise RuntimeError("SMTP sink not started")
        return self._tempdir / "ca.pem"

    def url(
        self,
        *,
        user: str | None = None,
        password: str | None = None,
        host: str | None = None,
        **query: str,
    ) -> str:
        """An ``smtp_url`` for this sink: scheme, ``starttls=off`` and ``cafile`` as the mode needs.

        ``user``/``password`` are percent-encoded; ``query`` adds or overrides query fields.
        """
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        fields: dict[str, str] = {}
        if self.tls == "none":
            fields["starttls"] = "off"
        else:
            fields["cafile"] = str(self.cafile)
        fields.update(query)
        userinfo = ""
        if user is not None:
            userinfo = quote(user, safe="")
            if password is not None:
                userinfo += ":" + quote(password, safe="")
            userinfo += "@"
        address = host or self.host
        if ":" in address:
            address = f"[{address}]"
        encoded = urlencode(fields, safe="/")
        return f"{scheme}://{userinfo}{address}:{self.port}" + (f"?{encoded}" if encoded else "")

    # --- AUTH ---------------------------------------------------------------------------------

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if self.auth is None or not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = self.auth
        ok = data.login == user.encode() and data.password == password.encode()
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)
