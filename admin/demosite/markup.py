"""HTML, XML and script snippets shared by the fixture sites."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape
from urllib.parse import quote

__all__ = ["apache_index", "document", "escape", "js_const", "sitemap_index", "urlset"]


def document(title: str, body: str, *, head: str = "") -> str:
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>\n"
        f"<title>{escape(title)}</title>\n{head}</head>\n<body>\n{body}\n</body></html>\n"
    )


def js_const(name: str, value: object) -> str:
    """``const name = <json>;`` safe inside a ``<script>`` element."""
    # "</script>" inside a string would end the element early.
    literal = json.dumps(value).replace("</", "<\\/")
    return f"const {name} = {literal};"


def apache_index(directory: str, entries: Sequence[tuple[str, str, str]]) -> str:
    """An Apache ``mod_autoindex`` listing (FancyIndexing): entries are (name, date, size),
    directories end with ``/``; hrefs are relative and percent-encoded as Apache writes them."""
    rows = [
        '<tr><td valign="top"><img src="/icons/back.gif" alt="[PARENTDIR]"></td>'
        '<td><a href="../">Parent Directory</a></td><td>&nbsp;</td><td align="right">  - </td></tr>'
    ]
    for name, date, size in entries:
        icon = (
            "folder" if name.endswith("/") else "image2" if name.endswith(".jpg") else "compressed"
        )
        rows.append(
            f'<tr><td valign="top"><img src="/icons/{icon}.gif" alt="[   ]"></td>'
            f'<td><a href="{quote(name)}">{escape(name)}</a></td>'
            f'<td align="right">{date}  </td><td align="right">{size}</td></tr>'
        )
    title = f"Index of {escape(directory.rstrip('/') or '/')}"
    return (
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<html>\n <head>\n'
        f"  <title>{title}</title>\n </head>\n <body>\n<h1>{title}</h1>\n  <table>\n"
        '   <tr><th valign="top"><img src="/icons/blank.gif" alt="[ICO]"></th>'
        '<th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th>'
        '<th><a href="?C=S;O=A">Size</a></th></tr>\n'
        '   <tr><th colspan="4"><hr></th></tr>\n' + "\n".join(rows) + "\n"
        '   <tr><th colspan="4"><hr></th></tr>\n</table>\n'
        "<address>Apache/2.4.57 (Debian) Server at 127.0.0.1 Port 80</address>\n</body></html>\n"
    )


def sitemap_index(sitemaps: Iterable[str]) -> str:
    items = "".join(f"  <sitemap><loc>{escape(u)}</loc></sitemap>\n" for u in sitemaps)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        f"{items}</sitemapindex>\n"
    )


def urlset(entries: Iterable[tuple[str, Sequence[str]]]) -> str:
    """A sitemap: (page URL, image URLs on it) with the Google image extension."""
    items = []
    for loc, images in entries:
        pics = "".join(
            f"    <image:image><image:loc>{escape(i)}</image:loc></image:image>\n" for i in images
        )
        items.append(f"  <url>\n    <loc>{escape(loc)}</loc>\n{pics}  </url>\n")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"\n'
        '        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">\n'
        + "".join(items)
        + "</urlset>\n"
    )
