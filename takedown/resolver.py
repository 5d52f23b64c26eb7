"""Name resolution for recipient discovery: the system resolver, or the DNS servers configured
in ``MAMORU_DNS_SERVERS``, always through the crawler's SSRF address policy.

Why a resolver of our own: an operator may need discovery to ask a particular DNS server (a
filtering resolver, a split-horizon view, a loopback fixture in tests) without changing the
machine's ``/etc/resolv.conf``; and ``getaddrinfo`` has no timeout of its own, while asking a
server directly with dnspython is bounded by one deadline per name.

The policy is :mod:`crawler.netguard`'s, applied exactly as :func:`crawler.netguard.
resolve_and_check` applies it: the name alone is judged before any query (``localhost``, an IP
literal in any spelling), then every address it resolves to. Callers connect to the returned
addresses, never to the name again.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Final

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from crawler.netguard import AddressPolicy, check_resolved, parse_ip_host, resolve_and_check
from store.config import Settings

__all__ = ["DEFAULT_DNS_TIMEOUT", "DnsError", "Resolver"]

#: Seconds one name may take across all configured servers, A and AAAA together.
DEFAULT_DNS_TIMEOUT: Final = 5.0
# A single server attempt; a silent server is retried (UDP loses packets) until the deadline.
_ATTEMPT_TIMEOUT: Final = 2.0


class DnsError(OSError):
    """A name gave no address: ``kind`` is ``nxdomain``, ``no-address``, ``timeout`` or
    ``servfail``. An ``OSError`` so that callers written for ``getaddrinfo``'s
    ``socket.gaierror`` treat it the same way."""

    def __init__(self, name: str, kind: str, detail: str) -> None:
        self.name = name
        self.kind = kind
        super().__init__(f"{name}: {detail}")


@dataclass(frozen=True)
class Resolver:
    """Resolves names for discovery. No ``servers``: the system resolver (``getaddrinfo``)."""

    servers: tuple[tuple[str, int], ...] = ()
    timeout: float = DEFAULT_DNS_TIMEOUT

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float | None = None) -> Resolver:
        bound = DEFAULT_DNS_TIMEOUT if timeout is None else min(timeout, DEFAULT_DNS_TIMEOUT)
        return cls(settings.dns_nameservers, bound)

    def resolve(self, host: str, port: int, policy: AddressPolicy) -> list[str]:
        """The addresses of ``host`` if every one is allowed by ``policy``.

        Raises :class:`crawler.netguard.BlockedAddress` for a refused name or address (before
        any query when the name alone decides) and ``OSError`` (:class:`DnsError` with
        configured servers) when the name does not resolve.
        """
        if not self.servers:
            return resolve_and_check(host, port, policy)
        # Judged on the name alone first: "localhost" or a loopback literal is refused
        # without asking anybody.
        check_resolved(host, [], policy)
        literal = parse_ip_host(host)
        addresses = [str(literal)] if literal is not None else self._query(host)
        check_resolved(host, addresses, policy)
        return addresses

    def describe(self) -> str:
        if not self.servers:
            return "the system resolver"
        return ", ".join(f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in self.servers)

    def _query(self, host: str) -> list[str]:
        name = _absolute_name(host)
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in self.servers]
        resolver.timeout = min(_ATTEMPT_TIMEOUT, self.timeout)
        resolver.cache = None
        deadline = time.monotonic() + self.timeout
        addresses: list[str] = []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout(host)
            try:
                answer = resolver.resolve(
                    name, rdtype, search=False, raise_on_no_answer=False, lifetime=remaining
                )
            except dns.resolver.NXDOMAIN:
                raise DnsError(host, "nxdomain", f"no such name ({self.describe()})") from None
            except dns.resolver.LifetimeTimeout:
                raise self._timeout(host) from None
            except dns.resolver.NoNameservers as exc:
                raise DnsError(host, "servfail", f"no server answered: {exc}") from None
            except dns.exception.DNSException as exc:
                raise DnsError(host, "servfail", f"{type(exc).__name__}: {exc}") from None
            # The answer's RRset holds only the asked type (a CNAME chain is followed).
            addresses += [rdata.to_text() for rdata in answer]
        if not addresses:
            raise DnsError(host, "no-address", f"no A or AAAA record ({self.describe()})")
        return list(dict.fromkeys(addresses))

    def _timeout(self, host: str) -> DnsError:
        return DnsError(host, "timeout", f"no answer within {self.timeout:g}s ({self.describe()})")


def _absolute_name(host: str) -> dns.name.Name:
    text = host.strip().rstrip(".").lower()
    # Registries and DNS use A-labels (xn--) for internationalised names.
    with contextlib.suppress(UnicodeError):
        text = text.encode("idna").decode("ascii")
    try:
        return dns.name.from_text(text, origin=dns.name.root)
    except dns.exception.DNSException as exc:
        raise DnsError(host, "no-address", f"not a DNS name: {exc}") from None
