"""A small threaded HTTP server on 127.0.0.1 that plays a pirate site for the crawler tests.

A ``Site`` binds its socket when it is created, so builders can write absolute URLs (sitemaps,
``og:image``) before the server runs; ``start``/``stop`` (or ``with site:``) run and end it.
Every request is logged with its headers so tests can assert what a crawler sent, and what it
did not fetch. Handlers are plain callables ``Request -> Response`` (see ``handlers``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import quote, unquote, urlsplit

from admin.demosite.handlers import (
    EPOCH,
    HTML,
    Handler,
    Headers,
    Request,
    Response,
    Static,
    delayed,
    not_found,
    redirect,
    stream,
)

_URL_SAFE = "/?=&;:@!$'()*+,-._~%#"


class RequestLog:
    """Thread-safe record of every request received, in arrival order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Request] = []

    def append(self, request: Request) -> None:
        with self._lock:
            self._items.append(request)

    def snapshot(self) -> list[Request]:
        with self._lock:
            return list(self._items)

    def __iter__(self) -> Iterator[Request]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def paths(self) -> list[str]:
        return [r.path for r in self.snapshot()]

    def for_path(self, url_or_path: str) -> list[Request]:
        """Requests for this path (an absolute URL counts by its path alone, whatever host)."""
        path = _path_of(url_or_path)
        return [r for r in self.snapshot() if r.path == path]

    def requested(self, url_or_path: str) -> bool:
        return bool(self.for_path(url_or_path))

    def wait_for(self, url_or_path: str, timeout: float = 5.0) -> Request | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := self.for_path(url_or_path):
                return found[0]
            time.sleep(0.01)
        return None


def _path_of(url_or_path: str) -> str:
    return unquote(urlsplit(url_or_path).path or "/")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    site: Site


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, as real servers do
    timeout = 30  # an idle keep-alive connection does not hold a thread forever
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.site._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.site._connection_closed(self.connection)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the request log is the record; stderr noise would hide test output

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        site = self.server.site
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=unquote(parts.path or "/"),
            query=parts.query,
            headers=Headers(self.headers.items()),
            time=time.monotonic(),
            body=body,
            stopping=site._stopping,
        )
        site.requests.append(request)
        try:
            response = site._handler_for(request.path)(request)
        except Exception:
            site.errors.append(traceback.format_exc())
            response = Response(500, b"fixture handler failed", "text/plain")
        try:
            self._send(request, response)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            # The client gave up (a crawler hitting its size or time limit): expected, not a bug.
            self.close_connection = True

    def _send(self, request: Request, response: Response) -> None:
        self.send_response(response.status)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers:
            self.send_header(name, value)
        no_body = request.method == "HEAD" or response.status in (204, 304)
        if isinstance(response.body, bytes):
            if response.status != 304:
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if not no_body:
                self.wfile.write(response.body)
            return
        # HTTP/1.0 clients know no chunks: an unsized body there ends when the connection does.
        chunked = response.length is None and self.request_version != "HTTP/1.0"
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif response.length is not None:
            self.send_header("Content-Length", str(response.length))
        else:
            self.close_connection = True
        self.end_headers()
        if no_body:
            return
        for piece in response.body:
            if not piece:
                continue
            if chunked:
                self.wfile.write(b"%X\r\n%s\r\n" % (len(piece), piece))
            else:
                self.wfile.write(piece)
        if request.stopping.is_set():
            # The body may have been cut short; the connection cannot carry another response.
            self.close_connection = True
            return
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


class Site:
    """One fixture web site on ``http://127.0.0.1:<port>``: a route table plus a request log.

    Routes are keyed on the percent-decoded path (the query is ignored for routing and passed to
    handlers). A path ending in ``*`` is a prefix route; the longest matching prefix wins after
    exact paths. Unknown paths answer 404.
    """

    def __init__(self, name: str = "site", *, port: int = 0) -> None:
        self.name = name
        self.requests = RequestLog()
        self.errors: list[str] = []  # tracebacks of handlers that raised: fixture bugs
        self._routes: dict[str, Handler] = {}
        self._prefixes: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", port), _RequestHandler, bind_and_activate=True)
        self._server.site = self
        self._thread: threading.Thread | None = None
        self.port: int = self._server.server_address[1]
        self.netloc = f"127.0.0.1:{self.port}"
        self.base_url = f"http://{self.netloc}"

    def __repr__(self) -> str:
        return f"Site({self.name!r}, {self.base_url})"

    # -- URLs

    def url(self, path: str = "/", *, host: str = "127.0.0.1") -> str:
        """Absolute URL of ``path`` (quoted as needed); ``host`` names this server otherwise,
        e.g. ``localhost``, which resolves to the same loopback address."""
        return f"http://{host}:{self.port}{quote(path, safe=_URL_SAFE)}"

    # -- routes

    def route(self, path: str, handler: Handler) -> None:
        with self._lock:
            if path.endswith("*"):
                self._prefixes[path[:-1]] = handler
            else:
                self._routes[path] = handler

    def add(
        self,
        path: str,
        body: bytes | str,
        content_type: str | None = HTML,
        *,
        status: int = 200,
        headers: Iterable[tuple[str, str]] = (),
        etag: bool = True,
        last_modified: bool = True,
        delay: float = 0.0,
    ) -> Static:
        """Serve fixed content. Adding a path again replaces its content, with a new ETag and a
        later Last-Modified, as an edited page would have on a recrawl."""
        data = body.encode() if isinstance(body, str) else body
        with self._lock:
            previous = self._routes.get(path)
        modified: float | None = None
        if last_modified:
            modified = EPOCH
            if isinstance(previous, Static) and previous.last_modified is not None:
                modified = max(float(int(time.time())), previous.last_modified + 1)
        resource = Static(
            data, content_type, status=status, headers=headers, etag=etag, last_modified=modified
        )
        self.route(path, delayed(delay, resource) if delay else resource)
        return resource

    def add_redirect(self, path: str, location: str, status: int = 302) -> None:
        self.route(path, redirect(location, status))

    def add_stream(
        self,
        path: str,
        size: int,
        content_type: str | None = HTML,
        *,
        head: bytes = b"",
        filler: bytes = b"<p>filler</p>\n",
        declare_length: bool = True,
        interval: float = 0.0,
    ) -> None:
        """Serve ``size`` bytes generated on the fly (see :func:`stream`)."""
        handler = stream(
            size,
            content_type,
            head=head,
            filler=filler,
            declare_length=declare_length,
            interval=interval,
        )
        self.route(path, handler)

    def paths(self) -> list[str]:
        with self._lock:
            return sorted(self._routes) + sorted(p + "*" for p in self._prefixes)

    def _handler_for(self, path: str) -> Handler:
        with self._lock:
            if path in self._routes:
                return self._routes[path]
            for prefix in sorted(self._prefixes, key=len, reverse=True):
                if path.startswith(prefix):
                    return self._prefixes[prefix]
        return not_found

    # -- lifecycle

    def is_running(self) -> bool:
        return self._thread is not None

    def start(self) -> Self:
        if self._stopping.is_set():
            raise RuntimeError(f"{self!r} was stopped; build a new one")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"site-{self.name}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake waiting and streaming handlers, close every socket."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            # Wakes handler threads blocked on a keep-alive read so they end now.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        deadline = time.monotonic() + 2.0
        while self._open_connections() and time.monotonic() < deadline:
            time.sleep(0.01)

    def _open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _connection_opened(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _connection_closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)


def serve(site: Site, *, banner: str | None = None) -> None:
    """Run ``site`` in the foreground until Ctrl-C (for the demo and for poking at a fixture)."""
    with site:
        print(banner or f"{site.name} on {site.url('/')} (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
