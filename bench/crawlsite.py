"""A generated loopback site for ``bench/crawl_speed.py``: many small static pages and a few
JS-rendered ones, every image URL serving distinct bytes (so no crawler can skip work by
recognising bytes it has already seen), some of them reduced copies of the sample works.

Static pages ``/s/<i>.html`` form a tree (each page links to its ``BRANCHING`` children and
its parent; no chain of "next" links, so every page is reached at its tree depth, about
log4(N), well inside Mamoru's depth limit), four ``<img>`` each. JS pages ``/j/<i>.html`` name
no image in their markup: a script builds the ``<img>`` elements from an inline list; the pages
link to each other with plain ``<a href>`` so a crawler reaches them without running scripts.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass, field
from typing import Final

from PIL import Image

from admin.demosite.handlers import HTML, Static
from admin.demosite.markup import document
from admin.demosite.server import Site
from admin.samples import SAMPLE_WORKS, render_page

__all__ = ["BRANCHING", "BenchSite", "build_site"]

BRANCHING: Final = 4
IMAGES_PER_PAGE: Final = 4
#: One image in ``COPY_EVERY`` is a reduced copy of a registered sample page.
COPY_EVERY: Final = 4
_FILLER_TITLE: Final = "Bench Filler Art (not registered)"
_FILLER_PAGES: Final = 8
_WIDTHS: Final = (200, 240, 280)

_JS = """
document.addEventListener("DOMContentLoaded", () => {
  const gallery = document.getElementById("gallery");
  for (const src of IMAGES) {
    const img = document.createElement("img");
    img.src = src;
    img.width = 240;
    gallery.appendChild(img);
  }
});
"""


@dataclass
class BenchSite:
    site: Site
    static_pages: int
    js_pages: int
    static_images: int = 0
    js_images: int = 0
    copies: int = 0
    image_bytes: int = 0
    page_paths: list[str] = field(default_factory=list)

    @property
    def static_start(self) -> str:
        return self.site.url("/s/0.html")

    @property
    def js_start(self) -> str:
        return self.site.url("/j/0.html")


def _jpeg(img: Image.Image, width: int) -> bytes:
    height = round(img.height * width / img.width)
    buffer = io.BytesIO()
    img.resize((width, height), Image.Resampling.BILINEAR).convert("RGB").save(
        buffer, "JPEG", quality=82
    )
    return buffer.getvalue()


def _unique(jpeg: bytes, tag: str) -> bytes:
    """``jpeg`` with a comment segment after SOI: same pixels, distinct bytes per URL."""
    text = tag.encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + jpeg[2:]


def _pools() -> tuple[list[bytes], list[bytes]]:
    """Encoded copies of every sample page and of unregistered filler art, at a few widths."""
    originals = [
        render_page(work.title, n) for work in SAMPLE_WORKS for n in range(1, work.pages + 1)
    ]
    fillers = [render_page(_FILLER_TITLE, n) for n in range(1, _FILLER_PAGES + 1)]
    copies = [_jpeg(img.reduce(2), w) for img in originals for w in _WIDTHS]
    others = [_jpeg(img.reduce(2), w) for img in fillers for w in _WIDTHS]
    return copies, others


def build_site(static_pages: int, js_pages: int) -> BenchSite:
    """Bind (not start) the site; ``with bench.site:`` serves it."""
    site = Site("crawl-bench")
    bench = BenchSite(site, static_pages, js_pages)
    copies, others = _pools()
    counter = 0

    def image(path: str) -> str:
        nonlocal counter
        if counter % COPY_EVERY == 0:
            data = copies[(counter // COPY_EVERY) % len(copies)]
            bench.copies += 1
        else:
            data = others[counter % len(others)]
        body = _unique(data, f"mamoru-bench {path}")
        bench.image_bytes += len(body)
        site.route(path, Static(body, "image/jpeg"))
        counter += 1
        return path

    for i in range(static_pages):
        links = [c for c in range(i * BRANCHING + 1, i * BRANCHING + BRANCHING + 1)]
        links.append((i - 1) // BRANCHING if i else 0)
        anchors = "\n".join(
            f'<li><a href="/s/{n}.html">Chapter {n}</a></li>' for n in links if n < static_pages
        )
        imgs = "\n".join(
            f'<img src="{image(f"/i/s{i}-{k}.jpg")}" alt="page {k}" width="240">'
            for k in range(IMAGES_PER_PAGE)
        )
        bench.static_images += IMAGES_PER_PAGE
        body = f"<h1>Chapter {i}</h1>\n<div class=reader>\n{imgs}\n</div>\n<ul>\n{anchors}\n</ul>"
        site.add(f"/s/{i}.html", document(f"Chapter {i}", body), HTML)
        bench.page_paths.append(f"/s/{i}.html")

    for i in range(js_pages):
        srcs = [image(f"/i/j{i}-{k}.jpg") for k in range(IMAGES_PER_PAGE)]
        bench.js_images += IMAGES_PER_PAGE
        links = [c for c in range(i * BRANCHING + 1, i * BRANCHING + BRANCHING + 1)]
        anchors = "\n".join(
            f'<li><a href="/j/{n}.html">Reader {n}</a></li>' for n in links if n < js_pages
        )
        script = f"const IMAGES = {json.dumps(srcs)};\n{_JS}"
        body = f'<h1>Reader {i}</h1>\n<div id="gallery"></div>\n<ul>\n{anchors}\n</ul>'
        site.add(
            f"/j/{i}.html",
            document(f"Reader {i}", body, head=f"<script>{script}</script>\n"),
            HTML,
        )
    return bench
