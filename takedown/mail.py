"""Building a notice email: pure functions from plain values to an ``EmailMessage``.

No database, no network, no clock unless ``date`` is left out. Delivery is ``takedown.delivery``.

Every message is 7-bit clean (non-ASCII headers are RFC 2047 encoded, non-ASCII bodies base64 or
quoted-printable) so that it passes through any relay, with or without 8BITMIME or SMTPUTF8.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

__all__ = [
    "MAX_ATTACHMENT_BYTES",
    "NOTICE_HEADER",
    "Attachment",
    "AttachmentTooLargeError",
    "attachments_fit",
    "build_message",
    "make_message_id",
]

NOTICE_HEADER = "X-Mamoru-Notice"

# Total raw bytes of all attachments of one message. Base64 inflates by 4/3, so 5 MiB becomes
# about 7 MB on the wire, under the 10 MB limit that many abuse mailboxes and relays still apply.
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024

# cte_type="7bit" makes the content manager pick base64 or quoted-printable for non-ASCII text
# instead of raw 8-bit, which a relay without 8BITMIME could mangle.
MESSAGE_POLICY = email_policy.default.clone(cte_type="7bit")

_NOTICE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_DOMAIN_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_MIME_TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
_HASH_HEX_CHARS = 16  # 64 bits: not guessable from the notice id, short enough to read
_STORED_ID = re.compile(rf"<notice-[0-9A-Za-z_-]+\.[0-9a-f]{{{_HASH_HEX_CHARS}}}@[a-z0-9.-]+>")


class AttachmentTooLargeError(ValueError):
    """The attachments exceed the size cap; the caller should link the evidence instead."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to a notice (typically a PNG screenshot of the infringing page)."""

    content: bytes = field(repr=False)
    filename: str
    mime_type: str  # "image/png"

    @property
    def size(self) -> int:
        return len(self.content)


def attachments_fit(attachments: Sequence[Attachment], limit: int = MAX_ATTACHMENT_BYTES) -> bool:
    """Whether ``attachments`` may be attached under ``limit`` total bytes.

    ``build_message`` refuses attachments over the cap rather than dropping them silently, since a
    notice that promised an attachment must not arrive without it. The caller checks first and,
    when they do not fit, puts a link to the evidence in the text and HTML instead.
    """
    return sum(a.size for a in attachments) <= limit


def make_message_id(notice_id: int | str, *, salt: bytes | str, domain: str) -> str:
    """The Message-ID of ``notice_id``: ``<notice-ID.HASH@DOMAIN>``.

    The same notice always gets the same id, so a retried send after a crash or a dropped
    connection is recognisable (by the recipient's mail system and by our outbox) as the same
    message rather than a new one. HASH is an HMAC of the notice id under a per-deployment
    ``salt``, so ids of other notices cannot be guessed from one seen id.
    """
    notice = _check_notice_id(notice_id)
    if not _DOMAIN_RE.fullmatch(domain):
        raise ValueError(f"message id domain {domain!r} is not a host name")
    key = salt.encode() if isinstance(salt, str) else salt
    if not key:
        raise ValueError("message id salt must not be empty")
    digest = hmac.new(key, f"mamoru-notice:{notice}".encode(), hashlib.sha256).hexdigest()
    return f"<notice-{notice}.{digest[:_HASH_HEX_CHARS]}@{domain.lower()}>"


def build_message(
    *,
    notice_id: int | str,
    subject: str,
    text: str,
    html: str | None,
    sender_name: str,
    from_address: str,
    to_address: str,
    reply_to: str | None,
    message_id_salt: bytes | str = b"",
    message_id_domain: str | None = None,
    attachments: Sequence[Attachment] = (),
    max_attachment_bytes: int = MAX_ATTACHMENT_BYTES,
    date: datetime | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """The email of one notice.

    - From: ``sender_name <from_address>`` (the agent organisation, at ``settings.mail_from``).
    - To: ``to_address``; Reply-To: ``reply_to`` (the publisher's contact), when given.
    - Body: ``text`` as text/plain, plus ``html`` as text/html in a multipart/alternative when
      given. Both are used as they are: escaping scraped values is the renderer's job.
    - Attachments after the body (multipart/mixed). Over ``max_attachment_bytes`` in total raises
      ``AttachmentTooLargeError``; see ``attachments_fit``.
    - Message-ID from ``make_message_id`` (domain: ``message_id_domain``, else the domain of
      ``from_address``), and ``X-Mamoru-Notice: <notice_id>``. ``message_id``, when given, is
      that same value as stored when the notice was composed (it must match it).
    - Date: ``date``, else now.
    """
    notice = _check_notice_id(notice_id)
    _check_header_text("subject", subject)
    _check_header_text("sender name", sender_name)
    if not text.strip():
        raise ValueError("a notice needs a plain-text body")
    sender = _address(from_address, "from", display_name=sender_name)
    recipient = _address(to_address, "to")
    if not attachments_fit(attachments, max_attachment_bytes):
        total = sum(a.size for a in attachments)
        raise AttachmentTooLargeError(
            f"attachments total {total} bytes, over the {max_attachment_bytes} byte cap; "
            "link the evidence instead"
        )
    if date is None:
        date = datetime.now(UTC)
    elif date.tzinfo is None:
        raise ValueError("date must be timezone-aware")

    message = EmailMessage(policy=MESSAGE_POLICY)
    message["From"] = sender
    message["To"] = recipient
    if reply_to is not None:
        message["Reply-To"] = _address(reply_to, "reply-to")
    message["Subject"] = subject
    message["Date"] = format_datetime(date)
    if message_id is None:
        message_id = make_message_id(
            notice, salt=message_id_salt, domain=message_id_domain or sender.domain
        )
    elif not _STORED_ID.fullmatch(message_id) or f"<notice-{notice}." not in message_id:
        raise ValueError(f"message id {message_id!r} is not notice {notice}'s")
    message["Message-ID"] = message_id
    message[NOTICE_HEADER] = notice
    message.set_content(_normalise_newlines(text), subtype="plain", charset="utf-8")
    if html is not None:
        message.add_alternative(_normalise_newlines(html), subtype="html", charset="utf-8")
    for attachment in attachments:
        maintype, subtype = _mime_type(attachment.mime_type)
        message.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype,
            filename=_safe_filename(attachment.filename),
        )
    # EmailMessage gives every part it creates its own MIME-Version; RFC 2045 wants it once.
    for part in message.walk():
        if part is not message:
            del part["MIME-Version"]
    return message


def _check_notice_id(notice_id: int | str) -> str:
    # bool is an int; True as a notice id is always a bug.
    if isinstance(notice_id, bool):
        raise TypeError("notice id must be an int or a str")
    if isinstance(notice_id, int):
        if notice_id < 0:
            raise ValueError("notice id must not be negative")
        return str(notice_id)
    if not _NOTICE_ID_RE.fullmatch(notice_id):
        raise ValueError(f"notice id {notice_id!r}: use letters, digits, '-' and '_' only")
    return notice_id


def _check_header_text(what: str, value: str) -> None:
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    # Subjects can carry titles scraped from pirate pages; a line break would let them add
    # headers of their own.
    if any(c in value for c in "\r\n\x00"):
        raise ValueError(f"{what} must be a single line")


def _address(value: str, what: str, *, display_name: str = "") -> Address:
    if any(c in value for c in "\r\n\x00<> ") or value.count("@") != 1:
        raise ValueError(f"{what} address {value!r} is not a plain addr-spec (user@domain)")
    local, _, domain = value.rpartition("@")
    if not local or not domain:
        raise ValueError(f"{what} address {value!r} is not a plain addr-spec (user@domain)")
    if not domain.isascii():
        # The A-label form needs no SMTPUTF8 support from the relay, unlike the Unicode one.
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"{what} address {value!r} has an invalid domain") from None
    try:
        return Address(display_name=display_name, addr_spec=f"{local}@{domain}")
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{what} address {value!r} is not valid: {exc}") from None


def _mime_type(value: str) -> tuple[str, str]:
    maintype, _, subtype = value.strip().lower().partition("/")
    if not (_MIME_TOKEN_RE.fullmatch(maintype) and _MIME_TOKEN_RE.fullmatch(subtype)):
        raise ValueError(f"attachment type {value!r} is not type/subtype")
    if maintype in {"multipart", "message"}:
        raise ValueError(f"attachment type {value!r} cannot be attached as bytes")
    return maintype, subtype


def _safe_filename(name: str) -> str:
    # The recipient's mail client saves under this name: no directories, no control characters.
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(c for c in base if c.isprintable()).strip().lstrip(".")
    return cleaned or "attachment"


def _normalise_newlines(body: str) -> str:
    return body.replace("\r\n", "\n").replace("\r", "\n")
