"""Notice emails: building them, writing them to the outbox, sending them to real SMTP servers.

Every SMTP test talks to an aiosmtpd server on 127.0.0.1 (tests/smtp_sink.py); nothing here
resolves or reaches any other host.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme

from store.config import load_settings
from takedown.delivery import (
    DeliveryReceipt,
    OutboxSender,
    PermanentDeliveryError,
    SmtpSender,
    TransientDeliveryError,
    parse_smtp_url,
    sender_from_settings,
)
from takedown.mail import (
    NOTICE_HEADER,
    Attachment,
    AttachmentTooLargeError,
    attachments_fit,
    build_message,
    make_message_id,
)
from tests.smtp_sink import SmtpSink

SALT = "test-deployment-salt"
SUBJECT = "送信防止措置依頼 (著作権侵害) / Takedown notice 123"
TEXT = (
    "株式会社サンプル出版 代理人として、下記の侵害情報の送信防止措置を依頼します。\n"
    "侵害情報の特定: https://pirate.example/manga/1/page-3.jpg\n"
    "著作物等の説明: 『魔法少女まもる』第1巻\n"
)
HTML = "<p>侵害情報の特定: <a href='https://pirate.example/manga/1/'>https://pirate.example/manga/1/</a></p>\n"
AGENT = "株式会社まもる著作権エージェント"
USER = "notices@agent.example"
PASSWORD = "p@ss:w/rd%secret"  # needs percent-encoding in a URL
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def notice(notice_id: int = 123, **overrides: Any) -> EmailMessage:
    arguments: dict[str, Any] = {
        "notice_id": notice_id,
        "subject": SUBJECT,
        "text": TEXT,
        "html": HTML,
        "sender_name": AGENT,
        "from_address": "notices@mamoru.invalid",
        "to_address": "abuse@host.example",
        "reply_to": "legal@publisher.example",
        "message_id_salt": SALT,
    }
    arguments.update(overrides)
    return build_message(**arguments)


def decoded_from(raw: bytes) -> str:
    """The From header decoded per RFC 2047.

    Not via policy.default: its parser puts a space between adjacent encoded-words of a
    display name (CPython gh-128110), which a long Japanese name folded over two lines has.
    """
    header = email.message_from_bytes(raw)["From"]
    return str(email.header.make_header(email.header.decode_header(header)))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def plain_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def tls_sink(ca: trustme.CA) -> Iterator[SmtpSink]:
    with SmtpSink(tls="starttls", ca=ca, auth=(USER, PASSWORD)) as sink:
        yield sink


def auth_url(sink: SmtpSink, password: str = PASSWORD, **query: str) -> str:
    return sink.url(user=USER, password=password, **query)


# --- building -------------------------------------------------------------------------------


def test_message_id_is_stable_per_notice_and_distinct_between_notices() -> None:
    first, again = notice(123), notice(123)
    other = notice(124)
    assert first["Message-ID"] == again["Message-ID"]
    assert first["Message-ID"] != other["Message-ID"]
    assert re.fullmatch(r"<notice-123\.[0-9a-f]{16}@mamoru\.invalid>", first["Message-ID"])
    assert first[NOTICE_HEADER] == "123"
    # The hash part depends on the deployment's salt, so ids cannot be predicted elsewhere.
    assert make_message_id(123, salt="other", domain="mamoru.invalid") != first["Message-ID"]
    assert make_message_id(123, salt=SALT, domain="mamoru.invalid") == first["Message-ID"]
    assert notice(123, message_id_domain="notices.agent.example")["Message-ID"].endswith(
        "@notices.agent.example>"
    )


def test_message_headers_parts_and_seven_bit_encoding() -> None:
    date = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    raw = notice(date=date).as_bytes()
    assert raw.isascii()  # passes any relay, with or without 8BITMIME
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert decoded_from(raw) == f"{AGENT} <notices@mamoru.invalid>"
    assert parsed["To"] == "abuse@host.example"
    assert parsed["Reply-To"] == "legal@publisher.example"
    assert parsed["Subject"] == SUBJECT
    assert parsed["Date"].datetime == date
    assert parsed.get_content_type() == "multipart/alternative"
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content() == TEXT
    assert html.get_content() == HTML
    assert plain.get_content_charset() == "utf-8"
    assert len(parsed.get_all("MIME-Version") or []) == 1
    assert all(part.get("MIME-Version") is None for part in parsed.iter_parts())


def test_stored_message_id_is_used_and_must_be_the_notices() -> None:
    stored = make_message_id(123, salt=SALT, domain="notices.mamoru.invalid")
    message = notice(message_id=stored, message_id_salt=b"")
    assert message["Message-ID"] == stored
    other = make_message_id(124, salt=SALT, domain="notices.mamoru.invalid")
    with pytest.raises(ValueError, match="is not notice 123's"):
        notice(message_id=other)
    with pytest.raises(ValueError, match="is not notice 123's"):
        notice(message_id="<x@y>\r\nBcc: victim@example.com")


def test_text_only_message() -> None:
    parsed = notice(html=None)
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content() == TEXT


def test_attachment_and_size_cap() -> None:
    shot = Attachment(PNG, "../evidence/スクリーンショット.png", "image/png")
    message = notice(attachments=[shot])
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content_type() == "multipart/mixed"
    [attached] = list(parsed.iter_attachments())
    assert attached.get_content_type() == "image/png"
    assert attached.get_filename() == "スクリーンショット.png"  # no directories
    assert attached.get_content() == PNG
    body = parsed.get_body(("plain",))
    assert body is not None and body.get_content() == TEXT

    assert attachments_fit([shot], limit=len(PNG))
    assert not attachments_fit([shot, shot], limit=len(PNG) * 2 - 1)
    with pytest.raises(AttachmentTooLargeError, match="link the evidence"):
        notice(attachments=[shot], max_attachment_bytes=len(PNG) - 1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"subject": "Takedown\r\nBcc: victim@example.com"}, "single line"),
        ({"sender_name": "Agent\nX-Evil: 1"}, "single line"),
        ({"to_address": "abuse@host.example, other@example.com"}, "addr-spec"),
        ({"to_address": "abuse@host.example\r\nBcc: x@y.example"}, "addr-spec"),
        ({"reply_to": "not-an-address"}, "addr-spec"),
        ({"notice_id": "../../etc"}, "notice id"),
        ({"message_id_domain": "bad domain"}, "host name"),
        ({"message_id_salt": b""}, "salt"),
        ({"text": "  \n"}, "plain-text body"),
        ({"date": datetime(2026, 1, 1)}, "timezone"),
        ({"attachments": [Attachment(b"x", "a.eml", "message/rfc822")]}, "cannot be attached"),
        ({"attachments": [Attachment(b"x", "a.png", "png")]}, "type/subtype"),
    ],
)
def test_build_message_refuses_bad_input(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        notice(**overrides)


# --- outbox ---------------------------------------------------------------------------------


def test_outbox_writes_one_eml_and_is_idempotent(tmp_path: Path) -> None:
    outbox = OutboxSender(tmp_path / "outbox")
    message = notice(attachments=[Attachment(PNG, "shot.png", "image/png")])
    first = outbox.send(message)
    assert isinstance(first, DeliveryReceipt)
    assert first.message_id == message["Message-ID"]
    assert not first.duplicate and first.reply_code is None
    files = list((tmp_path / "outbox").iterdir())
    assert [f.name for f in files] == [message["Message-ID"][1:-1] + ".eml"]
    assert files[0] == outbox.file_for(message["Message-ID"])
    data = files[0].read_bytes()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed["Subject"] == SUBJECT
    assert parsed["Message-ID"] == message["Message-ID"]

    # A retry builds the message again (new Date, new boundaries): still the same notice.
    again = outbox.send(notice(attachments=[Attachment(PNG, "shot.png", "image/png")]))
    assert again.duplicate and again.message_id == first.message_id
    assert files[0].read_bytes() == data
    assert len(list((tmp_path / "outbox").iterdir())) == 1

    assert not outbox.send(notice(124)).duplicate
    assert len(list((tmp_path / "outbox").iterdir())) == 2


def test_outbox_leaves_nothing_behind_when_the_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = OutboxSender(tmp_path)

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("takedown.delivery.os.fsync", broken_fsync)
    with pytest.raises(TransientDeliveryError, match="outbox"):
        outbox.send(notice())
    assert list(tmp_path.iterdir()) == []  # neither a partial .eml nor a temporary file

    monkeypatch.undo()
    assert not outbox.send(notice()).duplicate


def test_outbox_concurrent_sends_of_one_notice_write_it_once(tmp_path: Path) -> None:
    outbox = OutboxSender(tmp_path)
    receipts: list[DeliveryReceipt] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        message = notice()
        barrier.wait()
        receipts.append(outbox.send(message))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(not r.duplicate for r in receipts) == 1
    assert len(list(tmp_path.iterdir())) == 1


def test_outbox_filename_cannot_escape_the_folder(tmp_path: Path) -> None:
    outbox = OutboxSender(tmp_path / "outbox")
    message = notice()
    message.replace_header("Message-ID", "<../../../etc/passwd@x>")
    outbox.send(message)
    [written] = list((tmp_path / "outbox").iterdir())
    assert written.name.endswith(".eml") and "/" not in written.name
    assert not written.name.startswith(".")
    other = notice()
    other.replace_header("Message-ID", "<.._.._.._etc_passwd@x>")
    assert not outbox.send(other).duplicate  # sanitised alike, still kept apart


def test_message_without_message_id_is_refused(tmp_path: Path) -> None:
    message = notice()
    del message["Message-ID"]
    with pytest.raises(ValueError, match="Message-ID"):
        OutboxSender(tmp_path).send(message)
    with pytest.raises(ValueError, match="Message-ID"):
        SmtpSender("smtp://127.0.0.1:1?starttls=off").send(message)


def test_sender_from_settings(tmp_path: Path) -> None:
    outbox = sender_from_settings(load_settings(data_dir=tmp_path, smtp_url=None))
    assert isinstance(outbox, OutboxSender)
    assert outbox.path == tmp_path / "outbox"
    smtp = sender_from_settings(
        load_settings(data_dir=tmp_path, smtp_url="smtps://u:secret@relay.example")
    )
    assert isinstance(smtp, SmtpSender)
    assert (smtp.target.host, smtp.target.port, smtp.target.implicit_tls) == (
        "relay.example",
        465,
        True,
    )


# --- SMTP URL -------------------------------------------------------------------------------


def test_smtp_url_parsing_and_password_kept_out_of_repr() -> None:
    target = parse_smtp_url("smtp://notices%40agent.example:p%40ss%3Aw%2Frd@Relay.Example")
    assert target.host == "relay.example"
    assert target.port == 587
    assert target.starttls and not target.implicit_tls
    assert (target.username, target.password) == ("notices@agent.example", "p@ss:w/rd")
    assert target.timeout == 30
    assert "p@ss" not in repr(target)
    sender = SmtpSender("smtps://user:hunter2@relay.example:2465?timeout=5")
    assert sender.target.port == 2465 and sender.target.timeout == 5
    assert "hunter2" not in repr(sender) and "hunter2" not in repr(sender.target)
    assert parse_smtp_url("smtp://[::1]:2525?starttls=off").host == "::1"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://u:hunter2@relay.example", "smtp:// or smtps://"),
        ("smtp://u:hunter2@relay.example:notaport", "host or port"),
        ("smtp://u:hunter2@relay.example?tls=yes", "unknown option"),
        ("smtps://u:hunter2@relay.example?starttls=off", "smtp:// only"),
        ("smtp://u:hunter2@relay.example?starttls=maybe", "starttls must be"),
        ("smtp://u:hunter2@relay.example?timeout=-1", "timeout"),
        ("smtp://u:hunter2@relay.example?cafile=/nonexistent/ca.pem", "cafile"),
        ("smtp://u:hunter2@relay.example/path", "no path"),
        ("smtp://u:hunter2@", "no host"),
    ],
)
def test_bad_smtp_urls_are_refused_without_showing_the_password(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        SmtpSender(url)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "host", ["mail.example.invalid", "10.0.0.1", "localhost.example.invalid", "[::2]"]
)
def test_plain_text_smtp_is_refused_for_a_non_loopback_host_before_any_network_call(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network or DNS call before the refusal")

    for name in ("getaddrinfo", "gethostbyname", "gethostbyaddr", "getfqdn", "create_connection"):
        monkeypatch.setattr(socket, name, no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(ValueError, match="only allowed to a loopback address"):
        SmtpSender(f"smtp://{host}:25?starttls=off")


# --- SMTP delivery --------------------------------------------------------------------------


def test_plain_delivery_to_a_loopback_sink(plain_sink: SmtpSink) -> None:
    message = notice(attachments=[Attachment(PNG, "shot.png", "image/png")])
    receipt = SmtpSender(plain_sink.url()).send(message)
    assert receipt.message_id == message["Message-ID"]
    assert receipt.reply_code == 250
    assert receipt.reply_text == "2.0.0 Ok: queued as SINK0001"
    assert receipt.accepted_at.tzinfo is not None and not receipt.duplicate
    [captured] = plain_sink.messages
    assert captured.mail_from == "notices@mamoru.invalid"
    assert captured.rcpt_tos == ("abuse@host.example",)
    assert not captured.tls

    parsed = captured.parse()
    assert parsed["Subject"] == SUBJECT
    assert parsed["Message-ID"] == message["Message-ID"]
    assert parsed[NOTICE_HEADER] == "123"
    assert decoded_from(captured.data) == f"{AGENT} <notices@mamoru.invalid>"
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and plain.get_content() == TEXT
    assert html is not None and html.get_content() == HTML
    [attached] = list(parsed.iter_attachments())
    assert attached.get_content_type() == "image/png"
    assert attached.get_content() == PNG


def test_one_session_carries_consecutive_messages(plain_sink: SmtpSink) -> None:
    sender = SmtpSender(plain_sink.url())
    ids = [sender.send(notice(notice_id)).message_id for notice_id in (1, 2, 3)]
    assert [m.parse()["Message-ID"] for m in plain_sink.messages] == ids
    assert plain_sink.ehlos == 1
    sender.close()


def test_a_session_the_server_closed_is_replaced_without_losing_the_message() -> None:
    with SmtpSink(idle_timeout=0.3) as sink:
        sender = SmtpSender(sink.url())
        sender.send(notice(1))
        time.sleep(1.0)  # the server hangs up on the idle session; the sender still keeps it
        receipt = sender.send(notice(2))
        assert receipt.reply_code == 250
        assert [m.parse()[NOTICE_HEADER] for m in sink.messages] == ["1", "2"]
        assert sink.ehlos == 2


def test_idle_and_long_sessions_are_not_reused(
    plain_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SmtpSender, "SESSION_MAX_MESSAGES", 2)
    sender = SmtpSender(plain_sink.url())
    for notice_id in (1, 2, 3):
        sender.send(notice(notice_id))
    assert plain_sink.ehlos == 2  # the third message needed a new session
    monkeypatch.setattr(SmtpSender, "SESSION_IDLE_SECONDS", 0.0)
    sender.send(notice(4))
    sender.send(notice(5))
    assert plain_sink.ehlos == 4
    assert len(plain_sink.messages) == 5


def test_threads_keep_sessions_of_their_own(plain_sink: SmtpSink) -> None:
    sender = SmtpSender(plain_sink.url())
    with ThreadPoolExecutor(max_workers=4) as pool:
        receipts = list(pool.map(lambda n: sender.send(notice(n)), range(1, 41)))
    assert len({r.message_id for r in receipts}) == 40
    assert sorted(int(m.parse()[NOTICE_HEADER]) for m in plain_sink.messages) == list(range(1, 41))
    assert 1 <= plain_sink.ehlos <= 4
    sender.close()


def test_a_refusal_ends_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    with SmtpSink(rcpt_reply="450 4.2.0 Mailbox busy") as sink:
        sender = SmtpSender(sink.url())
        for notice_id in (1, 2):
            with pytest.raises(TransientDeliveryError):
                sender.send(notice(notice_id))
        assert sink.ehlos == 2 and sink.messages == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_starttls_with_private_ca_and_auth(ca: trustme.CA, mechanism: str) -> None:
    with SmtpSink(
        tls="starttls", ca=ca, auth=(USER, PASSWORD), auth_mechanisms=[mechanism]
    ) as sink:
        receipt = SmtpSender(auth_url(sink)).send(notice())
        assert receipt.reply_code == 250
        [captured] = sink.messages
    assert captured.tls
    assert captured.authenticated_as == USER
    assert captured.parse()["Subject"] == SUBJECT
    assert captured.parse().get_body(("plain",)).get_content() == TEXT  # type: ignore[union-attr]


def test_wrong_password_is_permanent_and_never_shown(
    tls_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-pa55word"
    sender = SmtpSender(auth_url(tls_sink, password=wrong))
    with pytest.raises(PermanentDeliveryError, match="refused the login") as caught:
        sender.send(notice())
    error = caught.value
    assert error.reply_code == 535
    # No traceback of smtplib.login (whose frame holds the password) hangs off the error.
    assert error.__cause__ is None and error.__context__ is None
    for text in (str(error), repr(error), repr(sender), caplog.text):
        assert wrong not in text
    assert tls_sink.messages == []


def test_relay_without_starttls_is_refused_before_any_mail(plain_sink: SmtpSink) -> None:
    url = plain_sink.url(starttls="required")
    with pytest.raises(PermanentDeliveryError, match="does not offer STARTTLS") as caught:
        SmtpSender(url).send(notice())
    assert "unencrypted" in str(caught.value)
    assert plain_sink.messages == []


def test_untrusted_certificate_is_transient_and_sends_nothing(
    tls_sink: SmtpSink, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    with pytest.raises(TransientDeliveryError, match="certificate not trusted"):
        SmtpSender(auth_url(tls_sink, cafile=str(other_ca))).send(notice())
    assert tls_sink.messages == []


@pytest.mark.parametrize(
    ("knob", "reply", "error_type"),
    [
        ("rcpt_reply", "451 4.3.0 Try again later", TransientDeliveryError),
        ("rcpt_reply", "550 5.1.1 No such user here", PermanentDeliveryError),
        ("data_reply", "451 4.3.0 Queue full, try again later", TransientDeliveryError),
        ("data_reply", "554 5.7.1 Message rejected as spam", PermanentDeliveryError),
    ],
)
def test_server_refusals_are_classified(
    plain_sink: SmtpSink, knob: str, reply: str, error_type: type[Exception]
) -> None:
    setattr(plain_sink, knob, reply)
    with pytest.raises(error_type) as caught:
        SmtpSender(plain_sink.url()).send(notice())
    code = int(reply[:3])
    assert caught.value.reply_code == code  # type: ignore[attr-defined]
    assert reply[4:] in str(caught.value)
    assert plain_sink.messages == []

    setattr(plain_sink, knob, None)  # the same sender recovers once the server does
    assert SmtpSender(plain_sink.url()).send(notice()).reply_code == 250


def test_too_large_for_the_server_is_permanent() -> None:
    with SmtpSink(data_size_limit=2000) as sink:
        big = notice(attachments=[Attachment(PNG * 4, "shot.png", "image/png")])
        with pytest.raises(PermanentDeliveryError, match="too large"):
            SmtpSender(sink.url()).send(big)
        assert sink.messages == []


def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more.
    with pytest.raises(TransientDeliveryError, match="connection refused") as caught:
        SmtpSender(f"smtp://127.0.0.1:{port}?starttls=off").send(notice())
    assert not caught.value.maybe_delivered


def test_silent_server_times_out_as_transient() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        sender = SmtpSender(f"smtp://127.0.0.1:{port}?starttls=off&timeout=0.3")
        with pytest.raises(TransientDeliveryError, match="timed out"):
            sender.send(notice())


def test_connection_dropped_after_data_is_transient_and_maybe_delivered(
    plain_sink: SmtpSink,
) -> None:
    """The server took the whole message, then the connection died before its reply arrived.

    No SMTP client can tell whether the message was queued, so this is the unavoidable duplicate
    window: the retry sends the message again. Because the Message-ID is derived from the
    notice, both copies carry the same id and the recipient (and we) can see they are one notice.
    """
    plain_sink.drop_after_data = True
    message = notice()
    with pytest.raises(TransientDeliveryError, match="may have accepted") as caught:
        SmtpSender(plain_sink.url()).send(message)
    assert caught.value.maybe_delivered

    plain_sink.drop_after_data = False
    SmtpSender(plain_sink.url()).send(notice())  # the worker's retry rebuilds the message
    first, retry = plain_sink.messages
    assert first.parse()["Message-ID"] == retry.parse()["Message-ID"] == message["Message-ID"]


def test_dropped_connection_after_data_over_starttls(tls_sink: SmtpSink) -> None:
    tls_sink.drop_after_data = True
    with pytest.raises(TransientDeliveryError) as caught:
        SmtpSender(auth_url(tls_sink)).send(notice())
    assert caught.value.maybe_delivered
    assert len(tls_sink.messages) == 1


def test_implicit_tls_smtps(ca: trustme.CA) -> None:
    with SmtpSink(tls="implicit", ca=ca, auth=(USER, PASSWORD)) as sink:
        url = auth_url(sink)
        assert url.startswith("smtps://")
        receipt = SmtpSender(url).send(notice())
        assert receipt.reply_code == 250
        [captured] = sink.messages
    assert captured.tls and captured.authenticated_as == USER
    assert captured.parse()["Subject"] == SUBJECT


def test_implicit_tls_to_a_plain_server_is_transient(ca: trustme.CA) -> None:
    # A relay misconfigured (or port mixed up) answers in clear text to a TLS ClientHello.
    with SmtpSink(tls="starttls", ca=ca) as sink:
        url = sink.url().replace("smtp://", "smtps://")
        with pytest.raises(TransientDeliveryError, match="TLS"):
            SmtpSender(url).send(notice())
        assert sink.messages == []


def test_auth_required_but_url_has_no_user(tls_sink: SmtpSink) -> None:
    with pytest.raises(PermanentDeliveryError, match="530"):
        SmtpSender(tls_sink.url()).send(notice())
    assert tls_sink.messages == []


def test_url_user_but_server_without_auth(ca: trustme.CA) -> None:
    with SmtpSink(tls="starttls", ca=ca) as sink:
        with pytest.raises(PermanentDeliveryError, match="does not offer AUTH"):
            SmtpSender(auth_url(sink)).send(notice())
        assert sink.messages == []


def test_sink_wait_for_and_clear(plain_sink: SmtpSink) -> None:
    sender = SmtpSender(plain_sink.url())
    thread = threading.Thread(target=lambda: [sender.send(notice(i)) for i in (1, 2)])
    thread.start()
    assert len(plain_sink.wait_for(2, timeout=10)) == 2
    thread.join()
    plain_sink.clear()
    assert plain_sink.messages == []
    with pytest.raises(TimeoutError):
        plain_sink.wait_for(1, timeout=0.05)


def test_internationalised_domain_is_written_as_a_label() -> None:
    message = notice(to_address="abuse@例え.jp")
    assert message["To"] == "abuse@" + "例え.jp".encode("idna").decode()
    assert message.as_bytes().isascii()


def test_non_ascii_local_part_uses_smtputf8_or_is_refused() -> None:
    # takedown.mail refuses such addresses; a message built elsewhere may still carry one.
    message = EmailMessage(policy=email.policy.SMTPUTF8)
    message["From"] = "notices@mamoru.invalid"
    message["To"] = "通報@example.jp"
    message["Subject"] = "通報"
    message["Message-ID"] = "<external-1@mamoru.invalid>"
    message.set_content("本文\n")
    with SmtpSink() as sink:
        SmtpSender(sink.url()).send(message)
        [captured] = sink.messages
    assert captured.rcpt_tos == ("通報@example.jp",)
    assert "SMTPUTF8" in captured.mail_options
    assert captured.parse()["To"] == "通報@example.jp"
    with SmtpSink(smtputf8=False) as sink:
        with pytest.raises(PermanentDeliveryError, match="SMTPUTF8"):
            SmtpSender(sink.url()).send(message)
        assert sink.messages == []
