"""Query fingerprints computed in worker processes.

Identifying a crawled image is CPU-bound (about 150 region hashes of a 1024-pixel image), and
Python threads share one core for most of it. A crawl therefore hashes in a pool of processes,
one per core by default, while the index lookup and the scoring of the few candidates stay in
the crawl's process, where the index lives. Workers are spawned, not forked: the crawl process
runs a Twisted reactor and threads, which a fork would copy half-way.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from matcher.decode import DecodeLimits, decode_image
from matcher.errors import InputError
from matcher.fingerprint import Fingerprint
from matcher.hashing import query_fingerprints

__all__ = ["FingerprintPool", "QueryFingerprints", "available_cpus"]

_Packed = tuple[str, int, dict[str, Any], str, str, int]


@dataclass(frozen=True)
class QueryFingerprints:
    size: tuple[int, int]
    fingerprints: list[Fingerprint]


def available_cpus() -> int:
    """Cores this process may run on (its affinity, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _pack(fp: Fingerprint) -> _Packed:
    return (fp.kind, fp.value, dict(fp.params), fp.variant, fp.version, fp.bits)


def _unpack(row: _Packed) -> Fingerprint:
    kind, value, params, variant, version, bits = row
    return Fingerprint(kind, value, MappingProxyType(params), variant, version, bits)


def _query(
    data: bytes, source: str, limits: DecodeLimits
) -> tuple[str, tuple[int, int], list[_Packed]] | tuple[str, str, str]:
    # Errors come back as values: InputError's constructor does not survive pickling.
    try:
        with decode_image(data, source=source, limits=limits) as image:
            return ("ok", image.size, [_pack(fp) for fp in query_fingerprints(image)])
    except InputError as exc:
        return ("error", exc.source, exc.reason)


class FingerprintPool:
    """``query(bytes)`` in ``processes`` worker processes (inline when 1)."""

    def __init__(self, processes: int | None = None) -> None:
        self.processes = processes if processes and processes > 0 else available_cpus()
        self._executor: ProcessPoolExecutor | None = None
        if self.processes > 1:
            self._executor = ProcessPoolExecutor(
                max_workers=self.processes, mp_context=multiprocessing.get_context("spawn")
            )

    def query(self, data: bytes, *, source: str, limits: DecodeLimits) -> QueryFingerprints:
        """Decode ``data`` safely and compute its query fingerprints; InputError if it is not
        a usable image."""
        if self._executor is None:
            result = _query(data, source, limits)
        else:
            result = self._executor.submit(_query, data, source, limits).result()
        if result[0] == "error":
            raise InputError(str(result[1]), str(result[2]))
        _, size, packed = result
        assert isinstance(size, tuple) and isinstance(packed, list)
        return QueryFingerprints(size, [_unpack(row) for row in packed])

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
