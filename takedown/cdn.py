"""Is a site behind a CDN, and if so where does that CDN take abuse reports?

A site behind a CDN resolves to the CDN's addresses, so an RDAP lookup of its address names the
CDN as the host; the CDN is the right first recipient anyway (it can disclose or act on the
origin), but through its own abuse channel, which is often a web form rather than the RDAP
email. The ranges and channels live in ``takedown/data/cdn_ranges.json``: one entry per CDN, so
adding a CDN is adding an entry. The bundled Cloudflare list was written down from Cloudflare's
published ranges (https://www.cloudflare.com/ips-v4, https://www.cloudflare.com/ips-v6) on
2026-11-26 without network access and must be refreshed from those URLs; the file says so too.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["Cdn", "cdn_for", "load_cdns"]

_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Cdn:
    key: str
    name: str
    email: str | None
    web_form_url: str | None
    networks: tuple[_IPNetwork, ...]
    as_of: str

    def contains(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in n for n in self.networks if n.version == ip.version)


def load_cdns(path: Path | None = None) -> tuple[Cdn, ...]:
    """The CDN table from ``path``, or the bundled one (read once)."""
    if path is None:
        return _bundled()
    return _parse(json.loads(path.read_text(encoding="utf-8")))


def cdn_for(address: str, cdns: tuple[Cdn, ...] | None = None) -> Cdn | None:
    """The CDN whose published ranges contain ``address``, or None."""
    for cdn in cdns if cdns is not None else _bundled():
        if cdn.contains(address):
            return cdn
    return None


@lru_cache(maxsize=1)
def _bundled() -> tuple[Cdn, ...]:
    text = resources.files("takedown").joinpath("data/cdn_ranges.json").read_text("utf-8")
    return _parse(json.loads(text))


def _parse(document: dict[str, Any]) -> tuple[Cdn, ...]:
    cdns: list[Cdn] = []
    for entry in document["cdns"]:
        if not (entry.get("email") or entry.get("web_form_url")):
            raise ValueError(f"CDN {entry.get('key')!r} has neither email nor web_form_url")
        cdns.append(
            Cdn(
                key=str(entry["key"]),
                name=str(entry["name"]),
                email=entry.get("email"),
                web_form_url=entry.get("web_form_url"),
                networks=tuple(ipaddress.ip_network(r) for r in entry["ranges"]),
                as_of=str(entry.get("as_of", "")),
            )
        )
    return tuple(cdns)


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    # An IPv4-mapped IPv6 address reaches the IPv4 host, so it is judged as that address.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
