"""SSRF guard: which addresses the crawler may connect to, enforced before and at connection time.

A pirate page decides what the crawler fetches next, so every URL it names is hostile input:
``<img src=http://169.254.169.254/...>`` would make the crawler read cloud credentials, and a
link to ``http://10.0.0.1/admin/`` would probe the operator's own network. The rules:

URLs (:func:`check_url`, before any connection)
    - scheme must be ``http`` or ``https`` (reason ``scheme``);
    - no userinfo (``http://user:pass@host/``: reason ``userinfo``), which only serves to
      disguise the real host;
    - the host must parse (reason ``bad-host``): forbidden characters, an empty host or an
      IPv4 form a browser would reject (``1.2.3.4.5``, ``0x100.0.0.1``) are refused;
    - a host that is an IP literal is classified the way a browser or ``inet_aton`` reads it,
      after percent-decoding and NFKC folding (fullwidth digits, ideographic full stops):
      dotted quads, single integers (``2130706433``), hex and octal parts (``0x7f.1``,
      ``0177.0.0.1``), short forms (``127.1``), IPv6 in brackets including IPv4-mapped
      (``[::ffff:127.0.0.1]``), NAT64 (``64:ff9b::/96``) and 6to4 (``2002::/16``) forms,
      which are judged by the IPv4 address they embed;
    - the names ``localhost``, ``*.localhost``, ``localhost.localdomain``, ``ip6-localhost``
      and ``ip6-loopback`` count as loopback without asking DNS (RFC 6761);
    - the port must be in ``allowed_ports`` when that is set, and by default must not be one of
      the ports browsers refuse (the Fetch standard's "bad ports": SMTP, IRC, ...), because an
      HTTP request to them is a cross-protocol attack (reason ``port``).

Addresses (:func:`check_resolved`, after DNS)
    Every address a name resolves to must be public. Categories and their reasons:
    ``loopback`` (127/8, ::1), ``private`` (10/8, 172.16/12, 192.168/16, 100.64/10 shared,
    fc00::/7, fec0::/10, 64:ff9b:1::/48), ``link-local`` (169.254/16 with the metadata service,
    fe80::/10), ``unspecified`` (0.0.0.0, ::), ``multicast`` (224/4, ff00::/8) and
    ``reserved`` (the rest of 0/8, 240/4 with broadcast, documentation, benchmarking and
    protocol ranges; any IPv6 outside 2000::/3).

Exceptions (:class:`AddressPolicy`)
    ``allowed_hosts`` names hosts exactly as they appear in a URL (lowercased, IPv6 without
    brackets): ``{"127.0.0.1"}`` allows ``http://127.0.0.1:8080/`` and nothing else, not
    ``localhost``, not ``[::ffff:127.0.0.1]``, not ``2130706433``. A host is matched by name,
    never by what it resolves to, so allowing one loopback spelling does not open the others.
    ``allow_private`` lifts ``loopback``, ``private`` and ``link-local`` for every host (a lab
    network); ``unspecified``, ``multicast`` and ``reserved`` stay refused even then, since no
    crawl target lives there. Scheme, userinfo and port rules always apply.

Scrapy integration
    - :class:`NetguardResolver` (IPv4, threaded, a drop-in for Scrapy's default) and
      :class:`NetguardHostnameResolver` (IPv4 and IPv6) are DNS resolvers for Scrapy's
      ``TWISTED_DNS_RESOLVER`` (``DNS_RESOLVER`` before Scrapy 2.19). They check the address
      handed to the connection itself, so a name that resolved to a public address for one
      check and to 127.0.0.1 for the connection (DNS rebinding) is still refused, and so is
      every name the URL check cannot judge alone (``localhost.example`` pointing at 10.0.0.1).
      A refusal looks like a failed lookup to Twisted; the refused names are remembered
      (bounded, for the life of the process) so the middleware can report them and refuse
      their retries. The resolver is installed once per process on the reactor and takes its
      policy from the process settings (``CrawlerProcess(settings)``), not from a spider's
      ``custom_settings``: run crawls with different policies in different processes.
      Scrapy's optional aiohttp and httpx download handlers resolve names themselves and
      bypass it; keep the default (Twisted) HTTP handler.
    - :class:`NetguardMiddleware` checks every request before download, including those
      Scrapy's redirect and meta-refresh middlewares create (they go back through the whole
      middleware chain), and requests to names the resolver has refused before (so retries do
      not resolve them again). A refused request raises ``IgnoreRequest`` and counts in the
      stats as ``netguard/blocked`` and ``netguard/blocked/<reason>``. Its policy is the
      spider's ``netguard_policy`` attribute when it has one, else the crawler settings
      ``MAMORU_NETGUARD_ALLOW_PRIVATE``, ``MAMORU_NETGUARD_ALLOWED_HOSTS`` and
      ``MAMORU_NETGUARD_ALLOWED_PORTS``. Put it before ``RobotsTxtMiddleware`` (100) so no
      robots.txt is requested from a refused host: :func:`netguard_settings` does.
    - Neither covers requests a browser (Playwright) makes on its own: those need the same
      :func:`check_url` in a route handler, and the browser resolves names itself.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn, Self, cast
from urllib.parse import unquote, urlsplit

import scrapy.exceptions
from scrapy.exceptions import IgnoreRequest
from scrapy.resolver import CachingHostnameResolver, CachingThreadedResolver
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import DNSLookupError

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler
    from scrapy.http import Request, Response
    from scrapy.settings import BaseSettings
    from twisted.internet.base import ReactorBase
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import (
        IAddress,
        IHostResolution,
        IResolutionReceiver,
    )

__all__ = [
    "BAD_PORTS",
    "LIFTABLE",
    "MIDDLEWARE_ORDER",
    "SETTING_ALLOWED_HOSTS",
    "SETTING_ALLOWED_PORTS",
    "SETTING_ALLOW_PRIVATE",
    "AddressPolicy",
    "BlockedAddress",
    "NetguardHostnameResolver",
    "NetguardMiddleware",
    "NetguardResolver",
    "Reason",
    "ResolverRefusal",
    "check_resolved",
    "check_url",
    "classify_address",
    "netguard_settings",
    "parse_ip_host",
    "policy_from_settings",
    "resolve_and_check",
]

logger = logging.getLogger(__name__)

Reason = Literal[
    "scheme",
    "userinfo",
    "bad-host",
    "port",
    "loopback",
    "private",
    "link-local",
    "unspecified",
    "multicast",
    "reserved",
]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SETTING_ALLOW_PRIVATE: Final = "MAMORU_NETGUARD_ALLOW_PRIVATE"
SETTING_ALLOWED_HOSTS: Final = "MAMORU_NETGUARD_ALLOWED_HOSTS"
SETTING_ALLOWED_PORTS: Final = "MAMORU_NETGUARD_ALLOWED_PORTS"

#: Categories ``allow_private`` lifts; the others have no legitimate crawl target.
LIFTABLE: Final[frozenset[str]] = frozenset({"loopback", "private", "link-local"})

#: Fetch standard, "bad port": browsers refuse these, an HTTP client should too.
BAD_PORTS: Final[frozenset[int]] = frozenset(
    {1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101}
    | {102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179}
    | {389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587}
    | {601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061}
    | {6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080}
)

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_LOOPBACK_NAMES: Final = frozenset(
    {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
)
# Label separators that IDNA (UTS 46) maps to "." but NFKC leaves alone.
_DOTS: Final = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
# What may remain in a host once it is known not to be an IP literal: an IDNA-encodable name.
# Anything else (spaces, NUL, "%", "\\", "<") is refused rather than guessed about.
_FORBIDDEN_HOST_CHARS: Final = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
# Most specific first: the first network that contains an address decides its reason.
_IPV4_TABLE: Final[tuple[tuple[ipaddress.IPv4Network, Reason], ...]] = (
    (_V4("0.0.0.0/32"), "unspecified"),
    (_V4("0.0.0.0/8"), "reserved"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "private"),  # carrier-grade NAT, shared address space
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local"),  # includes 169.254.169.254, cloud metadata
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "reserved"),
    (_V4("192.0.2.0/24"), "reserved"),
    (_V4("192.88.99.0/24"), "reserved"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "reserved"),
    (_V4("198.51.100.0/24"), "reserved"),
    (_V4("203.0.113.0/24"), "reserved"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),  # includes 255.255.255.255
)
_IPV6_TABLE: Final[tuple[tuple[ipaddress.IPv6Network, Reason], ...]] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("64:ff9b:1::/48"), "private"),  # local-use NAT64
    (_V6("100::/64"), "reserved"),  # discard-only
    (_V6("2001::/23"), "reserved"),  # protocol assignments, Teredo
    (_V6("2001:db8::/32"), "reserved"),  # documentation
    (_V6("3fff::/20"), "reserved"),  # documentation
    (_V6("fc00::/7"), "private"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "private"),  # deprecated site-local
    (_V6("ff00::/8"), "multicast"),
)
# Scrapy 2.19's Twisted handler reports failed lookups as CannotResolveHostError; older ones
# pass Twisted's DNSLookupError through.
_DNS_ERRORS: Final[tuple[type[BaseException], ...]] = (
    DNSLookupError,
    getattr(scrapy.exceptions, "CannotResolveHostError", DNSLookupError),
)
_IPV6_GLOBAL_UNICAST: Final = _V6("2000::/3")
_NAT64: Final = _V6("64:ff9b::/96")


class BlockedAddress(Exception):
    """A URL or address the policy refuses; ``reason`` is one of :data:`Reason`."""

    def __init__(self, url: str, reason: Reason, detail: str = "") -> None:
        self.url = url
        self.reason: Reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {url}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class AddressPolicy:
    """What the crawler may connect to; the default refuses every non-public address.

    ``allowed_hosts`` are compared with a URL's host after lowercasing (IPv6 without
    brackets, one trailing dot dropped); they are names, not addresses. ``allowed_ports=None``
    allows every port except :data:`BAD_PORTS` (unless ``block_bad_ports`` is false).
    """

    allow_private: bool = False
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    allowed_ports: frozenset[int] | None = None
    block_bad_ports: bool = True

    def __post_init__(self) -> None:
        # Normalised once here so every comparison is a plain set lookup; frozen, hence setattr.
        hosts = frozenset(_normalise_host_name(h) for h in self.allowed_hosts)
        object.__setattr__(self, "allowed_hosts", hosts)
        if self.allowed_ports is not None:
            object.__setattr__(self, "allowed_ports", frozenset(self.allowed_ports))

    def allows_host(self, host: str) -> bool:
        return _normalise_host_name(host) in self.allowed_hosts

    def refuses(self, reason: Reason) -> bool:
        """Whether an address in this category is refused for a host not explicitly allowed."""
        return not (self.allow_private and reason in LIFTABLE)


# -- pure checks


def check_url(url: str, policy: AddressPolicy) -> None:
    """Raise :class:`BlockedAddress` unless ``url`` may be fetched under ``policy``.

    Only what the URL itself says is judged: a host name is checked again on the address it
    resolves to (:func:`check_resolved`, the resolver classes).
    """
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise BlockedAddress(url, "scheme", scheme or "none")
        if "@" in parts.netloc:
            raise BlockedAddress(url, "userinfo")
        host = parts.hostname
        port = parts.port
    except ValueError as exc:  # a malformed IPv6 literal or port: urlsplit refuses it
        raise BlockedAddress(url, "bad-host", str(exc)) from None
    if not host:
        raise BlockedAddress(url, "bad-host", "no host")
    _check_host(url, host, policy)
    effective_port = port if port is not None else _DEFAULT_PORTS[scheme]
    if policy.allowed_ports is not None:
        if effective_port not in policy.allowed_ports:
            raise BlockedAddress(url, "port", str(effective_port))
    elif policy.block_bad_ports and effective_port in BAD_PORTS:
        raise BlockedAddress(url, "port", str(effective_port))


def check_resolved(host: str, addresses: Iterable[str], policy: AddressPolicy) -> None:
    """Raise :class:`BlockedAddress` unless every address ``host`` resolved to is allowed.

    An explicitly allowed host passes whatever it resolves to; any other host passes only when
    all of its addresses are public (or lifted by ``allow_private``), since a client may connect
    to any of them.
    """
    _check_host(host, host, policy)
    if policy.allows_host(host):
        return
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            raise BlockedAddress(host, "bad-host", f"resolved to {address!r}") from None
        reason = classify_address(ip)
        if reason is not None and policy.refuses(reason):
            raise BlockedAddress(host, reason, f"resolved to {ip}")


def resolve_and_check(host: str, port: int, policy: AddressPolicy) -> list[str]:
    """Resolve ``host`` with ``getaddrinfo`` and return its addresses if all are allowed.

    Raises :class:`BlockedAddress` when the host or any address is refused; DNS failures
    propagate as ``OSError`` (``socket.gaierror``). Connect to the returned addresses, not to
    the name again, or a second lookup may answer differently.
    """
    _check_host(host, host, policy)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    check_resolved(host, addresses, policy)
    return addresses


def classify_address(ip: IPAddress) -> Reason | None:
    """The reason an address is not public, or ``None`` for a public unicast address.

    IPv6 forms that carry an IPv4 address a host or gateway will actually reach (mapped,
    NAT64, 6to4) are judged by that IPv4 address.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        for network, reason in _IPV4_TABLE:
            if ip in network:
                return reason
        return None
    if ip.scope_id:
        ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return classify_address(embedded)
    for network6, reason in _IPV6_TABLE:
        if ip in network6:
            return reason
    if ip not in _IPV6_GLOBAL_UNICAST:
        return "reserved"  # the deprecated IPv4-compatible ::a.b.c.d lands here too
    return None


def parse_ip_host(host: str) -> IPAddress | None:
    """The address a URL host denotes if it is an IP literal in any spelling, else ``None``.

    Follows the WHATWG URL host parser (which matches ``inet_aton``): after percent-decoding
    and NFKC folding, a host whose last label is numeric is an IPv4 address whose parts may be
    decimal, ``0x`` hex or ``0``-prefixed octal, with fewer than four parts filling the rest
    from the last one. Raises ``ValueError`` for a host a browser would refuse to parse.
    """
    text = _fold_host(host)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        return ipaddress.IPv6Address(text.split("%", 1)[0])
    parts = text.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not _is_ipv4_number(parts[-1]):
        return None
    if len(parts) > 4:
        raise ValueError(f"too many IPv4 parts in {host!r}")
    numbers = [_ipv4_number(part, host) for part in parts]
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise ValueError(f"IPv4 part out of range in {host!r}")
    value = numbers[-1]
    for index, number in enumerate(numbers[:-1]):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _check_host(url: str, host: str, policy: AddressPolicy) -> None:
    if policy.allows_host(host):
        return
    try:
        ip = parse_ip_host(host)
    except ValueError as exc:
        raise BlockedAddress(url, "bad-host", str(exc)) from None
    if ip is None:
        name = _normalise_host_name(host)
        if not name or _FORBIDDEN_HOST_CHARS.search(name):
            raise BlockedAddress(url, "bad-host", repr(host))
        if (name in _LOOPBACK_NAMES or name.endswith(".localhost")) and policy.refuses("loopback"):
            raise BlockedAddress(url, "loopback", name)
        return
    reason = classify_address(ip)
    if reason is not None and policy.refuses(reason):
        raise BlockedAddress(url, reason, str(ip))


def _fold_host(host: str) -> str:
    # Browsers percent-decode hosts and IDNA maps fullwidth digits and dots to ASCII; the check
    # must read a host as the connection will, or 127.0.0.1 in fullwidth digits slips through.
    return unicodedata.normalize("NFKC", unquote(host)).translate(_DOTS).strip().lower()


def _normalise_host_name(host: str) -> str:
    text = _fold_host(host)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return text[:-1] if text.endswith(".") and len(text) > 1 else text


def _is_ipv4_number(part: str) -> bool:
    if part.isascii() and part.isdigit():
        return True
    if part[:2] in ("0x", "0X"):
        rest = part[2:]
        return all(c in "0123456789abcdefABCDEF" for c in rest)
    return False


def _ipv4_number(part: str, host: str) -> int:
    if not part:
        raise ValueError(f"empty IPv4 part in {host!r}")
    try:
        if part[:2] in ("0x", "0X"):
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part.startswith("0"):
            return int(part[1:], 8)
        if not (part.isascii() and part.isdigit()):
            raise ValueError(part)
        return int(part, 10)
    except ValueError:
        raise ValueError(f"bad IPv4 part {part!r} in {host!r}") from None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


# -- Scrapy settings


def policy_from_settings(settings: BaseSettings) -> AddressPolicy:
    """The policy the ``MAMORU_NETGUARD_*`` settings describe (lists or comma-separated)."""
    ports = [int(p) for p in settings.getlist(SETTING_ALLOWED_PORTS)]
    return AddressPolicy(
        allow_private=settings.getbool(SETTING_ALLOW_PRIVATE, False),
        allowed_hosts=frozenset(str(h) for h in settings.getlist(SETTING_ALLOWED_HOSTS)),
        allowed_ports=frozenset(ports) if ports else None,
    )


#: Where :class:`NetguardMiddleware` goes: before RobotsTxtMiddleware (100), so a refused
#: host is not even asked for robots.txt.
MIDDLEWARE_ORDER: Final = 50


def netguard_settings(policy: AddressPolicy | None = None, *, ipv6: bool = False) -> dict[str, Any]:
    """Scrapy settings that install the resolver and the middleware with ``policy``.

    Merge ``DOWNLOADER_MIDDLEWARES`` with your own rather than replacing it. ``ipv6`` picks
    :class:`NetguardHostnameResolver` (IPv4 and IPv6) instead of the threaded IPv4 one.
    """
    from scrapy.settings import default_settings

    resolver = NetguardHostnameResolver if ipv6 else NetguardResolver
    # Scrapy 2.19 renamed DNS_RESOLVER and warns when the old name is set.
    key = (
        "TWISTED_DNS_RESOLVER"
        if hasattr(default_settings, "TWISTED_DNS_RESOLVER")
        else ("DNS_RESOLVER")
    )
    settings: dict[str, Any] = {
        key: f"{resolver.__module__}.{resolver.__qualname__}",
        "DOWNLOADER_MIDDLEWARES": {
            f"{NetguardMiddleware.__module__}.{NetguardMiddleware.__qualname__}": MIDDLEWARE_ORDER
        },
    }
    if policy is not None:
        settings[SETTING_ALLOW_PRIVATE] = policy.allow_private
        settings[SETTING_ALLOWED_HOSTS] = sorted(policy.allowed_hosts)
        if policy.allowed_ports is not None:
            settings[SETTING_ALLOWED_PORTS] = sorted(policy.allowed_ports)
    return settings


# -- resolvers


class ResolverRefusal(DNSLookupError):
    """A lookup the resolver refused; a DNS error to Twisted, so the connection never starts."""

    def __init__(self, name: str, reason: Reason, detail: str = "") -> None:
        self.name = name
        self.reason: Reason = reason
        super().__init__(f"netguard refused {name!r}: {reason} {detail}".rstrip())


class _Refusals:
    """Names the resolver refused, with the addresses seen (bounded, oldest dropped).

    Twisted turns a refused lookup into a generic DNSLookupError, losing the reason, and the
    middleware has no other way to tell a refusal from a dead name; it also lets retries of a
    refused name be blocked without asking DNS again.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[Reason, tuple[str, ...]]] = OrderedDict()

    def add(self, name: str, reason: Reason, addresses: Sequence[str]) -> None:
        key = _normalise_host_name(name)
        with self._lock:
            self._items[key] = (reason, tuple(addresses))
            self._items.move_to_end(key)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)

    def get(self, name: str) -> tuple[Reason, tuple[str, ...]] | None:
        with self._lock:
            return self._items.get(_normalise_host_name(name))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


#: Shared by the resolver (writer) and the middleware (reader): the reactor has one resolver.
refusals = _Refusals()


def _refuse(name: str, addresses: Sequence[str], exc: BlockedAddress) -> ResolverRefusal:
    refusals.add(name, exc.reason, addresses)
    logger.warning("netguard: refused to connect to %s (%s)", name, exc)
    return ResolverRefusal(name, exc.reason, exc.detail)


def _settings_policy(crawler: Any) -> AddressPolicy:
    # Scrapy builds resolvers with the CrawlerProcess in place of a Crawler: only .settings.
    return policy_from_settings(crawler.settings)


class NetguardResolver(CachingThreadedResolver):
    """Scrapy's caching threaded resolver (IPv4), refusing names that resolve to addresses
    the policy refuses. The answer checked is the one the connection uses, cached or not."""

    def __init__(
        self,
        reactor: ReactorBase,
        cache_size: int,
        timeout: float,
        policy: AddressPolicy | None = None,
    ) -> None:
        super().__init__(reactor, cache_size, timeout)
        self.policy = policy if policy is not None else AddressPolicy()

    @classmethod
    def from_crawler(cls, crawler: Crawler, reactor: ReactorBase) -> Self:
        settings = crawler.settings
        cache_size = settings.getint("DNSCACHE_SIZE") if settings.getbool("DNSCACHE_ENABLED") else 0
        return cls(reactor, cache_size, settings.getfloat("DNS_TIMEOUT"), _settings_policy(crawler))

    def getHostByName(self, name: str, timeout: Sequence[int] = ()) -> Deferred[str]:  # noqa: N802
        try:
            _check_host(name, name, self.policy)
        except BlockedAddress as exc:
            return defer.fail(_refuse(name, [], exc))
        lookup = super().getHostByName(name, timeout)
        lookup.addCallback(self._verify, name)
        return lookup

    def _verify(self, address: str, name: str) -> str:
        try:
            check_resolved(name, [address], self.policy)
        except BlockedAddress as exc:
            raise _refuse(name, [address], exc) from None
        return address


class _CheckingReceiver:
    """Holds back resolved addresses until all are known, then passes all or none on."""

    def __init__(self, receiver: IResolutionReceiver, name: str, policy: AddressPolicy) -> None:
        # Any: mypy reads zope interface methods as unbound functions without its plugin.
        self._receiver: Any = receiver
        self._name = name
        self._policy = policy
        self._addresses: list[IAddress] = []

    def resolutionBegan(self, resolution: IHostResolution) -> None:  # noqa: N802
        self._receiver.resolutionBegan(resolution)

    def addressResolved(self, address: IAddress) -> None:  # noqa: N802
        self._addresses.append(address)

    def resolutionComplete(self) -> None:  # noqa: N802
        hosts = [a.host for a in self._addresses if isinstance(a, IPv4Address | IPv6Address)]
        try:
            if len(hosts) != len(self._addresses):
                raise BlockedAddress(self._name, "bad-host", "non-IP address resolved")
            check_resolved(self._name, hosts, self._policy)
        except BlockedAddress as exc:
            _refuse(self._name, hosts, exc)
        else:
            for address in self._addresses:
                self._receiver.addressResolved(address)
        # No addresses at all makes Twisted fail the connection with DNSLookupError.
        self._receiver.resolutionComplete()


class NetguardHostnameResolver(CachingHostnameResolver):
    """Scrapy's caching hostname resolver (IPv4 and IPv6) with the same refusals: a name is
    refused when any of its addresses is, because the client may try each in turn."""

    def __init__(
        self, reactor: ReactorBase, cache_size: int, policy: AddressPolicy | None = None
    ) -> None:
        super().__init__(reactor, cache_size)
        self.policy = policy if policy is not None else AddressPolicy()

    @classmethod
    def from_crawler(cls, crawler: Crawler, reactor: ReactorBase) -> Self:
        settings = crawler.settings
        cache_size = settings.getint("DNSCACHE_SIZE") if settings.getbool("DNSCACHE_ENABLED") else 0
        return cls(reactor, cache_size, _settings_policy(crawler))

    def resolveHostName(  # noqa: N802
        self,
        resolutionReceiver: IResolutionReceiver,  # noqa: N803
        hostName: str,  # noqa: N803
        portNumber: int = 0,  # noqa: N803
        addressTypes: Sequence[type[IAddress]] | None = None,  # noqa: N803
        transportSemantics: str = "TCP",  # noqa: N803
    ) -> IHostResolution:
        checking: Any = _CheckingReceiver(resolutionReceiver, hostName, self.policy)
        try:
            _check_host(hostName, hostName, self.policy)
        except BlockedAddress as exc:
            _refuse(hostName, [], exc)
            receiver: Any = resolutionReceiver
            resolution: Any = _Resolution(hostName)
            receiver.resolutionBegan(resolution)
            receiver.resolutionComplete()
            return cast("IHostResolution", resolution)
        return super().resolveHostName(
            checking, hostName, portNumber, addressTypes, transportSemantics
        )


class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass  # already complete


# -- downloader middleware


class NetguardMiddleware:
    """Refuses requests the policy forbids before they reach the downloader (see module doc)."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self._policy: AddressPolicy | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    @property
    def policy(self) -> AddressPolicy:
        if self._policy is None:
            candidate = getattr(self.crawler.spider, "netguard_policy", None)
            if isinstance(candidate, AddressPolicy):
                self._policy = candidate
            else:
                self._policy = policy_from_settings(self.crawler.settings)
        return self._policy

    # ``spider`` is optional: Scrapy 2.13 passes it, later versions warn when it is required.
    def process_request(self, request: Request, spider: Spider | None = None) -> None:
        try:
            check_url(request.url, self.policy)
            self._check_refused_before(request.url)
        except BlockedAddress as exc:
            self._block(request, exc)

    def process_exception(
        self, request: Request, exception: BaseException, spider: Spider | None = None
    ) -> Response | Request | None:
        if not isinstance(exception, _DNS_ERRORS):
            return None
        try:
            self._check_refused_before(request.url)
        except BlockedAddress as exc:
            self._block(request, exc)
        return None

    def _check_refused_before(self, url: str) -> None:
        host = urlsplit(url).hostname or ""
        known = refusals.get(host)
        if known is None:
            return
        reason, addresses = known
        if not addresses:
            # Refused by name alone: judge it again under this middleware's policy.
            _check_host(url, host, self.policy)
            return
        try:
            check_resolved(host, addresses, self.policy)
        except BlockedAddress as exc:
            raise BlockedAddress(url, reason, exc.detail) from None

    def _block(self, request: Request, exc: BlockedAddress) -> NoReturn:
        stats = self.crawler.stats
        if stats is not None:
            stats.inc_value("netguard/blocked")
            stats.inc_value(f"netguard/blocked/{exc.reason}")
        logger.info("netguard: blocked %s: %s", request.url, exc.reason)
        raise IgnoreRequest(f"netguard: {exc}")
