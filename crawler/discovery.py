"""Static image discovery: every image a reader would see, read from HTML and CSS as data.

:func:`discover` takes a document as served (bytes or text) and its URL and returns a
:class:`Discovery`: the image URLs with how each was found (:class:`FoundImage`), decoded
``data:`` images, stylesheets to fetch (then :func:`discover_css` on each), page links to
follow, archive links, the ``rel=next`` page, and hints for the spider's ``auto`` rendering
mode (lazy-load markers, script, image and canvas counts). Nothing here does I/O.

What counts as an image (``FoundImage.source``):

- ``img-src``: ``<img src>``, ``<input type=image src>``, ``<svg><image href|xlink:href>``,
  ``<video poster>``;
- ``srcset``: every candidate of ``<img srcset>``, with or without descriptors;
- ``picture-source``: every candidate of ``<picture><source srcset>``;
- ``lazy-attr``: lazy-loading attributes (``data-src``, ``data-srcset``, ``data-lazy-src``,
  ``data-original``, ... see :data:`LAZY_ATTRIBUTES`; on elements other than images only when
  the URL has an image extension, or for background attributes such as ``data-bg``);
- ``og-image``: ``og:image`` / ``twitter:image`` meta tags;
- ``link-href``: ``<a href>`` to an image file, ``<link rel=image_src>``, ``<link
  rel=preload as=image>``;
- ``css-inline`` / ``css-style-block`` / ``css-stylesheet``: ``url()`` and ``image-set()``
  in image-bearing CSS properties (backgrounds, masks, border images, list markers,
  ``content``, custom properties) of ``style`` attributes, ``<style>`` elements and linked
  stylesheets (resolved against the stylesheet's URL); also the legacy ``background``
  attribute (as ``css-inline``). Fonts (``@font-face``) are ignored; ``@import`` adds a
  stylesheet;
- ``directory-listing``: image links on an open-directory index ("Index of /...").
- ``data-uri`` is the source of every :class:`DataImage`: ``data:image/...`` URIs in any of
  the places above are decoded (bounded, invalid base64 ignored) rather than listed as URLs.

URLs are resolved as a browser would: against ``<base href>`` (itself resolved against the
response's base or the page URL), with leading/trailing control characters and spaces
stripped, tabs and newlines removed, backslashes read as slashes; then normalised (lowercase
scheme and host, IDNA, default port dropped, fragment dropped, unsafe characters
percent-encoded with the document's encoding for the query). Anything that is not http(s)
after resolution is dropped. Lists are deduplicated in document order.

Hostile documents are expected: every list and every expensive step is bounded by
:class:`Limits` (``Discovery.truncated`` says a limit was hit), and malformed markup, broken
encodings, NUL bytes or absurd attribute values give a smaller result, never an exception.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import unquote, unquote_to_bytes, urljoin, urlsplit, urlunsplit

import tinycss2  # type: ignore[import-untyped]
from lxml import etree  # type: ignore[import-untyped]
from parsel import Selector
from tinycss2.bytes import decode_stylesheet_bytes  # type: ignore[import-untyped]
from w3lib.encoding import html_to_unicode
from w3lib.url import safe_url_string

__all__ = [
    "ARCHIVE_EXTENSIONS",
    "DEFAULT_LIMITS",
    "IMAGE_EXTENSIONS",
    "LAZY_ATTRIBUTES",
    "CssDiscovery",
    "DataImage",
    "Discovery",
    "FoundImage",
    "Limits",
    "Source",
    "discover",
    "discover_css",
    "discover_stylesheet",
    "is_archive_url",
    "is_image_url",
    "parse_data_image",
    "parse_srcset",
    "resolve_url",
]

Source = Literal[
    "img-src",
    "srcset",
    "picture-source",
    "lazy-attr",
    "og-image",
    "link-href",
    "css-inline",
    "css-style-block",
    "css-stylesheet",
    "data-uri",
    "directory-listing",
]

IMAGE_EXTENSIONS: Final = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".avif", ".bmp", ".tif", ".tiff"}
    | {".jxl", ".heic", ".heif", ".svg"}
)
ARCHIVE_EXTENSIONS: Final = frozenset(
    {".cbz", ".cbr", ".cb7", ".cbt", ".zip", ".rar", ".7z", ".pdf", ".epub"}
)

#: Attributes lazy-loading scripts read the real image from (single URL each).
LAZY_ATTRIBUTES: Final = (
    "data-src",
    "data-lazy-src",
    "data-original",
    "data-lazy",
    "data-url",
    "data-echo",
    "data-full",
    "data-full-src",
    "data-fullsrc",
    "data-hi-res",
    "data-hires",
    "data-large",
    "data-large-src",
    "data-large-file",
    "data-medium-file",
    "data-orig-file",
    "data-original-src",
    "data-zoom-image",
    "data-zoom-src",
    "data-img",
    "data-image",
    "data-img-src",
    "data-actualsrc",
    "data-cfsrc",
    "data-defer-src",
    "data-pagespeed-lazy-src",
    "data-ll-src",
    "data-poster",
    "lazy-src",
)
#: Lazy attributes holding a srcset.
LAZY_SRCSET_ATTRIBUTES: Final = ("data-srcset", "data-lazy-srcset", "data-original-set")
#: Lazy background attributes: a URL or a CSS ``url()``, on any element.
LAZY_BACKGROUND_ATTRIBUTES: Final = ("data-bg", "data-background", "data-background-image")
#: Properties whose ``url()`` is an image (custom properties ``--*`` count too).
IMAGE_PROPERTIES: Final = frozenset(
    {
        "background",
        "background-image",
        "border-image",
        "border-image-source",
        "list-style",
        "list-style-image",
        "content",
        "mask",
        "mask-image",
        "mask-border",
        "mask-border-source",
        "-webkit-mask",
        "-webkit-mask-image",
        "-webkit-mask-box-image",
        "-webkit-border-image",
    }
)
# At-rules whose blocks never hold an image a reader sees (fonts) or nothing at all.
_RESOLVE_MEMO_SIZE: Final = 50_000
_MAX_DATA_HEADER: Final = 256  # "image/svg+xml;charset=utf-8;base64" and then some
_SKIPPED_AT_RULES: Final = frozenset(
    {"font-face", "font-feature-values", "font-palette-values", "counter-style", "property"}
)
_IMAGE_SET_FUNCTIONS: Final = frozenset({"image-set", "-webkit-image-set", "image"})
_OG_IMAGE_KEYS: Final = frozenset(
    {
        "og:image",
        "og:image:url",
        "og:image:secure_url",
        "twitter:image",
        "twitter:image:src",
    }
)
_LAZY_SCRIPT_WORDS: Final = ("IntersectionObserver", "lazysizes", "lazyload", "lozad")
_LAZY_SET: Final = frozenset(LAZY_ATTRIBUTES)
_LAZY_SRCSET_SET: Final = frozenset(LAZY_SRCSET_ATTRIBUTES)
_LAZY_BACKGROUND_SET: Final = frozenset(LAZY_BACKGROUND_ATTRIBUTES)
# Elements whose handlers read their own lazy attributes.
_IMAGE_TAGS: Final = frozenset({"img", "source", "image", "input"})
# Elements whose data-src is never an image (documents, scripts, media).
_NOT_IMAGE_TAGS: Final = frozenset({"iframe", "frame", "script", "video", "audio", "embed"})
_BACKGROUND_TAGS: Final = frozenset({"body", "table", "td", "th", "tr"})
_HTTP_SCHEMES: Final = frozenset({"http", "https"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*):")
_C0_AND_SPACE: Final = "".join(chr(i) for i in range(0x21))
_TAB_NEWLINE: Final = str.maketrans("", "", "\t\n\r")
_ASCII_WS: Final = " \t\n\f\r"
_VALID_HOST = re.compile(r"[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*\.?")
_LISTING_TITLE = re.compile(r"\s*(index of|directory listing for)\s+/", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
# Apache and nginx fancy-index sort links ("?C=N;O=D") re-list the same directory.
_SORT_QUERY = re.compile(r"C=[NMSD](?:[;&]O=[AD])?$|O=[AD](?:[;&]C=[NMSD])?$")
_BASE64_ALPHABET = re.compile(r"[^A-Za-z0-9+/]")
# Path and query characters w3lib's safe_url_string leaves as they are.
_SAFE_PATH_QUERY = re.compile(r"[A-Za-z0-9\-._~:/?@!$&()*+,;=%]*")


@dataclass(frozen=True)
class Limits:
    """Bounds on the work one document may cause; a hostile page only gets less out."""

    max_document_chars: int = 16 * 1024 * 1024
    max_elements: int = 250_000
    max_images: int = 2_000
    max_links: int = 5_000
    max_stylesheets: int = 64
    max_archives: int = 1_000
    max_data_uris: int = 200
    max_data_uri_bytes: int = 4 * 1024 * 1024
    max_url_chars: int = 8_192
    max_srcset_chars: int = 65_536
    max_srcset_candidates: int = 64
    max_css_chars: int = 2 * 1024 * 1024
    max_css_depth: int = 24
    max_script_chars: int = 1024 * 1024
    max_text_chars: int = 300


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True, slots=True)
class FoundImage:
    url: str  # absolute, normalised http(s)
    source: Source
    alt: str | None = None


@dataclass(frozen=True, slots=True)
class DataImage:
    """An image inlined as a ``data:`` URI (its source is always ``data-uri``)."""

    data: bytes
    mime_type: str
    found_in: Source  # where the URI was: "img-src", "css-inline", ...
    alt: str | None = None

    @property
    def source(self) -> Source:
        return "data-uri"


@dataclass
class CssDiscovery:
    """What one stylesheet names (:func:`discover_stylesheet`)."""

    images: list[FoundImage] = field(default_factory=list)
    data_images: list[DataImage] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)  # @import'ed stylesheets to fetch
    truncated: bool = False


@dataclass
class Discovery:
    """What one HTML document names. ``links`` are pages to follow (``<a>``/``<area>``,
    ``<link rel=next>``, meta refresh, frames), never images, archives or stylesheets, which
    have their own lists; the counts and ``lazy_markers`` feed the ``auto`` rendering choice."""

    page_url: str
    base_url: str  # what relative URLs resolved against (<base href>, else the page)
    encoding: str
    images: list[FoundImage] = field(default_factory=list)
    data_images: list[DataImage] = field(default_factory=list)
    stylesheets: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    archives: list[str] = field(default_factory=list)
    next_page: str | None = None
    refresh_url: str | None = None  # <meta http-equiv=refresh> target (also in links)
    lazy_markers: bool = False
    script_count: int = 0
    img_count: int = 0
    canvas_count: int = 0
    directory_listing: bool = False
    truncated: bool = False  # some limit cut the work short

    @property
    def data_uris(self) -> list[bytes]:
        """The decoded ``data:`` images, in document order."""
        return [d.data for d in self.data_images]

    @property
    def image_urls(self) -> list[str]:
        return [i.url for i in self.images]


# -- URLs


def resolve_url(raw: str, base: str, *, encoding: str = "utf-8") -> str | None:
    """``raw`` resolved against ``base`` and normalised, or ``None`` unless it is http(s).

    Browser-style clean-up first (strip C0 controls and spaces at the ends, drop tabs and
    newlines, backslashes as slashes); the result has a lowercase scheme and IDNA host, no
    default port and no fragment, and is percent-encoded as Scrapy would send it.
    """
    text = raw.strip(_C0_AND_SPACE).translate(_TAB_NEWLINE)
    if not text:
        return None
    scheme_match = _SCHEME.match(text)
    if scheme_match and scheme_match.group(1).lower() not in _HTTP_SCHEMES:
        return None
    # Special schemes treat "\" as "/" before the query: "..\img\a.jpg", "http:\\host\x".
    cut = min((i for i in (text.find("?"), text.find("#")) if i >= 0), default=len(text))
    text = text[:cut].replace("\\", "/") + text[cut:]
    try:
        joined = urljoin(base, text)
        parts = urlsplit(joined)
        scheme = parts.scheme.lower()
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if scheme not in _HTTP_SCHEMES or not host:
        return None
    bracketed = f"[{host}]" if ":" in host else host
    netloc = bracketed if port is None or port == _DEFAULT_PORTS[scheme] else f"{bracketed}:{port}"
    path = parts.path or "/"
    if (
        host.isascii()
        and _SAFE_PATH_QUERY.fullmatch(path)
        and _SAFE_PATH_QUERY.fullmatch(parts.query)
    ):
        # Nothing for w3lib to encode: skip it, it is most of the cost of a URL.
        return urlunsplit((scheme, netloc, path, parts.query, "")) if _valid_host(host) else None
    try:
        url = safe_url_string(
            urlunsplit((scheme, netloc, path, parts.query, "")), encoding=encoding
        )
        final_host = urlsplit(url).hostname or ""
    except (ValueError, UnicodeError, LookupError):
        return None
    return url if _valid_host(final_host) else None


def _valid_host(host: str) -> bool:
    # A browser refuses a host with spaces, controls or other forbidden code points; w3lib
    # passes some of them through, so the final (IDNA-encoded) host is checked here.
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return bool(_VALID_HOST.fullmatch(host))


def is_image_url(url: str) -> bool:
    return _extension(url) in IMAGE_EXTENSIONS


def is_archive_url(url: str) -> bool:
    return _extension(url) in ARCHIVE_EXTENSIONS


def _extension(url: str) -> str:
    try:
        path = unquote(urlsplit(url).path).lower()
    except ValueError:
        return ""
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return name[dot:] if dot > 0 else ""


def parse_srcset(value: str, limit: int = 64) -> list[str]:
    """The URL of every ``srcset`` candidate (HTML's parsing rules; descriptors ignored)."""
    urls: list[str] = []
    pos, end = 0, len(value)
    while pos < end and len(urls) < limit:
        while pos < end and (value[pos] in _ASCII_WS or value[pos] == ","):
            pos += 1
        start = pos
        while pos < end and value[pos] not in _ASCII_WS:
            pos += 1
        url = value[start:pos]
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            # Descriptors run to the next comma outside parentheses.
            in_parens = False
            while pos < end:
                char = value[pos]
                pos += 1
                if char == "(":
                    in_parens = True
                elif char == ")":
                    in_parens = False
                elif char == "," and not in_parens:
                    break
        if url:
            urls.append(url)
    return urls


def parse_data_image(uri: str, max_bytes: int) -> tuple[str, bytes] | None:
    """``(mime type, bytes)`` of a ``data:image/...`` URI, or ``None``.

    ``None`` for other media types, bodies over ``max_bytes`` (judged before decoding),
    invalid base64 (browsers' forgiving-base64: whitespace and missing padding are fine) and
    empty bodies.
    """
    text = uri.strip(_C0_AND_SPACE).translate(_TAB_NEWLINE)
    if text[:5].lower() != "data:":
        return None
    header, comma, payload = text[5:].partition(",")
    if not comma or len(header) > _MAX_DATA_HEADER:
        return None
    params = [p.strip().lower() for p in header.split(";")]
    mime_type = params[0] or "text/plain"
    if not mime_type.startswith("image/"):
        return None
    is_base64 = len(params) > 1 and params[-1] == "base64"
    # Percent-encoding can at most triple a body, base64 adds a third: cheap upper bounds.
    if len(payload) > max_bytes * (4 / 3 if is_base64 else 3) + 4:
        return None
    body = unquote_to_bytes(payload)
    if is_base64:
        decoded = _forgiving_base64(body)
        if decoded is None:
            return None
        body = decoded
    if not body or len(body) > max_bytes:
        return None
    return mime_type, body


def _forgiving_base64(data: bytes) -> bytes | None:
    text = data.decode("ascii", "replace").translate(str.maketrans("", "", _ASCII_WS))
    if len(text) % 4 == 0 and text.endswith("="):
        text = text[:-2] if text.endswith("==") else text[:-1]
    if len(text) % 4 == 1 or _BASE64_ALPHABET.search(text):
        return None
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _parse_refresh(content: str) -> str | None:
    """The URL of a ``<meta http-equiv=refresh>`` content (HTML's declarative refresh)."""
    text = content.strip(_ASCII_WS)
    pos = 0
    while pos < len(text) and (text[pos].isdigit() or text[pos] == "."):
        pos += 1
    if pos == 0:
        return None
    rest = text[pos:].lstrip(_ASCII_WS)
    if not rest or rest[0] not in ";,":
        return None
    rest = rest[1:].lstrip(_ASCII_WS)
    if rest[:3].lower() == "url":
        after = rest[3:].lstrip(_ASCII_WS)
        if after.startswith("="):
            rest = after[1:].lstrip(_ASCII_WS)
    if rest[:1] in ("'", '"'):
        quote = rest[0]
        rest = rest[1:]
        end = rest.find(quote)
        if end >= 0:
            rest = rest[:end]
    return rest.strip(_ASCII_WS) or None


# -- CSS


def discover_css(
    css_text: str | bytes, css_url: str, *, limits: Limits = DEFAULT_LIMITS
) -> list[FoundImage]:
    """Images a linked stylesheet names, resolved against ``css_url`` (``css-stylesheet``)."""
    return discover_stylesheet(css_text, css_url, limits=limits).images


def discover_stylesheet(
    css_text: str | bytes,
    css_url: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
    content_type: str | None = None,
) -> CssDiscovery:
    """Images, ``data:`` images and ``@import`` targets of a linked stylesheet."""
    collector = _Collector(limits)
    encoding = "utf-8"
    if isinstance(css_text, bytes):
        css_text, encoding = _decode_css(css_text[: limits.max_css_chars * 4], content_type)
    collector.truncated = len(css_text) > limits.max_css_chars
    _CssScanner(collector, css_url, "css-stylesheet", encoding).stylesheet(
        css_text[: limits.max_css_chars]
    )
    return CssDiscovery(
        images=collector.images,
        data_images=collector.data_images,
        imports=collector.stylesheets,
        truncated=collector.truncated,
    )


def _decode_css(data: bytes, content_type: str | None) -> tuple[str, str]:
    charset = None
    if content_type:
        match = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type, re.IGNORECASE)
        charset = match.group(1) if match else None
    try:
        text, encoding = decode_stylesheet_bytes(data, protocol_encoding=charset)
    except (LookupError, ValueError):
        return data.decode("utf-8", "replace"), "utf-8"
    return str(text), str(getattr(encoding, "name", "utf-8"))


class _CssScanner:
    def __init__(self, collector: _Collector, base: str, source: Source, encoding: str) -> None:
        self.collector = collector
        self.base = base
        self.source: Source = source
        self.encoding = encoding
        self.max_depth = collector.limits.max_css_depth

    def stylesheet(self, text: str) -> None:
        rules = tinycss2.parse_stylesheet(text, skip_comments=True, skip_whitespace=True)
        self._items(rules, 0)

    def declarations(self, text: str) -> None:
        items = tinycss2.parse_blocks_contents(text, skip_comments=True, skip_whitespace=True)
        self._items(items, 0)

    def _items(self, items: Iterable[Any], depth: int) -> None:
        if depth > self.max_depth:
            self.collector.truncated = True
            return
        for item in items:
            kind = item.type
            if kind == "declaration":
                name = item.lower_name
                if name in IMAGE_PROPERTIES or name.startswith("--"):
                    for raw in self._urls(item.value, depth):
                        self.collector.add_image(raw, self.base, self.source, None, self.encoding)
            elif kind == "qualified-rule":
                self._block(item.content, depth)
            elif kind == "at-rule":
                keyword = item.lower_at_keyword
                if keyword == "import":
                    for raw in self._urls(item.prelude, depth, strings=True):
                        self.collector.add_stylesheet(raw, self.base, self.encoding)
                        break
                elif keyword not in _SKIPPED_AT_RULES and item.content is not None:
                    self._block(item.content, depth)

    def _block(self, content: list[Any] | None, depth: int) -> None:
        if content:
            items = tinycss2.parse_blocks_contents(
                content, skip_comments=True, skip_whitespace=True
            )
            self._items(items, depth + 1)

    def _urls(self, tokens: Iterable[Any], depth: int, *, strings: bool = False) -> Iterator[str]:
        """``url()`` values, plus bare strings where they are URLs (``image-set()``,
        ``@import``)."""
        if depth > self.max_depth:
            self.collector.truncated = True
            return
        for token in tokens:
            kind = token.type
            if kind == "url" or (kind == "string" and strings):
                yield token.value
            elif kind == "function":
                name = token.lower_name
                if name in ("url", "src"):
                    for arg in token.arguments:
                        if arg.type == "string":
                            yield arg.value
                            break
                else:
                    yield from self._urls(
                        token.arguments, depth + 1, strings=name in _IMAGE_SET_FUNCTIONS
                    )
            elif kind in ("() block", "[] block", "{} block"):
                yield from self._urls(token.content, depth + 1)


# -- HTML


def discover(
    html: str | bytes,
    page_url: str,
    *,
    base_url: str | None = None,
    content_type: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Discovery:
    """Everything :mod:`crawler.discovery` finds in one HTML document (see the module doc).

    ``base_url`` is the response's base when it differs from ``page_url`` (e.g. a
    Content-Location); ``<base href>`` in the document still wins, resolved against it.
    ``content_type`` is the HTTP header, for the charset of a bytes document.
    """
    text, encoding = _decode_html(html, content_type)
    truncated = len(text) > limits.max_document_chars
    text = text[: limits.max_document_chars]
    document_base = resolve_url(base_url or page_url, page_url) or page_url
    result = Discovery(page_url=page_url, base_url=document_base, encoding=encoding)
    root = _parse(text)
    if root is None:
        return result
    collector = _Collector(limits)
    collector.truncated = truncated
    _HtmlScanner(collector, result, encoding).scan(root)
    result.images = collector.images
    result.data_images = collector.data_images
    result.stylesheets = collector.stylesheets
    result.links = collector.links
    result.archives = collector.archives
    result.truncated = collector.truncated
    return result


def _decode_html(html: str | bytes, content_type: str | None) -> tuple[str, str]:
    if isinstance(html, bytes):
        try:
            encoding, text = html_to_unicode(content_type, html)
        except (LookupError, ValueError):
            return html.decode("utf-8", "replace"), "utf-8"
        return text, encoding
    return html, "utf-8"


def _parse(text: str) -> Any:
    # Lone surrogates cannot be encoded for lxml: a str from elsewhere may carry them.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    try:
        return Selector(text=text, type="html").root
    except (ValueError, TypeError, etree.LxmlError):
        return None


class _Collector:
    """Ordered, deduplicated, bounded result lists."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.truncated = False
        self.images: list[FoundImage] = []
        self.data_images: list[DataImage] = []
        self.stylesheets: list[str] = []
        self.links: list[str] = []
        self.archives: list[str] = []
        self._seen_images: set[str] = set()
        self._seen_data: set[bytes] = set()
        self._seen_stylesheets: set[str] = set()
        self._seen_links: set[str] = set()
        self._seen_archives: set[str] = set()
        self._resolved: dict[tuple[str, str], str | None] = {}

    @property
    def images_full(self) -> bool:
        return len(self.images) >= self.limits.max_images

    @property
    def data_full(self) -> bool:
        return len(self.data_images) >= self.limits.max_data_uris

    def full_for(self, raw: str) -> bool:
        """Whether the list an ``<a href>`` would go to is full, judged before resolving:
        resolution keeps the file name, so the raw extension tells images and archives."""
        extension = _extension(raw.split("#", 1)[0].split("?", 1)[0])
        if extension in IMAGE_EXTENSIONS:
            return self.images_full
        if extension in ARCHIVE_EXTENSIONS:
            return len(self.archives) >= self.limits.max_archives
        return len(self.links) >= self.limits.max_links

    def add_image(
        self, raw: str, base: str, source: Source, alt: str | None, encoding: str
    ) -> None:
        if raw.lstrip(_C0_AND_SPACE)[:5].lower() == "data:":
            self.add_data(raw, source, alt)
            return
        if self.images_full:
            # Checked before resolving: on a hostile page resolution is the cost to avoid.
            self.truncated = True
            return
        url = self.resolve(raw, base, encoding)
        if url is None or url in self._seen_images:
            return
        self._seen_images.add(url)
        self.images.append(FoundImage(url, source, alt))

    def add_data(self, raw: str, found_in: Source, alt: str | None) -> None:
        if self.data_full:
            self.truncated = True
            return
        parsed = parse_data_image(raw, self.limits.max_data_uri_bytes)
        if parsed is None:
            return
        mime_type, data = parsed
        if data in self._seen_data:
            return
        self._seen_data.add(data)
        self.data_images.append(DataImage(data, mime_type, found_in, alt))

    def add_link(self, url: str) -> None:
        self._add(url, self.links, self._seen_links, self.limits.max_links)

    def add_archive(self, url: str) -> None:
        self._add(url, self.archives, self._seen_archives, self.limits.max_archives)

    def add_stylesheet(self, raw: str, base: str, encoding: str) -> None:
        url = self.resolve(raw, base, encoding)
        if url is not None:
            self._add(url, self.stylesheets, self._seen_stylesheets, self.limits.max_stylesheets)

    def _add(self, url: str, items: list[str], seen: set[str], limit: int) -> None:
        if url in seen:
            return
        if len(items) >= limit:
            self.truncated = True
            return
        seen.add(url)
        items.append(url)

    def resolve(self, raw: str, base: str, encoding: str) -> str | None:
        if len(raw) > self.limits.max_url_chars:
            self.truncated = True
            return None
        key = (raw, base)
        if key in self._resolved:
            return self._resolved[key]
        url = resolve_url(raw, base, encoding=encoding)
        # Pages repeat URLs (placeholders, the same image in src and srcset): resolve once.
        if len(self._resolved) < _RESOLVE_MEMO_SIZE:
            self._resolved[key] = url
        return url


class _HtmlScanner:
    """One pass over the element tree, dispatching on tag names."""

    def __init__(self, collector: _Collector, result: Discovery, encoding: str) -> None:
        self.c = collector
        self.result = result
        self.limits = collector.limits
        self.encoding = encoding
        self.base = result.base_url

    def scan(self, root: Any) -> None:
        self._read_base(root)
        self.result.directory_listing = self._is_directory_listing(root)
        handlers = {
            "img": self._img,
            "image": self._svg_image,
            "input": self._input,
            "source": self._source,
            "video": self._video,
            "meta": self._meta,
            "link": self._link,
            "a": self._anchor,
            "area": self._anchor,
            "style": self._style_element,
            "script": self._script,
            "iframe": self._frame,
            "frame": self._frame,
            "canvas": self._canvas,
        }
        for count, element in enumerate(root.iter()):
            if count >= self.limits.max_elements:
                self.c.truncated = True
                break
            tag = element.tag
            if not isinstance(tag, str):
                continue  # comments and processing instructions
            tag = tag.lower()
            handler = handlers.get(tag)
            if handler is not None:
                handler(element)
            self._generic(element, tag)

    # -- document-level facts

    def _read_base(self, root: Any) -> None:
        for element in root.iter("base"):
            href = element.get("href")
            if href is None:
                continue
            # The first <base href> decides, even when it is unusable (then the page URL does).
            resolved = self._resolve(href)
            if resolved is not None:
                self.base = resolved
                self.result.base_url = resolved
            return

    def _is_directory_listing(self, root: Any) -> bool:
        for tag in ("title", "h1"):
            for element in root.iter(tag):
                text = _text(element, 200)
                if _LISTING_TITLE.match(text):
                    return True
                break
        return False

    # -- element handlers

    def _img(self, el: Any) -> None:
        self.result.img_count += 1
        alt = self._alt(el.get("alt"))
        self._image_attr(el.get("src"), "img-src", alt)
        self._srcset_attr(el.get("srcset"), "srcset", alt)
        self._lazy_attrs(el, alt)
        if el.get("loading", "").strip().lower() == "lazy" or "lazy" in el.get("class", "").lower():
            self.result.lazy_markers = True

    def _svg_image(self, el: Any) -> None:
        # <image> outside SVG is an <img> to an HTML parser; inside it names its picture by href.
        alt = self._alt(el.get("alt"))
        for attribute in ("href", "xlink:href", "src"):
            self._image_attr(el.get(attribute), "img-src", alt)

    def _input(self, el: Any) -> None:
        if el.get("type", "").strip().lower() == "image":
            self._image_attr(el.get("src"), "img-src", self._alt(el.get("alt")))

    def _source(self, el: Any) -> None:
        # libxml2 does not know <source> is void, so a second <source> nests in the first:
        # climb through them to the element that really contains it.
        parent = el.getparent()
        while parent is not None and parent.tag == "source":
            parent = parent.getparent()
        if parent is None or parent.tag != "picture":
            return  # <source> of <video>/<audio> is media, not an image
        img = next(parent.iter("img"), None)
        alt = self._alt(img.get("alt")) if img is not None else None
        self._srcset_attr(el.get("srcset"), "picture-source", alt)
        self._lazy_attrs(el, alt)

    def _video(self, el: Any) -> None:
        self._image_attr(el.get("poster"), "img-src", None)

    def _meta(self, el: Any) -> None:
        key = (el.get("property") or el.get("name") or el.get("itemprop") or "").strip().lower()
        content = el.get("content")
        if content is None:
            return
        if key in _OG_IMAGE_KEYS or key == "image":
            self._image_attr(content, "og-image", None)
        elif (el.get("http-equiv") or "").strip().lower() == "refresh":
            target = _parse_refresh(content[: self.limits.max_url_chars])
            url = self._resolve(target) if target else None
            if url is not None:
                self.result.refresh_url = self.result.refresh_url or url
                self._page_link(url)

    def _link(self, el: Any) -> None:
        rel = set((el.get("rel") or "").lower().split())
        href = el.get("href")
        if "stylesheet" in rel or ("preload" in rel and el.get("as", "").lower() == "style"):
            if href:
                self.c.add_stylesheet(href, self.base, self.encoding)
            return
        if "image_src" in rel or (
            rel & {"preload", "prefetch"} and el.get("as", "").lower() == "image"
        ):
            self._image_attr(href, "link-href", None)
            self._srcset_attr(el.get("imagesrcset"), "link-href", None)
            return
        if "next" in rel and href:
            url = self._resolve(href)
            if url is not None:
                self._set_next(url)
                self._page_link(url)

    def _anchor(self, el: Any) -> None:
        href = el.get("href")
        if not href or href.strip(_C0_AND_SPACE).startswith("#"):
            return
        if self.c.full_for(href):
            self.c.truncated = True
            return
        url = self._resolve(href)
        if url is None:
            return
        if is_archive_url(url):
            self.c.add_archive(url)
        elif is_image_url(url):
            source: Source = "directory-listing" if self.result.directory_listing else "link-href"
            alt = self._alt(el.get("title")) or self._alt(_text(el, self.limits.max_text_chars))
            self.c.add_image(url, self.base, source, alt, self.encoding)
        elif not (self.result.directory_listing and self._is_sort_link(url)):
            self._page_link(url)
            if "next" in (el.get("rel") or "").lower().split():
                self._set_next(url)

    def _style_element(self, el: Any) -> None:
        css = "".join(el.itertext())[: self.limits.max_css_chars]
        if css and not self._css_pointless(css):
            _CssScanner(self.c, self.base, "css-style-block", self.encoding).stylesheet(css)

    def _script(self, el: Any) -> None:
        self.result.script_count += 1
        if self.result.lazy_markers:
            return
        src = (el.get("src") or "").lower()
        if src:
            if any(word.lower() in src for word in _LAZY_SCRIPT_WORDS):
                self.result.lazy_markers = True
            return
        code = (el.text or "")[: self.limits.max_script_chars]
        if any(word in code for word in _LAZY_SCRIPT_WORDS):
            self.result.lazy_markers = True

    def _frame(self, el: Any) -> None:
        # A framed document is part of what the reader sees: a page to visit.
        src = el.get("src") or el.get("data-src")
        url = self._resolve(src) if src else None
        if url is not None:
            self._page_link(url)
        if el.get("loading", "").strip().lower() == "lazy":
            self.result.lazy_markers = True

    def _canvas(self, el: Any) -> None:
        self.result.canvas_count += 1

    def _generic(self, el: Any, tag: str) -> None:
        names = el.attrib
        if not names:
            return
        style = el.get("style")
        if style and _may_hold_url(style) and not self._css_pointless(style):
            scanner = _CssScanner(self.c, self.base, "css-inline", self.encoding)
            scanner.declarations(style[: self.limits.max_css_chars])
        background = el.get("background")
        if background and tag in _BACKGROUND_TAGS:
            self._image_attr(background, "css-inline", None)
        if tag in _IMAGE_TAGS or tag in _NOT_IMAGE_TAGS:
            return  # image elements read their lazy attributes themselves
        for name in names:
            if name in _LAZY_BACKGROUND_SET:
                self._lazy_background(el.get(name))
            elif name in _LAZY_SET:
                # data-src on a <div> may be anything; only an image file counts.
                value = el.get(name)
                url = self._resolve(value) if value else None
                if url is not None and is_image_url(url):
                    self.result.lazy_markers = True
                    self.c.add_image(url, self.base, "lazy-attr", None, self.encoding)

    def _lazy_background(self, value: str | None) -> None:
        if not value or not value.strip(_C0_AND_SPACE):
            return
        self.result.lazy_markers = True
        if "(" in value:
            scanner = _CssScanner(self.c, self.base, "lazy-attr", self.encoding)
            scanner.declarations(f"background-image: {value[: self.limits.max_css_chars]}")
        else:
            self._image_attr(value, "lazy-attr", None)

    # -- helpers

    def _lazy_attrs(self, el: Any, alt: str | None) -> None:
        for name in el.attrib:
            if name in _LAZY_SET:
                value = el.get(name)
                if value and value.strip(_C0_AND_SPACE):
                    self.result.lazy_markers = True
                    self._image_attr(value, "lazy-attr", alt)
            elif name in _LAZY_SRCSET_SET:
                value = el.get(name)
                if value and value.strip(_C0_AND_SPACE):
                    self.result.lazy_markers = True
                    self._srcset_attr(value, "lazy-attr", alt)
            elif name in _LAZY_BACKGROUND_SET:
                self._lazy_background(el.get(name))

    def _image_attr(self, value: str | None, source: Source, alt: str | None) -> None:
        if value and value.strip(_C0_AND_SPACE):
            self.c.add_image(value, self.base, source, alt, self.encoding)

    def _srcset_attr(self, value: str | None, source: Source, alt: str | None) -> None:
        if not value:
            return
        if len(value) > self.limits.max_srcset_chars:
            self.c.truncated = True
            value = value[: self.limits.max_srcset_chars]
        candidates = parse_srcset(value, self.limits.max_srcset_candidates)
        for candidate in candidates:
            self.c.add_image(candidate, self.base, source, alt, self.encoding)

    def _css_pointless(self, css: str) -> bool:
        # CSS parsing is slow; with no room for another image it can only add data: images.
        if self.c.images_full and (self.c.data_full or "data:" not in css.lower()):
            self.c.truncated = True
            return True
        return False

    def _page_link(self, url: str) -> None:
        if is_archive_url(url):
            self.c.add_archive(url)
        else:
            self.c.add_link(url)

    def _set_next(self, url: str) -> None:
        if self.result.next_page is None:
            self.result.next_page = url

    def _resolve(self, raw: str) -> str | None:
        return self.c.resolve(raw, self.base, self.encoding)

    def _is_sort_link(self, url: str) -> bool:
        parts = urlsplit(url)
        page = urlsplit(self.result.page_url)
        return parts.path == page.path and bool(_SORT_QUERY.fullmatch(parts.query))

    def _alt(self, value: str | None) -> str | None:
        if value is None:
            return None
        text = _clean_text(value[: self.limits.max_text_chars * 4], self.limits.max_text_chars)
        return text or None


def _may_hold_url(css: str) -> bool:
    # Parsing every style attribute is the slowest part of a big page; an image needs url(),
    # image-set() or an escaped function name, so the rest is skipped unparsed.
    lowered = css.lower()
    return "url" in lowered or "image" in lowered or "\\" in css


def _text(element: Any, limit: int) -> str:
    pieces: list[str] = []
    size = 0
    for piece in element.itertext():
        pieces.append(piece)
        size += len(piece)
        if size > limit * 4:
            break
    return _clean_text("".join(pieces), limit)


def _clean_text(text: str, limit: int) -> str:
    cleaned = "".join(c if c.isprintable() else " " for c in text)
    return _SPACES.sub(" ", cleaned).strip()[:limit]
