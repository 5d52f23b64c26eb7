"""The origin host behind a CDN: recorded by an operator (CLI, admin web), passed to recipient
discovery, and followed up to along the escalation ladder (CDN first, then the origin's host).

Real PostgreSQL, real RDAP and pirate-site servers on 127.0.0.1 (tests/fixtures_rdap.py). The
"CDN" is a table of one CDN whose range is 127.0.0.2/32, so the site's address is the CDN's
while every connection stays on loopback; the loopback guard fails the test on anything else.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from flask import Flask

from admin.cli import cli
from admin.web import resources
from crawler.sites import SiteError, get_site, update_site
from store.config import get_settings, load_settings
from store.db import Database
from takedown.cdn import Cdn
from takedown.contacts import discover_missing_recipients
from takedown.escalate import DiscoveryOptions, escalate_notice, follow_up_origin, ladder_for
from takedown.recheck import recheck_notice
from takedown.recipients import discover
from tests.fixtures_rdap import (
    FixtureServer,
    bootstrap,
    domain_answer,
    entity,
    ip_answer,
    rdap_sandbox,  # noqa: F401 (autouse: loopback only, a fresh RDAP bootstrap cache)
    serving,
    vcard,
)
from tests.takedown_data import build
from tests.test_followup import noticed_copy, sent_ago
from tests.web_fixtures import (  # noqa: F401 (fixtures)
    Queue,
    World,
    app_fixture,
    client_for,
    csrf_token,
    make_app,
    queue_fixture,
    world_fixture,
)

DAY = dt.timedelta(days=1)
CDN_ADDRESS = "127.0.0.2"
ORIGIN = "127.0.0.1"
TEST_CDN = Cdn(
    key="testcdn",
    name="Test CDN",
    email=None,
    web_form_url="https://abuse.cdn.test/",
    networks=(ipaddress.ip_network(f"{CDN_ADDRESS}/32"),),
    as_of="2026-11-26",
)


@pytest.fixture
def registry() -> Iterator[FixtureServer]:
    """IANA and a registry: 127.0.0.1 (the origin) is "Origin Hosting"; the CDN's 127.0.0.2
    is deliberately unknown, so a lookup of it shows up as a problem and a request."""
    with serving() as server:
        base = server.url + "/rdap/"
        server.json("/iana/dns.json", bootstrap([(["test"], [base])]))
        server.json("/iana/ipv4.json", bootstrap([(["127.0.0.0/8"], [base])]))
        server.json(
            f"/rdap/ip/{ORIGIN}",
            ip_answer("127.0.0.1", "127.0.0.1", "ORIGIN-NET",
                      entity(["abuse"], vcard("Origin Hosting NOC", "noc@origin.test"))),
        )  # fmt: skip
        registrar = entity(
            ["registrar"],
            vcard("Example Registrar, Inc."),
            entity(["abuse"], vcard("Abuse Desk", "abuse@registrar.test")),
        )
        server.json("/rdap/domain/pirate.test", domain_answer("pirate.test", registrar))
        yield server


@pytest.fixture
def site() -> Iterator[FixtureServer]:
    with serving() as server:
        yield server


def one(db: Database, sql: str, *args: Any) -> Any:
    with db.connection() as conn:
        row = conn.execute(sql, args).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else tuple(row)


def options(registry: FixtureServer) -> DiscoveryOptions:
    return DiscoveryOptions(bootstrap_url=registry.url + "/iana/", timeout=5, cdns=(TEST_CDN,))


def cdn_fronted(db: Database, tmp_path: Path, site: FixtureServer) -> int:
    """The takedown scenario's site behind the CDN: its start URL is the CDN's address, its
    configured recipient the CDN's abuse desk, a registrar configured too; one copy still up
    on the (loopback) site, noticed to the CDN and past its SLA. Returns the notice id."""
    s = build(db, tmp_path)
    with db.connection() as conn:
        conn.execute(
            "update sites set start_urls = %s, allow_private_addresses = true where id = %s",
            ([f"http://{CDN_ADDRESS}:9/"], s.site_id),
        )
        conn.execute(
            "update recipients set name = 'CDN Abuse', email = 'abuse@cdn.test', scope = 'cdn'"
        )
        conn.execute(
            "insert into recipients (name, email, scope, site_id, source) values"
            " ('Registrar Abuse', 'abuse@registrar.test', 'registrar', %s, 'configured')",
            (s.site_id,),
        )
    notice_id = noticed_copy(db, s, tmp_path, site)
    sent_ago(db, notice_id, 8 * DAY)
    assert recheck_notice(db, notice_id).escalation_due
    return notice_id


def recipient_of(db: Database, notice_id: int) -> tuple[str, str, str]:
    return one(  # type: ignore[no-any-return]
        db,
        "select r.name, r.email, r.scope from notices n join recipients r on r.id = n.recipient_id"
        " where n.id = %s",
        notice_id,
    )


# -- recording the origin


def test_sites_validate_origin_addresses(db: Database) -> None:
    with db.connection() as conn:
        conn.execute("insert into sites (name, start_urls) values ('p', '{https://p.test/}')")
    assert get_site(db, "p").origin_addresses == []
    site = update_site(db, "p", {"origin_addresses": [" 198.51.100.7", "[2001:db8::7]",
                                                      "198.51.100.7"]})  # fmt: skip
    assert site.origin_addresses == ["198.51.100.7", "2001:db8::7"]
    with pytest.raises(SiteError, match=r"origin address 'origin\.p\.test' is not an IP address"):
        update_site(db, "p", {"origin_addresses": ["origin.p.test"]})


def mamoru(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_records_replaces_and_clears_the_origin(mamoru_env: Path, db_url: str) -> None:
    assert mamoru("sites", "add", "cdnsite", "https://cdnsite.test/").exit_code == 0
    first = mamoru("sites", "edit", "cdnsite", "--origin", "198.51.100.7", "--origin",
                   "198.51.100.8", "--json")  # fmt: skip
    assert first.exit_code == 0, first.output
    payload = json.loads(first.stdout)
    assert payload["origin_addresses"] == ["198.51.100.7", "198.51.100.8"]
    assert payload["origin_followups"] == []  # nothing was noticed yet
    replaced = mamoru("sites", "edit", "cdnsite", "--origin", "198.51.100.9", "--json")
    assert json.loads(replaced.stdout)["origin_addresses"] == ["198.51.100.9"]
    untouched = mamoru("sites", "edit", "cdnsite", "--max-pages", "5", "--json")
    assert json.loads(untouched.stdout)["origin_addresses"] == ["198.51.100.9"]
    assert "origin_addresses" in mamoru("sites", "show", "cdnsite").output
    cleared = mamoru("sites", "edit", "cdnsite", "--clear-origin", "--json")
    assert json.loads(cleared.stdout)["origin_addresses"] == []

    bad = mamoru("sites", "edit", "cdnsite", "--origin", "origin.example")
    assert bad.exit_code == 1 and "is not an IP address" in bad.output
    both = mamoru("sites", "edit", "cdnsite", "--origin", "198.51.100.7", "--clear-origin")
    assert both.exit_code == 2 and "contradict" in both.output
    none = mamoru("sites", "origin-followup", "cdnsite")
    assert none.exit_code == 1 and "has no origin" in none.output
    with psycopg.connect(db_url) as conn:
        edits = [
            r[0]["origin_addresses"]
            for r in conn.execute(
                "select details from audit_log where action = 'site.edit' order by id"
            )
            if "origin_addresses" in r[0]
        ]
    assert edits == [
        [[], ["198.51.100.7", "198.51.100.8"]],
        [["198.51.100.7", "198.51.100.8"], ["198.51.100.9"]],
        [["198.51.100.9"], []],
    ]


def site_form(world: World, **extra: str) -> dict[str, str]:
    form = {
        "start_urls": "https://pirate.example/",
        "rendering": "auto",
        "max_depth": "5",
        "max_pages": "100",
        "concurrency": "2",
        "time_budget_seconds": "600",
        "delay_seconds": "0.5",
        "schedule": "0 3 * * *",
        "obey_robots": "on",
        "is_active": "on",
    }
    form.update(extra)
    return form


def test_web_edit_form_records_the_origin(
    app: Flask, world: World, db: Database, queue: Queue
) -> None:
    path = f"/sites/{world.site_id}/edit"
    admin = client_for(app, "admin")
    assert 'name="origin_addresses"' in admin.get(path).get_data(as_text=True)
    saved = admin.post(path, data=site_form(world, origin_addresses="198.51.100.7\n2001:db8::7"),
                       follow_redirects=True)  # fmt: skip
    html = saved.get_data(as_text=True)
    assert saved.status_code == 200
    assert "Origin recorded" in html and "198.51.100.7, 2001:db8::7" in html
    # The follow-up talks to RDAP servers: a worker does it.
    assert "a worker now sends the site&#39;s notices" in html
    assert queue.messages() == [("followup", "origin_followup", [world.site_id, "web"])]
    assert one(db, "select origin_addresses from sites where id = %s", world.site_id) == [
        "198.51.100.7",
        "2001:db8::7",
    ]
    refused = admin.post(path, data=site_form(world, origin_addresses="not-an-address"))
    assert refused.status_code == 400
    assert "is not an IP address" in refused.get_data(as_text=True)
    # Saving the same origin again does not follow up again.
    admin.post(path, data=site_form(world, origin_addresses="198.51.100.7\n2001:db8::7"))
    assert len(queue.messages()) == 1
    # Publishers do not edit sites.
    publisher = client_for(app, "pub_a")
    assert publisher.post(path, data=site_form(world, origin_addresses="")).status_code == 403
    assert one(db, "select cardinality(origin_addresses) from sites where id = %s",
               world.site_id) == 2  # fmt: skip


def test_web_edit_form_needs_the_csrf_token(world: World, db_url: str, db: Database) -> None:
    app = make_app(db_url, WTF_CSRF_ENABLED=True)
    try:
        client = app.test_client()
        token = csrf_token(client)
        assert client.post("/login", data={"email": "admin@example.com",
                                           "password": "correct horse battery",
                                           "csrf_token": token}).status_code == 302  # fmt: skip
        path = f"/sites/{world.site_id}/edit"
        form = site_form(world, origin_addresses="198.51.100.7")
        assert client.post(path, data=form).status_code == 400
        assert one(db, "select origin_addresses from sites where id = %s", world.site_id) == []
        form["csrf_token"] = csrf_token(client, path)
        assert client.post(path, data=form).status_code == 303
        assert one(db, "select origin_addresses from sites where id = %s", world.site_id) == [
            "198.51.100.7"
        ]
    finally:
        resources.close(app)


# -- discovery


def test_discovery_ranks_the_origin_host_right_after_the_cdn(registry: FixtureServer) -> None:
    contacts = discover(
        "pirate.test",
        [CDN_ADDRESS],
        origin_addresses=[ORIGIN],
        bootstrap_url=registry.url + "/iana/",
        site_url="http://127.0.0.2:9",  # nothing listens: security.txt is a problem, no more
        allow_private=True,
        cdns=(TEST_CDN,),
        timeout=5,
    )
    assert [(c.scope, c.name) for c in contacts] == [
        ("cdn", "Test CDN"),
        ("host", "Origin Hosting NOC"),
        ("registrar", "Example Registrar, Inc."),
        ("site_operator", "Operator of pirate.test"),
    ]
    # The CDN's address is never looked up as if it named the host.
    assert registry.requested("/rdap/ip/") == [f"/rdap/ip/{ORIGIN}"]


def test_missing_recipients_are_discovered_with_the_origin(
    db: Database, tmp_path: Path, registry: FixtureServer
) -> None:
    s = build(db, tmp_path)
    with db.connection() as conn:
        conn.execute("delete from recipients")
        conn.execute(
            "update sites set start_urls = %s, allow_private_addresses = true,"
            " origin_addresses = %s where id = %s",
            ([f"http://{CDN_ADDRESS}:9/"], [ORIGIN], s.site_id),
        )
    from tests.takedown_data import add_match

    add_match(db, s, s.page_ids[0], page_url="http://pirate.test/1",
              image_url="http://pirate.test/1.jpg")  # fmt: skip
    settings = load_settings(rdap_bootstrap_url=registry.url + "/iana/")
    report = discover_missing_recipients(db, settings, timeout=5)
    assert report.discovered[s.site_id] >= 1
    with db.connection() as conn:
        emails = [r[0] for r in conn.execute("select email from recipients where scope = 'host'")]
    assert emails[0] == "noc@origin.test"


# -- the ladder


def test_ladder_for_sites_behind_a_cdn() -> None:
    assert ladder_for(("host", "cdn", "registrar"), behind_cdn=True) == ("cdn", "host", "registrar")
    assert ladder_for(("registrar", "host", "cdn"), behind_cdn=True) == ("cdn", "host", "registrar")
    assert ladder_for(("host", "registrar"), behind_cdn=True) == ("host", "registrar")
    assert ladder_for(("host", "cdn"), behind_cdn=False) == ("host", "cdn")


def test_cdn_notice_escalates_to_the_origin_host_before_the_registrar(
    db: Database, tmp_path: Path, site: FixtureServer, registry: FixtureServer
) -> None:
    notice_id = cdn_fronted(db, tmp_path, site)
    site_id = one(db, "select id from sites")
    update_site(db, "pirate", {"origin_addresses": [ORIGIN]})
    result = escalate_notice(db, notice_id, discovery=options(registry))
    [new_id] = result.approved
    # The registrar is stored and configured, yet the origin's host, discovered now, comes first.
    assert recipient_of(db, new_id) == ("Origin Hosting NOC", "noc@origin.test", "host")
    assert registry.requested("/rdap/ip/") == [f"/rdap/ip/{ORIGIN}"]
    details = one(db, "select details from events where subject_id = %s"
                      " and event_type = 'escalation'", new_id)  # fmt: skip
    assert details == {"escalates": notice_id, "scope": "host", "site_id": site_id}
    assert one(db, "select state from notices where id = %s", notice_id) == "escalated"


def test_without_the_origin_the_host_rung_is_passed_over(
    db: Database, tmp_path: Path, site: FixtureServer, registry: FixtureServer
) -> None:
    notice_id = cdn_fronted(db, tmp_path, site)
    result = escalate_notice(db, notice_id, discovery=options(registry))
    [new_id] = result.approved
    assert recipient_of(db, new_id)[2] == "registrar"
    # The CDN's address named no host: nothing was stored for it.
    assert one(db, "select count(*) from recipients where scope = 'host'") == 0


def test_origin_learnt_after_the_ladder_ran_out_gets_a_follow_up(
    db: Database,
    tmp_path: Path,
    site: FixtureServer,
    registry: FixtureServer,
    mamoru_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notice_id = cdn_fronted(db, tmp_path, site)
    with db.connection() as conn:
        conn.execute("delete from recipients where scope = 'registrar'")
    # Nobody after the CDN (the registry knows no 127.0.0.2): the ladder runs out.
    ran_out = escalate_notice(db, notice_id, discovery=options(registry))
    assert ran_out.outcome == "exhausted" and ran_out.delisted_items
    before = one(db, "select count(*) from notices")
    # Without an origin, there is nothing to follow up.
    assert follow_up_origin(db, one(db, "select id from sites"), discovery=options(registry)) == []

    monkeypatch.setenv("MAMORU_RDAP_BOOTSTRAP_URL", registry.url + "/iana/")
    get_settings.cache_clear()
    edited = mamoru("sites", "edit", "pirate", "--origin", ORIGIN, "--json")
    assert edited.exit_code == 0, edited.output
    [followup] = json.loads(edited.stdout)["origin_followups"]
    assert followup["outcome"] == "escalated" and followup["notice_id"] == notice_id
    [new_id] = followup["approved"]
    assert recipient_of(db, new_id) == ("Origin Hosting NOC", "noc@origin.test", "host")
    assert one(db, "select count(*) from notices") == before + 1
    assert one(db, "select escalates_notice_id from notices where id = %s", new_id) == notice_id
    assert one(db, "select state from notices where id = %s", notice_id) == "escalated"
    event = one(db, "select details from events where subject_id = %s"
                    " and event_type = 'origin_followup'", notice_id)  # fmt: skip
    assert event == {"to": new_id, "origin_addresses": [ORIGIN]}
    body = one(db, "select body_text from notices where id = %s", new_id)
    assert site.url + "/img/1.png" in body

    # Idempotent: the chain has reached the host.
    again = mamoru("sites", "origin-followup", "pirate", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == []
    assert one(db, "select count(*) from notices") == before + 1


def test_the_worker_follows_up_the_origin_and_sends_the_new_notice(
    db: Database,
    tmp_path: Path,
    site: FixtureServer,
    registry: FixtureServer,
    mamoru_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    queue: Queue,
) -> None:
    notice_id = cdn_fronted(db, tmp_path, site)
    with db.connection() as conn:
        conn.execute("delete from recipients where scope = 'registrar'")
    assert escalate_notice(db, notice_id, discovery=options(registry)).outcome == "exhausted"
    site_id = one(db, "select id from sites")
    monkeypatch.setenv("MAMORU_RDAP_BOOTSTRAP_URL", registry.url + "/iana/")
    get_settings.cache_clear()
    update_site(db, "pirate", {"origin_addresses": [ORIGIN]}, actor="test")
    from takedown import actors_followup

    # What the worker runs for the message the web form enqueues (its body, in this process).
    actors_followup.origin_followup.fn(site_id, "web")
    new_id = one(db, "select id from notices where escalates_notice_id = %s", notice_id)
    assert recipient_of(db, new_id) == ("Origin Hosting NOC", "noc@origin.test", "host")
    assert one(db, "select state from notices where id = %s", new_id) == "approved"
    assert queue.messages() == [("notices", "send_notices", [[new_id]])]
    # A duplicate message changes nothing.
    actors_followup.origin_followup.fn(site_id, "web")
    assert one(db, "select count(*) from notices where escalates_notice_id = %s", notice_id) == 1
    assert len(queue.messages()) == 1
