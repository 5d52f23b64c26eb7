"""One crawl's configuration: a typed, frozen :class:`CrawlConfig` built once, then Scrapy's
settings derived from it.

The site's policy (a ``sites`` row), the process settings (limits, data folder) and test
overrides meet here and nowhere else: the spider, the pipeline and the Playwright path read
the config object, never raw Scrapy settings, so a limit has one name and one value.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from crawler import netguard
from store.config import Settings
from store.rows import Site

__all__ = [
    "ACCEPT_LANGUAGE",
    "CHROMIUM_ARGS",
    "CHROMIUM_PATH_VARIABLE",
    "CrawlConfig",
    "default_user_agent",
    "find_chromium",
    "scrapy_settings",
]

#: Environment variable naming the Chromium binary; unset: ``chromium`` on PATH, else the
#: browser Playwright manages itself.
CHROMIUM_PATH_VARIABLE: Final = "MAMORU_CHROMIUM_PATH"

#: Launch flags: no sandbox (containers run as root), no GPU, and none of Chromium's own
#: background traffic (updates, sync, safe browsing), so every connection the browser makes
#: is one a page asked for and the route guard saw.
CHROMIUM_ARGS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
)

_MIB: Final = 1024 * 1024
_SCRAPY_COOKIES: Final = "scrapy.downloadermiddlewares.cookies.CookiesMiddleware"
_COOKIES_ORDER: Final = 700  # Scrapy's own place for its cookie middleware
_VERSION = "0.1"


def find_chromium(configured: str | None = None) -> str | None:
    """The Chromium to launch: the configured one (``MAMORU_CHROMIUM_PATH``), else ``chromium``
    on PATH, else ``None`` (Playwright's own download, where one was installed)."""
    configured = (configured or os.environ.get(CHROMIUM_PATH_VARIABLE, "")).strip()
    if configured:
        return configured
    return shutil.which("chromium") or shutil.which("chromium-browser")


#: Accept-Language of every crawl request (a site's own headers may replace it).
ACCEPT_LANGUAGE: Final = "en,ja;q=0.8"


def default_user_agent() -> str:
    """The crawler's User-Agent; rechecks send it too, so a site answers them as it answered
    the crawl."""
    # Realistic enough that sites serve the page a reader gets, honest about who asks.
    return (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/124.0 Safari/537.36 Mamoru/{_VERSION} (+copyright enforcement crawler)"
    )


@dataclass(frozen=True)
class CrawlConfig:
    """Everything one crawl needs to know, with the site's policy first."""

    site_id: int
    site_name: str
    start_urls: tuple[str, ...]
    allowed_domains: tuple[str, ...] = ()
    include_patterns: tuple[str, ...] = ()
    exclude_patterns: tuple[str, ...] = ()
    max_depth: int = 5
    max_pages: int = 2000
    rendering: str = "auto"  # never | auto | always
    obey_robots: bool = True
    concurrency: int = 4
    delay_seconds: float = 0.5
    request_headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    time_budget_seconds: int = 3600
    allow_private_addresses: bool = False
    #: Hosts allowed whatever they are (netguard ``allowed_hosts``): e.g. ``127.0.0.1`` in tests.
    allowed_hosts: frozenset[str] = frozenset()

    # -- limits
    max_page_bytes: int = 10 * _MIB
    max_image_bytes: int = 100 * _MIB
    max_archive_bytes: int = 2 * 1024 * _MIB
    max_archive_members: int = 10_000
    max_image_pixels: int = 50_000_000
    pdf_dpi: int = 150
    page_timeout_seconds: float = 30.0
    max_redirects: int = 10
    retry_times: int = 1
    #: Backstop on responses of every kind (pages, images, stylesheets) per allowed page;
    #: the page limit itself is counted by the spider, which knows what a page is.
    responses_per_page: int = 100
    #: Processes that hash crawled images (0: one per core).
    match_processes: int = 0

    # -- rendering
    chromium_path: str | None = None
    render_timeout_seconds: float = 30.0
    settle_seconds: float = 0.4  # network quiet this long counts as settled
    max_settle_seconds: float = 5.0
    scroll_max_steps: int = 40
    scroll_max_seconds: float = 10.0
    max_browser_images: int = 500
    max_pages_per_context: int = 4
    viewport: tuple[int, int] = (1280, 1000)
    #: Further Chromium flags (an egress proxy, a host resolver rule) after :data:`CHROMIUM_ARGS`.
    browser_args: tuple[str, ...] = ()

    # -- output
    evidence_dir: Path = Path("evidence")
    user_agent: str = field(default_factory=default_user_agent)
    log_level: str = "INFO"

    @classmethod
    def from_site(cls, site: Site, settings: Settings, **overrides: Any) -> CrawlConfig:
        """The config for crawling ``site`` under ``settings``; ``overrides`` replace fields
        (tests use them for small timeouts and limits)."""
        config = cls(
            site_id=site.id,
            site_name=site.name,
            start_urls=tuple(site.start_urls),
            allowed_domains=tuple(d.lower() for d in site.allowed_domains),
            include_patterns=tuple(site.include_patterns),
            exclude_patterns=tuple(site.exclude_patterns),
            max_depth=site.max_depth,
            max_pages=site.max_pages,
            rendering=site.rendering,
            obey_robots=site.obey_robots,
            concurrency=site.concurrency,
            delay_seconds=float(site.delay_seconds),
            request_headers=dict(site.request_headers),
            cookies=dict(site.cookies),
            time_budget_seconds=site.time_budget_seconds,
            allow_private_addresses=site.allow_private_addresses,
            max_image_bytes=settings.max_image_bytes,
            max_archive_bytes=settings.max_archive_bytes,
            max_archive_members=settings.max_archive_members,
            max_image_pixels=settings.max_image_pixels,
            pdf_dpi=settings.pdf_dpi,
            match_processes=settings.match_processes,
            chromium_path=find_chromium(settings.chromium_path),
            evidence_dir=settings.evidence_dir or settings.data_dir / "evidence",
            log_level=settings.log_level,
        )
        if "allowed_hosts" in overrides:
            overrides["allowed_hosts"] = frozenset(overrides["allowed_hosts"])
        return dataclasses.replace(config, **overrides)

    @property
    def policy(self) -> netguard.AddressPolicy:
        return netguard.AddressPolicy(
            allow_private=self.allow_private_addresses, allowed_hosts=self.allowed_hosts
        )

    @property
    def may_render(self) -> bool:
        return self.rendering != "never"

    @cached_property  # asked for every link and request: computed once per config
    def domains(self) -> tuple[str, ...]:
        """The site's own domains: its allowed domains, else its start URLs' hosts."""
        domains = self.allowed_domains or tuple(urlsplit(u).hostname or "" for u in self.start_urls)
        return tuple(dict.fromkeys(d.lower().lstrip(".") for d in domains if d))

    def is_site_host(self, host: str) -> bool:
        """Whether ``host`` is the site's: one of its domains or a subdomain of one (where
        links are followed, and where the site's cookies go)."""
        host = host.lower()
        return any(host == d or host.endswith("." + d) for d in self.domains)

    # -- passing the config to a crawl's child process

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["evidence_dir"] = str(self.evidence_dir)
        data["allowed_hosts"] = sorted(self.allowed_hosts)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> CrawlConfig:
        data = json.loads(text)
        tuples = ("start_urls", "allowed_domains", "include_patterns", "exclude_patterns")
        for key in tuples:
            data[key] = tuple(data[key])
        data["viewport"] = tuple(data["viewport"])
        data["browser_args"] = tuple(data["browser_args"])
        data["allowed_hosts"] = frozenset(data["allowed_hosts"])
        data["evidence_dir"] = Path(data["evidence_dir"])
        return cls(**data)


def scrapy_settings(config: CrawlConfig) -> dict[str, Any]:
    """Scrapy's settings for ``config``: pass them to ``CrawlerProcess`` (the DNS resolver, and
    so the address policy, is per process)."""
    policy = config.policy
    guard = netguard.netguard_settings(policy)
    settings: dict[str, Any] = {
        "BOT_NAME": "mamoru",
        "USER_AGENT": config.user_agent,
        "ROBOTSTXT_OBEY": config.obey_robots,
        "CONCURRENT_REQUESTS": max(config.concurrency * 2, 8),
        "CONCURRENT_REQUESTS_PER_DOMAIN": config.concurrency,
        "DOWNLOAD_DELAY": config.delay_seconds,
        # The spider enforces the policy's depth on page links itself (images and
        # stylesheets of the deepest pages must still be fetched); this only stops a runaway
        # chain of requests the spider's own accounting missed.
        "DEPTH_LIMIT": 2 * (config.max_depth + 1) + 8,
        "CLOSESPIDER_PAGECOUNT": config.max_pages * config.responses_per_page,
        "CLOSESPIDER_TIMEOUT": config.time_budget_seconds,
        "DOWNLOAD_MAXSIZE": config.max_page_bytes,
        "DOWNLOAD_WARNSIZE": max(config.max_page_bytes // 2, 1),
        "DOWNLOAD_TIMEOUT": config.page_timeout_seconds,
        "REDIRECT_MAX_TIMES": config.max_redirects,
        "RETRY_TIMES": config.retry_times,
        "DEFAULT_REQUEST_HEADERS": {
            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,"
            "image/avif,image/webp,*/*;q=0.8",
            "Accept-Language": ACCEPT_LANGUAGE,
            **config.request_headers,
        },
        "COOKIES_ENABLED": True,
        # Our own Referer on image requests is the page they were found on; Scrapy's policy
        # would send the same, but the hotlink check depends on it, so it is set explicitly.
        "REFERER_ENABLED": True,
        "LOG_LEVEL": config.log_level,
        "TELNETCONSOLE_ENABLED": False,
        "HTTPCACHE_ENABLED": False,
        "COOKIES_DEBUG": False,
        "REACTOR_THREADPOOL_MAXSIZE": 4,
        # Requests in flight are part of the policy's manners; the scheduler's memory queue is
        # enough for one foreground crawl (no JOBDIR: callables ride in request meta).
        "SCHEDULER_PRIORITY_QUEUE": "scrapy.pqueues.DownloaderAwarePriorityQueue",
        "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
        "ITEM_PIPELINES": {"crawler.pipeline.SightingPipeline": 300},
        "EXTENSIONS": {"crawler.progress.ProgressExtension": 500},
        "ROBOTSTXT_USER_AGENT": "Mamoru",
        "DUPEFILTER_DEBUG": False,
        "STATS_DUMP": False,
        "LOGSTATS_INTERVAL": 60.0,
    }
    # netguard's middleware entry merges with ours; its resolver key replaces Scrapy's.
    middlewares = dict(guard.pop("DOWNLOADER_MIDDLEWARES"))
    # The site's cookies go in the cookie jar (see crawler.cookies), so the middleware that
    # keeps the jar is ours, in the place of Scrapy's.
    middlewares[_SCRAPY_COOKIES] = None
    middlewares["crawler.cookies.SiteCookiesMiddleware"] = _COOKIES_ORDER
    settings.update(guard)
    settings["DOWNLOADER_MIDDLEWARES"] = middlewares
    if config.may_render:
        args = [*CHROMIUM_ARGS, *config.browser_args]
        launch: dict[str, Any] = {"headless": True, "args": args}
        if config.chromium_path:
            launch["executable_path"] = config.chromium_path
        settings.update(
            {
                "DOWNLOAD_HANDLERS": {
                    "http": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
                    "https": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
                },
                "PLAYWRIGHT_BROWSER_TYPE": "chromium",
                "PLAYWRIGHT_LAUNCH_OPTIONS": launch,
                "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": config.max_pages_per_context,
                "PLAYWRIGHT_MAX_CONTEXTS": 1,
                "PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT": config.render_timeout_seconds * 1000,
                "PLAYWRIGHT_CONTEXTS": {
                    "default": {
                        "viewport": {"width": config.viewport[0], "height": config.viewport[1]},
                        "user_agent": config.user_agent,
                        "java_script_enabled": True,
                        "ignore_https_errors": True,
                        "service_workers": "block",
                        "accept_downloads": False,
                    }
                },
            }
        )
    return settings
