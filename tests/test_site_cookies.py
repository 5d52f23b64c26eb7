"""Which requests a site's configured cookies go with (:mod:`crawler.cookies`), on Scrapy's own
cookie jar: the site's hosts and subdomains, never another host, and never over a cookie of the
same name the site set itself. The crawl end to end is in ``tests/test_crawl.py``."""

from __future__ import annotations

from scrapy import Request
from scrapy.http import Response
from scrapy.http.cookies import CookieJar

from crawler.config import CrawlConfig, scrapy_settings
from crawler.cookies import put_site_cookies


def config(*domains: str, start: str = "https://example.com/") -> CrawlConfig:
    return CrawlConfig(
        site_id=1,
        site_name="gated",
        start_urls=(start,),
        allowed_domains=domains,
        cookies={"age_ok": "18+", "lang": "ja"},
    )


def cookie_header(jar: CookieJar, site: CrawlConfig, url: str) -> str | None:
    """The Cookie header the crawler's middleware would send with a GET of ``url``."""
    request = Request(url)
    put_site_cookies(jar, url, site)
    jar.add_cookie_header(request)
    value = request.headers.get("Cookie")
    return value.decode() if value is not None else None


def site_sets(jar: CookieJar, url: str, *set_cookie: str) -> None:
    jar.extract_cookies(Response(url, headers={"Set-Cookie": list(set_cookie)}), Request(url))


def test_the_site_cookies_go_to_its_domains_and_subdomains_only() -> None:
    site = config("example.com")
    jar = CookieJar()
    for url in ("https://example.com/", "http://img.example.com:8080/a/1.jpg"):
        assert cookie_header(jar, site, url) == "age_ok=18+; lang=ja", url
    for url in ("https://ads.example.net/pixel.gif", "https://badexample.com/", "data:,x"):
        assert cookie_header(jar, site, url) is None, url


def test_without_allowed_domains_the_start_urls_hosts_are_the_site() -> None:
    site = config(start="http://localhost:8000/")
    jar = CookieJar()
    assert cookie_header(jar, site, "http://localhost:8000/gallery") == "age_ok=18+; lang=ja"
    assert cookie_header(jar, site, "http://127.0.0.1:8000/gallery") is None


def test_the_site_own_cookies_go_along_and_win_by_name() -> None:
    site = config("example.com")
    jar = CookieJar()
    page = "https://example.com/gallery/"
    site_sets(jar, page, "visit=v1; Path=/", "lang=en; Path=/")
    sent = cookie_header(jar, site, "https://example.com/img/1.jpg") or ""
    assert sorted(sent.split("; ")) == ["age_ok=18+", "lang=en", "visit=v1"]
    # A configured cookie the site deleted goes with the next request again.
    site_sets(jar, page, "age_ok=; Path=/; Max-Age=0")
    sent = cookie_header(jar, site, "https://example.com/img/2.jpg") or ""
    assert sorted(sent.split("; ")) == ["age_ok=18+", "lang=en", "visit=v1"]


def test_the_crawl_uses_the_site_cookie_middleware_in_place_of_scrapys() -> None:
    middlewares = scrapy_settings(config("example.com"))["DOWNLOADER_MIDDLEWARES"]
    assert middlewares["scrapy.downloadermiddlewares.cookies.CookiesMiddleware"] is None
    assert middlewares["crawler.cookies.SiteCookiesMiddleware"] == 700
