"""Delivering a built notice email: to the outbox folder (default) or through an SMTP relay.

Both senders implement ``Sender``. A sender either returns a ``DeliveryReceipt`` (the message is
accepted) or raises one of:

- ``PermanentDeliveryError``: retrying the same message will not help (5xx reply, every recipient
  refused, message too large, authentication failed, the relay does not offer STARTTLS).
- ``TransientDeliveryError``: retry later (4xx reply, connection refused, reset or timed out, TLS
  handshake failed, the outbox could not be written).

Exactly-once in effect rests on the deterministic Message-ID (``takedown.mail.make_message_id``):
the outbox stores each Message-ID once, and a message that was accepted by a relay whose reply was
lost (see ``TransientDeliveryError.maybe_delivered``) reaches the recipient a second time with
the same Message-ID, which mail systems and people recognise as the same message.

Nothing leaves the machine unless an operator set ``smtp_url``.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import ipaddress
import logging
import os
import re
import smtplib
import ssl
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import EmailPolicy
from pathlib import Path
from typing import ClassVar, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from store.config import Settings

__all__ = [
    "DEFAULT_SMTP_TIMEOUT",
    "DeliveryError",
    "DeliveryReceipt",
    "OutboxSender",
    "PermanentDeliveryError",
    "RefusedRecipient",
    "Sender",
    "SmtpSender",
    "SmtpTarget",
    "TransientDeliveryError",
    "parse_smtp_url",
    "sender_from_settings",
]

log = logging.getLogger(__name__)

DEFAULT_SMTP_TIMEOUT = 30.0
_DEFAULT_PORTS = {"smtp": 587, "smtps": 465}
_MAX_REPLY_CHARS = 500
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]")
# Filesystems without hard links (some FUSE and network mounts) answer link() with these.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


# --- results and errors ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefusedRecipient:
    address: str
    reply_code: int
    reply_text: str


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """What the destination said when it took the message.

    ``reply_code``/``reply_text``: the SMTP server's final reply to DATA (e.g. ``250``,
    ``"2.0.0 Ok: queued as 4F2A1"``); for the outbox, ``None`` and where the file is.
    ``duplicate``: the outbox already held this Message-ID, nothing was written.
    ``refused_recipients``: recipients the server refused while accepting others.
    """

    message_id: str
    reply_code: int | None
    reply_text: str
    accepted_at: datetime
    duplicate: bool = False
    refused_recipients: tuple[RefusedRecipient, ...] = ()


class DeliveryError(Exception):
    """The message was not accepted. ``str(error)`` says where, at which step and why."""

    permanent: ClassVar[bool]

    def __init__(
        self,
        message: str,
        *,
        reply_code: int | None = None,
        reply_text: str | None = None,
        maybe_delivered: bool = False,
    ) -> None:
        super().__init__(message)
        self.reply_code = reply_code
        self.reply_text = reply_text
        self.maybe_delivered = maybe_delivered


class PermanentDeliveryError(DeliveryError):
    """Sending this message again will fail again until someone changes something."""

    permanent = True


class TransientDeliveryError(DeliveryError):
    """Worth retrying later.

    ``maybe_delivered`` is true when the connection failed after the whole message had been
    sent and before the server's reply arrived: the server may have accepted it. This window
    cannot be closed by any SMTP client; a retry then delivers a second copy carrying the same
    Message-ID, which is how the recipient (and our records) can tell it is the same notice.
    """

    permanent = False


class Sender(Protocol):
    def send(self, message: EmailMessage) -> DeliveryReceipt:
        """Deliver ``message`` (which must have a Message-ID) or raise ``DeliveryError``."""
        ...


def sender_from_settings(settings: Settings) -> Sender:
    """SMTP when ``smtp_url`` is configured, otherwise the outbox folder."""
    if settings.smtp_url:
        return SmtpSender(settings.smtp_url)
    return OutboxSender(settings.outbox_path)


# --- outbox -----------------------------------------------------------------------------------


class OutboxSender:
    """Writes each message to ``<path>/<Message-ID>.eml``; nothing leaves the machine.

    The file appears complete or not at all (temporary file, fsync, then a link into place), and
    a Message-ID already in the outbox is not written again (the receipt says ``duplicate``).
    """

    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"OutboxSender({str(self._path)!r})"

    def file_for(self, message_id: str) -> Path:
        """Where the message with ``message_id`` is (or would be) written."""
        return self._path / _outbox_filename(message_id)

    def send(self, message: EmailMessage) -> DeliveryReceipt:
        message_id = _require_message_id(message)
        target = self.file_for(message_id)
        try:
            if target.exists():
                return self._duplicate(message_id, target)
            self._path.mkdir(parents=True, exist_ok=True)
            data = _serialise(message, utf8=_needs_smtputf8(*_envelope(message)))
            if not self._write_new(target, data):
                return self._duplicate(message_id, target)
        except OSError as exc:
            raise TransientDeliveryError(
                f"could not write {message_id} to the outbox {self._path}: {exc.strerror or exc}"
            ) from exc
        log.info("notice message %s written to %s", message_id, target)
        return DeliveryReceipt(
            message_id=message_id,
            reply_code=None,
            reply_text=f"written to {target}",
            accepted_at=datetime.now(UTC),
        )

    def _write_new(self, target: Path, data: bytes) -> bool:
        """Write ``data`` as ``target`` unless it exists; False when it already did."""
        fd, temp_name = tempfile.mkstemp(dir=self._path, prefix=".", suffix=".eml.tmp")
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                # link() refuses to overwrite, so two workers racing on one notice cannot both
                # believe they wrote it; os.replace would let the second one win silently.
                os.link(temp, target)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                temp.replace(target)
            _fsync_directory(self._path)
            return True
        finally:
            temp.unlink(missing_ok=True)

    @staticmethod
    def _duplicate(message_id: str, target: Path) -> DeliveryReceipt:
        written = datetime.fromtimestamp(target.stat().st_mtime, UTC)
        log.info("notice message %s already in the outbox as %s", message_id, target)
        return DeliveryReceipt(
            message_id=message_id,
            reply_code=None,
            reply_text=f"already in the outbox as {target}",
            accepted_at=written,
            duplicate=True,
        )


def _outbox_filename(message_id: str) -> str:
    bare = message_id.strip().removeprefix("<").removesuffix(">")
    name = _FILENAME_UNSAFE.sub("_", bare)
    if name.startswith("."):
        name = "_" + name[1:]
    if name != bare or len(name) > 180:
        # Keeps two ids that sanitise to the same text apart.
        digest = hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        name = f"{name[:160]}-{digest}"
    return f"{name}.eml"


def _fsync_directory(path: Path) -> None:
    # Makes the new directory entry durable; without it a power cut can lose a file that we
    # already reported as written.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- SMTP -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """A parsed ``smtp_url``. The password is kept out of ``repr``."""

    implicit_tls: bool
    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    starttls: bool
    cafile: Path | None
    timeout: float

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def redacted_url(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.where}"


def parse_smtp_url(url: str) -> SmtpTarget:
    """Parse ``smtp://[user[:password]@]host[:587][?query]`` or ``smtps://...[:465]``.

    User and password are percent-decoded. Query fields:
    ``starttls=off`` (smtp:// to a loopback address only, for test sinks; otherwise STARTTLS is
    required), ``cafile=/path/ca.pem`` (trust only this CA, for private relays and tests),
    ``timeout=SECONDS`` (per network operation, default 30).

    Raises ``ValueError`` before any DNS lookup or connection. Error messages never include the
    password (nor the URL, which contains it).
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("smtp_url is not a valid URL (host or port)") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("smtp_url must start with smtp:// or smtps://")
    host = parts.hostname
    if not host:
        raise ValueError("smtp_url has no host")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("smtp_url takes no path or fragment")
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError("smtp_url query is malformed") from None
    options: dict[str, str] = {}
    for name, value in query:
        if name in options:
            raise ValueError(f"smtp_url: {name} given twice")
        options[name] = value
    unknown = sorted(set(options) - {"starttls", "cafile", "timeout"})
    if unknown:
        raise ValueError(f"smtp_url: unknown option(s) {', '.join(unknown)}")

    implicit_tls = scheme == "smtps"
    starttls = not implicit_tls
    if "starttls" in options:
        if implicit_tls:
            raise ValueError("smtp_url: starttls applies to smtp:// only (smtps:// is always TLS)")
        setting = options["starttls"].lower()
        if setting in ("off", "no", "false", "0"):
            starttls = False
        elif setting not in ("on", "required", "yes", "true", "1"):
            raise ValueError("smtp_url: starttls must be 'off' or 'required'")
    if not implicit_tls and not starttls and not _is_loopback(host):
        raise ValueError(
            f"smtp_url: starttls=off is only allowed to a loopback address (a local test sink), "
            f"not {host}; notices to a real relay must be encrypted"
        )

    cafile: Path | None = None
    if options.get("cafile"):
        cafile = Path(options["cafile"])
        if not cafile.is_file():
            raise ValueError(f"smtp_url: cafile {cafile} is not a file")

    timeout = DEFAULT_SMTP_TIMEOUT
    if "timeout" in options:
        try:
            timeout = float(options["timeout"])
        except ValueError:
            raise ValueError("smtp_url: timeout must be a number of seconds") from None
        if not 0 < timeout <= 600:
            raise ValueError("smtp_url: timeout must be between 0 and 600 seconds")

    return SmtpTarget(
        implicit_tls=implicit_tls,
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        starttls=starttls,
        cafile=cafile,
        timeout=timeout,
    )


def _is_loopback(host: str) -> bool:
    # Only literal addresses and the reserved name: deciding by a DNS answer would let a
    # hostile or broken resolver turn the plain-text test mode on for a real host.
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Session:
    client: smtplib.SMTP
    messages: int = 0
    last_used: float = 0.0


class _StaleSession(Exception):
    """A kept session failed before this message's first command was accepted."""


class SmtpSender:
    """Sends through an SMTP relay with smtplib, keeping a session per thread between messages.

    On ``smtp://`` the relay must offer STARTTLS, else nothing is sent (``PermanentDeliveryError``);
    certificates are verified against the system CAs or the URL's ``cafile``. AUTH (whatever
    mechanism smtplib and the server share: PLAIN, LOGIN, CRAM-MD5) when the URL has a user.

    A session is reused for the next message when it was used less than ``SESSION_IDLE_SECONDS``
    ago (relays drop idle clients after a minute or more) and has carried fewer than
    ``SESSION_MAX_MESSAGES``; connecting, TLS and AUTH then cost once per batch, not per notice.
    A kept session the relay closed in the meantime is noticed at MAIL FROM, before anything of
    the message was accepted, and replaced by a new one; any other failure ends the session.
    """

    SESSION_IDLE_SECONDS: ClassVar[float] = 10.0
    SESSION_MAX_MESSAGES: ClassVar[int] = 100

    def __init__(self, url: str, *, local_hostname: str | None = None) -> None:
        self._target = parse_smtp_url(url)
        self._local_hostname = local_hostname
        # thread id -> the session that thread keeps (a session is used by one thread only)
        self._sessions: dict[int, _Session] = {}
        self._lock = threading.Lock()

    @property
    def target(self) -> SmtpTarget:
        return self._target

    def __repr__(self) -> str:
        mode = (
            "implicit TLS"
            if self._target.implicit_tls
            else "STARTTLS required"
            if self._target.starttls
            else "plain text (loopback)"
        )
        return f"SmtpSender({self._target.redacted_url}, {mode})"

    def _tls_context(self) -> ssl.SSLContext:
        cafile = str(self._target.cafile) if self._target.cafile else None
        context = ssl.create_default_context(cafile=cafile)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def close(self) -> None:
        """End every kept session with a QUIT."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            _close(session.client, polite=True)

    def __del__(self) -> None:
        # No QUIT from a finaliser (it could block); the sockets must not leak either.
        for session in getattr(self, "_sessions", {}).values():
            with contextlib.suppress(OSError):
                session.client.close()

    def send(self, message: EmailMessage) -> DeliveryReceipt:
        message_id = _require_message_id(message)
        envelope_from, recipients = _envelope(message)
        kept = self._kept_session()
        if kept is not None:
            try:
                return self._send_on(kept, message, message_id, envelope_from, recipients)
            except _StaleSession:
                log.info(
                    "SMTP session to %s was closed by the server; reconnecting", self._target.where
                )
        return self._send_on(None, message, message_id, envelope_from, recipients)

    def _kept_session(self) -> _Session | None:
        with self._lock:
            session = self._sessions.pop(threading.get_ident(), None)
        if session is None:
            return None
        if time.monotonic() - session.last_used > self.SESSION_IDLE_SECONDS:
            _close(session.client, polite=True)
            return None
        return session

    def _send_on(
        self,
        session: _Session | None,
        message: EmailMessage,
        message_id: str,
        envelope_from: str,
        recipients: list[str],
    ) -> DeliveryReceipt:
        target = self._target
        where = target.where
        step = "connect"
        polite = session is not None
        client: smtplib.SMTP | None = session.client if session is not None else None
        error: DeliveryError | None = None
        cause: BaseException | None = None
        try:
            if client is None:
                client = self._open()
                polite = True
            data, options = _prepare_data(client, message, envelope_from, recipients, where)
            step = "MAIL FROM"
            try:
                code, reply = client.mail(envelope_from, options)
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                if session is not None:
                    # Nothing of this message reached the relay: safe to start over.
                    _close(client, polite=False)
                    client = None
                    raise _StaleSession from None
                raise
            if code == 421 and session is not None:
                _close(client, polite=False)
                client = None
                raise _StaleSession
            if code != 250:
                raise _reply_error(code, reply, where=where, step=f"MAIL FROM <{envelope_from}>")
            step = "RCPT TO"
            refused = _send_recipients(client, recipients, where)
            step = "DATA"
            code, reply = client.data(data)
            if code != 250:
                raise _reply_error(code, reply, where=where, step="end of DATA")
        except DeliveryError as exc:
            error = exc
        except (smtplib.SMTPException, OSError) as exc:
            polite = polite and isinstance(exc, smtplib.SMTPResponseException)
            error = _classify(exc, where=where, step=step, timeout=target.timeout)
            cause = exc
        if error is not None:
            if client is not None:
                _close(client, polite=polite)
            raise error from cause
        assert client is not None

        # The message is accepted: nothing below may raise, or a retry would send it again.
        kept = session or _Session(client)
        kept.messages += 1
        kept.last_used = time.monotonic()
        if kept.messages < self.SESSION_MAX_MESSAGES:
            with self._lock:
                self._sessions[threading.get_ident()] = kept
        else:
            _close(client, polite=True)
        text = _reply_text(reply)
        log.info("notice message %s accepted by %s: %d %s", message_id, where, code, text)
        return DeliveryReceipt(
            message_id=message_id,
            reply_code=code,
            reply_text=text,
            accepted_at=datetime.now(UTC),
            refused_recipients=refused,
        )

    def check(self) -> str:
        """Connect, EHLO, STARTTLS and AUTH as a send would, then QUIT without sending; what
        the relay offered, or the ``DeliveryError`` a send would have met."""
        client = self._open()
        try:
            tls = "TLS" if self._target.implicit_tls or self._target.starttls else "no TLS"
            user = f"logged in as {self._target.username}" if self._target.username else "no AUTH"
            size = client.esmtp_features.get("size")
            limit = (
                f", message size limit {int(size) // 1024} KiB" if size and size.isdigit() else ""
            )
            return f"{self._target.redacted_url}: {tls}, {user}{limit}"
        finally:
            _close(client, polite=True)

    def _open(self) -> smtplib.SMTP:
        """A new session, past EHLO, STARTTLS and AUTH; a classified ``DeliveryError`` if not."""
        target = self._target
        where = target.where
        step = "connect"
        # After a refusal the session is healthy and gets a QUIT; after a network failure a
        # QUIT would only wait for another timeout.
        polite = False
        client: smtplib.SMTP | None = None
        error: DeliveryError
        cause: BaseException | None = None
        try:
            client = self._connect()
            polite = True
            step = "EHLO"
            client.ehlo_or_helo_if_needed()
            if target.starttls:
                if not client.has_extn("starttls"):
                    raise PermanentDeliveryError(
                        f"{where} does not offer STARTTLS; refusing to send the notice "
                        "unencrypted (use smtps:// if the relay only speaks implicit TLS)"
                    )
                step = "STARTTLS"
                polite = False
                client.starttls(context=self._tls_context())
                polite = True
                step = "EHLO"
                client.ehlo_or_helo_if_needed()
            if target.username:
                step = "AUTH"
                auth_error = _login(client, target)
                if auth_error is not None:
                    raise auth_error
            return client
        except DeliveryError as exc:
            error = exc
        except (smtplib.SMTPException, OSError) as exc:
            polite = polite and isinstance(exc, smtplib.SMTPResponseException)
            error = _classify(exc, where=where, step=step, timeout=target.timeout)
            cause = exc
        if client is not None:
            _close(client, polite=polite)
        # Raised here, outside the except blocks, so that no traceback of smtplib.login
        # (whose frame holds the password) hangs off the error as its context.
        if step == "AUTH":
            cause = None
        raise error from cause

    def _connect(self) -> smtplib.SMTP:
        target = self._target
        # Constructing with the host connects, and is what gives smtplib the server name that
        # it checks the certificate against.
        if target.implicit_tls:
            return smtplib.SMTP_SSL(
                target.host,
                target.port,
                local_hostname=self._local_hostname,
                timeout=target.timeout,
                context=self._tls_context(),
            )
        return smtplib.SMTP(
            target.host,
            target.port,
            local_hostname=self._local_hostname,
            timeout=target.timeout,
        )


def _login(client: smtplib.SMTP, target: SmtpTarget) -> DeliveryError | None:
    """AUTH with the URL's credentials; the error to raise, if any, returned (not raised)."""
    where = target.where
    try:
        client.login(target.username or "", target.password or "")
    except smtplib.SMTPNotSupportedError:
        return PermanentDeliveryError(f"{where} does not offer AUTH, but the smtp_url has a user")
    except smtplib.SMTPAuthenticationError as exc:
        code, text = exc.smtp_code, _reply_text(exc.smtp_error)
        error_type = TransientDeliveryError if 400 <= code < 500 else PermanentDeliveryError
        return error_type(
            f"{where} refused the login of {target.username!r}: {code} {text}",
            reply_code=code,
            reply_text=text,
        )
    except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException) as exc:
        return _classify(exc, where=where, step="AUTH", timeout=target.timeout)
    except smtplib.SMTPException as exc:
        # smtplib's "No suitable authentication method found."
        return PermanentDeliveryError(
            f"{where}: no AUTH mechanism in common with the server ({exc})"
        )
    except OSError as exc:
        return _classify(exc, where=where, step="AUTH", timeout=target.timeout)
    return None


def _classify(
    exc: smtplib.SMTPException | OSError, *, where: str, step: str, timeout: float
) -> DeliveryError:
    """The delivery error for a failure of smtplib or of the network."""
    # SMTPException is an OSError, and SSLError too: most specific first.
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        # smtplib reports a read timeout as a disconnection, naming the timeout in the text.
        if isinstance(exc.__context__, TimeoutError) or "timed out" in str(exc):
            return _network_error(where, step, f"timed out after {timeout:g}s")
        return _network_error(where, step, "connection closed by the server")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply_error(exc.smtp_code, exc.smtp_error, where=where, step=step)
    if isinstance(exc, smtplib.SMTPException):
        return PermanentDeliveryError(f"{where} at {step}: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TransientDeliveryError(
            f"{where}: TLS certificate not trusted ({exc.verify_message}); "
            "check the host name, or cafile= for a private CA"
        )
    if isinstance(exc, ssl.SSLError):
        return TransientDeliveryError(f"{where}: TLS handshake failed ({exc.reason or exc})")
    if isinstance(exc, TimeoutError):
        return _network_error(where, step, f"timed out after {timeout:g}s")
    if isinstance(exc, ConnectionRefusedError):
        return _network_error(where, step, "connection refused")
    return _network_error(where, step, exc.strerror or str(exc) or type(exc).__name__)


def _prepare_data(
    client: smtplib.SMTP,
    message: EmailMessage,
    envelope_from: str,
    recipients: Sequence[str],
    where: str,
) -> tuple[bytes, list[str]]:
    """The message bytes and the MAIL FROM parameters this server needs for them."""
    options: list[str] = []
    international = _needs_smtputf8(envelope_from, recipients)
    if international:
        if not client.has_extn("smtputf8"):
            raise PermanentDeliveryError(
                f"{where} does not support SMTPUTF8, needed for a non-ASCII address"
            )
        options += ["SMTPUTF8", "BODY=8BITMIME"]
    data = _serialise(message, utf8=international)
    if not international and not data.isascii():
        if not client.has_extn("8bitmime"):
            raise PermanentDeliveryError(f"{where} does not accept 8-bit content (no 8BITMIME)")
        options.append("BODY=8BITMIME")
    if client.has_extn("size"):
        limit = _int_or_zero(client.esmtp_features.get("size", ""))
        if limit and len(data) > limit:
            raise PermanentDeliveryError(
                f"{where}: message of {len(data)} bytes is larger than the server's limit of "
                f"{limit} bytes (message too large)"
            )
        options.append(f"SIZE={len(data)}")
    return data, options


def _send_recipients(
    client: smtplib.SMTP, recipients: Sequence[str], where: str
) -> tuple[RefusedRecipient, ...]:
    refused: list[RefusedRecipient] = []
    for address in recipients:
        code, reply = client.rcpt(address)
        if code not in (250, 251):
            refused.append(RefusedRecipient(address, code, _reply_text(reply)))
    if len(refused) == len(recipients):
        summary = "; ".join(f"<{r.address}>: {r.reply_code} {r.reply_text}" for r in refused)
        first = refused[0]
        # One temporarily refused recipient is enough for a retry to have a chance.
        if any(400 <= r.reply_code < 500 for r in refused):
            raise TransientDeliveryError(
                f"{where} refused the recipient for now at RCPT TO: {summary}",
                reply_code=first.reply_code,
                reply_text=first.reply_text,
            )
        raise PermanentDeliveryError(
            f"{where} refused the recipient at RCPT TO: {summary}",
            reply_code=first.reply_code,
            reply_text=first.reply_text,
        )
    return tuple(refused)


def _reply_error(code: int, reply: bytes | str, *, where: str, step: str) -> DeliveryError:
    text = _reply_text(reply)
    detail = f"{where} answered {code} {text} at {step}"
    if 400 <= code < 500:
        return TransientDeliveryError(
            f"temporary refusal: {detail}", reply_code=code, reply_text=text
        )
    if 500 <= code < 600:
        if code == 552 or "5.3.4" in text:
            detail += " (message too large)"
        return PermanentDeliveryError(
            f"permanent refusal: {detail}", reply_code=code, reply_text=text
        )
    return TransientDeliveryError(f"unexpected reply: {detail}", reply_code=code, reply_text=text)


def _network_error(where: str, step: str, reason: str) -> TransientDeliveryError:
    maybe_delivered = step == "DATA"
    note = (
        "; the server may have accepted the message before the connection failed"
        if maybe_delivered
        else ""
    )
    return TransientDeliveryError(
        f"{where} at {step}: {reason}{note}", maybe_delivered=maybe_delivered
    )


def _close(client: smtplib.SMTP, *, polite: bool) -> None:
    if polite:
        try:
            client.quit()
            return
        except (smtplib.SMTPException, OSError):
            pass
    with contextlib.suppress(OSError):
        client.close()


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REPLY_CHARS else text[: _MAX_REPLY_CHARS - 3] + "..."


def _int_or_zero(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


# --- shared -----------------------------------------------------------------------------------


def _require_message_id(message: EmailMessage) -> str:
    message_id = message.get("Message-ID")
    if not message_id or not str(message_id).strip():
        # Without one a retry cannot be recognised as the same message.
        raise ValueError("a notice message must have a Message-ID (see takedown.mail)")
    return str(message_id).strip()


def _addresses(message: EmailMessage, header: str) -> list[str]:
    found: list[str] = []
    for value in message.get_all(header, []):
        addresses: Sequence[Address] = getattr(value, "addresses", ())
        found += [a.addr_spec for a in addresses if a.addr_spec]
    return found


def _envelope(message: EmailMessage) -> tuple[str, list[str]]:
    senders = _addresses(message, "Sender") or _addresses(message, "From")
    if len(senders) != 1:
        raise ValueError("a notice message needs exactly one From (or Sender) address")
    recipients = list(
        dict.fromkeys(
            _addresses(message, "To") + _addresses(message, "Cc") + _addresses(message, "Bcc")
        )
    )
    if not recipients:
        raise ValueError("a notice message needs at least one recipient")
    return senders[0], recipients


def _needs_smtputf8(envelope_from: str, recipients: Sequence[str]) -> bool:
    # takedown.mail writes domains as A-labels; only a non-ASCII local part gets here.
    return not all(a.isascii() for a in (envelope_from, *recipients))


def _serialise(message: EmailMessage, *, utf8: bool) -> bytes:
    if "Bcc" in message:
        message = copy.deepcopy(message)
        del message["Bcc"]
    base = message.policy if isinstance(message.policy, EmailPolicy) else SMTP_POLICY
    return message.as_bytes(policy=base.clone(linesep="\r\n", utf8=utf8))
