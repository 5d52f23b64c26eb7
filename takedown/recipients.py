"""Who receives a takedown notice for a site, in the order to notify them, and their rows.

Order (:func:`discover`): contacts an operator configured for the site win outright. Otherwise:
the CDN's abuse channel when the site's address is in a CDN's published ranges (then the origin
host when it is known), the site's own ``/.well-known/security.txt`` contacts (RFC 9116), the
network abuse contact from RDAP for its address (the host), the registrar's abuse contact from
RDAP for its domain, and last the RFC 2142 guess ``abuse@<registrable domain>``. The same mailbox
is listed once, where it ranks highest.

Every name (the site's, the RDAP servers', the site's for security.txt) is resolved by one
:class:`takedown.resolver.Resolver`: the DNS servers of ``MAMORU_DNS_SERVERS``, else the
system resolver. A site name that does not resolve (NXDOMAIN, a silent server) is a ``resolve``
problem; the steps that need no address of the site still run.

Nothing is contacted for a name or address that is private, loopback or link-local unless
``allow_private`` (tests): the whole discovery is refused with :class:`LookupRefused`. A step
that fails (an RDAP server down, an expired security.txt, a refused redirect) does not stop the
others; it is reported in :attr:`Discovery.problems` and logged.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.rows import class_row

from crawler.netguard import AddressPolicy, BlockedAddress, Reason, check_resolved
from store.config import Settings, get_settings
from takedown.cdn import Cdn, cdn_for
from takedown.rdap import DEFAULT_TIMEOUT, FetchError, RdapClient, RdapError, fetch
from takedown.resolver import Resolver

__all__ = [
    "CDN_SOURCE",
    "MAX_HOST_LOOKUPS",
    "SECURITY_TXT_MAX_BYTES",
    "Contact",
    "Discovery",
    "LookupRefused",
    "Problem",
    "Recipient",
    "Scope",
    "SecurityTxt",
    "Source",
    "configured_contacts",
    "discover",
    "discover_report",
    "ensure_recipients",
    "fetch_security_txt",
    "parse_security_txt",
    "recipients_for_site",
    "registrable_domain",
]

logger = logging.getLogger(__name__)

Scope = Literal["site_operator", "host", "cdn", "registrar", "platform", "other"]
Source = Literal["configured", "rdap", "security_txt", "rfc2142"]
Step = Literal["resolve", "security_txt", "rdap_ip", "rdap_domain", "rfc2142"]

# The schema's recipients.source has no value for "a CDN table bundled with Mamoru"; "rdap" is
# the closest truth (RDAP for a CDN address names the CDN too) and, unlike "configured", is not
# mistaken for an operator's choice that outranks discovery. A migration adding a value such as
# 'cdn_list' would make this exact.
CDN_SOURCE: Final[Source] = "rdap"
SECURITY_TXT_MAX_BYTES: Final = 64 * 1024
# A site can resolve to dozens of addresses; the first few name every host that matters.
MAX_HOST_LOOKUPS: Final = 4


@dataclass(frozen=True)
class Contact:
    name: str
    email: str | None
    web_form_url: str | None
    scope: Scope
    source: Source
    domain: str | None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a contact needs a name")
        if not (self.email or self.web_form_url):
            raise ValueError(f"contact {self.name!r} has neither email nor web form")

    @property
    def channel(self) -> str:
        """The channel a notice goes to: the email if any, else the web form."""
        return (self.email or "").lower() or (self.web_form_url or "")


@dataclass(frozen=True)
class Problem:
    step: Step
    target: str  # the URL, address or name the step was about
    message: str
    refused: bool = False  # the SSRF policy refused it (nothing was contacted)


@dataclass(frozen=True)
class Discovery:
    contacts: list[Contact]
    problems: list[Problem] = field(default_factory=list)


class LookupRefused(Exception):
    """The site's name or addresses are not public and ``allow_private`` is off."""

    def __init__(self, target: str, reason: Reason, detail: str) -> None:
        self.target = target
        self.reason: Reason = reason
        super().__init__(f"recipient discovery refused for {target}: {detail}")


# -- RFC 2142 and the registrable domain

# Used only when the bundled public suffix list (tldextract) does not know the suffix.
_SECOND_LEVEL: Final = frozenset(
    {"co.jp", "ne.jp", "or.jp", "ac.jp", "ad.jp", "ed.jp", "go.jp", "gr.jp", "lg.jp"}
    | {"co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "ltd.uk", "plc.uk", "net.uk"}
    | {"com.au", "net.au", "org.au", "edu.au", "gov.au", "co.nz", "org.nz", "co.za"}
    | {"com.br", "com.cn", "net.cn", "org.cn", "com.tw", "com.hk", "co.kr", "or.kr"}
    | {"com.sg", "co.in", "co.id", "com.my", "com.ph", "com.vn", "co.th", "com.tr", "com.mx"}
)


@lru_cache(maxsize=1)
def _suffix_extractor() -> Any:
    try:
        import tldextract
    except ImportError:
        return None
    # No suffix_list_urls and no cache dir: the snapshot bundled in the package, never the
    # network (tldextract fetches the live list by default).
    return tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


def registrable_domain(domain: str) -> str | None:
    """The name a registrar registered (``www.example.co.jp`` -> ``example.co.jp``), or None
    for an IP literal or a single label.

    Uses the public suffix list snapshot bundled with tldextract (a Scrapy dependency, ICANN
    section only: ``foo.github.io`` gives ``github.io``, whose operator hosts the content); for
    a suffix it does not know, the last two labels, or three under a known second-level suffix.
    """
    name = _normalise_name(domain)
    if not name or _is_ip(name) or "." not in name:
        return None
    extractor = _suffix_extractor()
    if extractor is not None:
        result = extractor(name)
        if result.suffix and result.domain:
            return str(result.top_domain_under_public_suffix)
    labels = name.split(".")
    keep = 3 if len(labels) >= 3 and ".".join(labels[-2:]) in _SECOND_LEVEL else 2
    return ".".join(labels[-keep:])


def _normalise_name(domain: str) -> str:
    return domain.strip().rstrip(".").lower().strip("[]")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _ascii(name: str) -> str:
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


# -- security.txt (RFC 9116)

_FIELD: Final = re.compile(r"^([A-Za-z0-9-]+)\s*:\s*(.*)$")
_BARE_EMAIL: Final = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")


@dataclass(frozen=True)
class SecurityTxt:
    url: str
    contacts: tuple[str, ...]  # Contact: values in file order, as written
    expires: datetime | None
    problem: str | None = None  # set: the file must not be used, and why
    warnings: tuple[str, ...] = ()

    @property
    def emails(self) -> list[str]:
        found: list[str] = []
        for value in self.contacts:
            if value.lower().startswith("mailto:"):
                email = unquote(value[7:].split("?", 1)[0]).strip()
            elif _BARE_EMAIL.match(value):
                email = value  # not a URI, but the intent is plain
            else:
                continue
            if _BARE_EMAIL.match(email):
                found.append(email)
        return found

    @property
    def web_forms(self) -> list[str]:
        # RFC 9116 2.5.3: web URIs must be https; an http one is not trusted as a channel.
        return [v for v in self.contacts if urlsplit(v).scheme.lower() == "https"]


def parse_security_txt(
    text: str, *, url: str, content_type: str = "text/plain", now: datetime | None = None
) -> SecurityTxt:
    """Read a security.txt; an unusable one comes back with ``problem`` set, never raises.

    The OpenPGP signature of a signed file is not verified (nothing here trusts the file
    beyond using its contacts, which an unsigned file gives as well).
    """
    now = now or datetime.now(UTC)
    if content_type and content_type != "text/plain":
        return SecurityTxt(url, (), None, f"served as {content_type}, not text/plain")
    body = text.lstrip("\ufeff")
    if body.lstrip().startswith("<"):
        return SecurityTxt(url, (), None, "looks like HTML, not a security.txt")
    contacts: list[str] = []
    expiry_texts: list[str] = []
    for raw in _signed_body(body).splitlines():
        line = raw.strip()
        match = _FIELD.match(line) if line and not line.startswith("#") else None
        if match is None:
            continue
        name, value = match[1].lower(), match[2].strip()
        if name == "contact" and value:
            contacts.append(value)
        elif name == "expires":
            expiry_texts.append(value)
    expires, warnings = _expiry(expiry_texts)
    parsed = SecurityTxt(url, tuple(contacts), expires, None, tuple(warnings))
    if expires is not None and expires <= now:
        return _with_problem(parsed, f"expired on {expires.isoformat()}")
    if not (parsed.emails or parsed.web_forms):
        return _with_problem(parsed, "no Contact with a mailto: or https: URI")
    return parsed


def _with_problem(parsed: SecurityTxt, problem: str) -> SecurityTxt:
    return SecurityTxt(parsed.url, parsed.contacts, parsed.expires, problem, parsed.warnings)


def _signed_body(text: str) -> str:
    # OpenPGP cleartext signature (RFC 4880 7): armour headers up to a blank line, then the
    # dash-escaped text, then the signature block.
    if not text.lstrip().startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
        return text
    lines = text.lstrip().splitlines()[1:]
    while lines and lines[0].strip():
        lines.pop(0)
    kept: list[str] = []
    for line in lines[1:]:
        if line.startswith("-----BEGIN PGP SIGNATURE-----"):
            break
        kept.append(line[2:] if line.startswith("- ") else line)
    return "\n".join(kept)


def _expiry(texts: list[str]) -> tuple[datetime | None, list[str]]:
    if not texts:
        return None, ["no Expires field (RFC 9116 requires one)"]
    warnings = ["more than one Expires field; the earliest counts"] if len(texts) > 1 else []
    parsed: list[datetime] = []
    for value in texts:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            warnings.append(f"unreadable Expires {value!r}")
            continue
        parsed.append(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))
    return (min(parsed) if parsed else None), warnings


def fetch_security_txt(
    site_url: str,
    *,
    allow_private: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    now: datetime | None = None,
    resolver: Resolver | None = None,
) -> SecurityTxt:
    """Read ``<site_url>/.well-known/security.txt``. An answer that is not a usable file
    (404, HTML, expired) comes back with ``problem`` set; a transport failure, a name that
    does not resolve or a refused address raises :class:`takedown.rdap.FetchError`."""
    url = site_url.rstrip("/") + "/.well-known/security.txt"
    fetched = fetch(
        url,
        policy=AddressPolicy(allow_private=allow_private),
        timeout=timeout,
        max_bytes=SECURITY_TXT_MAX_BYTES,
        accept="text/plain",
        resolver=resolver,
    )
    if fetched.status != 200:
        return SecurityTxt(url, (), None, f"HTTP {fetched.status}")
    return parse_security_txt(
        fetched.body.decode("utf-8", "replace"),
        url=fetched.url,
        content_type=fetched.content_type,
        now=now,
    )


# -- discovery


def discover(
    domain: str,
    addresses: Sequence[str] | None,
    *,
    settings: Settings | None = None,
    bootstrap_url: str | None = None,
    site_url: str | None = None,
    origin_addresses: Sequence[str] = (),
    configured: Sequence[Contact] = (),
    allow_private: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    now: datetime | None = None,
    cdns: tuple[Cdn, ...] | None = None,
    resolver: Resolver | None = None,
) -> list[Contact]:
    """The contacts to notify for ``domain``, first one first (see :func:`discover_report`)."""
    return discover_report(
        domain,
        addresses,
        settings=settings,
        bootstrap_url=bootstrap_url,
        site_url=site_url,
        origin_addresses=origin_addresses,
        configured=configured,
        allow_private=allow_private,
        timeout=timeout,
        now=now,
        cdns=cdns,
        resolver=resolver,
    ).contacts


def discover_report(
    domain: str,
    addresses: Sequence[str] | None,
    *,
    settings: Settings | None = None,
    bootstrap_url: str | None = None,
    site_url: str | None = None,
    origin_addresses: Sequence[str] = (),
    configured: Sequence[Contact] = (),
    allow_private: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    now: datetime | None = None,
    cdns: tuple[Cdn, ...] | None = None,
    resolver: Resolver | None = None,
) -> Discovery:
    """Contacts in notification order plus what went wrong on the way.

    ``addresses``: what the site's name resolves to (``None``: resolve it here, through the
    SSRF policy). ``configured``: the site's operator-configured contacts
    (:func:`configured_contacts`); when there are any they are the answer and nothing is
    looked up. ``bootstrap_url`` overrides ``settings.rdap_bootstrap_url``; ``site_url``
    (default ``https://<domain>``) is where security.txt is read; ``origin_addresses`` are the
    real host's addresses behind a CDN, when known: they get a ``host`` contact ranked right
    after the CDN's. ``resolver`` (default: from ``settings.dns_servers``) resolves every
    name. Raises :class:`LookupRefused` before any connection when the name or an address is
    not public and ``allow_private`` is off.
    """
    name = _normalise_name(domain)
    policy = AddressPolicy(allow_private=allow_private)
    _check_target(name, [*(addresses or ()), *origin_addresses], policy)
    if configured:
        return Discovery(list(configured))
    problems: list[Problem] = []
    config = settings or get_settings()
    resolver = resolver or Resolver.from_settings(config, timeout=timeout)
    if addresses is None:
        addresses = _resolve(name, policy, resolver, problems)
    url = bootstrap_url or config.rdap_bootstrap_url
    rdap = RdapClient(url, allow_private=allow_private, timeout=timeout, resolver=resolver)

    cdn_contacts: list[Contact] = []
    direct: list[str] = []
    for address in addresses:
        cdn = cdn_for(address, cdns)
        if cdn is None:
            direct.append(address)
        else:
            cdn_contacts.append(_cdn_contact(cdn, name))
    # A CDN's address names the CDN, not the host: only the origin, when known, says who hosts.
    # An operator who recorded an origin knows of a CDN even when its ranges are not in the
    # table, so the origin ranks before the site's own (then likely the CDN's) addresses.
    host_addresses = [*origin_addresses, *direct]
    host = _host_contacts(rdap, name, host_addresses, problems)
    site = _security_txt_contacts(name, site_url, allow_private, timeout, now, resolver, problems)
    ordered = [*cdn_contacts, *host, *site] if cdn_contacts else [*site, *host]
    registrable = registrable_domain(name)
    if not _is_ip(name):
        ordered += _registrar_contacts(rdap, registrable or name, problems)
    if registrable is not None:
        ordered.append(_guess(registrable))
    else:
        problems.append(Problem("rfc2142", name, "no registrable domain to guess abuse@ at"))
    for problem in problems:
        logger.warning("recipients for %s: %s: %s", name, problem.step, problem.message)
    return Discovery(_dedupe(ordered), problems)


def _check_target(name: str, addresses: list[str], policy: AddressPolicy) -> None:
    try:
        check_resolved(name, addresses, policy)
    except BlockedAddress as exc:
        raise LookupRefused(name, exc.reason, str(exc)) from None


def _resolve(
    name: str, policy: AddressPolicy, resolver: Resolver, problems: list[Problem]
) -> list[str]:
    if _is_ip(name):
        return [name]
    try:
        return resolver.resolve(name, 443, policy)
    except BlockedAddress as exc:
        raise LookupRefused(name, exc.reason, str(exc)) from None
    except OSError as exc:
        problems.append(Problem("resolve", name, f"cannot resolve: {exc}"))
        return []


def _cdn_contact(cdn: Cdn, name: str) -> Contact:
    return Contact(cdn.name, cdn.email, cdn.web_form_url, "cdn", CDN_SOURCE, name)


def _host_contacts(
    rdap: RdapClient, name: str, addresses: Sequence[str], problems: list[Problem]
) -> list[Contact]:
    contacts: list[Contact] = []
    for address in list(dict.fromkeys(addresses))[:MAX_HOST_LOOKUPS]:
        try:
            answer = rdap.ip(address)
        except RdapError as exc:
            problems.append(_rdap_problem("rdap_ip", exc))
            continue
        card = answer.abuse
        if card is None or not (card.email or card.web_form_url):
            problems.append(Problem("rdap_ip", answer.url, "no abuse contact in the answer"))
            continue
        label = card.fn or answer.holder or card.email or address
        contacts.append(Contact(label, card.email, card.web_form_url, "host", "rdap", name))
    return contacts


def _registrar_contacts(rdap: RdapClient, domain: str, problems: list[Problem]) -> list[Contact]:
    try:
        answer = rdap.domain(domain)
    except RdapError as exc:
        problems.append(_rdap_problem("rdap_domain", exc))
        return []
    card = answer.abuse
    if card is None or not (card.email or card.web_form_url):
        problems.append(Problem("rdap_domain", answer.url, "no abuse contact in the answer"))
        return []
    label = answer.registrar or card.fn or card.email or domain
    return [Contact(label, card.email, card.web_form_url, "registrar", "rdap", domain)]


def _security_txt_contacts(
    name: str,
    site_url: str | None,
    allow_private: bool,
    timeout: float,
    now: datetime | None,
    resolver: Resolver,
    problems: list[Problem],
) -> list[Contact]:
    base = site_url or (f"https://[{name}]" if ":" in name else f"https://{name}")
    try:
        found = fetch_security_txt(
            base, allow_private=allow_private, timeout=timeout, now=now, resolver=resolver
        )
    except FetchError as exc:
        problems.append(Problem("security_txt", exc.url, str(exc), exc.reason == "refused"))
        return []
    if found.problem is not None:
        problems.append(Problem("security_txt", found.url, found.problem))
        return []
    label = f"Operator of {name}"
    contacts = [
        Contact(label, e, None, "site_operator", "security_txt", name) for e in found.emails
    ]
    contacts += [
        Contact(label, None, form, "site_operator", "security_txt", name)
        for form in found.web_forms
    ]
    return contacts


def _guess(registrable: str) -> Contact:
    ascii_name = _ascii(registrable)
    return Contact(
        f"Operator of {registrable}",
        f"abuse@{ascii_name}",
        None,
        "site_operator",
        "rfc2142",
        registrable,
    )


def _rdap_problem(step: Step, exc: RdapError) -> Problem:
    return Problem(step, exc.url, str(exc), exc.reason == "refused")


def _dedupe(contacts: Iterable[Contact]) -> list[Contact]:
    seen: set[str] = set()
    unique: list[Contact] = []
    for contact in contacts:
        if contact.channel not in seen:
            seen.add(contact.channel)
            unique.append(contact)
    return unique


# -- persistence


@dataclass(frozen=True)
class Recipient:
    """A ``recipients`` row (the columns this module reads)."""

    id: int
    name: str
    email: str | None
    web_form_url: str | None
    scope: Scope
    site_id: int | None
    domain: str | None
    source: Source
    notice_format: str
    language: str
    is_designated_platform: bool
    created_at: datetime

    def contact(self) -> Contact:
        return Contact(
            self.name, self.email, self.web_form_url, self.scope, self.source, self.domain
        )


_COLUMNS: Final = (
    "id, name, email, web_form_url, scope, site_id, domain, source, notice_format, language, "
    "is_designated_platform, created_at"
)
# Serialises discovery writes per site (there is no unique index to upsert against): class
# id for pg_advisory_xact_lock(int, int), "mamr" in ASCII.
_LOCK_CLASS: Final = 0x6D616D72


def recipients_for_site(conn: psycopg.Connection[Any], site_id: int) -> list[Recipient]:
    """The site's recipients: configured ones first, then in the order they were discovered."""
    with conn.cursor(row_factory=class_row(Recipient)) as cur:
        cur.execute(
            f"select {_COLUMNS} from recipients where site_id = %s "
            "order by (source = 'configured') desc, id",
            (site_id,),
        )
        return cur.fetchall()


def configured_contacts(conn: psycopg.Connection[Any], site_id: int) -> list[Contact]:
    """The contacts an operator configured for the site (they outrank discovery)."""
    return [r.contact() for r in recipients_for_site(conn, site_id) if r.source == "configured"]


def ensure_recipients(
    conn: psycopg.Connection[Any], site_id: int, contacts: Sequence[Contact]
) -> list[int]:
    """Insert or refresh a row per contact and return their ids, one per contact in order.

    A contact matches an existing row of the site with the same scope and the same email
    (case-insensitive) or web form URL, so repeated discovery adds nothing. A matching
    configured row is returned untouched; a discovered one gets the new name and domain, and
    its source unless that would demote it to the ``rfc2142`` guess.
    """
    ids: list[int] = []
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s, %s)", (_LOCK_CLASS, site_id % 2_147_483_647))
        for contact in contacts:
            ids.append(_ensure_one(conn, site_id, contact))
    return ids


def _ensure_one(conn: psycopg.Connection[Any], site_id: int, contact: Contact) -> int:
    row = conn.execute(
        "select id, source from recipients where site_id = %s and scope = %s and ("
        " (%s::text is not null and lower(email) = lower(%s::text))"
        " or (%s::text is not null and web_form_url = %s::text))"
        " order by (source = 'configured') desc, id limit 1",
        (
            site_id,
            contact.scope,
            contact.email,
            contact.email,
            contact.web_form_url,
            contact.web_form_url,
        ),
    ).fetchone()
    if row is None:
        inserted = conn.execute(
            "insert into recipients (name, email, web_form_url, scope, site_id, domain, source)"
            " values (%s, %s, %s, %s, %s, %s, %s) returning id",
            (
                contact.name,
                contact.email,
                contact.web_form_url,
                contact.scope,
                site_id,
                contact.domain,
                contact.source,
            ),
        ).fetchone()
        assert inserted is not None
        return int(inserted[0])
    row_id, source = int(row[0]), str(row[1])
    if source == "configured":
        return row_id
    keep_source = contact.source == "rfc2142" and source != "rfc2142"
    conn.execute(
        "update recipients set name = %s, domain = coalesce(%s, domain),"
        " email = coalesce(email, %s), web_form_url = coalesce(web_form_url, %s),"
        " source = %s where id = %s",
        (
            contact.name,
            contact.domain,
            contact.email,
            contact.web_form_url,
            source if keep_source else contact.source,
            row_id,
        ),
    )
    return row_id
