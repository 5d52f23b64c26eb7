"""The SSRF guard: pure checks of URLs and resolved addresses, the resolvers and the middleware
with stand-ins for DNS, and one real Scrapy crawl of the SSRF fixture site on 127.0.0.1.

Nothing here connects anywhere but 127.0.0.1: private addresses are only ever strings, DNS is
faked (``socket.getaddrinfo`` / ``gethostbyname`` patched) for every name except ``localhost``,
and the crawl runs in a subprocess whose sockets refuse to connect to anything but loopback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import scrapy.exceptions
from scrapy import Spider
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request
from scrapy.resolver import CachingThreadedResolver, dnscache
from scrapy.utils.test import get_crawler
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import DNSLookupError
from twisted.python.failure import Failure

from crawler import netguard
from crawler.netguard import (
    AddressPolicy,
    BlockedAddress,
    NetguardHostnameResolver,
    NetguardMiddleware,
    NetguardResolver,
    ResolverRefusal,
    check_resolved,
    check_url,
    netguard_settings,
    parse_ip_host,
    policy_from_settings,
    resolve_and_check,
)
from tests.sites.catalog import ssrf_site
from tests.sites.hostile import METADATA_REDIRECT, OFFSITE_PRIVATE

ROOT = Path(__file__).resolve().parent.parent
# Scrapy 2.19 wraps DNS failures in its own exception; earlier versions raise Twisted's.
CannotResolveHostError = getattr(scrapy.exceptions, "CannotResolveHostError", DNSLookupError)
DEFAULT = AddressPolicy()
LOOPBACK_ONLY = AddressPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
LAB = AddressPolicy(allow_private=True)


@pytest.fixture(autouse=True)
def _fresh_refusals() -> Iterator[None]:
    # The resolver's record of refused names and Scrapy's DNS cache size are process-wide
    # (every resolver sets the cache's limit): tests must not see each other's.
    netguard.refusals.clear()
    limit, cached = dnscache.limit, set(dnscache)
    yield
    netguard.refusals.clear()
    dnscache.limit = limit
    for name in set(dnscache) - cached:
        del dnscache[name]


# -- check_url


BLOCKED_URLS = [
    # schemes and userinfo
    ("ftp://example.com/x.jpg", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://127.0.0.1:6379/_INFO", "scheme"),
    ("data:image/png;base64,AAAA", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("http://user:pass@example.com/", "userinfo"),
    ("http://example.com@10.0.0.1/", "userinfo"),
    # IPv4 loopback in every spelling
    ("http://127.0.0.1/", "loopback"),
    ("http://127.8.9.10:8080/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://0177.0.0.01/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://127.0.1/", "loopback"),
    ("http://127.0.0.1./", "loopback"),
    ("http://%31%32%37.0.0.1/", "loopback"),
    ("http://\uff11\uff12\uff17\u3002\uff10\u3002\uff10\u3002\uff11/", "loopback"),
    ("HTTP://LOCALHOST/", "loopback"),
    ("http://localhost./", "loopback"),
    ("http://app.localhost/", "loopback"),
    ("http://localhost.localdomain/", "loopback"),
    ("http://ip6-localhost/", "loopback"),
    # IPv6 loopback, mapped and embedded forms
    ("http://[::1]/", "loopback"),
    ("http://[0:0:0:0:0:0:0:1]:8080/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:7f00:1]/", "loopback"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[::ffff:169.254.169.254]/", "link-local"),
    ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),  # NAT64 of 169.254.169.254
    ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 of 127.0.0.1
    ("http://[::127.0.0.1]/", "reserved"),  # deprecated IPv4-compatible
    # private ranges
    ("http://10.0.0.1/x.png", "private"),
    ("http://10.255.255.255/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.254/", "private"),
    ("http://192.168.0.1/bg.png", "private"),
    ("http://100.64.0.1/", "private"),
    ("http://167772161/", "private"),  # 10.0.0.1 as one number
    ("http://[fc00::1]/", "private"),
    ("http://[fd12:3456::1]/", "private"),
    ("http://[fec0::1]/", "private"),
    # link-local, cloud metadata
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://0xa9fea9fe/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "link-local"),
    # unspecified, multicast, reserved
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://[0::0]:80/", "unspecified"),
    ("http://0.1.2.3/", "reserved"),
    ("http://224.0.0.1/", "multicast"),
    ("http://239.255.255.250:1900/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://255.255.255.255/", "reserved"),
    ("http://240.0.0.1/", "reserved"),
    ("http://192.0.2.10/", "reserved"),
    ("http://198.18.0.1/", "reserved"),
    ("http://[2001:db8::1]/", "reserved"),
    ("http://[100::1]/", "reserved"),
    # hosts a browser refuses to parse
    ("http:///path", "bad-host"),
    ("http://1.2.3.4.5/", "bad-host"),
    ("http://256.0.0.1/", "bad-host"),
    ("http://0x1g.0.0.1/", "bad-host"),
    ("http://4294967296/", "bad-host"),
    ("http://[::1/", "bad-host"),
    ("http://[not-ipv6]/", "bad-host"),
    ("http://exa%00mple.com/", "bad-host"),
    ("http://exa mple.com/", "bad-host"),
    ("http://example.com:99999/", "bad-host"),
    # ports browsers refuse (cross-protocol attacks)
    ("http://example.com:25/", "port"),
    ("https://example.com:6667/", "port"),
]

ALLOWED_URLS = [
    "http://example.com/",
    "https://example.com/a.jpg",
    "HTTPS://Example.COM:8443/x?y=1",
    "http://93.184.216.34/",
    "http://1572395042/",  # 93.184.216.34 as one number: public, so fine
    "http://[2606:4700:4700::1111]/",
    "http://[::ffff:8.8.8.8]/",
    "http://localhostfoo.example/",  # not a *.localhost name
    "http://xn--bcher-kva.example/",
    "http://b\u00fccher.example/",
    "http://172.32.0.1/",  # just outside 172.16/12
    "http://100.128.0.1/",  # just outside 100.64/10
]


@pytest.mark.parametrize(("url", "reason"), BLOCKED_URLS)
def test_check_url_blocks(url: str, reason: str) -> None:
    with pytest.raises(BlockedAddress) as info:
        check_url(url, DEFAULT)
    assert info.value.reason == reason
    assert info.value.url == url


@pytest.mark.parametrize("url", ALLOWED_URLS)
def test_check_url_allows_public(url: str) -> None:
    check_url(url, DEFAULT)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("192.168.257", "192.168.1.1"),
        ("0x", "0.0.0.0"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("example.com", None),
        ("1example.com", None),
        ("example.123abc", None),
    ],
)
def test_parse_ip_host_reads_hosts_as_browsers_do(host: str, address: str | None) -> None:
    parsed = parse_ip_host(host)
    assert (str(parsed) if parsed else None) == address


def test_allowed_host_is_exact_and_does_not_extend_to_aliases() -> None:
    check_url("http://127.0.0.1:8080/page", LOOPBACK_ONLY)
    for alias in (
        "http://localhost:8080/",
        "http://[::ffff:127.0.0.1]:8080/",
        "http://2130706433:8080/",
        "http://127.1:8080/",
        "http://127.0.0.2:8080/",
        "http://0.0.0.0:8080/",
        "http://[::1]:8080/",
    ):
        with pytest.raises(BlockedAddress):
            check_url(alias, LOOPBACK_ONLY)


def test_allowed_hosts_are_normalised() -> None:
    policy = AddressPolicy(allowed_hosts=frozenset({"LocalHost.", "[::1]"}))
    assert policy.allowed_hosts == {"localhost", "::1"}
    check_url("http://localhost:1234/", policy)
    check_url("http://[::1]:1234/", policy)


def test_allow_private_lifts_private_but_not_unspecified_or_multicast() -> None:
    for url in (
        "http://10.0.0.1/",
        "http://127.0.0.1/",
        "http://localhost/",
        "http://169.254.169.254/",
        "http://[fd00::1]/",
    ):
        check_url(url, LAB)
    for url, reason in (
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("ftp://10.0.0.1/", "scheme"),
        ("http://u@10.0.0.1/", "userinfo"),
    ):
        with pytest.raises(BlockedAddress) as info:
            check_url(url, LAB)
        assert info.value.reason == reason


def test_allowed_ports() -> None:
    policy = AddressPolicy(allowed_ports=frozenset({443, 8443}))
    check_url("https://example.com/", policy)
    check_url("http://example.com:8443/", policy)
    with pytest.raises(BlockedAddress, match="port"):
        check_url("http://example.com/", policy)  # default port 80 is not listed
    lenient = AddressPolicy(block_bad_ports=False)
    check_url("http://example.com:25/", lenient)


# -- check_resolved / resolve_and_check


@pytest.mark.parametrize(
    ("addresses", "reason"),
    [
        (["93.184.216.34"], None),
        (["2606:4700:4700::1111", "1.1.1.1"], None),
        (["127.0.0.1"], "loopback"),
        (["93.184.216.34", "10.0.0.1"], "private"),  # one bad address is enough
        (["::1"], "loopback"),
        (["::ffff:127.0.0.1"], "loopback"),
        (["fe80::1%eth0"], "link-local"),
        (["169.254.169.254"], "link-local"),
        (["0.0.0.0"], "unspecified"),
        (["ff02::1"], "multicast"),
        (["not-an-address"], "bad-host"),
    ],
)
def test_check_resolved(addresses: list[str], reason: str | None) -> None:
    if reason is None:
        check_resolved("cdn.example", addresses, DEFAULT)
        return
    with pytest.raises(BlockedAddress) as info:
        check_resolved("cdn.example", addresses, DEFAULT)
    assert info.value.reason == reason


def test_check_resolved_allowed_host_and_lab() -> None:
    check_resolved("127.0.0.1", ["127.0.0.1"], LOOPBACK_ONLY)
    with pytest.raises(BlockedAddress, match="loopback"):
        check_resolved("localhost", ["127.0.0.1"], LOOPBACK_ONLY)
    check_resolved("nas.lan", ["192.168.1.10"], LAB)


def _fake_getaddrinfo(table: dict[str, list[str]]) -> Any:
    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "not in the test's DNS")
        result = []
        for address in table[host]:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            result.append((family, socket.SOCK_STREAM, 6, "", (address, port)))
        return result

    return getaddrinfo


def test_resolve_and_check_refuses_names_that_resolve_privately(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dns = {
        "public.example": ["93.184.216.34", "2606:2800:220:1::1"],
        "rebind.example": ["93.184.216.34", "127.0.0.1"],
        "internal.example": ["10.1.2.3"],
    }
    monkeypatch.setattr(socket, "getaddrinfo", _fake_getaddrinfo(dns))
    assert resolve_and_check("public.example", 443, DEFAULT) == dns["public.example"]
    with pytest.raises(BlockedAddress, match="loopback"):
        resolve_and_check("rebind.example", 80, DEFAULT)
    with pytest.raises(BlockedAddress, match="private"):
        resolve_and_check("internal.example", 80, DEFAULT)
    assert resolve_and_check("internal.example", 80, LAB) == ["10.1.2.3"]
    with pytest.raises(socket.gaierror):
        resolve_and_check("nowhere.example", 80, DEFAULT)


def test_localhost_resolves_to_loopback_and_is_refused_unless_allowed() -> None:
    # Real resolution of "localhost" (the hosts file, no network) and of a literal.
    with pytest.raises(BlockedAddress, match="loopback"):
        resolve_and_check("localhost", 80, DEFAULT)
    with pytest.raises(BlockedAddress, match="loopback"):
        resolve_and_check("localhost", 80, LOOPBACK_ONLY)
    assert resolve_and_check("127.0.0.1", 80, LOOPBACK_ONLY) == ["127.0.0.1"]
    addresses = resolve_and_check(
        "localhost", 80, AddressPolicy(allowed_hosts=frozenset({"localhost"}))
    )
    assert addresses and all(a in ("127.0.0.1", "::1") for a in addresses)
    assert resolve_and_check("localhost", 80, LAB) == addresses


# -- resolvers (no reactor: the base lookups are replaced by canned answers)


def _result(deferred: defer.Deferred[Any]) -> Any:
    box: list[Any] = []
    deferred.addBoth(box.append)
    assert box, "the deferred should have fired synchronously"
    return box[0]


class _FakeDNS:
    """Answers ``getHostByName`` from a table; a list answers in turn (DNS rebinding)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def lookup(self, resolver: Any, name: str, timeout: Any = ()) -> defer.Deferred[str]:
        self.asked.append(name)
        queue = self.answers.get(name)
        if not queue:
            return defer.fail(DNSLookupError(name))
        return defer.succeed(queue.pop(0) if len(queue) > 1 else queue[0])


@pytest.fixture
def threaded(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[NetguardResolver, _FakeDNS]]:
    dns = _FakeDNS(
        {
            "cdn.example": ["93.184.216.34"],
            "rebind.example": ["93.184.216.34", "127.0.0.1"],
            "127.0.0.1": ["127.0.0.1"],
            "2130706433": ["127.0.0.1"],
        }
    )

    def lookup(resolver: Any, name: str, timeout: Any = ()) -> defer.Deferred[str]:
        return dns.lookup(resolver, name, timeout)

    monkeypatch.setattr(CachingThreadedResolver, "getHostByName", lookup)
    resolver = NetguardResolver(object(), 0, 5.0, LOOPBACK_ONLY)  # type: ignore[arg-type]
    yield resolver, dns


def test_threaded_resolver_checks_every_answer(
    threaded: tuple[NetguardResolver, _FakeDNS],
) -> None:
    resolver, _ = threaded
    assert _result(resolver.getHostByName("cdn.example")) == "93.184.216.34"
    assert _result(resolver.getHostByName("127.0.0.1")) == "127.0.0.1"
    # Rebinding: public for the first lookup, loopback for the next; the second is refused.
    assert _result(resolver.getHostByName("rebind.example")) == "93.184.216.34"
    refused = _result(resolver.getHostByName("rebind.example"))
    assert isinstance(refused, Failure) and refused.check(ResolverRefusal)
    assert refused.value.reason == "loopback"
    assert netguard.refusals.get("rebind.example") == ("loopback", ("127.0.0.1",))


def test_threaded_resolver_refuses_literals_and_names_before_dns(
    threaded: tuple[NetguardResolver, _FakeDNS],
) -> None:
    resolver, dns = threaded
    for name in ("localhost", "10.0.0.1", "2130706433", "::ffff:127.0.0.1"):
        failure = _result(resolver.getHostByName(name))
        assert isinstance(failure, Failure) and failure.check(DNSLookupError), name
    assert dns.asked == []


def test_threaded_resolver_from_crawler_settings() -> None:
    crawler = get_crawler(
        Spider, {"MAMORU_NETGUARD_ALLOWED_HOSTS": "127.0.0.1, Example.org", "DNSCACHE_SIZE": 7}
    )
    resolver = NetguardResolver.from_crawler(crawler, object())  # type: ignore[arg-type]
    assert resolver.policy.allowed_hosts == {"127.0.0.1", "example.org"}
    assert not resolver.policy.allow_private
    assert dnscache.limit == 7


class _Receiver:
    def __init__(self) -> None:
        self.began = False
        self.addresses: list[Any] = []
        self.complete = False

    def resolutionBegan(self, resolution: Any) -> None:  # noqa: N802
        self.began = True

    def addressResolved(self, address: Any) -> None:  # noqa: N802
        self.addresses.append(address)

    def resolutionComplete(self) -> None:  # noqa: N802
        self.complete = True


class _FakeNameResolver:
    def __init__(self, answers: dict[str, list[Any]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def resolveHostName(self, receiver: Any, name: str, port: int = 0, *args: Any) -> Any:  # noqa: N802
        self.asked.append(name)
        receiver.resolutionBegan(object())
        for address in self.answers.get(name, []):
            receiver.addressResolved(address)
        receiver.resolutionComplete()
        return object()


class _FakeReactor:
    def __init__(self, resolver: _FakeNameResolver) -> None:
        self.nameResolver = resolver


def test_hostname_resolver_passes_all_addresses_or_none() -> None:
    names = _FakeNameResolver(
        {
            "cdn.example": [
                IPv4Address("TCP", "93.184.216.34", 0),
                IPv6Address("TCP", "2606:2800:220:1::1", 0),
            ],
            "mixed.example": [
                IPv4Address("TCP", "93.184.216.34", 0),
                IPv6Address("TCP", "fd00::5", 0),
            ],
        }
    )
    resolver = NetguardHostnameResolver(_FakeReactor(names), 100, DEFAULT)  # type: ignore[arg-type]
    good = _Receiver()
    resolver.resolveHostName(good, "cdn.example", 443)
    assert good.complete and len(good.addresses) == 2
    bad = _Receiver()
    resolver.resolveHostName(bad, "mixed.example", 443)
    assert bad.began and bad.complete and bad.addresses == []
    assert netguard.refusals.get("mixed.example") == ("private", ("93.184.216.34", "fd00::5"))
    again = _Receiver()
    resolver.resolveHostName(again, "mixed.example", 443)  # from Scrapy's cache: checked again
    assert again.complete and again.addresses == []
    literal = _Receiver()
    resolver.resolveHostName(literal, "169.254.169.254", 80)
    assert literal.complete and literal.addresses == []
    assert names.asked == ["cdn.example", "mixed.example"]


# -- middleware


class _PolicySpider(Spider):
    name = "policy"
    netguard_policy = LOOPBACK_ONLY


def _middleware(spider_cls: type[Spider] = Spider, **settings: Any) -> NetguardMiddleware:
    crawler = get_crawler(spider_cls, settings)
    crawler.spider = spider_cls(name="test")
    return NetguardMiddleware.from_crawler(crawler)


def _stats(mw: NetguardMiddleware) -> dict[str, Any]:
    assert mw.crawler.stats is not None
    return {k: v for k, v in mw.crawler.stats.get_stats().items() if k.startswith("netguard/")}


def test_middleware_blocks_with_stats() -> None:
    mw = _middleware()
    assert mw.process_request(Request("https://example.com/a.jpg")) is None
    for url in ("http://10.0.0.1/x.png", "http://2130706433:80/", "http://localhost/"):
        with pytest.raises(IgnoreRequest):
            mw.process_request(Request(url))
    assert _stats(mw) == {
        "netguard/blocked": 3,
        "netguard/blocked/private": 1,
        "netguard/blocked/loopback": 2,
    }


def test_middleware_policy_from_settings_and_spider() -> None:
    from_settings = _middleware(
        MAMORU_NETGUARD_ALLOWED_HOSTS=["127.0.0.1"], MAMORU_NETGUARD_ALLOWED_PORTS="8080"
    )
    assert from_settings.policy == AddressPolicy(
        allowed_hosts=frozenset({"127.0.0.1"}), allowed_ports=frozenset({8080})
    )
    from_settings.process_request(Request("http://127.0.0.1:8080/"))
    with pytest.raises(IgnoreRequest):
        from_settings.process_request(Request("http://127.0.0.1:8081/"))
    lab = _middleware(MAMORU_NETGUARD_ALLOW_PRIVATE=True)
    lab.process_request(Request("http://10.0.0.1/"))
    from_spider = _middleware(_PolicySpider, MAMORU_NETGUARD_ALLOW_PRIVATE=True)
    assert from_spider.policy is LOOPBACK_ONLY
    with pytest.raises(IgnoreRequest):
        from_spider.process_request(Request("http://10.0.0.1/"))


def test_middleware_reports_resolver_refusals_and_blocks_retries() -> None:
    mw = _middleware()
    request = Request("http://rebind.example/a.png")
    other = DNSLookupError("no such host")
    assert mw.process_exception(request, other) is None  # a plain DNS failure stays one
    netguard.refusals.add("rebind.example", "loopback", ["127.0.0.1"])
    with pytest.raises(IgnoreRequest):
        mw.process_exception(request, DNSLookupError("Couldn't find the hostname"))
    with pytest.raises(IgnoreRequest):  # how Scrapy 2.19 reports the same lookup failure
        mw.process_exception(request, CannotResolveHostError("rebind.example"))
    with pytest.raises(IgnoreRequest):
        mw.process_request(request.replace(dont_filter=True))  # a retry never reaches DNS
    assert _stats(mw)["netguard/blocked/loopback"] == 3
    lab = _middleware(MAMORU_NETGUARD_ALLOW_PRIVATE=True)
    assert lab.process_request(request) is None  # another policy judges the addresses itself


def test_policy_from_settings_defaults() -> None:
    crawler = get_crawler(Spider, {})
    assert policy_from_settings(crawler.settings) == AddressPolicy()


def test_netguard_settings_use_the_current_resolver_setting() -> None:
    from scrapy.settings import default_settings

    # Scrapy 2.19 renamed the setting and warns about the old name.
    key = (
        "TWISTED_DNS_RESOLVER"
        if hasattr(default_settings, "TWISTED_DNS_RESOLVER")
        else ("DNS_RESOLVER")
    )
    settings = netguard_settings(LOOPBACK_ONLY)
    assert settings[key] == "crawler.netguard.NetguardResolver"
    assert settings["DOWNLOADER_MIDDLEWARES"] == {"crawler.netguard.NetguardMiddleware": 50}
    assert settings["MAMORU_NETGUARD_ALLOWED_HOSTS"] == ["127.0.0.1"]
    ipv6 = netguard_settings(ipv6=True)
    assert ipv6[key] == "crawler.netguard.NetguardHostnameResolver"


# -- a real crawl, in a subprocess (Twisted's reactor runs once per process)

_CRAWL = textwrap.dedent(
    """
    import ipaddress, json, socket, sys, warnings

    warnings.simplefilter("always")
    captured = []
    warnings.showwarning = lambda message, category, *rest: captured.append(
        f"{category.__name__}: {message}"
    )
    args = json.loads(sys.argv[1])
    escaped = []

    # Tripwire: whatever the guard lets through, no socket here reaches past loopback.
    def _only_loopback(connect):
        def guarded(self, address):
            host = address[0] if isinstance(address, tuple) else ""
            try:
                loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                escaped.append(str(address))
                raise ConnectionRefusedError(f"test tripwire: {address}")
            return connect(self, address)
        return guarded

    socket.socket.connect = _only_loopback(socket.socket.connect)
    socket.socket.connect_ex = _only_loopback(socket.socket.connect_ex)

    # The test's DNS: one attacker name answering with loopback; no other name is looked up.
    def is_ip(name):
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def gethostbyname(name):
        if name == "rebind.test" or name == "127.0.0.1":
            return "127.0.0.1"
        escaped.append(f"dns:{name}")
        raise socket.gaierror(socket.EAI_NONAME, name)

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *rest, **kwargs):
        if host == "rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        if host is None or is_ip(host):
            return real_getaddrinfo(host, port, *rest, **kwargs)
        escaped.append(f"dns:{host}")
        raise socket.gaierror(socket.EAI_NONAME, host)

    socket.gethostbyname = gethostbyname
    socket.getaddrinfo = getaddrinfo

    from scrapy import Request, Spider
    from scrapy.crawler import CrawlerProcess

    from crawler.discovery import discover
    from crawler.netguard import AddressPolicy, netguard_settings

    class SsrfSpider(Spider):
        name = "ssrf"
        fetched = []
        failures = []

        async def start(self):
            yield Request(args["start"], errback=self.failed)
            yield Request(args["rebind"], callback=self.image, errback=self.failed)

        def parse(self, response):
            found = discover(response.body, response.url)
            for image in found.images:
                yield Request(image.url, callback=self.image, errback=self.failed)
            for link in found.links:
                yield Request(link, errback=self.failed)

        def image(self, response):
            self.fetched.append(response.url)

        def failed(self, failure):
            self.failures.append([failure.request.url, failure.type.__name__])

    policy = AddressPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
    settings = netguard_settings(policy, ipv6=args["ipv6"])
    settings.update(
        ROBOTSTXT_OBEY=True,
        DOWNLOAD_TIMEOUT=5,
        DNS_TIMEOUT=5,
        CLOSESPIDER_TIMEOUT=30,
        HTTPPROXY_ENABLED=False,
        TELNETCONSOLE_ENABLED=False,
        LOG_LEVEL="INFO",
    )
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(SsrfSpider)
    process.crawl(crawler)
    process.start()
    stats = {k: v for k, v in crawler.stats.get_stats().items() if isinstance(v, int)}
    print(json.dumps({
        "stats": stats,
        "fetched": SsrfSpider.fetched,
        "failures": SsrfSpider.failures,
        "escaped": escaped,
        "warnings": captured,
    }))
    """
)


@pytest.mark.parametrize("ipv6", [False, True], ids=["threaded-resolver", "hostname-resolver"])
def test_crawl_of_ssrf_site_refuses_every_private_target(ipv6: bool) -> None:
    site, expected = ssrf_site()
    rebind = site.url("/ssrf/rebind.png", host="rebind.test")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = str(ROOT)
    with site:
        run = subprocess.run(
            [
                sys.executable,
                "-c",
                _CRAWL,
                json.dumps({"start": expected.start_url, "rebind": rebind, "ipv6": ipv6}),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env,
            check=False,
        )
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    stats, failures = report["stats"], dict(report["failures"])

    # Nothing slipped past the guard to a socket or to DNS.
    assert report["escaped"] == []
    assert site.errors == []
    # The allowed host was crawled: its page, its image, its redirecting image.
    paths = site.requests.paths()
    assert "/" in paths and "/img/ok.jpg" in paths and "/ssrf/redirect.png" in paths
    assert expected.images <= set(report["fetched"])
    # No alias of this very server reached it, nor did the rebinding name.
    for url in [*expected.not_fetched, rebind]:
        assert not site.requests.requested(url), url
    # Every bait URL, the redirect target and the rebinding name were refused by netguard.
    for url in [*expected.refused, rebind]:
        assert failures.get(url) == "IgnoreRequest", (url, failures)
    assert METADATA_REDIRECT in failures and set(OFFSITE_PRIVATE) <= set(failures)
    # ...and counted: literal addresses are refused before robots.txt is asked for, so
    # their counts are exact; loopback also counts the rebinding name's robots.txt.
    assert stats["netguard/blocked/private"] == 3  # 10.0.0.1 (image, link), 192.168.0.1
    assert stats["netguard/blocked/link-local"] == 2  # metadata, and as a redirect target
    assert stats["netguard/blocked/unspecified"] == 1  # 0.0.0.0
    # localhost (image, page), [::1], [::ffff:127.0.0.1], 2130706433, rebind.test
    assert stats["netguard/blocked/loopback"] >= 6
    assert stats["netguard/blocked"] == sum(
        v for k, v in stats.items() if k.startswith("netguard/blocked/")
    )
    assert not [w for w in report["warnings"] if "Deprecat" in w], report["warnings"]
