"""A scriptable HTTP server on loopback standing in for IANA, RDAP registries and pirate sites,
plus builders for RFC 9224 bootstrap files and RFC 9083 answers.

Each path answers what the test put there (status, body, headers), optionally late or a byte at
a time, and every request is recorded so a test can prove nothing was asked.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from takedown import rdap

_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/rdap+json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the status line
    drip: float = 0.0  # seconds between body bytes
    content_length: bool = True  # False: the body ends when the connection closes


class FixtureServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = _make_server(host, self)
        # A short poll interval: shutdown() waits up to one interval, and every test stops one.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def route(self, path: str, **kwargs: Any) -> None:
        self.routes[path] = Route(**kwargs)

    def json(self, path: str, document: Any, **kwargs: Any) -> None:
        self.route(path, body=json.dumps(document).encode(), **kwargs)

    def text(self, path: str, text: str, content_type: str = "text/plain", **kwargs: Any) -> None:
        body = text.encode()
        self.route(path, body=body, content_type=content_type, **kwargs)

    def requested(self, prefix: str = "/") -> list[str]:
        with self._lock:
            return [p for p in self.requests if p.startswith(prefix)]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def serving(host: str = "127.0.0.1") -> Iterator[FixtureServer]:
    server = FixtureServer(host)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _make_server(host: str, fixture: FixtureServer) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            with fixture._lock:
                fixture.requests.append(path)
            route = fixture.routes.get(path) or Route(404, b"not here", "text/plain")
            # A client giving up early (timeouts, size limits) is what some tests are about.
            with contextlib.suppress(*_GONE):
                self._answer(route)

        def _answer(self, route: Route) -> None:
            if route.delay and fixture._stopping.wait(route.delay):
                return
            self.send_response(route.status)
            if route.content_type is not None:
                self.send_header("Content-Type", route.content_type)
            if route.content_length:
                self.send_header("Content-Length", str(len(route.body)))
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not route.drip:
                self.wfile.write(route.body)
                return
            for index in range(len(route.body)):
                self.wfile.write(route.body[index : index + 1])
                self.wfile.flush()
                if fixture._stopping.wait(route.drip):
                    return

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True
        block_on_close = False

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that hangs up early is expected here

    return Server((host, 0), Handler)


# -- RFC 9224 bootstrap files


def bootstrap(services: list[tuple[list[str], list[str]]]) -> dict[str, Any]:
    return {
        "version": "1.0",
        "publication": "2026-11-26T00:00:00Z",
        "description": "Mamoru test bootstrap",
        "services": [[entries, urls] for entries, urls in services],
    }


# -- RFC 9083 answers


def vcard(fn: str, email: str | None = None, tel: str | None = None) -> list[Any]:
    props: list[list[Any]] = [["version", {}, "text", "4.0"], ["fn", {}, "text", fn]]
    if email is not None:
        props.append(["email", {"type": "work"}, "text", email])
    if tel is not None:
        props.append(["tel", {"type": ["voice"]}, "uri", f"tel:{tel}"])
    return ["vcard", props]


def entity(roles: list[str], card: list[Any], *nested: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {"objectClassName": "entity", "roles": roles, "vcardArray": card}
    if nested:
        found["entities"] = list(nested)
    return found


def domain_answer(name: str, *entities: dict[str, Any]) -> dict[str, Any]:
    return {
        "objectClassName": "domain",
        "rdapConformance": ["rdap_level_0"],
        "ldhName": name,
        "entities": list(entities),
    }


def ip_answer(start: str, end: str, name: str, *entities: dict[str, Any]) -> dict[str, Any]:
    return {
        "objectClassName": "ip network",
        "rdapConformance": ["rdap_level_0"],
        "startAddress": start,
        "endAddress": end,
        "name": name,
        "entities": list(entities),
    }


def guard_loopback(monkeypatch: Any) -> None:
    """For the rest of the test, any connection, datagram (a DNS query) or name lookup beyond
    loopback fails it, so a bug that would reach the Internet fails loudly instead."""
    real_connect = socket.socket.connect
    real_sendto = socket.socket.sendto
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        inet = sock.family in (socket.AF_INET, socket.AF_INET6)
        if inet and not ipaddress.ip_address(address[0].split("%", 1)[0]).is_loopback:
            raise AssertionError(f"test tried to reach {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        real_connect(self, address)

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        check(self, args[-1])  # sendto(data, address) or sendto(data, flags, address)
        return int(real_sendto(self, data, *args))

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            ipaddress.ip_address(str(host))
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME, f"no DNS in tests: {host!r}") from None
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "sendto", sendto)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(autouse=True)
def rdap_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Autouse in every module that imports it: nothing beyond loopback (``guard_loopback``),
    and an RDAP bootstrap cache that no other test filled or sees filled."""
    guard_loopback(monkeypatch)
    rdap.clear_bootstrap_cache()
    yield
    rdap.clear_bootstrap_cache()
