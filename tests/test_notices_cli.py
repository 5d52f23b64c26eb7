"""`mamoru publishers edit`, `mamoru contacts`, `mamoru notices` and recipient discovery for
sites without a configured recipient, against a real PostgreSQL and loopback servers."""

from __future__ import annotations

import csv
import email
import io
import json
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner, Result

from admin.cli import cli
from store.config import get_settings, load_settings
from store.db import Database
from takedown import rdap
from takedown.compose import compose_notices
from takedown.contacts import discover_missing_recipients
from tests.fixtures_rdap import bootstrap, serving
from tests.smtp_sink import SmtpSink
from tests.takedown_data import add_match, build


def mamoru(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(autouse=True)
def _fresh_bootstrap() -> None:
    rdap.clear_bootstrap_cache()


def test_publisher_identity_and_auto_approval_are_edited_and_audited(
    mamoru_env: Path, db_url: str, tmp_path: Path
) -> None:
    db = Database(db_url, min_size=0)
    build(db, tmp_path, complete_publisher=False)
    db.close()
    result = mamoru(
        "publishers", "edit", "Sample Comics", "--agent-org", "Sample Rights Office",
        "--address", "1-1 Kanda, Tokyo", "--phone", "+81-3-0000-0000",
        "--email", "rights@publisher.test", "--auto-approve", "0.9",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "signed by Sample Rights Office, auto-approves confident matches >= 0.90" in result.output
    )
    off = mamoru("publishers", "edit", "Sample Comics", "--review-all")
    assert off.exit_code == 0 and "reviews all" in off.output
    missing = mamoru("publishers", "edit", "Nobody", "--phone", "1")
    assert missing.exit_code == 1 and "no publisher named 'Nobody'" in missing.output
    db = Database(db_url, min_size=0)
    with db.connection() as conn:
        audit = conn.execute(
            "select details from audit_log where action = 'publisher_updated' order by id"
        ).fetchall()
    db.close()
    assert audit[0][0]["agent_organisation"] == {"old": None, "new": "Sample Rights Office"}
    assert audit[1][0]["auto_approve_min_confidence"] == {"old": 0.9, "new": None}


def test_notices_from_compose_to_outbox_and_exports(
    mamoru_env: Path, db_url: str, tmp_path: Path
) -> None:
    db = Database(db_url, min_size=0)
    s = build(db, tmp_path)
    for n, page_id in enumerate(s.page_ids, start=1):
        add_match(
            db, s, page_id, page_url=f"http://pirate.test/r/{n}",
            image_url=f"http://pirate.test/i/{n},\"x\".jpg",
        )  # fmt: skip
    db.close()
    added = mamoru(
        "contacts", "add", "pirate", "--name", "Pirate Platform", "--email",
        "notices@platform.test", "--scope", "platform", "--format", "jp_provider",
        "--language", "ja", "--designated-platform",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    listing = mamoru("contacts", "list", "pirate")
    # Configured recipients are listed in the order they are used.
    assert listing.output.index("Pirate Host Abuse") < listing.output.index("Pirate Platform")

    composed = mamoru("notices", "compose")
    assert composed.exit_code == 0, composed.output
    assert "1 notice(s) drafted: 0 held by the flood guard, 0 refused" in composed.output
    rows = json.loads(mamoru("notices", "list", "--json").stdout)
    [notice] = rows
    assert (notice["state"], notice["urls"], notice["email"]) == (
        "approved", 2, "abuse@pirate-host.test"
    )  # fmt: skip

    sent = mamoru("notices", "send", str(notice["id"]))
    assert sent.exit_code == 0 and f"notice {notice['id']}: sent" in sent.output
    again = mamoru("notices", "send", str(notice["id"]))
    assert f"notice {notice['id']}: skipped" in again.output
    [eml] = list((mamoru_env / "outbox").glob("*.eml"))  # nothing left the machine
    message = email.message_from_bytes(eml.read_bytes())
    assert message["To"] == "abuse@pirate-host.test"

    shown = mamoru("notices", "show", str(notice["id"]))
    assert "approved -> queued" in shown.output and "queued -> sent" in shown.output
    assert "http://pirate.test/r/1" in shown.output

    exported = mamoru("notices", "export", "--format", "csv")
    table = list(csv.reader(io.StringIO(exported.output)))
    assert 'http://pirate.test/i/1,"x".jpg' in {row[0] for row in table}
    lumen = json.loads(mamoru("notices", "export", "--format", "lumen").output)
    assert lumen  # one notice, shaped for Lumen
    assert "Takedown Vol. 1" in json.dumps(lumen, ensure_ascii=False)


def test_discovery_finds_security_txt_for_a_site_without_recipients(
    db: Database, tmp_path: Path
) -> None:
    s = build(db, tmp_path)
    add_match(db, s, s.page_ids[0], page_url="http://x.test/1", image_url="http://x.test/1.jpg")
    with serving() as server:
        server.text(
            "/.well-known/security.txt",
            "Contact: mailto:abuse@site-operator.test\nExpires: 2099-01-01T00:00:00Z\n",
        )
        server.json("/iana/dns.json", bootstrap([]))
        server.json("/iana/ipv4.json", bootstrap([]))
        server.json("/iana/ipv6.json", bootstrap([]))
        with db.connection() as conn:
            conn.execute("delete from recipients")
            conn.execute(
                "update sites set start_urls = %s, allow_private_addresses = true",
                ([server.url + "/"],),
            )
        settings = load_settings(rdap_bootstrap_url=server.url + "/iana/")
        report = discover_missing_recipients(db, settings, timeout=5)
    assert report.discovered == {s.site_id: 1}
    notices = compose_notices(db)
    assert len(notices.notices) == 1
    with db.connection() as conn:
        row = conn.execute(
            "select r.email, r.source from notices n join recipients r on r.id = n.recipient_id"
        ).fetchone()
    assert row == ("abuse@site-operator.test", "security_txt")


def test_discovery_refuses_a_private_site_that_does_not_allow_it(
    db: Database, tmp_path: Path
) -> None:
    s = build(db, tmp_path)
    add_match(db, s, s.page_ids[0], page_url="http://x.test/1", image_url="http://x.test/1.jpg")
    with db.connection() as conn:
        conn.execute("delete from recipients")
        conn.execute("update sites set start_urls = '{http://127.0.0.1:9/}'")
    report = discover_missing_recipients(db, load_settings(), timeout=2)
    assert report.discovered == {s.site_id: 0}
    assert "refused" in " ".join(report.problems[s.site_id])
    assert compose_notices(db).no_recipient == {s.site_id: 1}


def test_check_relay_logs_in_and_out_without_sending(
    mamoru_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unset = mamoru("notices", "check-relay")
    assert unset.exit_code == 0 and "nothing leaves this machine" in unset.output
    ca = trustme.CA()
    with SmtpSink(tls="starttls", ca=ca, auth=("agent", "s3cret")) as sink:
        good = sink.url(user="agent", password="s3cret")
        monkeypatch.setenv("MAMORU_SMTP_URL", good)
        get_settings.cache_clear()
        result = mamoru("notices", "check-relay")
        assert result.exit_code == 0, result.output
        assert "relay OK:" in result.output and "TLS, logged in as agent" in result.output
        assert "s3cret" not in result.output
        monkeypatch.setenv("MAMORU_SMTP_URL", sink.url(user="agent", password="wrong"))
        get_settings.cache_clear()
        refused = mamoru("notices", "check-relay")
        assert refused.exit_code == 1
        assert "relay check failed (permanent)" in refused.output
        assert "refused the login of 'agent'" in refused.output
        assert sink.messages == []
    with SmtpSink() as plain:
        gone = plain.url()
    monkeypatch.setenv("MAMORU_SMTP_URL", gone)  # nothing listens there any more
    get_settings.cache_clear()
    down = mamoru("notices", "check-relay")
    assert down.exit_code == 1 and "transient: try again later" in down.output
    assert "connection refused" in down.output
