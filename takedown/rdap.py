"""RDAP lookups (RFC 9082/9083, bootstrap RFC 9224) and the bounded HTTP GET they share.

Who answers for a domain or an address is found the way RDAP clients are meant to: IANA's
bootstrap files (``dns.json``, ``ipv4.json``, ``ipv6.json``) name the registry's RDAP base for
a TLD or an address range, and that registry's answer carries an entity with role ``abuse``
(for a domain usually nested under the ``registrar`` entity, as ICANN's RDAP profile asks).

Every request goes through :func:`fetch`, which treats the server as hostile: the same SSRF
policy as the crawler (:mod:`crawler.netguard`, checked on the URL and again on the resolved
addresses, then connecting to exactly those addresses), ``http``/``https`` only, a few
redirects each checked again, a body size limit, and one deadline for the whole exchange that a
watchdog enforces by shutting the socket, so a server dripping bytes cannot stretch it.
Names are resolved by a :class:`takedown.resolver.Resolver`: the DNS servers of
``MAMORU_DNS_SERVERS`` within one deadline, or (unset) ``getaddrinfo``, which is bounded by the
system resolver's timeouts only.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar
from typing import Any, Final, cast
from urllib.parse import quote, urljoin, urlsplit

from crawler.netguard import AddressPolicy, BlockedAddress, check_url
from takedown.resolver import Resolver

__all__ = [
    "BOOTSTRAP_TTL",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT",
    "MAX_REDIRECTS",
    "FetchError",
    "Fetched",
    "RdapAnswer",
    "RdapClient",
    "RdapError",
    "RdapNotFound",
    "VCard",
    "clear_bootstrap_cache",
    "fetch",
    "parse_answer",
    "parse_vcard",
]

DEFAULT_TIMEOUT: Final = 10.0
DEFAULT_MAX_BYTES: Final = 1024 * 1024
# dns.json is ~100 KB today; the margin is for growth, not for hostile servers.
BOOTSTRAP_MAX_BYTES: Final = 4 * 1024 * 1024
MAX_REDIRECTS: Final = 3
# IANA updates the bootstrap files a few times a year; a day-old copy is never the problem.
BOOTSTRAP_TTL: Final = 24 * 3600.0
USER_AGENT: Final = "Mamoru/0.1 (takedown recipient discovery)"
RDAP_ACCEPT: Final = "application/rdap+json, application/json;q=0.9"
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_SYSTEM: Final = Resolver()
# Hostile answers can nest entities without end; real ones nest two or three deep.
_MAX_ENTITY_DEPTH: Final = 5
_MAX_ENTITIES: Final = 200


class FetchError(Exception):
    """A GET that gave no usable answer. ``reason`` is a short code: ``scheme``, ``refused``
    (the SSRF policy; ``detail`` says why), ``dns``, ``network``, ``timeout``, ``too-large``,
    ``redirect``, ``status``, ``malformed``, ``no-service``."""

    def __init__(self, url: str, reason: str, detail: str = "", *, status: int | None = None):
        self.url = url
        self.reason = reason
        self.detail = detail
        self.status = status
        super().__init__(f"{reason}: {url}" + (f" ({detail})" if detail else ""))


class RdapError(FetchError):
    """An RDAP bootstrap or query failed; carries the URL asked."""


class RdapNotFound(RdapError):
    """The registry answered 404: it has no such domain or network."""


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    status: int
    content_type: str  # media type only, lower case ("" when absent)
    body: bytes


def fetch(
    url: str,
    *,
    policy: AddressPolicy,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_redirects: int = MAX_REDIRECTS,
    accept: str = "*/*",
    resolver: Resolver | None = None,
    headers: Mapping[str, str] | None = None,
    cookies: CookieJar | None = None,
) -> Fetched:
    """GET ``url`` within one deadline; any final status is returned, transport failures raise
    :class:`FetchError`. ``resolver``: how names are resolved (default: the system's).
    ``headers`` are sent with every request (over the defaults: a recheck sends the crawler's
    User-Agent and a Referer); ``cookies`` sends what the jar holds for each URL asked and
    keeps what each answer sets, redirects included."""
    deadline = time.monotonic() + timeout
    current = url
    for _ in range(max_redirects + 1):
        status, answer, body = _get_once(
            current,
            policy,
            deadline,
            timeout,
            max_bytes,
            accept,
            resolver or _SYSTEM,
            _with_cookies(headers, cookies, current),
        )
        if cookies is not None:
            _keep_cookies(cookies, current, answer)
        if status not in _REDIRECTS:
            content_type = answer.get("content-type", "").split(";", 1)[0].strip().lower()
            return Fetched(current, status, content_type, body)
        location = answer.get("location")
        if not location:
            raise FetchError(current, "redirect", f"HTTP {status} without Location")
        current = urljoin(current, location.strip())
    raise FetchError(url, "redirect", f"more than {max_redirects} redirects")


def _with_cookies(
    headers: Mapping[str, str] | None, jar: CookieJar | None, url: str
) -> dict[str, str]:
    # Asked again for every hop: a redirect to another host must not carry this one's cookies.
    out = dict(headers or {})
    if jar is not None:
        request = _jar_request(url)
        jar.add_cookie_header(request)
        found = request.get_header("Cookie")
        if found:
            out["Cookie"] = "; ".join(filter(None, (out.get("Cookie"), found)))
    return out


class _Answer:
    """All that ``CookieJar.extract_cookies`` reads of a response: ``info()``, its headers."""

    def __init__(self, headers: http.client.HTTPMessage) -> None:
        self._headers = headers

    def info(self) -> http.client.HTTPMessage:
        return self._headers


def _keep_cookies(jar: CookieJar, url: str, headers: http.client.HTTPMessage) -> None:
    # The response itself is closed by now; the jar only needs its headers.
    answer = cast(http.client.HTTPResponse, _Answer(headers))
    jar.extract_cookies(answer, _jar_request(url))


def _jar_request(url: str) -> urllib.request.Request:
    # Never opened (fetch makes the request): the jar only reads its URL and headers.
    return urllib.request.Request(url)  # noqa: S310


def _get_once(
    url: str,
    policy: AddressPolicy,
    deadline: float,
    timeout: float,
    max_bytes: int,
    accept: str,
    resolver: Resolver,
    extra_headers: Mapping[str, str],
) -> tuple[int, http.client.HTTPMessage, bytes]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError(url, "scheme", scheme or "none")
    try:
        check_url(url, policy)
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        addresses = resolver.resolve(host, port, policy)
    except BlockedAddress as exc:
        raise FetchError(url, "refused", str(exc)) from None
    except (OSError, ValueError) as exc:
        raise FetchError(url, "dns", str(exc)) from None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchError(url, "timeout", f"no answer within {timeout:g}s")
    opened: list[socket.socket] = []
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = _PinnedHTTPSConnection(host, port, addresses, remaining, opened)
    else:
        conn = _PinnedHTTPConnection(host, port, addresses, remaining, opened)
    expired = threading.Event()
    watchdog = threading.Timer(remaining, _abort, args=(opened, expired))
    watchdog.daemon = True
    watchdog.start()
    response: http.client.HTTPResponse | None = None
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request(
            "GET",
            target,
            headers={
                "User-Agent": USER_AGENT,
                "Accept": accept,
                **extra_headers,
                # Not the caller's to change: bodies are read as sent, one request a connection.
                "Accept-Encoding": "identity",
                "Connection": "close",
            },
        )
        response = conn.getresponse()
        status = response.status
        # Case-insensitive, and keeps every Set-Cookie (a dict would keep only the last).
        headers = response.msg
        redirect = status in _REDIRECTS
        body = b"" if redirect else _read_bounded(response, url, max_bytes)
    except FetchError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if expired.is_set():
            raise FetchError(url, "timeout", f"no complete answer within {timeout:g}s") from None
        raise FetchError(url, "network", f"{type(exc).__name__}: {exc}") from None
    finally:
        watchdog.cancel()
        # The response holds its own reference to the socket: closing only the connection
        # would leave the descriptor open until garbage collection.
        if response is not None:
            response.close()
        conn.close()
        for sock in opened:
            sock.close()
    # A shut socket reads as end of stream, so a body cut by the watchdog can look complete.
    if expired.is_set():
        raise FetchError(url, "timeout", f"no complete answer within {timeout:g}s")
    return status, headers, body


def _read_bounded(response: http.client.HTTPResponse, url: str, max_bytes: int) -> bytes:
    declared = response.getheader("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise FetchError(url, "too-large", f"Content-Length {declared} > {max_bytes} bytes")
    body = response.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise FetchError(url, "too-large", f"more than {max_bytes} bytes")
    return body


def _abort(sockets: list[socket.socket], expired: threading.Event) -> None:
    expired.set()
    # Shutting a socket wakes whatever read blocks on it. The sockets are the watchdog's own
    # references: http.client drops conn.sock once the response owns the connection.
    for sock in list(sockets):
        with contextlib.suppress(OSError):  # already closed: nothing left to interrupt
            sock.shutdown(socket.SHUT_RDWR)


def _connect_any(addresses: list[str], port: int, timeout: float) -> socket.socket:
    # Connect to the addresses that were checked, never to the name again: a second lookup
    # could answer with a private address (DNS rebinding).
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            error = exc
    raise error if error is not None else OSError("no address to connect to")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(
        self,
        host: str,
        port: int,
        addresses: list[str],
        timeout: float,
        opened: list[socket.socket],
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses
        self._connect_timeout = timeout
        self._opened = opened

    def connect(self) -> None:
        self.sock = _connect_any(self._addresses, self.port, self._connect_timeout)
        self._opened.append(self.sock)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(
        self,
        host: str,
        port: int,
        addresses: list[str],
        timeout: float,
        opened: list[socket.socket],
    ) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self._tls)
        self._addresses = addresses
        self._connect_timeout = timeout
        self._opened = opened

    def connect(self) -> None:
        raw = _connect_any(self._addresses, self.port, self._connect_timeout)
        self._opened.append(raw)  # a handshake that stalls is interrupted through this one
        try:
            self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self._opened.append(self.sock)


# -- bootstrap (RFC 9224)

_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_bootstrap_lock = threading.Lock()
_bootstrap_cache: dict[str, tuple[float, list[tuple[list[str], list[str]]]]] = {}


def clear_bootstrap_cache() -> None:
    """Forget every bootstrap file read so far (tests; a changed bootstrap URL)."""
    with _bootstrap_lock:
        _bootstrap_cache.clear()


def _parse_bootstrap(url: str, body: bytes) -> list[tuple[list[str], list[str]]]:
    document = _load_json(url, body)
    services = document.get("services")
    if not isinstance(services, list):
        raise RdapError(url, "malformed", "bootstrap file without a services list")
    parsed: list[tuple[list[str], list[str]]] = []
    for service in services:
        if not (isinstance(service, list) and len(service) >= 2):
            raise RdapError(url, "malformed", "bootstrap service is not [entries, urls]")
        entries, urls = service[0], service[1]
        if not (_all_strings(entries) and _all_strings(urls)):
            raise RdapError(url, "malformed", "bootstrap entries and URLs must be strings")
        parsed.append(([e.lower() for e in entries], list(urls)))
    return parsed


def _all_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _pick_base(urls: list[str]) -> str | None:
    # RFC 9224 section 3: when a service lists both, HTTPS is the one to use.
    usable = [u for u in urls if urlsplit(u).scheme in ("http", "https")]
    usable.sort(key=lambda u: urlsplit(u).scheme != "https")
    if not usable:
        return None
    base = usable[0]
    return base if base.endswith("/") else base + "/"


# -- answers (RFC 9083)


@dataclass(frozen=True)
class VCard:
    """What a jCard (RFC 7095) says about a contact that matters for a notice."""

    fn: str | None
    emails: tuple[str, ...]
    phones: tuple[str, ...]
    # RFC 8605 contact-uri: registries that redact emails publish a web form here instead.
    contact_uris: tuple[str, ...]

    @property
    def email(self) -> str | None:
        return self.emails[0] if self.emails else None

    @property
    def web_form_url(self) -> str | None:
        forms = [u for u in self.contact_uris if urlsplit(u).scheme == "https"]
        return forms[0] if forms else None


@dataclass(frozen=True)
class RdapAnswer:
    url: str
    abuse: VCard | None  # the shallowest entity with role "abuse", if any
    registrar: str | None  # domain answers: the registrar's name
    holder: str | None  # network answers: registrant's name, else the network's name


def parse_vcard(vcard_array: Any) -> VCard | None:
    """The ``fn``, ``email``, ``tel`` and ``contact-uri`` of a jCard; None if it is not one."""
    if not (isinstance(vcard_array, list) and len(vcard_array) >= 2):
        return None
    if vcard_array[0] != "vcard" or not isinstance(vcard_array[1], list):
        return None
    fn: str | None = None
    emails: list[str] = []
    phones: list[str] = []
    uris: list[str] = []
    for prop in vcard_array[1]:
        if not (isinstance(prop, list) and len(prop) >= 4 and isinstance(prop[0], str)):
            continue
        name = prop[0].lower()
        for value in _texts(prop[3:]):
            if name == "fn" and fn is None and value:
                fn = value
            elif name == "email":
                email = value.removeprefix("mailto:").strip()
                if "@" in email and not any(c.isspace() for c in email):
                    emails.append(email)
            elif name == "tel" and value:
                phones.append(value.removeprefix("tel:"))
            elif name == "contact-uri" and urlsplit(value).scheme in ("https", "mailto"):
                if value.startswith("mailto:"):
                    emails.append(value.removeprefix("mailto:"))
                else:
                    uris.append(value)
    return VCard(fn, tuple(dict.fromkeys(emails)), tuple(phones), tuple(uris))


def _texts(values: list[Any]) -> Iterator[str]:
    # A jCard value is a string or, for multi-valued properties, a list of strings.
    for value in values:
        if isinstance(value, str):
            yield value.strip()
        elif isinstance(value, list):
            yield from (v.strip() for v in value if isinstance(v, str))


def parse_answer(url: str, document: Mapping[str, Any]) -> RdapAnswer:
    """The abuse contact, registrar and holder named in an RDAP domain or ip answer."""
    entities = list(_walk_entities(document.get("entities"), 0))
    abuse = next((e for depth, e in sorted(entities, key=_depth) if "abuse" in _roles(e)), None)
    registrar = next((e for _, e in entities if "registrar" in _roles(e)), None)
    registrant = next((e for _, e in entities if "registrant" in _roles(e)), None)
    network_name = document.get("name")
    holder = _fn(registrant) or (network_name if isinstance(network_name, str) else None)
    return RdapAnswer(
        url=url,
        abuse=parse_vcard(abuse.get("vcardArray")) if abuse is not None else None,
        registrar=_fn(registrar),
        holder=holder,
    )


def _depth(item: tuple[int, Mapping[str, Any]]) -> int:
    return item[0]


def _walk_entities(value: Any, depth: int) -> Iterator[tuple[int, Mapping[str, Any]]]:
    if depth >= _MAX_ENTITY_DEPTH or not isinstance(value, list):
        return
    for entity in value[:_MAX_ENTITIES]:
        if isinstance(entity, dict):
            yield depth, entity
            yield from _walk_entities(entity.get("entities"), depth + 1)


def _roles(entity: Mapping[str, Any]) -> set[str]:
    roles = entity.get("roles")
    return {r.lower() for r in roles if isinstance(r, str)} if isinstance(roles, list) else set()


def _fn(entity: Mapping[str, Any] | None) -> str | None:
    if entity is None:
        return None
    card = parse_vcard(entity.get("vcardArray"))
    return card.fn if card is not None else None


def _load_json(url: str, body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RdapError(url, "malformed", f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise RdapError(url, "malformed", "JSON answer is not an object")
    return document


# -- client


class RdapClient:
    """Finds the RDAP server for a domain or address and asks it; bootstrap files are cached
    in memory per bootstrap URL for :data:`BOOTSTRAP_TTL`, shared by every client."""

    def __init__(
        self,
        bootstrap_url: str,
        *,
        allow_private: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_redirects: int = MAX_REDIRECTS,
        resolver: Resolver | None = None,
    ) -> None:
        self.resolver = resolver or _SYSTEM
        self.bootstrap_url = bootstrap_url if bootstrap_url.endswith("/") else bootstrap_url + "/"
        self.policy = AddressPolicy(allow_private=allow_private)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects

    def base_for_domain(self, domain: str) -> str:
        """The RDAP base URL serving ``domain``'s TLD (longest matching label suffix)."""
        name = _a_label(domain)
        services = self._bootstrap("dns.json")
        labels = name.split(".")
        for start in range(len(labels)):
            suffix = ".".join(labels[start:])
            for entries, urls in services:
                if suffix in entries and (base := _pick_base(urls)) is not None:
                    return base
        raise RdapError(self.bootstrap_url + "dns.json", "no-service", f"no RDAP for {name!r}")

    def base_for_ip(self, address: str) -> str:
        """The RDAP base URL serving ``address`` (longest matching prefix)."""
        ip = _parse_ip(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        file = "ipv4.json" if ip.version == 4 else "ipv6.json"
        best: tuple[int, str] | None = None
        for entries, urls in self._bootstrap(file):
            for entry in entries:
                network = _network(entry)
                if network is None or network.version != ip.version or ip not in network:
                    continue
                base = _pick_base(urls)
                if base is not None and (best is None or network.prefixlen > best[0]):
                    best = (network.prefixlen, base)
        if best is None:
            raise RdapError(self.bootstrap_url + file, "no-service", f"no RDAP for {ip}")
        return best[1]

    def domain(self, domain: str) -> RdapAnswer:
        name = _a_label(domain)
        return self._query(self.base_for_domain(name) + "domain/" + quote(name, safe=""))

    def ip(self, address: str) -> RdapAnswer:
        ip = _parse_ip(address)
        return self._query(self.base_for_ip(str(ip)) + "ip/" + quote(str(ip), safe=""))

    def _query(self, url: str) -> RdapAnswer:
        fetched = self._get(url, self.max_bytes, RDAP_ACCEPT)
        if fetched.status == 404:
            raise RdapNotFound(url, "status", "not found", status=404)
        if fetched.status != 200:
            raise RdapError(url, "status", f"HTTP {fetched.status}", status=fetched.status)
        return parse_answer(fetched.url, _load_json(fetched.url, fetched.body))

    def _bootstrap(self, file: str) -> list[tuple[list[str], list[str]]]:
        url = self.bootstrap_url + file
        with _bootstrap_lock:
            cached = _bootstrap_cache.get(url)
        if cached is not None and time.monotonic() - cached[0] < BOOTSTRAP_TTL:
            return cached[1]
        fetched = self._get(url, BOOTSTRAP_MAX_BYTES, "application/json")
        if fetched.status != 200:
            raise RdapError(url, "status", f"HTTP {fetched.status}", status=fetched.status)
        services = _parse_bootstrap(url, fetched.body)
        with _bootstrap_lock:
            _bootstrap_cache[url] = (time.monotonic(), services)
        return services

    def _get(self, url: str, max_bytes: int, accept: str) -> Fetched:
        try:
            return fetch(
                url,
                policy=self.policy,
                timeout=self.timeout,
                max_bytes=max_bytes,
                max_redirects=self.max_redirects,
                accept=accept,
                resolver=self.resolver,
            )
        except RdapError:
            raise
        except FetchError as exc:
            raise RdapError(exc.url, exc.reason, exc.detail, status=exc.status) from None


def _a_label(domain: str) -> str:
    name = domain.strip().rstrip(".").lower()
    if not name or any(c in name for c in "/:@ "):
        raise RdapError(domain, "malformed", "not a domain name")
    try:
        # Bootstrap entries and registries use A-labels (xn--) for internationalised names.
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


def _parse_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(address.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        raise RdapError(address, "malformed", "not an IP address") from None


def _network(entry: str) -> _IPNetwork | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None
