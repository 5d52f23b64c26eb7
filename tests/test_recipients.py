"""Recipient discovery: RDAP, security.txt, CDN ranges, ordering, the SSRF refusal, persistence.

Every HTTP exchange is with real servers on loopback (tests/fixtures_rdap.py). A guard refuses
any other connection or name lookup for the duration of each test, so a bug that would reach
the Internet fails loudly instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from crawler.netguard import AddressPolicy
from store.db import Database
from takedown.cdn import cdn_for, load_cdns
from takedown.rdap import FetchError, RdapClient, RdapError, RdapNotFound, fetch, parse_vcard
from takedown.recipients import (
    Contact,
    LookupRefused,
    configured_contacts,
    discover,
    discover_report,
    ensure_recipients,
    fetch_security_txt,
    parse_security_txt,
    recipients_for_site,
    registrable_domain,
)
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

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LAB = AddressPolicy(allow_private=True)
SECURITY_TXT = """\
# Pirate Reader's security contacts
Contact: mailto:security@pirate.test
Contact: https://pirate.test/report
Contact: http://pirate.test/insecure-form
Expires: 2027-06-30T00:00:00Z
Preferred-Languages: en, ja
"""


# -- guards and fixtures


@pytest.fixture
def registry() -> Iterator[FixtureServer]:
    """IANA's bootstrap files and one RDAP registry, all on one loopback server."""
    with serving() as server:
        base = server.url + "/rdap/"
        server.json(
            "/iana/dns.json",
            bootstrap(
                [
                    (["test"], [base]),
                    (["co.test"], [server.url + "/rdap-co"]),
                    (["tls.test"], ["http://rdap.invalid/plain/", "https://rdap.invalid/tls/"]),
                ]
            ),
        )
        server.json(
            "/iana/ipv4.json",
            bootstrap([(["127.0.0.0/8"], [base]), (["127.0.5.0/24"], [server.url + "/narrow/"])]),
        )
        server.json("/iana/ipv6.json", bootstrap([(["::1/128"], [base])]))
        registrar = entity(
            ["registrar"],
            vcard("Example Registrar, Inc."),
            entity(["abuse"], vcard("Abuse Desk", "abuse@registrar.test", "+81.312345678")),
        )
        server.json("/rdap/domain/pirate.test", domain_answer("pirate.test", registrar))
        server.json(
            "/rdap/ip/127.0.0.1",
            ip_answer(
                "127.0.0.0",
                "127.255.255.255",
                "LOOPBACK-NET",
                entity(["registrant"], vcard("Loopback Hosting KK")),
                entity(["abuse"], vcard("Loopback NOC", "noc@host.test")),
            ),
        )
        yield server


@pytest.fixture
def site() -> Iterator[FixtureServer]:
    """The pirate site itself, serving a valid security.txt."""
    with serving() as server:
        server.text("/.well-known/security.txt", SECURITY_TXT)
        yield server


def client(registry: FixtureServer, **kwargs: Any) -> RdapClient:
    return RdapClient(registry.url + "/iana/", allow_private=True, **kwargs)


# -- RDAP


def test_bootstrap_picks_longest_suffix_and_prefers_https(registry: FixtureServer) -> None:
    rdap_client = client(registry)
    assert rdap_client.base_for_domain("www.pirate.test") == registry.url + "/rdap/"
    assert rdap_client.base_for_domain("x.co.test") == registry.url + "/rdap-co/"
    assert rdap_client.base_for_domain("x.tls.test") == "https://rdap.invalid/tls/"
    assert rdap_client.base_for_ip("127.0.0.1") == registry.url + "/rdap/"
    assert rdap_client.base_for_ip("127.0.5.9") == registry.url + "/narrow/"
    assert rdap_client.base_for_ip("::1") == registry.url + "/rdap/"
    with pytest.raises(RdapError, match=r"no RDAP for 'pirate\.example'") as caught:
        rdap_client.base_for_domain("pirate.example")
    assert caught.value.url.endswith("/iana/dns.json")


def test_bootstrap_files_are_cached_in_memory(registry: FixtureServer) -> None:
    client(registry).base_for_domain("pirate.test")
    client(registry).base_for_domain("other.test")
    assert registry.requested("/iana/") == ["/iana/dns.json"]


def test_malformed_bootstrap_is_an_rdap_error(registry: FixtureServer) -> None:
    registry.json("/iana/dns.json", {"services": [["test"]]})
    with pytest.raises(RdapError, match="malformed"):
        client(registry).base_for_domain("pirate.test")


def test_domain_abuse_contact_nested_under_registrar(registry: FixtureServer) -> None:
    answer = client(registry).domain("pirate.test")
    assert answer.url == registry.url + "/rdap/domain/pirate.test"
    assert answer.registrar == "Example Registrar, Inc."
    assert answer.abuse is not None
    assert answer.abuse.fn == "Abuse Desk"
    assert answer.abuse.email == "abuse@registrar.test"
    assert answer.abuse.phones == ("+81.312345678",)


def test_ip_abuse_contact_and_holder(registry: FixtureServer) -> None:
    answer = client(registry).ip("127.0.0.1")
    assert answer.abuse is not None and answer.abuse.email == "noc@host.test"
    assert answer.holder == "Loopback Hosting KK"


def test_missing_abuse_entity_gives_no_abuse(registry: FixtureServer) -> None:
    registry.json(
        "/rdap/domain/quiet.test",
        domain_answer("quiet.test", entity(["registrar"], vcard("Quiet Registrar"))),
    )
    answer = client(registry).domain("quiet.test")
    assert answer.abuse is None
    assert answer.registrar == "Quiet Registrar"


def test_unknown_domain_is_rdap_not_found(registry: FixtureServer) -> None:
    with pytest.raises(RdapNotFound) as caught:
        client(registry).domain("nobody.test")
    assert caught.value.status == 404
    assert caught.value.url == registry.url + "/rdap/domain/nobody.test"


def test_malformed_json_names_the_url(registry: FixtureServer) -> None:
    registry.route("/rdap/domain/broken.test", body=b'{"entities": [')
    with pytest.raises(RdapError, match="malformed") as caught:
        client(registry).domain("broken.test")
    assert caught.value.url == registry.url + "/rdap/domain/broken.test"
    assert "broken.test" in str(caught.value)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-close"])
def test_huge_response_is_refused(registry: FixtureServer, declared: bool) -> None:
    registry.route("/rdap/domain/huge.test", body=b" " * 300_000, content_length=declared)
    with pytest.raises(RdapError, match="too-large"):
        client(registry, max_bytes=100_000).domain("huge.test")


@pytest.mark.parametrize("kind", ["late", "drip"])
def test_slow_response_times_out(registry: FixtureServer, kind: str) -> None:
    answer = b'{"objectClassName": "domain"}' + b" " * 100
    if kind == "late":
        registry.route("/rdap/domain/slow.test", body=answer, delay=10)
    else:  # every byte arrives in time for a per-read timeout; the whole never does
        registry.route("/rdap/domain/slow.test", body=answer, drip=0.05)
    rdap_client = client(registry, timeout=0.5)
    rdap_client.base_for_domain("slow.test")  # bootstrap read outside the timed part
    started = time.monotonic()
    with pytest.raises(RdapError, match="timeout") as caught:
        rdap_client.domain("slow.test")
    assert time.monotonic() - started < 2.0
    assert caught.value.url.endswith("/rdap/domain/slow.test")


def test_redirects_are_followed_and_bounded(registry: FixtureServer) -> None:
    moved = registry.url + "/rdap/domain/pirate.test"
    registry.route("/rdap/domain/moved.test", status=302, headers={"Location": moved})
    assert client(registry).domain("moved.test").registrar == "Example Registrar, Inc."

    for hop in range(5):
        registry.route(f"/loop/{hop}", status=301, headers={"Location": f"/loop/{hop + 1}"})
    with pytest.raises(FetchError, match="more than 3 redirects"):
        fetch(registry.url + "/loop/0", policy=LAB)
    assert registry.requested("/loop/") == ["/loop/0", "/loop/1", "/loop/2", "/loop/3"]


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("ftp://127.0.0.1/x", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("http://0.0.0.0:{port}/", "refused"),
    ],
)
def test_redirect_targets_are_checked(registry: FixtureServer, location: str, reason: str) -> None:
    registry.route("/jump", status=307, headers={"Location": location.format(port=registry.port)})
    with pytest.raises(FetchError) as caught:
        fetch(registry.url + "/jump", policy=LAB)
    assert caught.value.reason == reason
    assert registry.requested() == ["/jump"]


def test_loopback_is_refused_without_allow_private(registry: FixtureServer) -> None:
    with pytest.raises(FetchError) as caught:
        fetch(registry.url + "/iana/dns.json", policy=AddressPolicy())
    assert caught.value.reason == "refused"
    with pytest.raises(RdapError, match="refused"):
        RdapClient(registry.url + "/iana/").domain("pirate.test")
    assert registry.requested() == []


def test_vcard_variants() -> None:
    card = parse_vcard(
        [
            "vcard",
            [
                ["fn", {}, "text", "Desk"],
                ["email", {}, "text", ["a@x.test", "mailto:b@x.test"]],
                ["email", {}, "text", "not an email"],
                ["contact-uri", {}, "uri", "https://x.test/abuse-form"],
                ["bogus"],
            ],
        ]
    )
    assert card is not None
    assert card.emails == ("a@x.test", "b@x.test")
    assert card.web_form_url == "https://x.test/abuse-form"
    assert parse_vcard(["not-a-vcard", []]) is None
    assert parse_vcard("junk") is None


# -- security.txt


def test_security_txt_valid(site: FixtureServer) -> None:
    found = fetch_security_txt(site.url, allow_private=True, now=NOW)
    assert found.problem is None
    assert found.emails == ["security@pirate.test"]
    assert found.web_forms == ["https://pirate.test/report"]  # the http: one is not trusted
    assert found.expires == datetime(2027, 6, 30, tzinfo=UTC)


def test_security_txt_expired_is_ignored_with_reason(site: FixtureServer) -> None:
    site.text("/.well-known/security.txt", SECURITY_TXT.replace("2027-06-30", "2026-01-01"))
    found = fetch_security_txt(site.url, allow_private=True, now=NOW)
    assert found.problem == "expired on 2026-01-01T00:00:00+00:00"


def test_security_txt_missing(site: FixtureServer) -> None:
    del site.routes["/.well-known/security.txt"]
    assert fetch_security_txt(site.url, allow_private=True, now=NOW).problem == "HTTP 404"


@pytest.mark.parametrize("content_type", ["text/html", "text/plain"])
def test_security_txt_html_junk(site: FixtureServer, content_type: str) -> None:
    junk = "<!doctype html><html><body>Contact: mailto:x@pirate.test</body></html>"
    site.text("/.well-known/security.txt", junk, content_type=content_type)
    found = fetch_security_txt(site.url, allow_private=True, now=NOW)
    assert found.problem is not None and found.emails == []


def test_security_txt_parsing_details() -> None:
    signed = (
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"
        "Contact: mailto:abuse%40pirate.test?subject=report\n"
        "- Contact: ops@pirate.test\n"
        "Expires: 2027-01-01T00:00:00\nExpires: 2026-12-31T00:00:00+09:00\n"
        "-----BEGIN PGP SIGNATURE-----\nContact: mailto:after@signature.test\n"
        "-----END PGP SIGNATURE-----\n"
    )
    found = parse_security_txt(signed, url="u", now=NOW)
    assert found.problem is None
    assert found.emails == ["abuse@pirate.test", "ops@pirate.test"]
    assert found.expires == datetime(2026, 12, 30, 15, tzinfo=UTC)
    assert found.warnings == ("more than one Expires field; the earliest counts",)

    undated = parse_security_txt("Contact: mailto:a@b.test\n", url="u", now=NOW)
    assert undated.problem is None and undated.warnings
    nothing = parse_security_txt("Contact: tel:+1-201-555-0123\n", url="u", now=NOW)
    assert nothing.problem == "no Contact with a mailto: or https: URI"


def test_security_txt_over_ipv6_loopback() -> None:
    try:
        server = FixtureServer("::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server.start()
    try:
        server.text("/.well-known/security.txt", SECURITY_TXT)
        assert fetch_security_txt(server.url, allow_private=True, now=NOW).problem is None
        with pytest.raises(FetchError, match="refused"):
            fetch_security_txt(server.url, now=NOW)
        assert server.requested() == ["/.well-known/security.txt"]
    finally:
        server.stop()


# -- registrable domain and CDN ranges


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("www.example.co.jp", "example.co.jp"),
        ("a.b.example.com", "example.com"),
        ("manga.foo.co.uk.", "foo.co.uk"),
        ("WWW.Pirate.Test", "pirate.test"),  # unknown suffix: last two labels
        ("x.pirate.ne.jp", "pirate.ne.jp"),
        ("127.0.0.1", None),
        ("localhost", None),
    ],
)
def test_registrable_domain(name: str, expected: str | None) -> None:
    assert registrable_domain(name) == expected


@pytest.mark.parametrize(
    ("address", "cdn"),
    [
        ("104.16.1.1", "cloudflare"),
        ("172.67.200.3", "cloudflare"),
        ("173.245.63.255", "cloudflare"),
        ("173.245.64.0", None),
        ("8.8.8.8", None),
        ("2606:4700::6810:84e5", "cloudflare"),
        ("2a06:98c7:ffff::1", "cloudflare"),
        ("2a06:98c8::1", None),
        ("::ffff:104.16.1.1", "cloudflare"),
        ("2001:4860::8888", None),
        ("not an address", None),
    ],
)
def test_cdn_ranges(address: str, cdn: str | None) -> None:
    found = cdn_for(address)
    assert (found.key if found else None) == cdn


def test_cdn_table_entries_have_a_channel() -> None:
    for cdn in load_cdns():
        assert cdn.web_form_url or cdn.email
        assert cdn.networks and cdn.as_of


# -- discovery


def test_discovery_order_without_cdn(registry: FixtureServer, site: FixtureServer) -> None:
    found = discover_report(
        "www.pirate.test",
        ["127.0.0.1"],
        bootstrap_url=registry.url + "/iana/",
        site_url=site.url,
        allow_private=True,
        now=NOW,
    )
    assert [(c.scope, c.source, c.email or c.web_form_url) for c in found.contacts] == [
        ("site_operator", "security_txt", "security@pirate.test"),
        ("site_operator", "security_txt", "https://pirate.test/report"),
        ("host", "rdap", "noc@host.test"),
        ("registrar", "rdap", "abuse@registrar.test"),
        ("site_operator", "rfc2142", "abuse@pirate.test"),
    ]
    names = [c.name for c in found.contacts]
    assert names[2:4] == ["Loopback NOC", "Example Registrar, Inc."]
    assert [c.domain for c in found.contacts] == ["www.pirate.test"] * 3 + ["pirate.test"] * 2
    assert found.problems == []


def test_discovery_order_behind_cdn(registry: FixtureServer, site: FixtureServer) -> None:
    contacts = discover(
        "pirate.test",
        ["104.16.1.1", "2606:4700::1"],
        origin_addresses=["127.0.0.1"],
        bootstrap_url=registry.url + "/iana/",
        site_url=site.url,
        allow_private=True,
        now=NOW,
    )
    assert [(c.scope, c.email or c.web_form_url) for c in contacts] == [
        ("cdn", "https://abuse.cloudflare.com/"),
        ("host", "noc@host.test"),
        ("site_operator", "security@pirate.test"),
        ("site_operator", "https://pirate.test/report"),
        ("registrar", "abuse@registrar.test"),
        ("site_operator", "abuse@pirate.test"),
    ]
    assert contacts[0].name == "Cloudflare, Inc."
    # The CDN's own addresses are never looked up as if they were the host.
    assert registry.requested("/rdap/ip/") == ["/rdap/ip/127.0.0.1"]


def test_discovery_behind_cdn_without_origin(registry: FixtureServer, site: FixtureServer) -> None:
    contacts = discover(
        "pirate.test",
        ["104.16.1.1"],
        bootstrap_url=registry.url + "/iana/",
        site_url=site.url,
        allow_private=True,
        now=NOW,
    )
    assert [c.scope for c in contacts] == [
        "cdn",
        "site_operator",
        "site_operator",
        "registrar",
        "site_operator",
    ]
    assert registry.requested("/rdap/ip/") == []


def test_origin_behind_a_cdn_not_in_the_table(registry: FixtureServer, site: FixtureServer) -> None:
    # An operator recorded an origin: whatever fronts the site, the origin's host ranks before
    # the network the site's own address is in (which then is the unknown CDN's).
    registry.json(
        "/narrow/ip/127.0.5.5",
        ip_answer("127.0.5.0", "127.0.5.255", "UNKNOWN-CDN",
                  entity(["abuse"], vcard("Some CDN", "abuse@some-cdn.test"))),
    )  # fmt: skip
    contacts = discover(
        "pirate.test",
        ["127.0.5.5"],
        origin_addresses=["127.0.0.1"],
        bootstrap_url=registry.url + "/iana/",
        site_url=site.url,
        allow_private=True,
        now=NOW,
    )
    hosts = [c.email for c in contacts if c.scope == "host"]
    assert hosts == ["noc@host.test", "abuse@some-cdn.test"]
    assert registry.requested("/rdap/ip/") == ["/rdap/ip/127.0.0.1"]
    assert registry.requested("/narrow/ip/") == ["/narrow/ip/127.0.5.5"]


def test_failing_steps_are_reported_not_fatal(registry: FixtureServer, site: FixtureServer) -> None:
    site.text("/.well-known/security.txt", SECURITY_TXT.replace("2027-06-30", "2020-01-01"))
    registry.route("/rdap/ip/127.0.0.1", body=b"<html>oops</html>", content_type="text/html")
    found = discover_report(
        "pirate.test",
        ["127.0.0.1"],
        bootstrap_url=registry.url + "/iana/",
        site_url=site.url,
        allow_private=True,
        now=NOW,
    )
    assert [c.scope for c in found.contacts] == ["registrar", "site_operator"]
    assert [(p.step, p.refused) for p in found.problems] == [
        ("rdap_ip", False),
        ("security_txt", False),
    ]
    assert "expired" in found.problems[1].message


def test_configured_contacts_win_without_any_lookup(
    registry: FixtureServer, site: FixtureServer
) -> None:
    mine = Contact("Legal", "legal@pirate.test", None, "site_operator", "configured", None)
    contacts = discover(
        "pirate.test",
        ["127.0.0.1"],
        configured=[mine],
        bootstrap_url=registry.url + "/iana/",
        site_url=site.url,
        allow_private=True,
    )
    assert contacts == [mine]
    assert registry.requested() == [] and site.requested() == []


@pytest.mark.parametrize(
    ("domain", "addresses", "origins", "reason"),
    [
        ("pirate.test", ["127.0.0.1"], [], "loopback"),
        ("pirate.test", ["93.184.215.14", "10.1.2.3"], [], "private"),
        ("pirate.test", ["169.254.169.254"], [], "link-local"),
        ("pirate.test", ["fe80::1"], [], "link-local"),
        ("pirate.test", ["104.16.1.1"], ["192.168.1.10"], "private"),
        ("localhost", None, [], "loopback"),
        ("127.0.0.1", None, [], "loopback"),
    ],
)
def test_private_targets_are_refused_before_any_connection(
    registry: FixtureServer,
    site: FixtureServer,
    domain: str,
    addresses: list[str] | None,
    origins: list[str],
    reason: str,
) -> None:
    with pytest.raises(LookupRefused) as caught:
        discover(
            domain,
            addresses,
            origin_addresses=origins,
            bootstrap_url=registry.url + "/iana/",
            site_url=site.url,
        )
    assert caught.value.reason == reason
    assert registry.requested() == [] and site.requested() == []


def test_private_endpoints_are_reported_as_refused(
    registry: FixtureServer, site: FixtureServer
) -> None:
    found = discover_report(
        "pirate.test",
        ["104.16.1.1"],
        bootstrap_url=registry.url + "/iana/",
        site_url=site.url,
        now=NOW,
    )
    assert [c.scope for c in found.contacts] == ["cdn", "site_operator"]
    assert [(p.step, p.refused) for p in found.problems] == [
        ("security_txt", True),
        ("rdap_domain", True),
    ]
    assert registry.requested() == [] and site.requested() == []


# -- persistence


def _scalar(conn: Any, sql: str, params: tuple[Any, ...]) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def _site_id(conn: Any, name: str = "pirate") -> int:
    sql = "insert into sites (name, start_urls) values (%s, %s) returning id"
    return int(_scalar(conn, sql, (name, [f"https://{name}.test/"])))


DISCOVERED = [
    Contact("Cloudflare, Inc.", None, "https://abuse.cloudflare.com/", "cdn", "rdap", "p.test"),
    Contact(
        "Operator of p.test", "security@p.test", None, "site_operator", "security_txt", "p.test"
    ),
    Contact("Loopback NOC", "noc@host.test", None, "host", "rdap", "p.test"),
    Contact("Operator of p.test", "abuse@p.test", None, "site_operator", "rfc2142", "p.test"),
]


def test_ensure_recipients_is_idempotent(db: Database) -> None:
    with db.connection() as conn:
        site_id = _site_id(conn)
        first = ensure_recipients(conn, site_id, DISCOVERED)
        again = ensure_recipients(conn, site_id, DISCOVERED)
        assert first == again and len(set(first)) == len(DISCOVERED)
        rows = recipients_for_site(conn, site_id)
        assert [r.id for r in rows] == first
        assert [r.contact() for r in rows] == DISCOVERED
        assert _scalar(conn, "select count(*) from recipients", ()) == len(DISCOVERED)


def test_rediscovery_updates_but_never_demotes(db: Database) -> None:
    with db.connection() as conn:
        site_id = _site_id(conn)
        [first] = ensure_recipients(conn, site_id, [DISCOVERED[1]])
        guess = Contact("Guess", "SECURITY@p.test", None, "site_operator", "rfc2142", "p.test")
        assert ensure_recipients(conn, site_id, [guess]) == [first]
        [row] = recipients_for_site(conn, site_id)
        assert row.source == "security_txt" and row.name == "Guess"
        # Same mailbox in another scope is another recipient.
        as_host = Contact("NOC", "security@p.test", None, "host", "rdap", "p.test")
        assert ensure_recipients(conn, site_id, [as_host]) != [first]


def test_configured_rows_are_untouched_and_come_first(db: Database) -> None:
    with db.connection() as conn:
        site_id = _site_id(conn)
        ensure_recipients(conn, site_id, DISCOVERED[:1])
        configured_id = _scalar(
            conn,
            "insert into recipients (name, email, scope, site_id, source)"
            " values ('Legal', 'Abuse@p.test', 'site_operator', %s, 'configured') returning id",
            (site_id,),
        )
        ids = ensure_recipients(conn, site_id, DISCOVERED)
        assert ids[3] == configured_id
        rows = recipients_for_site(conn, site_id)
        assert rows[0].id == configured_id
        assert (rows[0].name, rows[0].email, rows[0].source, rows[0].domain) == (
            "Legal",
            "Abuse@p.test",
            "configured",
            None,
        )
        assert configured_contacts(conn, site_id) == [
            Contact("Legal", "Abuse@p.test", None, "site_operator", "configured", None)
        ]
        assert len(rows) == len(DISCOVERED)


def test_other_sites_are_separate(db: Database) -> None:
    with db.connection() as conn:
        one = _site_id(conn)
        other = _site_id(conn, "other")
        a = ensure_recipients(conn, one, DISCOVERED)
        b = ensure_recipients(conn, other, DISCOVERED)
        assert not set(a) & set(b)
        assert configured_contacts(conn, one) == []
