"""Glue for the site builders: register content on a Site and note what it copies."""

from __future__ import annotations

from collections.abc import Callable

from admin.demosite import images
from admin.demosite.expected import SampleRef
from admin.demosite.handlers import HTML, Handler, Static
from admin.demosite.markup import document
from admin.demosite.server import Site
from admin.samples import SAMPLE_WORKS

MOONLIT = SAMPLE_WORKS[0].title  # 6 pages
STEEL = SAMPLE_WORKS[1].title  # 5 pages
LANTERN = SAMPLE_WORKS[2].title  # 1 page (an illustration)
#: Every registered sample page, in order: fixtures cycle through them.
SAMPLE_PAGES: tuple[tuple[str, int], ...] = tuple(
    (work.title, number) for work in SAMPLE_WORKS for number in range(1, work.pages + 1)
)


class SiteBuilder:
    """A Site under construction plus the sample pages its images copy."""

    def __init__(self, name: str, port: int = 0) -> None:
        self.site = Site(name, port=port)
        self.copies: dict[str, SampleRef] = {}
        self._next_sample = 0
        self._served: set[tuple[str, int, int, str]] = set()

    def url(self, path: str = "/") -> str:
        return self.site.url(path)

    def page(self, path: str, title: str, body: str, *, head: str = "", delay: float = 0.0) -> str:
        self.site.add(path, document(title, body, head=head), HTML, delay=delay)
        return self.url(path)

    def raw(self, path: str, data: bytes | str, content_type: str) -> str:
        self.site.add(path, data, content_type)
        return self.url(path)

    def next_sample(self) -> tuple[str, int]:
        """The next sample page in turn, so a site's images copy different pages."""
        ref = SAMPLE_PAGES[self._next_sample % len(SAMPLE_PAGES)]
        self._next_sample += 1
        return ref

    def copy(
        self,
        path: str,
        sample: tuple[str, int] | None = None,
        *,
        width: int = 240,
        fmt: str = "JPEG",
        quality: int = 85,
        wrap: Callable[[Handler], Handler] | None = None,
    ) -> str:
        """Serve a scaled copy of a sample page at ``path``; return its URL.

        Without ``sample`` the next one in turn is used. ``wrap`` decorates the handler (e.g.
        hotlink protection). A page already served at this width and format gets a few more
        pixels, so no two URLs of a site serve the same bytes: a crawler that skips bytes it has
        seen still has to record every URL a test expects.
        """
        title, number = sample or self.next_sample()
        while (title, number, width, fmt) in self._served:
            width += 2
        self._served.add((title, number, width, fmt))
        data = images.rendition(title, number, width, fmt, quality)
        resource = Static(data, images.MIME[fmt])
        self.site.route(path, wrap(resource) if wrap else resource)
        url = self.url(path)
        self.copies[url] = SampleRef(title, number, f"{width}px wide {fmt}")
        return url
