"""A site's configured cookies on every static (Scrapy) request to the site's own hosts.

A site policy's cookies (an age gate, a language choice) go wherever a reader's browser would
send a cookie of the site's domains: pages, images, stylesheets, archives, robots.txt and
sitemaps on those domains and their subdomains (:meth:`CrawlConfig.is_site_host`), never to a
third-party host a page happens to embed (an ad network, someone else's image host).

They cannot travel as a ``Cookie`` header: Scrapy's cookie middleware drops any such header and
writes its own from its cookie jar. So :class:`SiteCookiesMiddleware`, which takes the place of
Scrapy's, puts them in that jar for the host asked, just before the jar writes the header; the
cookies the site sets itself (a session, a visit marker) then go along with them, each scoped by
the jar as the site scoped it. A cookie of the same name the site set itself wins over the
configured one, as it would in a browser; one the site deleted is put back for the next request,
since the policy says it goes with every request. The renderer (:mod:`crawler.render`) sets the
same cookies on the browser's context for the page's origin, and a recheck
(``takedown.probe``) puts them in its own jar with :func:`add_cookies` for the host it asks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from http.cookiejar import Cookie
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from scrapy.downloadermiddlewares.cookies import CookiesMiddleware

from crawler.config import CrawlConfig

if TYPE_CHECKING:
    from scrapy import Request, Spider
    from scrapy.http import Response

__all__ = ["Jar", "SiteCookiesMiddleware", "add_cookies", "put_site_cookies"]


def _jar_host(host: str) -> str:
    # Where the jar keeps a host's own cookies: a dotless name (localhost, an intranet name)
    # under "<name>.local", as http.cookiejar does, or the jar would never send them.
    return host if "." in host else f"{host}.local"


def _host_cookie(host: str, name: str, value: str) -> Cookie:
    """A session cookie for every path of ``host``, as a ``Set-Cookie`` without ``Domain``
    from ``host`` would store it."""
    return Cookie(
        version=0,
        name=name,
        value=value,
        port=None,
        port_specified=False,
        domain=_jar_host(host),
        domain_specified=False,
        domain_initial_dot=False,
        path="/",
        path_specified=True,
        secure=False,
        expires=None,
        discard=True,
        comment=None,
        comment_url=None,
        rest={},
    )


class Jar(Protocol):
    """A cookie jar: http.cookiejar's, or Scrapy's wrapper of one."""

    def __iter__(self) -> Iterator[Cookie]: ...
    def set_cookie(self, cookie: Cookie) -> None: ...


def add_cookies(jar: Jar, url: str, cookies: Mapping[str, str]) -> None:
    """Put ``cookies`` in ``jar`` as host-only session cookies of ``url``'s host, except those
    the jar already sends there under the same name (the site set them itself, and wins)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not cookies or not host:
        return
    here, path = "." + _jar_host(host), parts.path or "/"
    # What the jar sends to this URL (it sends a cookie of a domain to its subdomains too).
    held = {
        c.name
        for c in jar
        if here.endswith(c.domain if c.domain.startswith(".") else "." + c.domain)
        and path.startswith(c.path or "/")
    }
    for name, value in cookies.items():
        if name not in held:
            jar.set_cookie(_host_cookie(host, name, value))


def put_site_cookies(jar: Jar, url: str, config: CrawlConfig) -> None:
    """Put ``config``'s cookies in ``jar`` for the host of ``url`` if it is the site's
    (:func:`add_cookies`)."""
    if config.is_site_host(urlsplit(url).hostname or ""):
        add_cookies(jar, url, config.cookies)


class SiteCookiesMiddleware(CookiesMiddleware):
    """Scrapy's cookie middleware, with the site's configured cookies in its jar first.

    The site (its cookies and domains) is the spider's :class:`CrawlConfig`; a spider without
    one (nothing of Mamoru's) gets Scrapy's behaviour unchanged.
    """

    _config: CrawlConfig | None = None

    def process_request(
        self, request: Request, spider: Spider | None = None
    ) -> Request | Response | None:
        if not request.meta.get("dont_merge_cookies", False):
            config = self._site()
            if config is not None:
                put_site_cookies(self.jars[request.meta.get("cookiejar")], request.url, config)
        return super().process_request(request)

    def _site(self) -> CrawlConfig | None:
        if self._config is None:
            candidate = getattr(self.crawler.spider, "config", None)
            if isinstance(candidate, CrawlConfig):
                self._config = candidate
        return self._config
