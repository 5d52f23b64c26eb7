"""Configured DNS servers for recipient discovery (``MAMORU_DNS_SERVERS``).

A real DNS server on 127.0.0.1 (tests/dns_fixture.py) knows names nothing else knows; the
loopback guard makes the system resolver fail for every name and fails the test on any packet
or connection beyond loopback, so a name that resolves here was resolved by that server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from crawler.netguard import AddressPolicy, BlockedAddress
from store.config import load_settings
from takedown.rdap import FetchError, RdapClient
from takedown.recipients import discover_report, fetch_security_txt
from takedown.resolver import DnsError, Resolver
from tests.dns_fixture import DnsFixture, dns_serving
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
from tests.test_recipients import NOW, SECURITY_TXT

LAB = AddressPolicy(allow_private=True)


@pytest.fixture
def dns() -> Iterator[DnsFixture]:
    records = {
        "pirate.test": ["127.0.0.1", "::1"],
        "rdap.test": ["127.0.0.1"],
        "v4only.test": ["127.0.0.1"],
        "intranet.test": ["10.1.2.3"],
        "empty.test": [],
    }
    with dns_serving(records) as server:
        yield server


@pytest.fixture
def registry() -> Iterator[FixtureServer]:
    """IANA and one RDAP registry on loopback, named in the bootstrap by ``rdap.test``."""
    with serving() as server:
        base = f"http://rdap.test:{server.port}/rdap/"
        server.json("/iana/dns.json", bootstrap([(["test"], [base])]))
        server.json("/iana/ipv4.json", bootstrap([(["127.0.0.0/8"], [base])]))
        server.json("/iana/ipv6.json", bootstrap([(["::1/128"], [base])]))
        registrar = entity(
            ["registrar"],
            vcard("Example Registrar, Inc."),
            entity(["abuse"], vcard("Abuse Desk", "abuse@registrar.test")),
        )
        server.json("/rdap/domain/pirate.test", domain_answer("pirate.test", registrar))
        server.json(
            "/rdap/ip/127.0.0.1",
            ip_answer("127.0.0.0", "127.255.255.255", "LOOPBACK-NET",
                      entity(["abuse"], vcard("Loopback NOC", "noc@host.test"))),
        )  # fmt: skip
        server.json(
            "/rdap/ip/%3A%3A1",
            ip_answer("::1", "::1", "LOOPBACK6",
                      entity(["abuse"], vcard("Loopback NOC", "noc@host.test"))),
        )  # fmt: skip
        yield server


@pytest.fixture
def site() -> Iterator[FixtureServer]:
    with serving() as server:
        server.text("/.well-known/security.txt", SECURITY_TXT)
        yield server


def resolver(server: DnsFixture, timeout: float = 2.0) -> Resolver:
    return Resolver(((("127.0.0.1", server.port)),), timeout)


# -- the resolver


def test_names_only_the_configured_server_knows(dns: DnsFixture) -> None:
    assert resolver(dns).resolve("pirate.test", 443, LAB) == ["127.0.0.1", "::1"]
    assert resolver(dns).resolve("V4ONLY.test.", 443, LAB) == ["127.0.0.1"]
    assert dns.questions[:2] == [("pirate.test", "A"), ("pirate.test", "AAAA")]
    # The system resolver knows none of them (the guard answers every name with EAI_NONAME).
    with pytest.raises(OSError, match="no DNS in tests"):
        Resolver().resolve("pirate.test", 443, LAB)


def test_answers_go_through_the_ssrf_policy(dns: DnsFixture) -> None:
    with pytest.raises(BlockedAddress) as caught:
        resolver(dns).resolve("pirate.test", 443, AddressPolicy())
    assert caught.value.reason == "loopback"
    with pytest.raises(BlockedAddress) as private:
        resolver(dns).resolve("intranet.test", 443, AddressPolicy())
    assert private.value.reason == "private"
    # Decided by the name alone: no question is sent.
    asked = len(dns.questions)
    for name in ("localhost", "2130706433", "[::1]"):
        with pytest.raises(BlockedAddress):
            resolver(dns).resolve(name, 443, AddressPolicy())
    assert len(dns.questions) == asked
    # An IP literal is its own answer, in any spelling the URL parser reads.
    assert resolver(dns).resolve("127.1", 80, LAB) == ["127.0.0.1"]
    assert len(dns.questions) == asked


def test_nxdomain_and_no_address_are_clear_errors(dns: DnsFixture) -> None:
    with pytest.raises(DnsError, match=r"nowhere\.test: no such name \(127\.0\.0\.1:\d+\)") as nx:
        resolver(dns).resolve("nowhere.test", 443, LAB)
    assert nx.value.kind == "nxdomain"
    assert dns.asked() == ["nowhere.test"]  # no AAAA asked after NXDOMAIN
    with pytest.raises(DnsError, match="no A or AAAA record") as empty:
        resolver(dns).resolve("empty.test", 443, LAB)
    assert empty.value.kind == "no-address"


def test_a_silent_server_times_out_within_the_bound() -> None:
    with dns_serving(silent=True) as silent:
        started = time.monotonic()
        with pytest.raises(DnsError, match=r"no answer within 1s") as caught:
            resolver(silent, timeout=1.0).resolve("pirate.test", 443, LAB)
        elapsed = time.monotonic() - started
    assert caught.value.kind == "timeout"
    assert 0.9 <= elapsed < 2.5
    assert silent.asked() and set(silent.asked()) == {"pirate.test"}


def test_settings_parse_and_refuse_dns_servers(dns: DnsFixture) -> None:
    settings = load_settings(dns_servers=f" {dns.server}, [::1]:5353 ,192.0.2.53")
    assert settings.dns_nameservers == (
        ("127.0.0.1", dns.port),
        ("::1", 5353),
        ("192.0.2.53", 53),
    )
    assert load_settings(dns_servers="").dns_nameservers == ()
    assert Resolver.from_settings(settings, timeout=1.0).timeout == 1.0
    for bad, message in (
        ("dns.example", "not an IP address"),
        ("127.0.0.1:0", "port '0' is not 1-65535"),
        ("[::1]x", "not ADDRESS or ADDRESS:PORT"),
    ):
        with pytest.raises(ValidationError, match=message):
            load_settings(dns_servers=bad)


def test_environment_variable(monkeypatch: pytest.MonkeyPatch, dns: DnsFixture) -> None:
    monkeypatch.setenv("MAMORU_DNS_SERVERS", dns.server)
    assert Resolver.from_settings(load_settings()).servers == (("127.0.0.1", dns.port),)


# -- every lookup of discovery goes through it


def test_rdap_and_security_txt_hosts_are_resolved_by_the_server(
    dns: DnsFixture, registry: FixtureServer, site: FixtureServer
) -> None:
    client = RdapClient(f"http://rdap.test:{registry.port}/iana/", allow_private=True,
                        resolver=resolver(dns))  # fmt: skip
    assert client.ip("127.0.0.1").abuse is not None
    found = fetch_security_txt(f"http://pirate.test:{site.port}", allow_private=True, now=NOW,
                               resolver=resolver(dns))  # fmt: skip
    assert found.problem is None and found.emails == ["security@pirate.test"]
    with pytest.raises(FetchError) as caught:
        fetch_security_txt(f"http://gone.test:{site.port}", allow_private=True,
                           resolver=resolver(dns))  # fmt: skip
    assert caught.value.reason == "dns" and "no such name" in str(caught.value)
    assert {"rdap.test", "pirate.test", "gone.test"} <= set(dns.asked())


def test_discovery_resolves_every_name_through_the_configured_server(
    dns: DnsFixture, registry: FixtureServer, site: FixtureServer
) -> None:
    settings = load_settings(
        dns_servers=dns.server, rdap_bootstrap_url=f"http://rdap.test:{registry.port}/iana/"
    )
    found = discover_report(
        "pirate.test",
        None,  # resolved here, by the configured server
        settings=settings,
        site_url=f"http://pirate.test:{site.port}",
        allow_private=True,
        now=NOW,
    )
    assert found.problems == []
    assert [(c.scope, c.email or c.web_form_url) for c in found.contacts] == [
        ("site_operator", "security@pirate.test"),
        ("site_operator", "https://pirate.test/report"),
        ("host", "noc@host.test"),
        ("registrar", "abuse@registrar.test"),
        ("site_operator", "abuse@pirate.test"),
    ]
    # Both addresses the server gave were looked up (the same NOC is listed once).
    assert registry.requested("/rdap/ip/") == ["/rdap/ip/127.0.0.1", "/rdap/ip/%3A%3A1"]
    assert set(dns.asked()) == {"pirate.test", "rdap.test"}


def test_discovery_of_a_name_the_server_does_not_know(
    dns: DnsFixture, registry: FixtureServer
) -> None:
    found = discover_report(
        "nowhere.test",
        None,
        bootstrap_url=f"http://rdap.test:{registry.port}/iana/",
        resolver=resolver(dns),
        allow_private=True,
        now=NOW,
    )
    resolve, security = found.problems[:2]
    assert (resolve.step, resolve.target) == ("resolve", "nowhere.test")
    assert "nowhere.test: no such name" in resolve.message
    assert security.step == "security_txt" and "no such name" in security.message
    # Without an address there is no host to name; the registrar and the guess remain.
    assert [c.scope for c in found.contacts] == ["site_operator"]
    assert found.contacts[0].email == "abuse@nowhere.test"
    assert registry.requested("/rdap/ip/") == []


def test_discovery_with_a_silent_server_is_bounded(registry: FixtureServer) -> None:
    with dns_serving(silent=True) as silent:
        started = time.monotonic()
        found = discover_report(
            "pirate.test",
            None,
            bootstrap_url=f"http://rdap.test:{registry.port}/iana/",
            resolver=resolver(silent, timeout=0.5),
            allow_private=True,
            now=NOW,
        )
        elapsed = time.monotonic() - started
    steps = [(p.step, "no answer within 0.5s" in p.message) for p in found.problems]
    assert steps == [("resolve", True), ("security_txt", True), ("rdap_domain", True)]
    assert [c.email for c in found.contacts] == ["abuse@pirate.test"]
    # Three names asked, each within its bound: no step waited on a system timeout.
    assert elapsed < 3.0
    assert registry.requested() == []
