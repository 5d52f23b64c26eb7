"""Exact Hamming-radius search over 64-bit perceptual hashes, in memory, in plain numpy.

``HammingIndex.search(queries, r)`` returns every reference code within ``r`` bits of each query:
the same hits, distances and order as ``brute_force_search``, far faster on large sets.

How: multi-index hashing (Norouzi, Punjani and Fleet, "Fast search in Hamming space with
multi-index hashing", CVPR 2012). The 64 bits are cut into ``m`` disjoint substrings of
``b = 64 / m`` bits. Each substring has a table: every code, rotated so that its substring sits
in the top bits, sorted; each substring value is then one contiguous bucket, found by one lookup
in a per-value array of (start, count) or, while the table is sparse, by binary search. A search
gives table ``j`` a radius ``s_j`` (``-1``: skipped), looks up every bucket whose substring value
is within ``s_j`` bits of the query's, and checks the full 64-bit distance of every code in it.

Why the result is exact: a code at distance ``d <= r`` from the query differs in ``d_j`` bits on
substring ``j``, with ``sum(d_j) = d``. The radii always satisfy ``sum(s_j + 1) = r + 1`` (or
some table enumerates all its values). If ``d_j > s_j`` for every ``j``, then
``d >= sum(s_j + 1) = r + 1``, a contradiction; so some table has ``d_j <= s_j``, its probes
enumerate every value within ``s_j`` bits of the query's substring, and one of them is the code's
bucket. With equal radii this is the pigeonhole bound ``floor(r / m)`` of the paper; uneven radii
are the same argument and cost fewer probes (for ``r = q * m + a``, ``a + 1`` tables need radius
``q`` and the other ``m - a - 1`` only ``q - 1``). Every candidate is
checked on all 64 bits, so nothing farther than ``r`` comes back. A code reachable from several
tables is kept only by the first of them, decided from its own bits (the lowest ``j`` with
``d_j <= s_j``), so each stored entry comes back once, as in a scan. Codes added since the last
merge sit in a small delta buffer that is scanned. The tests check equality with the scan on
random, clustered and duplicate-heavy data, at radii 0 to 16, after any sequence of additions.

How radius maps to probes: table ``j`` at radius ``s`` costs ``sum(C(b, k) for k <= s)`` bucket
lookups plus the codes in those buckets; each table knows its cost per lookup from its own bucket
sizes (``_probe_cost``). ``_plan`` hands out the ``r + 1`` units one at a time to the table where
the next one costs least, which minimises the modelled total because each table's cost grows
ever faster with its radius; ``search`` scans instead when that is modelled cheaper (a small
index, a single query on a small index, a huge radius). Example, m = 3 at 10M codes: r = 8 probes
radii (2, 2, 2), 3 x ~250 lookups; r = 10 (3, 3, 2), ~3,400; r = 12 (4, 3, 3), ~11,000.

How many substrings: ``substrings=None`` (the default) picks ``m`` in 3..6 from the codes
themselves by the same cost model at radii 8, 10 and 12 (``_choose_substrings``), and picks again
whenever the index has doubled. Measured on pHash-like codes (bench/matching_speed.py): m = 4 is
fastest at 1M codes, m = 3 at 10M (about twice as fast there as m = 4), m = 5-6 below ~300K.
Reading a bucket's first codes is one gather of a ``lanes``-wide window (a record view over the
sorted codes), several codes at the price of about one; larger buckets finish on a slower path.
All tables live in one array, so each step of a search is one numpy call for every table at once:
the fixed cost of a call matters when a search has a single query.

Memory per table: 8 bytes per code (the rotated code), 4 bytes (its entry's position, int32
below 2**31 entries), and 8 bytes per substring value for the (start, count) array once the table
is dense enough; plus 8 bytes per code for its id. For 10M codes: ``m = 3`` (21, 21 and 22-bit
substrings) 360 + 80 + 64 MB = about 480 MiB (51 bytes per code); ``m = 4``: 480 + 80 + 2 MB =
about 536 MiB (56 bytes per code). ``nbytes`` reports the exact figure.

Additions are cheap: ``add`` appends to the delta buffer, and once that holds more than
``delta_limit`` codes (or an eighth of the tables) merges it in one linear pass per table (sorted
insertion, no re-sort of existing codes). Nothing is modified in place: ``add`` builds the new
state and swaps it in, so a search in another thread sees the old contents or the new, whole.
"""

from __future__ import annotations

import math
import operator
import threading
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal, SupportsIndex

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["HammingIndex", "SearchResult", "brute_force_search"]

U64 = np.uint64
_ALL = (1 << 64) - 1

# Bounds on temporary arrays (elements), so a batch of any size runs in bounded memory.
_PROBE_BLOCK = 1 << 18
_CANDIDATE_BLOCK = 1 << 20
_SCAN_BLOCK = 1 << 16

Strategy = Literal["auto", "probe", "scan"]


@dataclass(frozen=True)
class SearchResult:
    """All hits of a batch of queries, sorted by (query, distance, id).

    One hit per stored (code, id) entry within the radius: duplicate entries give duplicate hits.
    """

    query: NDArray[np.int64]  # position of the query in the input array
    ids: NDArray[np.int64]  # reference id of each hit
    distances: NDArray[np.uint8]  # Hamming distance of each hit

    def __len__(self) -> int:
        return int(self.query.shape[0])


# --- bit tools ---------------------------------------------------------------------------------


_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount_table(
    x: NDArray[np.uint64], out: NDArray[np.uint8] | None = None
) -> NDArray[np.uint8]:
    """Popcount for numpy < 2 (no ``bitwise_count``): the eight bytes through a lookup table."""
    by_byte = _BYTE_POPCOUNT[np.ascontiguousarray(x).view(np.uint8)].reshape(*x.shape, 8)
    counts: NDArray[np.uint8] = np.add.reduce(by_byte, axis=-1, dtype=np.uint8, out=out)
    return counts


def popcount(x: NDArray[np.uint64], out: NDArray[np.uint8] | None = None) -> NDArray[np.uint8]:
    """Number of set bits of each element."""
    if _HAS_BITWISE_COUNT:
        return np.bitwise_count(x, out=out)  # type: ignore[no-any-return,unused-ignore]
    return _popcount_table(x, out)  # pragma: no cover - numpy < 2


_HAS_BITWISE_COUNT = hasattr(np, "bitwise_count")


def _rotl(x: NDArray[np.uint64], k: int) -> NDArray[np.uint64]:
    if k % 64 == 0:
        return x
    return (x << U64(k)) | (x >> U64(64 - k))


def _rotl_int(x: int, k: int) -> int:
    k %= 64
    return ((x << k) | (x >> (64 - k))) & _ALL


def _ball(bits: int, radius: int) -> int:
    """Number of ``bits``-bit values within ``radius`` bits of a given one."""
    return sum(math.comb(bits, k) for k in range(min(radius, bits) + 1))


# Most substring values one table's probes may enumerate per query (8 bytes each).
_MAX_FLIPS = 1 << 22


@lru_cache(maxsize=64)
def _flips(bits: int, radius: int) -> NDArray[np.int64]:
    """Every ``bits``-bit mask of at most ``radius`` set bits, each once."""
    levels = [np.zeros(1, dtype=np.int64)]
    top = [np.full(1, -1, dtype=np.int64)]  # highest set bit of each mask
    for _ in range(min(radius, bits)):
        # Growing each mask only above its highest bit builds each combination exactly once.
        masks, highs = [], []
        prev, prev_top = levels[-1], top[-1]
        for bit in range(bits):
            grow = prev[prev_top < bit]
            masks.append(grow | (1 << bit))
            highs.append(np.full(grow.shape[0], bit, dtype=np.int64))
        levels.append(np.concatenate(masks))
        top.append(np.concatenate(highs))
    out = np.concatenate(levels)
    out.setflags(write=False)
    return out


# --- input checks ------------------------------------------------------------------------------


def _as_codes(codes: ArrayLike, name: str) -> NDArray[np.uint64]:
    if isinstance(codes, list | tuple):
        # numpy would turn a list mixing values above 2**63 with small ones into floats.
        if not all(isinstance(v, int | np.integer) for v in codes):
            raise TypeError(f"{name} must be integers")
        if not all(-(2**63) <= v <= _ALL for v in codes):
            raise ValueError(f"{name} must fit in 64 bits")
        return np.array([int(v) & _ALL for v in codes], dtype=np.uint64)
    arr = np.asarray(codes)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype == np.uint64:
        return arr
    if arr.dtype == np.int64:
        # PostgreSQL's bigint holds a hash as two's complement: same bits, same distances.
        return arr.view(np.uint64)
    if arr.size == 0:
        return np.zeros(0, dtype=np.uint64)
    if arr.dtype.kind in "iu" and int(arr.min()) >= 0:
        return arr.astype(np.uint64)
    raise TypeError(f"{name} must be uint64 (or int64 bit patterns), got {arr.dtype}")


def _as_ids(ids: ArrayLike, n: int) -> NDArray[np.int64]:
    arr = np.asarray(ids)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"ids must be one-dimensional with one id per code ({n}), got {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"ids must be integers, got {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError("ids must fit in int64")
    return arr.astype(np.int64, copy=False)


def _as_radius(radius: SupportsIndex) -> int:
    r = operator.index(radius)
    if r < 0:
        raise ValueError(f"radius must be >= 0, got {r}")
    return min(r, 64)


# --- scanning (the baseline, and the delta buffer) ---------------------------------------------


def _scan(
    codes: NDArray[np.uint64], queries: NDArray[np.uint64], radius: int
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.uint8]]:
    """(query, code position, distance) of every pair within ``radius``, in blocks."""
    n, nq = codes.shape[0], queries.shape[0]
    if n == 0 or nq == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0, np.uint8)
    # Blocks of ~64K pairs (rows: queries, columns: codes) stay in cache, and reusing the same
    # output buffers saves an allocation per step: together ~1.5x faster than one pass over all
    # codes per query (measured, numpy 2 on x86-64).
    width = min(n, _SCAN_BLOCK)
    rows = min(nq, max(1, _SCAN_BLOCK // width))
    xor_buf = np.empty((rows, width), dtype=np.uint64)
    dist_buf = np.empty((rows, width), dtype=np.uint8)
    near_buf = np.empty((rows, width), dtype=np.bool_)
    qs, cs, ds = [], [], []
    for q0 in range(0, nq, rows):
        block_q = queries[q0 : q0 + rows, None]
        for c0 in range(0, n, width):
            block_c = codes[None, c0 : c0 + width]
            shape = (block_q.shape[0], block_c.shape[1])
            x = xor_buf[: shape[0], : shape[1]]
            dist = dist_buf[: shape[0], : shape[1]]
            near = near_buf[: shape[0], : shape[1]]
            np.bitwise_xor(block_q, block_c, out=x)
            popcount(x, out=dist)
            np.less_equal(dist, radius, out=near)
            flat = np.flatnonzero(near)
            if flat.size:
                qi, ci = np.divmod(flat, shape[1])
                qs.append(qi + q0)
                cs.append(ci + c0)
                ds.append(dist[qi, ci])
    if not qs:
        return np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0, np.uint8)
    return np.concatenate(qs), np.concatenate(cs), np.concatenate(ds)


def _result(
    query: NDArray[np.integer], ids: NDArray[np.int64], distances: NDArray[np.uint8]
) -> SearchResult:
    order = np.lexsort((ids, distances, query))
    return SearchResult(
        query=query[order].astype(np.int64),
        ids=ids[order],
        distances=distances[order].astype(np.uint8),
    )


def brute_force_search(
    codes: ArrayLike, ids: ArrayLike, queries: ArrayLike, radius: SupportsIndex
) -> SearchResult:
    """Every (query, code) pair within ``radius`` bits, by scanning all codes for every query.

    The reference answer for ``HammingIndex.search``: vectorised XOR and popcount in blocks of
    about 64K pairs (cache-sized, and memory stays bounded for any input size).
    """
    c = _as_codes(codes, "codes")
    i = _as_ids(ids, c.shape[0])
    q = _as_codes(queries, "queries")
    qi, ci, d = _scan(c, q, _as_radius(radius))
    return _result(qi, i[ci], d)


# --- tables ------------------------------------------------------------------------------------

_LANE_CHOICES = (1, 2, 4, 8, 16, 32)
_PAD = _LANE_CHOICES[-1]  # spare entries after each table's codes, so any window can be read


@dataclass(frozen=True)
class _Table:
    """One substring's view of the codes: its rows of ``_State.codes`` hold every code rotated so
    the substring is on top, sorted, so substring value k is the bucket of rows
    ``base + lo(k) .. base + lo(k) + count(k) - 1``.
    """

    bits: int
    rotate: int  # left rotation that brings the substring to the top bits
    base: int  # first row of this table in _State.codes and _State.pos
    # Direct lookup: lo(k) | count(k) << 32 for every substring value k, one gather per probe.
    # None: binary search (substrings too wide for a 2**bits array to pay).
    bounds: NDArray[np.int64] | None
    probe_ns: float  # estimated cost of one probe, for the planner

    def keys(self, rotated: NDArray[np.uint64]) -> NDArray[np.int64]:
        return (rotated >> U64(64 - self.bits)).astype(np.int64)


@dataclass(frozen=True)
class _State:
    """Everything a search reads; replaced whole by add(), never changed (but for ``plans``)."""

    tables: tuple[_Table, ...]
    # All tables' rows in one array (table j from tables[j].base, size rows then _PAD spare), so
    # one gather serves the probes of every table: a search pays numpy's per-call overhead once,
    # not once per table, which matters for single queries.
    codes: NDArray[np.uint64]
    pos: NDArray[np.signedinteger]  # each row's entry: its position in ``ids``
    lanes: int  # codes read per probe in one go; the rest of a larger bucket takes a slower path
    ids: NDArray[np.int64]  # id of each entry of the tables
    delta_codes: NDArray[np.uint64]  # added since the last merge; scanned
    delta_ids: NDArray[np.int64]
    chosen_at: int = 0  # size when the number of substrings was last chosen
    plans: dict[int, tuple[list[int], float, bool]] = field(default_factory=dict, compare=False)

    @property
    def size(self) -> int:
        return int(self.ids.shape[0])

    @property
    def nbytes(self) -> int:
        bounds = sum(t.bounds.nbytes for t in self.tables if t.bounds is not None)
        arrays = (self.codes, self.pos, self.ids, self.delta_codes, self.delta_ids)
        return bounds + sum(a.nbytes for a in arrays)

    def rows(self, table: _Table) -> NDArray[np.uint64]:
        """The table's rotated codes, ascending."""
        return self.codes[table.base : table.base + self.size]

    def windows(self) -> NDArray[np.void]:
        """``windows()[i]`` is ``codes[i : i + lanes]`` as one record, without a copy.

        Gathering one record per probe moves a bucket's first codes at about the cost of one
        code: 3-4x cheaper per code than gathering by an index array of every position.
        """
        return np.ndarray(
            shape=(self.codes.shape[0] - self.lanes + 1,),
            dtype=np.dtype((np.void, 8 * self.lanes)),
            buffer=self.codes,
            strides=(8,),
        )

    def buckets(
        self, table: _Table, keys: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(first row, number of rows) of the bucket of each substring value."""
        if table.bounds is not None:
            packed = table.bounds[keys]
            return (packed & 0xFFFF_FFFF) + table.base, packed >> 32
        top = U64(64 - table.bits)
        first = keys.astype(np.uint64) << top
        last = first | U64((1 << (64 - table.bits)) - 1)
        rows = self.rows(table)
        lo = np.searchsorted(rows, first, side="left")
        hi = np.searchsorted(rows, last, side="right")
        return lo.astype(np.int64) + table.base, (hi - lo).astype(np.int64)

    def plan(self, radius: int) -> tuple[list[int], float, bool]:
        """Per-table radii for ``radius``, their estimated cost per query, and whether no table
        would enumerate more than _MAX_FLIPS values (memoised: a search reuses it)."""
        if radius not in self.plans:
            radii, cost = _plan([(t.bits, t.probe_ns) for t in self.tables], radius)
            feasible = all(
                _ball(t.bits, s) <= _MAX_FLIPS for t, s in zip(self.tables, radii, strict=True)
            )
            self.plans[radius] = (radii, cost, feasible)
        return self.plans[radius]

    def original_codes(self) -> NDArray[np.uint64]:
        """The tables' codes, unrotated, in entry order."""
        t = self.tables[0]
        out = np.empty(self.size, dtype=np.uint64)
        out[self.pos[t.base : t.base + self.size]] = _rotl(self.rows(t), 64 - t.rotate)
        return out


# Cost model (nanoseconds, one core), fitted with bench/matching_speed.py on numpy 2 / x86-64.
_NS_PROBE = 20.0  # a direct bucket lookup
_NS_SEARCH_LEVEL = 16.0  # per level of a binary search, both ends of the bucket
_NS_LANE = 2.0  # reading and checking one lane of a probe's window
_NS_TAIL_CODE = 5.5  # checking one code past a bucket's window
_NS_TAIL_BUCKET = 50.0  # setting up the overflow of a bucket larger than the window
_NS_SCAN = 1.0  # one (query, code) pair of a scan
_NS_CALL = 60_000.0  # fixed cost of a probing pass over a batch (a few dozen numpy calls)
_NS_TABLE_CALL = 10_000.0  # and of each table in it


def _probe_cost(sizes: NDArray[np.int64], bits: int, size: int, direct: bool, lanes: int) -> float:
    """Expected cost of a probe of a uniformly random substring value of a table whose non-empty
    buckets have ``sizes``."""
    n_buckets = 1 << bits
    cost = _NS_PROBE if direct else _NS_SEARCH_LEVEL * max(1, size.bit_length())
    over = sizes[sizes > lanes]
    n_over = int(over.shape[0])
    cost += _NS_LANE * lanes
    cost += _NS_TAIL_CODE * float(over.sum() - lanes * n_over) / n_buckets
    cost += _NS_TAIL_BUCKET * n_over / n_buckets
    return float(cost)


def _direct(bits: int, size: int) -> bool:
    # A 2**bits lookup array (8 bytes a value) pays while it is at most ~64 bytes per code; its
    # packed (start, count) pairs hold 32 bits each.
    fits = size < 2**32
    return fits and bits <= _DIRECT_MAX_BITS and (1 << bits) <= _DIRECT_FILL * max(size, 1)


_DIRECT_MAX_BITS = 24
_DIRECT_FILL = 8


def _bucket_sizes(keys: NDArray[np.uint64], bits: int, direct: bool) -> NDArray[np.int64]:
    """Bucket sizes of ``keys`` (sorted if not ``direct``): every value's if ``direct``, else the
    non-empty ones'."""
    if direct:
        return np.bincount(keys.astype(np.intp), minlength=1 << bits).astype(np.int64)
    if keys.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    return np.diff(np.concatenate([[0], edges, [keys.shape[0]]])).astype(np.int64)


def _layout(substrings: int) -> list[tuple[int, int]]:
    """(bits, left rotation) of each substring, the wider ones on top.

    pHash's top bit (the DC term) is nearly always set, so the top substring has one bit less
    information than its width: that is where an extra bit helps most.
    """
    base, wide = divmod(64, substrings)
    widths = [base] * (substrings - wide) + [base + 1] * wide
    out, low = [], 0  # substring j covers bits [low, low + bits), counted from the lowest
    for bits in widths:
        out.append((bits, (64 - low - bits) % 64))
        low += bits
    return out


def _pos_type(total: int) -> type[np.signedinteger]:
    return np.int32 if total <= np.iinfo(np.int32).max else np.int64


def _build(
    layout: list[tuple[int, int]],
    old: _State | None,
    codes: NDArray[np.uint64],
    ids: NDArray[np.int64],
    chosen_at: int,
) -> _State:
    """``old`` (or nothing) with ``codes`` added to its tables as new entries, delta emptied."""
    n_old = 0 if old is None else old.size
    n_new = codes.shape[0]
    size = n_old + n_new
    stride = size + _PAD
    pos_type = _pos_type(size)
    all_codes = np.zeros(stride * len(layout), dtype=np.uint64)
    all_pos = np.zeros(stride * len(layout), dtype=pos_type)
    counts: list[NDArray[np.int64]] = []
    for j, (bits, rotate) in enumerate(layout):
        rotated = _rotl(codes, rotate)
        order = np.argsort(rotated)
        new_codes = rotated[order]
        new_pos = (order + n_old).astype(pos_type)
        out_codes = all_codes[j * stride : j * stride + size]
        out_pos = all_pos[j * stride : j * stride + size]
        direct = _direct(bits, size)
        if old is None:
            out_codes[:] = new_codes
            out_pos[:] = new_pos
            counts.append(_bucket_sizes(new_codes >> U64(64 - bits), bits, direct))
            continue
        table = old.tables[j]
        old_codes = old.rows(table)
        # Sorted insertion: one linear pass over the old table, no re-sort of what was there.
        dest = np.searchsorted(old_codes, new_codes, side="right") + np.arange(n_new)
        is_old = np.ones(size, dtype=bool)
        is_old[dest] = False
        out_codes[is_old] = old_codes
        out_codes[dest] = new_codes
        out_pos[is_old] = old.pos[table.base : table.base + n_old]
        out_pos[dest] = new_pos
        if direct and table.bounds is not None:
            added = np.bincount((new_codes >> U64(64 - bits)).astype(np.intp), minlength=1 << bits)
            counts.append((table.bounds >> 32) + added)
        else:
            counts.append(_bucket_sizes(out_codes >> U64(64 - bits), bits, direct))
    # One window width for all tables (one gather serves them all): the cheapest in total.
    directs = [_direct(bits, size) for bits, _ in layout]
    sizes = [c[c > 0] for c in counts]

    def cost(lanes: int) -> float:
        return sum(
            _probe_cost(s, bits, size, d, lanes)
            for s, (bits, _), d in zip(sizes, layout, directs, strict=True)
        )

    lanes = min(_LANE_CHOICES, key=cost)
    tables = []
    for j, ((bits, rotate), c, s, d) in enumerate(zip(layout, counts, sizes, directs, strict=True)):
        bounds = ((np.cumsum(c) - c) | (c << 32)) if d else None
        tables.append(
            _Table(bits, rotate, j * stride, bounds, _probe_cost(s, bits, size, d, lanes))
        )
    all_ids = ids if old is None else np.concatenate([old.ids, ids])
    empty = np.zeros(0, dtype=np.uint64)
    return _State(
        tuple(tables), all_codes, all_pos, lanes, all_ids, empty, np.zeros(0, np.int64), chosen_at
    )


def _empty_state(substrings: int) -> _State:
    return _build(
        _layout(substrings), None, np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64), 0
    )


# Radii at which the automatic choice of substrings is judged: pHash's operating range.
_DESIGN_RADII = (8, 10, 12)
_AUTO_SUBSTRINGS = (3, 4, 5, 6)
_AUTO_MIN_SIZE = 1024  # below this a scan wins whatever the layout


def _choose_substrings(codes: NDArray[np.uint64]) -> int:
    """The number of substrings with the least modelled search cost on these very codes.

    Measured (bench/matching_speed.py, pHash-like codes, radius 10): m = 4 is fastest at 1M codes
    and m = 3 at 10M, about twice as fast there as m = 4; the model finds the same.
    """
    n = codes.shape[0]
    best, best_cost = 4, math.inf
    for m in _AUTO_SUBSTRINGS:
        layout = _layout(m)
        sizes = []
        for bits, rotate in layout:
            keys = _rotl(codes, rotate) >> U64(64 - bits)
            direct = _direct(bits, n)
            counts = _bucket_sizes(keys if direct else np.sort(keys), bits, direct)
            sizes.append((bits, direct, counts[counts > 0]))
        for lanes in _LANE_CHOICES:
            costs = [(bits, _probe_cost(s, bits, n, d, lanes)) for bits, d, s in sizes]
            cost = sum(_plan(costs, r)[1] for r in _DESIGN_RADII)
            if cost < best_cost:
                best, best_cost = m, cost
    return best


def _merge(state: _State, codes: NDArray[np.uint64], ids: NDArray[np.int64], auto: bool) -> _State:
    """``state`` with ``codes`` in its tables and an empty delta buffer."""
    total = state.size + codes.shape[0]
    layout = [(t.bits, t.rotate) for t in state.tables]
    if auto and total >= _AUTO_MIN_SIZE and total >= 2 * state.chosen_at:
        # Re-chosen each time the index doubles: O(n) work then, amortised O(1) per code.
        all_codes = np.concatenate([state.original_codes(), codes])
        m = _choose_substrings(all_codes)
        if m != len(layout):
            return _build(_layout(m), None, all_codes, np.concatenate([state.ids, ids]), total)
        return _build(layout, state, codes, ids, total)
    return _build(layout, state, codes, ids, state.chosen_at)


# --- the index ---------------------------------------------------------------------------------


class HammingIndex:
    """All reference codes within Hamming distance r of each query, exactly (same result as brute
    force), far faster.

    ``substrings`` is the number of tables ``m`` (2 to 32), or None to let the index choose it
    from its contents (re-chosen whenever its size doubles). ``delta_limit`` bounds the buffer of
    recent additions that is scanned rather than indexed.
    """

    def __init__(self, *, substrings: int | None = None, delta_limit: int = 8192) -> None:
        if substrings is not None and not 2 <= substrings <= 32:
            raise ValueError(f"substrings must be between 2 and 32, got {substrings}")
        if delta_limit < 0:
            raise ValueError(f"delta_limit must be >= 0, got {delta_limit}")
        self._auto = substrings is None
        self._delta_limit = delta_limit
        self._lock = threading.Lock()
        self._state = _empty_state(4 if substrings is None else substrings)

    @classmethod
    def build(
        cls,
        codes: ArrayLike,
        ids: ArrayLike,
        *,
        substrings: int | None = None,
        delta_limit: int = 8192,
    ) -> HammingIndex:
        """An index of ``codes`` (one id each), fully merged."""
        index = cls(substrings=substrings, delta_limit=delta_limit)
        index.add(codes, ids)
        index.merge()
        return index

    @property
    def substrings(self) -> int:
        """The number of substrings (tables) in use now."""
        return len(self._state.tables)

    def __len__(self) -> int:
        state = self._state
        return state.size + int(state.delta_codes.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's arrays."""
        return self._state.nbytes

    def add(self, codes: ArrayLike, ids: ArrayLike) -> None:
        """Add codes with their ids; searchable as soon as this returns.

        Duplicate codes and duplicate ids are kept as separate entries. Cheap for a few hundred
        codes: they go to the delta buffer, merged into the tables once it outgrows
        ``delta_limit`` or an eighth of the index.
        """
        c = _as_codes(codes, "codes")
        i = _as_ids(ids, c.shape[0])
        if c.shape[0] == 0:
            return
        with self._lock:
            state = self._state
            delta_codes = np.concatenate([state.delta_codes, c])
            delta_ids = np.concatenate([state.delta_ids, i])
            if delta_codes.shape[0] > min(self._delta_limit, state.size // 8):
                self._state = _merge(state, delta_codes, delta_ids, self._auto)
            else:
                self._state = replace(state, delta_codes=delta_codes, delta_ids=delta_ids)

    def merge(self) -> None:
        """Move the delta buffer into the tables now."""
        with self._lock:
            state = self._state
            if state.delta_codes.shape[0]:
                self._state = _merge(state, state.delta_codes, state.delta_ids, self._auto)

    def search(
        self, queries: ArrayLike, radius: SupportsIndex, *, strategy: Strategy = "auto"
    ) -> SearchResult:
        """Every indexed entry within ``radius`` bits of each query, sorted by (query, distance,
        id): exactly what ``brute_force_search`` returns on the same entries.

        ``strategy`` only changes the speed: ``"auto"`` picks by the cost model, ``"probe"``
        forces the multi-index lookups (unless a table would have to enumerate more than
        ``_MAX_FLIPS`` substring values), ``"scan"`` the exhaustive scan.
        """
        q = _as_codes(queries, "queries")
        r = _as_radius(radius)
        state = self._state  # one consistent snapshot, whatever add() does meanwhile
        parts_q: list[NDArray[np.intp]] = []
        parts_id: list[NDArray[np.int64]] = []
        parts_d: list[NDArray[np.uint8]] = []
        if state.size and q.shape[0]:
            radii, per_query, feasible = state.plan(r)
            n_probed = sum(s >= 0 for s in radii)
            probe_ns = per_query * q.shape[0] + _NS_CALL + _NS_TABLE_CALL * n_probed
            scan_ns = _NS_SCAN * state.size * q.shape[0]
            if strategy == "scan" or not feasible or (strategy == "auto" and probe_ns >= scan_ns):
                t0 = state.tables[0]
                qi, row, d = _scan(state.rows(t0), _rotl(q, t0.rotate), r)
                pos = state.pos[row + t0.base]
            else:
                qi, pos, d = _probe(state, q, r, radii)
            parts_q.append(qi)
            parts_id.append(state.ids[pos])
            parts_d.append(d)
        if state.delta_codes.shape[0] and q.shape[0]:
            qi, ci, d = _scan(state.delta_codes, q, r)
            parts_q.append(qi)
            parts_id.append(state.delta_ids[ci])
            parts_d.append(d)
        if not parts_q:
            return _result(np.zeros(0, np.intp), np.zeros(0, np.int64), np.zeros(0, np.uint8))
        return _result(np.concatenate(parts_q), np.concatenate(parts_id), np.concatenate(parts_d))


# --- probing -----------------------------------------------------------------------------------


def _plan(tables: list[tuple[int, float]], radius: int) -> tuple[list[int], float]:
    """Per-table radii s_j with sum(s_j + 1) = radius + 1, of least estimated cost, and that cost.

    A table's cost is its number of probes (the ball of radius s_j in its bits) times its cost
    per probe; the ball grows ever faster with s_j, so handing out the radius + 1 units one at a
    time, each to the table where it adds least, gives the least total.
    """
    radii = [-1] * len(tables)
    total = 0.0
    for _ in range(radius + 1):
        best, best_step = -1, math.inf
        for j, (bits, probe_ns) in enumerate(tables):
            if radii[j] >= bits:  # this table already enumerates every value
                continue
            step = probe_ns * math.comb(bits, radii[j] + 1)
            if step < best_step:
                best, best_step = j, step
        if best < 0:
            break  # every table enumerates everything: the bound holds trivially
        radii[best] += 1
        total += best_step
    return radii, total


def _substring_mask(table: _Table, frame: _Table) -> int:
    """``table``'s substring bits, as they sit in ``frame``'s rotation."""
    low = (64 - table.rotate - table.bits) % 64
    return _rotl_int(((1 << table.bits) - 1) << low, frame.rotate)


def _probe(
    state: _State, queries: NDArray[np.uint64], radius: int, radii: list[int]
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.uint8]]:
    """(query, entry position, distance) of every entry within ``radius``, each pair once."""
    active = [(t, s) for t, s in zip(state.tables, radii, strict=True) if s >= 0]
    flips = [_flips(t.bits, s) for t, s in active]
    # A pair is reported by the first table whose probes reach it. earlier[c][i]: table i's
    # substring in table c's rotation, for every active i before c, with i's radius.
    earlier = np.zeros((len(active), len(active)), dtype=np.uint64)
    for c, (frame, _) in enumerate(active):
        for i, (table, _) in enumerate(active[:c]):
            earlier[c, i] = _substring_mask(table, frame)
    sub_radii = np.array([s for _, s in active])
    per_query = sum(f.shape[0] for f in flips)
    rows = max(1, _PROBE_BLOCK // (per_query * state.lanes))
    windows = state.windows()
    qs: list[NDArray[np.intp]] = []
    ps: list[NDArray[np.intp]] = []
    ds: list[NDArray[np.uint8]] = []
    for q0 in range(0, queries.shape[0], rows):
        qi, row, d = _probe_block(
            state, windows, queries[q0 : q0 + rows], active, flips, earlier, sub_radii, radius
        )
        qs.append(qi + q0)
        ps.append(state.pos[row].astype(np.intp))
        ds.append(d)
    return np.concatenate(qs), np.concatenate(ps), np.concatenate(ds)


def _probe_block(
    state: _State,
    windows: NDArray[np.void],
    queries: NDArray[np.uint64],
    active: list[tuple[_Table, int]],
    flips: list[NDArray[np.int64]],
    earlier: NDArray[np.uint64],
    sub_radii: NDArray[np.int64],
    radius: int,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.uint8]]:
    """Probe every bucket within the flips of each query's substrings, in every active table:
    (query, row, distance) of each entry within ``radius``, once."""
    n_q, lanes = queries.shape[0], state.lanes
    # Probes are laid out table by table, then query by query, then flip by flip.
    q_rot = np.stack([_rotl(queries, t.rotate) for t, _ in active])
    n_flips = np.array([f.shape[0] for f in flips])
    first_probe = np.concatenate([[0], np.cumsum(n_flips * n_q)])
    los, counts = [], []
    for c, ((table, _), f) in enumerate(zip(active, flips, strict=True)):
        keys = (table.keys(q_rot[c])[:, None] ^ f[None, :]).ravel()
        lo, count = state.buckets(table, keys)
        los.append(lo)
        counts.append(count)
    lo, count = np.concatenate(los), np.concatenate(counts)
    # The first ``lanes`` codes of every bucket, each query's row of probes at once.
    head = windows[lo].view(np.uint64)
    for c in range(len(active)):
        part = head[first_probe[c] * lanes : first_probe[c + 1] * lanes]
        part.reshape(n_q, -1)[...] ^= q_rot[c][:, None]
    dist = popcount(head)
    flat = np.flatnonzero(dist <= radius)
    probe, lane = np.divmod(flat, lanes)
    # A window may run past its bucket into the next ones: those codes are reached by their own
    # bucket's probe, so they are dropped here (a check on the few near codes only).
    inside = lane < count[probe]
    flat, probe = flat[inside], probe[inside]
    found_p, found_row = probe, lo[probe] + lane[inside]
    found_x, found_d = head[flat], dist[flat]
    # Buckets larger than the window: the rest of them, flattened.
    over = np.flatnonzero(count > lanes)
    if over.shape[0]:
        table_of = np.searchsorted(first_probe, over, side="right") - 1
        query_of = (over - first_probe[table_of]) // n_flips[table_of]
        bucket, t_row, t_x, t_d = _probe_tail(
            state.codes, q_rot[table_of, query_of], lo[over] + lanes, count[over] - lanes, radius
        )
        found_p = np.concatenate([found_p, over[bucket]])
        found_row = np.concatenate([found_row, t_row])
        found_x = np.concatenate([found_x, t_x])
        found_d = np.concatenate([found_d, t_d])
    table_of = np.searchsorted(first_probe, found_p, side="right") - 1
    query_of = (found_p - first_probe[table_of]) // n_flips[table_of]
    if len(active) > 1 and found_x.shape[0]:
        keep = np.ones(found_x.shape[0], dtype=bool)
        for i in range(len(active) - 1):
            reached = popcount(found_x & earlier[table_of, i]) <= sub_radii[i]
            keep &= ~(reached & (i < table_of))
        return query_of[keep], found_row[keep], found_d[keep]
    return query_of, found_row, found_d


def _probe_tail(
    codes: NDArray[np.uint64],
    query: NDArray[np.uint64],
    lo: NDArray[np.int64],
    count: NDArray[np.int64],
    radius: int,
) -> tuple[NDArray[np.intp], NDArray[np.int64], NDArray[np.uint64], NDArray[np.uint8]]:
    """Check rows ``lo[i] .. lo[i] + count[i] - 1`` against ``query[i]``, for every i: (i, row,
    xor, distance) of each near one."""
    ends = np.cumsum(count)
    bs, cs, xs, ds = [], [], [], []
    # Slices of bounded size: a popular bucket (thousands of identical blank pages) must not
    # blow up the temporary arrays.
    b0 = 0
    while b0 < lo.shape[0]:
        done = int(ends[b0 - 1]) if b0 else 0
        b1 = max(b0 + 1, int(np.searchsorted(ends, done + _CANDIDATE_BLOCK, side="right")))
        c = count[b0:b1]
        e = ends[b0:b1] - done
        idx = np.repeat(lo[b0:b1] - (e - c), c) + np.arange(int(e[-1]))
        x = codes[idx] ^ np.repeat(query[b0:b1], c)
        d = popcount(x)
        ok = np.flatnonzero(d <= radius)
        bs.append(np.searchsorted(e, ok, side="right") + b0)
        cs.append(idx[ok])
        xs.append(x[ok])
        ds.append(d[ok])
        b0 = b1
    return np.concatenate(bs), np.concatenate(cs), np.concatenate(xs), np.concatenate(ds)
