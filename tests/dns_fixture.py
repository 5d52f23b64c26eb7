"""A DNS server on 127.0.0.1 (UDP) that knows only the names a test gives it.

It answers A and AAAA from ``records``, NXDOMAIN for every other name, and with ``silent`` set
it reads queries and never answers (a server that is down or filtered). Every question is
recorded as (name, type) so a test can prove which names were asked, and that the system
resolver was not the one asked.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class DnsFixture:
    def __init__(self, records: dict[str, list[str]] | None = None, *, silent: bool = False):
        self.records = {k.rstrip(".").lower(): v for k, v in (records or {}).items()}
        self.silent = silent
        self.questions: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def server(self) -> str:
        """As ``MAMORU_DNS_SERVERS`` names it."""
        return f"127.0.0.1:{self.port}"

    def asked(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self.questions]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                wire, client = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            with contextlib.suppress(Exception):  # junk on the port is not the test's subject
                reply = self._answer(dns.message.from_wire(wire))
                if reply is not None:
                    self._sock.sendto(reply, client)

    def _answer(self, query: dns.message.Message) -> bytes | None:
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            self.questions.append((name, kind))
        if self.silent:
            return None
        response = dns.message.make_response(query)
        known = self.records.get(name)
        if known is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response.to_wire()
        version = {"A": 4, "AAAA": 6}.get(kind)
        matching = [a for a in known if ipaddress.ip_address(a).version == version]
        if matching:
            response.answer.append(
                dns.rrset.from_text_list(question.name, 60, "IN", kind, matching)
            )
        return response.to_wire()


@contextmanager
def dns_serving(
    records: dict[str, list[str]] | None = None, *, silent: bool = False
) -> Iterator[DnsFixture]:
    fixture = DnsFixture(records, silent=silent)
    fixture.start()
    try:
        yield fixture
    finally:
        fixture.stop()
