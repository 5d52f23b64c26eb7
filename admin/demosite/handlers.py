"""Requests, responses and the handlers a fixture site is built from.

A handler is a plain callable ``Request -> Response``. The helpers here cover what the fixture
sites need: static bytes with validators (ETag/Last-Modified, answered by 304), redirects,
delays, huge bodies generated on the fly, and Referer checks.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from html import escape
from urllib.parse import urlsplit

HTML = "text/html; charset=utf-8"
# A fixed origin for Last-Modified, so two builds of the same site send the same validators.
EPOCH = 1_704_067_200.0  # 2024-01-01T00:00:00Z


class Headers(Mapping[str, str]):
    """Request headers, looked up without regard to case; repeated headers keep every value."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs = tuple(pairs)

    def __getitem__(self, name: str) -> str:
        wanted = name.lower()
        for key, value in self._pairs:
            if key.lower() == wanted:
                return value
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for key, _ in self._pairs:
            if key.lower() not in seen:
                seen.add(key.lower())
                yield key

    def __len__(self) -> int:
        return len({key.lower() for key, _ in self._pairs})

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self._pairs if key.lower() == name.lower()]

    def __repr__(self) -> str:
        return f"Headers({list(self._pairs)!r})"


@dataclass(frozen=True)
class Request:
    """One request as the server saw it; also what the log keeps."""

    method: str
    path: str  # percent-decoded, without the query: what routes are keyed on
    query: str  # raw, without the "?"
    headers: Headers
    time: float  # time.monotonic() once the request was read, before it was answered
    body: bytes = b""
    # Set when the site stops, so handlers that wait or stream can give up at once.
    stopping: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def target(self) -> str:
        return self.path + ("?" + self.query if self.query else "")


Body = bytes | Iterable[bytes]


@dataclass
class Response:
    """What a handler answers. An iterable body is streamed as it is produced.

    ``length`` is the declared Content-Length of an iterable body; without it the body goes out
    chunked, as a server that does not know the size in advance would send it.
    """

    status: int = 200
    body: Body = b""
    content_type: str | None = HTML
    headers: list[tuple[str, str]] = field(default_factory=list)
    length: int | None = None


Handler = Callable[[Request], Response]


def _etag_matches(header: str, etag: str) -> bool:
    # Weak comparison, as RFC 9110 asks for If-None-Match.
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


class Static:
    """Fixed bytes, with ETag and Last-Modified answered by 304 when the client has them."""

    def __init__(
        self,
        body: bytes,
        content_type: str | None = HTML,
        *,
        status: int = 200,
        headers: Iterable[tuple[str, str]] = (),
        etag: bool = True,
        last_modified: float | None = EPOCH,
    ) -> None:
        self.body = body
        self.content_type = content_type
        self.status = status
        self.headers = list(headers)
        self.etag = f'"{hashlib.sha256(body).hexdigest()[:20]}"' if etag else None
        self.last_modified = last_modified

    def validators(self) -> list[tuple[str, str]]:
        found = []
        if self.etag:
            found.append(("ETag", self.etag))
        if self.last_modified is not None:
            found.append(("Last-Modified", formatdate(self.last_modified, usegmt=True)))
        return found

    def not_modified(self, request: Request) -> bool:
        if self.status != 200:
            return False
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None:  # takes precedence over If-Modified-Since (RFC 9110)
            return self.etag is not None and _etag_matches(if_none_match, self.etag)
        since = request.headers.get("If-Modified-Since")
        if since is None or self.last_modified is None:
            return False
        try:
            return int(self.last_modified) <= parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False

    def __call__(self, request: Request) -> Response:
        headers = self.headers + self.validators()
        if self.not_modified(request):
            return Response(304, b"", None, headers)
        return Response(self.status, self.body, self.content_type, headers)


def redirect(location: str, status: int = 302) -> Handler:
    def handle(request: Request) -> Response:
        body = f'<a href="{escape(location)}">moved</a>'.encode()
        return Response(status, body, HTML, [("Location", location)])

    return handle


def delayed(seconds: float, inner: Handler) -> Handler:
    """Answer after ``seconds``; only this request's thread waits."""

    def handle(request: Request) -> Response:
        if request.stopping.wait(seconds):
            return Response(503, b"site stopped", "text/plain")
        return inner(request)

    return handle


def stream(
    size: int,
    content_type: str | None = HTML,
    *,
    head: bytes = b"",
    filler: bytes = b"<p>filler</p>\n",
    chunk_size: int = 64 * 1024,
    declare_length: bool = True,
    interval: float = 0.0,
) -> Handler:
    """``size`` bytes made on the fly: ``head`` then ``filler`` repeated, cut to size.

    Only one chunk (``chunk_size``) is ever held in memory, however large ``size`` is. With
    ``interval`` the body trickles out one chunk at a time, for time-per-page limits.
    """
    unit = filler * max(1, chunk_size // max(1, len(filler)))

    def chunks(stopping: threading.Event) -> Iterator[bytes]:
        sent = 0
        if head:
            sent = min(len(head), size)
            yield head[:sent]
        while sent < size:
            if interval and stopping.wait(interval):
                return
            if stopping.is_set():
                return
            piece = unit[: size - sent]
            sent += len(piece)
            yield piece

    def handle(request: Request) -> Response:
        return Response(
            200, chunks(request.stopping), content_type, [], size if declare_length else None
        )

    return handle


def same_site_referer(inner: Handler, *, denied: Handler | None = None) -> Handler:
    """Hotlink protection: ``inner`` only when the Referer is a page of this host, else 403."""

    def handle(request: Request) -> Response:
        referer = request.headers.get("Referer", "")
        host = request.headers.get("Host", "")
        if referer and host and urlsplit(referer).netloc == host:
            return inner(request)
        if denied is not None:
            return denied(request)
        return Response(403, b"hotlinking is not allowed", "text/plain")

    return handle


def not_found(request: Request) -> Response:
    body = f"<html><body><h1>Not Found</h1><p>{escape(request.path)}</p></body></html>".encode()
    return Response(404, body, HTML)
