"""Matching speed: exact Hamming-radius lookups, HammingIndex against a brute-force scan.

    .venv/bin/python bench/matching_speed.py [--size 1000000] [--queries 2000] [--radius 8 10 12]
        [--substrings auto 3 4] [--ten-million] [--faiss]

Reference fingerprints are made to look like pHash values of real pages, not uniform noise:
- each code thresholds 64 simulated low-frequency DCT coefficients at their median, as imagehash's
  pHash does, with energy falling with frequency and a DC term always above the median (so the
  top bit is nearly always set, and the bits are biased and correlated);
- pages share one of a few hundred "styles" (series, artists, screen tones), so unrelated pages
  are nearer than 32 bits on average;
- 20% of the codes sit in clusters of near-duplicate pages 1-6 bits from their cluster's centre
  (re-scans, variant covers, pages that differ by a speech balloon), clusters of 3 to 40;
- 0.05% are one identical code (blank pages): a single very popular bucket.
Queries are 80% copies of reference codes with 0 to radius + 4 bits flipped, 20% unrelated pages.

For each number of substrings and radius it reports build time, index memory, lookups per second
of the index and of the brute-force scan on the same queries in the same run (the scan on the
first queries only when it is slow; rates are per query), their ratio, and checks that both
returned identical results on every query both ran. Each timing is the best of --repeat runs,
index and scan interleaved, and each ratio is taken against the scan timed beside it, as the
machine may be shared. It also times single-query calls (as ``identify`` makes them) and
incremental ``add`` calls, and checks that added codes are found at once. Everything runs on one
core (numpy is single-threaded here; faiss is set to one thread).
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from matcher.index import HammingIndex, SearchResult, brute_force_search

T = TypeVar("T")
CHUNK = 1 << 20
N_STYLES = 256
CLUSTER_SHARE = 0.20
BLANK_SHARE = 0.0005
COPY_SHARE = 0.80
ADD_BATCH = 300

# Energy of the 8x8 low-frequency DCT block of natural images falls roughly as 1 / frequency.
_U, _V = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
_SCALE = (1.0 / (1.0 + _U + _V)).ravel().astype(np.float32)


def _pack(bits: NDArray[np.bool_]) -> NDArray[np.uint64]:
    """Rows of 64 booleans to integers, first bit most significant (as hash_to_int does)."""
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def _styles(rng: np.random.Generator) -> NDArray[np.float32]:
    return (rng.standard_normal((N_STYLES, 64), dtype=np.float32) * _SCALE).astype(np.float32)


def phash_like(rng: np.random.Generator, n: int, styles: NDArray[np.float32]) -> NDArray[np.uint64]:
    out = np.empty(n, dtype=np.uint64)
    for c0 in range(0, n, CHUNK):
        m = min(CHUNK, n - c0)
        coef = rng.standard_normal((m, 64), dtype=np.float32) * _SCALE
        coef += 0.6 * styles[rng.integers(0, styles.shape[0], m)]
        coef[:, 0] = 4.0 + np.abs(coef[:, 0])  # the DC term: mean brightness, always large
        median = np.median(coef, axis=1, keepdims=True)
        out[c0 : c0 + m] = _pack(coef > median)
    return out


def flip_bits(
    rng: np.random.Generator, codes: NDArray[np.uint64], k: NDArray[np.int64]
) -> NDArray[np.uint64]:
    """Each code with exactly k[i] distinct random bits flipped."""
    out = np.empty_like(codes)
    for c0 in range(0, codes.shape[0], CHUNK):
        c1 = min(codes.shape[0], c0 + CHUNK)
        keys = rng.random((c1 - c0, 64), dtype=np.float32)
        ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
        out[c0:c1] = codes[c0:c1] ^ _pack(ranks < k[c0:c1, None])
    return out


def reference_codes(rng: np.random.Generator, n: int) -> NDArray[np.uint64]:
    styles = _styles(rng)
    codes = phash_like(rng, n, styles)
    n_clustered = int(n * CLUSTER_SHARE)
    if n_clustered >= 3:
        # Cluster sizes 3..40, geometric: most clusters small, a few large.
        sizes = np.minimum(2 + rng.geometric(1 / 6, size=n_clustered), 40)
        sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), n_clustered)) + 1]
        sizes[-1] -= int(sizes.sum()) - n_clustered
        sizes = sizes[sizes > 0]
        centres = codes[rng.choice(n, size=sizes.shape[0], replace=False)]
        members = flip_bits(rng, np.repeat(centres, sizes), rng.integers(1, 7, n_clustered))
        codes[rng.choice(n, size=n_clustered, replace=False)] = members
    blank = phash_like(rng, 1, styles)[0]
    codes[rng.choice(n, size=max(1, int(n * BLANK_SHARE)), replace=False)] = blank
    return codes


def make_queries(
    rng: np.random.Generator, codes: NDArray[np.uint64], n: int, radius: int
) -> NDArray[np.uint64]:
    n_copy = int(n * COPY_SHARE)
    picked = codes[rng.integers(0, codes.shape[0], n_copy)]
    copies = flip_bits(rng, picked, rng.integers(0, radius + 5, n_copy))
    unrelated = phash_like(rng, n - n_copy, _styles(rng))
    queries = np.concatenate([copies, unrelated])
    return queries[rng.permutation(n)]


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """The result of ``fn()`` and its wall time."""
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def best_of(repeat: int, fn: Callable[[], T]) -> tuple[T, float]:
    """The result and the least wall time of ``repeat`` runs."""
    runs = [timed(fn) for _ in range(repeat)]
    return runs[-1][0], min(secs for _, secs in runs)


def prefix(result: SearchResult, n_queries: int) -> SearchResult:
    keep = result.query < n_queries
    return SearchResult(result.query[keep], result.ids[keep], result.distances[keep])


def same(a: SearchResult, b: SearchResult) -> bool:
    return (
        np.array_equal(a.query, b.query)
        and np.array_equal(a.ids, b.ids)
        and np.array_equal(a.distances, b.distances)
    )


@dataclass
class Row:
    method: str
    radius: int
    build_s: float
    nbytes: int
    index_qps: float
    brute_qps: float
    hits_per_query: float
    checked: int
    identical: bool


@dataclass
class Run:
    """Queries, and the brute-force answer and rate on the first ``n_brute`` of them."""

    queries: dict[int, NDArray[np.uint64]]
    brute: dict[int, SearchResult]
    brute_qps: dict[int, float]
    n_brute: int


def measure_brute(
    codes: NDArray[np.uint64], ids: NDArray[np.int64], run: Run, radius: int
) -> float:
    """One timed scan: its rate (queries per second); its result is kept for the checks."""
    queries = run.queries[radius][: run.n_brute]
    result, secs = timed(lambda: brute_force_search(codes, ids, queries, radius))
    run.brute[radius] = result
    run.brute_qps[radius] = max(run.brute_qps.get(radius, 0.0), run.n_brute / secs)
    return run.n_brute / secs


def faiss_rows(
    codes: NDArray[np.uint64], ids: NDArray[np.int64], run: Run, repeat: int
) -> list[Row]:
    """faiss IndexBinaryMultiHash, when installed: a compiled point of reference, one thread."""
    try:
        import faiss  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        print("faiss not installed: skipped (pip install faiss-cpu)")
        return []
    faiss.omp_set_num_threads(1)

    def as_bytes(x: NDArray[np.uint64]) -> NDArray[np.uint8]:
        return x.astype(">u8").view(np.uint8).reshape(-1, 8)

    nhash = 4
    index = faiss.IndexBinaryMultiHash(64, nhash, 64 // nhash)
    _, build_s = timed(lambda: index.add(as_bytes(codes)))
    rows = []
    for radius, all_queries in run.queries.items():
        # Exact by the pigeonhole bound: some table differs in at most floor(r / nhash) bits.
        index.nflip = radius // nhash
        queries = all_queries[: run.n_brute]  # it can be slow: the scan's queries only
        packed = as_bytes(queries)

        def search(packed: NDArray[np.uint8] = packed, radius: int = radius) -> tuple[Any, ...]:
            # faiss's binary range search keeps distances strictly below its radius.
            return tuple(index.range_search(packed, radius + 1))

        (lims, _, labels), secs = best_of(min(repeat, 2), search)
        qi = np.repeat(np.arange(queries.shape[0]), np.diff(lims).astype(np.int64))
        dist = np.bitwise_count(codes[labels] ^ queries[qi]).astype(np.uint8)
        order = np.lexsort((ids[labels], dist, qi))
        got = SearchResult(qi[order], ids[labels][order], dist[order])
        rows.append(
            Row(
                f"faiss MultiHash m={nhash}",
                radius,
                build_s,
                0,
                queries.shape[0] / secs,
                run.brute_qps[radius],
                len(got) / queries.shape[0],
                run.n_brute,
                same(got, run.brute[radius]),
            )
        )
    return rows


def bench_index(
    codes: NDArray[np.uint64],
    ids: NDArray[np.int64],
    run: Run,
    substrings: int | None,
    args: argparse.Namespace,
    rng: np.random.Generator,
) -> tuple[list[Row], list[str]]:
    """Rows of one index configuration, and notes on single queries and additions."""
    size = codes.shape[0]
    index, build_s = timed(lambda: HammingIndex.build(codes, ids, substrings=substrings))
    label = f"HammingIndex m={index.substrings}" + (" (auto)" if substrings is None else "")
    rows, notes = [], []
    for r in args.radius:
        queries = run.queries[r]

        def search(queries: NDArray[np.uint64] = queries, r: int = r) -> SearchResult:
            return index.search(queries, r)

        search()  # warm up: flip tables, caches
        best, brute_qps = float("inf"), 0.0
        result = SearchResult(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8))
        for _ in range(args.repeat):
            # Interleaved with the scan, so both see the same machine load.
            result, secs = timed(search)
            best = min(best, secs)
            brute_qps = max(brute_qps, measure_brute(codes, ids, run, r))
        rows.append(
            Row(
                label,
                r,
                build_s,
                index.nbytes,
                args.queries / best,
                brute_qps,
                len(result) / args.queries,
                run.n_brute,
                same(prefix(result, run.n_brute), run.brute[r]),
            )
        )
    # One query per call, as the matcher's identify() makes them, beside the scan's calls.
    r = max(args.radius)
    singles = run.queries[r][: min(200, run.n_brute)]
    index_s, brute_s = float("inf"), float("inf")
    for _ in range(args.repeat):
        _, secs = timed(lambda: [index.search(q[None], r) for q in singles])
        index_s = min(index_s, secs / singles.shape[0])
        _, secs = timed(lambda: [brute_force_search(codes, ids, q[None], r) for q in singles])
        brute_s = min(brute_s, secs / singles.shape[0])
    notes.append(
        f"{label}: one query per call at r={r}: {index_s * 1e6:,.0f} us per call, brute force "
        f"{brute_s * 1e6:,.0f} us per call: {ratio_text(brute_s / index_s)}"
    )
    # Freshness under a trickle of additions: a few hundred codes per call.
    new_codes = reference_codes(rng, args.adds * ADD_BATCH)
    times = []
    for k in range(args.adds):
        batch = new_codes[k * ADD_BATCH : (k + 1) * ADD_BATCH]
        new_ids = np.arange(ADD_BATCH, dtype=np.int64) + size + k * ADD_BATCH
        t0 = time.perf_counter()
        index.add(batch, new_ids)
        times.append(time.perf_counter() - t0)
    found = index.search(new_codes, 0)
    fresh = bool(np.isin(np.arange(args.adds * ADD_BATCH) + size, found.ids).all())
    notes.append(
        f"{label}: add() of {ADD_BATCH} codes, {args.adds} calls: median "
        f"{np.median(times) * 1e3:.2f} ms, mean {np.mean(times) * 1e3:.1f} ms, max "
        f"{np.max(times) * 1e3:.0f} ms (merges into the tables included); every added code "
        f"found right after: {'yes' if fresh else 'NO'}"
    )
    return rows, notes


def ratio_text(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.2f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="reference codes")
    parser.add_argument("--ten-million", action="store_true", help="same as --size 10000000")
    parser.add_argument("--queries", type=int, default=2000, help="queries per radius")
    parser.add_argument("--radius", type=int, nargs="+", default=[8, 10, 12])
    parser.add_argument(
        "--substrings",
        nargs="+",
        default=["auto"],
        help="numbers of substrings to compare; auto: the index chooses (default)",
    )
    parser.add_argument(
        "--brute-queries",
        type=int,
        default=0,
        help="queries the brute-force scan runs (default: about 2e9 / size, at most --queries)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is kept")
    parser.add_argument("--adds", type=int, default=60, help="add() calls of 300 codes timed")
    parser.add_argument("--faiss", action="store_true", help="also time faiss IndexBinaryMultiHash")
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args(argv)
    size = 10_000_000 if args.ten_million else args.size
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    codes = reference_codes(rng, size)
    gen_s = time.perf_counter() - t0
    ids = np.arange(size, dtype=np.int64)
    n_brute = args.brute_queries or max(20, int(2e9 / max(size, 1)))
    run = Run(
        queries={r: make_queries(rng, codes, args.queries, r) for r in args.radius},
        brute={},
        brute_qps={},
        n_brute=min(n_brute, args.queries),
    )
    top_bit = float(np.mean(codes >> np.uint64(63)))
    print(
        f"{size:,} reference codes made in {gen_s:.0f} s (pHash-like, top bit set in "
        f"{top_bit:.1%}, {CLUSTER_SHARE:.0%} in near-duplicate clusters); "
        f"{args.queries} queries per radius ({COPY_SHARE:.0%} noisy copies); brute force on "
        f"the first {run.n_brute}; best of {args.repeat}; numpy {np.__version__}, one core"
    )

    rows: list[Row] = []
    notes: list[str] = []
    for choice in args.substrings:
        m = None if choice == "auto" else int(choice)
        more_rows, more_notes = bench_index(codes, ids, run, m, args, rng)
        rows += more_rows
        notes += more_notes
        gc.collect()

    if args.faiss:
        rows += faiss_rows(codes, ids, run, args.repeat)

    header = (
        f"{'method':<26} {'r':>3} {'build s':>8} {'MiB':>6} {'B/code':>7} "
        f"{'index q/s':>10} {'brute q/s':>10} {'ratio':>8} {'hits/q':>7} {'identical':>13}"
    )
    print()
    print(header)
    print("-" * len(header))
    ok = True
    for row in rows:
        ok &= row.identical
        mem = (
            f"{row.nbytes / 2**20:6.0f} {row.nbytes / size:7.1f}"
            if row.nbytes
            else f"{'-':>6} {'-':>7}"
        )
        print(
            f"{row.method:<26} {row.radius:>3} {row.build_s:>8.1f} {mem} "
            f"{row.index_qps:>10,.0f} {row.brute_qps:>10,.1f} "
            f"{ratio_text(row.index_qps / row.brute_qps):>8} {row.hits_per_query:>7.1f} "
            f"{('yes' if row.identical else 'NO'):>5} ({row.checked:,} q)"
        )
    print()
    for note in notes:
        print(note)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak resident memory of this process: {peak:.1f} GiB")
    assert ok, "index and brute force disagree"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
