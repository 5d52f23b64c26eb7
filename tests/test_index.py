"""The Hamming index answers exactly what a brute-force scan answers, on any data it may hold."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

import matcher.index as index_module
from matcher.index import HammingIndex, SearchResult, brute_force_search

U64_MAX = 2**64 - 1
# No example database (runs do not depend on earlier ones); Hypothesis still keeps a small,
# self-gitignored .hypothesis/constants cache.
FAST = settings(max_examples=150, deadline=None, database=None)


def assert_same(got: SearchResult, expected: SearchResult) -> None:
    assert got.query.dtype == np.int64
    assert got.ids.dtype == np.int64
    assert got.distances.dtype == np.uint8
    np.testing.assert_array_equal(got.query, expected.query)
    np.testing.assert_array_equal(got.ids, expected.ids)
    np.testing.assert_array_equal(got.distances, expected.distances)


def hits(result: SearchResult) -> list[tuple[int, int, int]]:
    return list(
        zip(result.query.tolist(), result.ids.tolist(), result.distances.tolist(), strict=True)
    )


def flip(
    rng: np.random.Generator, codes: NDArray[np.uint64], k: NDArray[np.int64]
) -> NDArray[np.uint64]:
    """Each code with exactly k[i] distinct random bits flipped."""
    if codes.shape[0] == 0:
        return codes.copy()
    ranks = np.argsort(rng.random((codes.shape[0], 64)), axis=1)
    bits = ranks < k[:, None]
    masks = np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)
    return codes ^ masks


def random_codes(rng: np.random.Generator, n: int) -> NDArray[np.uint64]:
    return rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)


@st.composite
def code_sets(draw: st.DrawFn, max_size: int = 300) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """Codes and ids: uniform, clustered near-duplicates (the realistic case), pHash-like codes
    with the top bit set, explicit small lists (which shrink well), with duplicate codes and ids.
    """
    kind = draw(st.sampled_from(["listed", "uniform", "clustered", "top-bit", "duplicates"]))
    if kind == "listed":
        values = draw(st.lists(st.integers(0, U64_MAX), max_size=40))
        codes = np.array(values, dtype=np.uint64)
    else:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        n = draw(st.integers(0, max_size))
        if kind == "uniform":
            codes = random_codes(rng, n)
        elif kind == "clustered":
            # A few centres, each with many copies a few bits away.
            centres = random_codes(rng, draw(st.integers(1, 5)))
            members = centres[rng.integers(0, centres.shape[0], n)]
            codes = flip(rng, members, rng.integers(0, 7, n))
        elif kind == "top-bit":
            codes = random_codes(rng, n) | np.uint64(1 << 63)
        else:
            codes = random_codes(rng, max(1, n // 10))[rng.integers(0, max(1, n // 10), n)]
    rng = np.random.default_rng(codes.shape[0])
    ids = rng.integers(0, max(1, codes.shape[0] // 2), codes.shape[0])  # duplicate ids too
    return codes, ids


def queries_for(codes: NDArray[np.uint64], seed: int, n: int, radius: int) -> NDArray[np.uint64]:
    """Noisy copies of stored codes (0 to radius + 3 bits away) and unrelated codes."""
    rng = np.random.default_rng(seed)
    n_copies = n // 2 if codes.shape[0] else 0
    picked = codes[rng.integers(0, max(1, codes.shape[0]), n_copies)]
    copies = flip(rng, picked, rng.integers(0, radius + 4, n_copies))
    return np.concatenate([copies, random_codes(rng, n - n_copies)])


# Forced probing enumerates C(bits, <= s) substring values per table: keep 32- and 21-bit
# substrings to radii where that stays small.
MAX_PROBE_RADIUS = {2: 8, 3: 12}


@FAST
@given(
    data=code_sets(),
    substrings=st.sampled_from([None, 2, 3, 4, 5, 6, 8, 16]),
    radius=st.integers(0, 16),
    seed=st.integers(0, 2**32 - 1),
    n_queries=st.integers(0, 12),
)
def test_search_equals_brute_force(
    data: tuple[NDArray[np.uint64], NDArray[np.int64]],
    substrings: int | None,
    radius: int,
    seed: int,
    n_queries: int,
) -> None:
    codes, ids = data
    queries = queries_for(codes, seed, n_queries, radius)
    index = HammingIndex.build(codes, ids, substrings=substrings)
    expected = brute_force_search(codes, ids, queries, radius)
    assert len(index) == codes.shape[0]
    assert_same(index.search(queries, radius), expected)
    assert_same(index.search(queries, radius, strategy="scan"), expected)
    if radius <= MAX_PROBE_RADIUS.get(index.substrings, 64):
        assert_same(index.search(queries, radius, strategy="probe"), expected)


@settings(max_examples=15, deadline=None, database=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    substrings=st.sampled_from([None, 3, 4, 6]),
    radius=st.integers(0, 16),
)
def test_larger_clustered_index_equals_brute_force(
    seed: int, substrings: int | None, radius: int
) -> None:
    """Enough codes for direct bucket lookups and for buckets overflowing their first read."""
    rng = np.random.default_rng(seed)
    centres = random_codes(rng, 40) | np.uint64(1 << 63)
    n = 12_000
    members = flip(rng, centres[rng.integers(0, 40, n)], rng.integers(0, 7, n))
    codes = np.concatenate([members, random_codes(rng, 8_000)])
    ids = rng.integers(0, 5_000, codes.shape[0])
    queries = queries_for(codes, seed, 16, radius)
    index = HammingIndex.build(codes, ids, substrings=substrings)
    expected = brute_force_search(codes, ids, queries, radius)
    assert_same(index.search(queries, radius, strategy="probe"), expected)
    assert_same(index.search(queries, radius), expected)


@settings(max_examples=60, deadline=None, database=None)
@given(
    batches=st.lists(code_sets(max_size=200), min_size=1, max_size=6),
    substrings=st.sampled_from([None, 3, 4, 6]),
    delta_limit=st.sampled_from([0, 5, 64, 8192]),
    radius=st.integers(0, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_add_is_searchable_at_once(
    batches: list[tuple[NDArray[np.uint64], NDArray[np.int64]]],
    substrings: int | None,
    delta_limit: int,
    radius: int,
    seed: int,
) -> None:
    index = HammingIndex(substrings=substrings, delta_limit=delta_limit)
    all_codes = np.zeros(0, dtype=np.uint64)
    all_ids = np.zeros(0, dtype=np.int64)
    for k, (codes, ids) in enumerate(batches):
        index.add(codes, ids + 1000 * k)
        all_codes = np.concatenate([all_codes, codes])
        all_ids = np.concatenate([all_ids, ids + 1000 * k])
        queries = queries_for(all_codes, seed + k, 8, radius)
        expected = brute_force_search(all_codes, all_ids, queries, radius)
        assert len(index) == all_codes.shape[0]
        assert_same(index.search(queries, radius), expected)
        if radius <= MAX_PROBE_RADIUS.get(index.substrings, 64):
            assert_same(index.search(queries, radius, strategy="probe"), expected)


def test_growing_index_rechooses_substrings_and_stays_exact() -> None:
    rng = np.random.default_rng(3)
    auto = HammingIndex(delta_limit=100)
    fixed = HammingIndex(substrings=4, delta_limit=100)
    codes = np.zeros(0, dtype=np.uint64)
    for _ in range(12):
        batch = random_codes(rng, 300)
        ids = np.arange(codes.shape[0], codes.shape[0] + 300)
        auto.add(batch, ids)
        fixed.add(batch, ids)
        codes = np.concatenate([codes, batch])
    assert fixed.substrings == 4
    assert auto.substrings != 4  # a few thousand codes want narrower substrings
    queries = queries_for(codes, 9, 30, 10)
    expected = brute_force_search(codes, np.arange(codes.shape[0]), queries, 10)
    for index in (auto, fixed):
        assert_same(index.search(queries, 10, strategy="probe"), expected)
        assert_same(index.search(queries, 10), expected)


# --- hand-computed answers ---------------------------------------------------------------------

CODES = np.array([0, 1, 3, 2**64 - 1, 2**63, 0b1011], dtype=np.uint64)
IDS = np.array([10, 11, 12, 13, 14, 15], dtype=np.int64)


@pytest.mark.parametrize("strategy", ["auto", "probe", "scan"])
@pytest.mark.parametrize("substrings", [2, 4, 8])
def test_hand_computed_hits(strategy: index_module.Strategy, substrings: int) -> None:
    index = HammingIndex.build(CODES, IDS, substrings=substrings)
    search = index.search
    assert hits(search([0], 0, strategy=strategy)) == [(0, 10, 0)]
    assert hits(search([0], 1, strategy=strategy)) == [(0, 10, 0), (0, 11, 1), (0, 14, 1)]
    assert hits(search([0], 3, strategy=strategy)) == [
        (0, 10, 0),
        (0, 11, 1),
        (0, 14, 1),
        (0, 12, 2),
        (0, 15, 3),
    ]
    assert hits(search([2**64 - 1], 2, strategy=strategy)) == [(0, 13, 0)]
    # 2**63 + 1 is one bit from 2**63 and one bit from 1; ties are ordered by id.
    assert hits(search([2**63 + 1], 1, strategy=strategy)) == [(0, 11, 1), (0, 14, 1)]
    # A batch: hits grouped by query position.
    assert hits(search([0, 2**64 - 1, 0b0111], 1, strategy=strategy)) == [
        (0, 10, 0),
        (0, 11, 1),
        (0, 14, 1),
        (1, 13, 0),
        (2, 12, 1),
    ]
    # Every code is within 64 bits; a larger radius means the same.
    assert len(search([0], 64, strategy=strategy)) == len(CODES)
    assert hits(search([0], 1000, strategy=strategy)) == hits(search([0], 64, strategy=strategy))


def test_duplicate_codes_and_ids_each_hit() -> None:
    index = HammingIndex.build(np.array([5, 5, 5, 4], dtype=np.uint64), np.array([1, 1, 2, 0]))
    assert hits(index.search([5], 0)) == [(0, 1, 0), (0, 1, 0), (0, 2, 0)]
    assert hits(index.search([5], 1)) == [(0, 1, 0), (0, 1, 0), (0, 2, 0), (0, 0, 1)]


def test_signed_bigint_values_are_the_same_bits() -> None:
    """PostgreSQL's bigint holds a hash as two's complement; the same bits mean the same hash."""
    index = HammingIndex.build(np.array([-1, -(2**63)], dtype=np.int64), np.array([7, 8]))
    assert hits(index.search(np.array([2**64 - 1, 2**63], dtype=np.uint64), 0)) == [
        (0, 7, 0),
        (1, 8, 0),
    ]
    assert hits(index.search(np.array([-2], dtype=np.int64), 1)) == [(0, 7, 1)]


def test_empty_index_and_empty_queries() -> None:
    empty = HammingIndex()
    assert len(empty) == 0
    for queries in ([], [1, 2, 3]):
        result = empty.search(np.array(queries, dtype=np.uint64), 5)
        assert len(result) == 0
        assert_same(result, brute_force_search([], [], np.array(queries, dtype=np.uint64), 5))
    index = HammingIndex.build(CODES, IDS)
    assert len(index.search(np.zeros(0, dtype=np.uint64), 16)) == 0
    index.add(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64))
    assert len(index) == len(CODES)


def test_nbytes_counts_the_arrays() -> None:
    empty = HammingIndex(substrings=4)
    rng = np.random.default_rng(1)
    index = HammingIndex.build(random_codes(rng, 50_000), np.arange(50_000), substrings=4)
    # Per code: its id (8 bytes), and per table its rotated code (8) and position (4).
    assert 50_000 * (8 + 4 * 12) <= index.nbytes <= 50_000 * (8 + 4 * 12) + 4 * 2**20
    assert empty.nbytes < 10_000
    index.add(random_codes(rng, 10), np.arange(10))
    assert len(index) == 50_010


def test_bad_input_is_refused() -> None:
    index = HammingIndex()
    with pytest.raises(ValueError, match="radius"):
        index.search([1], -1)
    with pytest.raises(ValueError, match="one id per code"):
        index.add(np.array([1, 2], dtype=np.uint64), np.array([1]))
    with pytest.raises(TypeError, match="uint64"):
        index.add(np.array([1.5]), np.array([1]))
    with pytest.raises(TypeError, match="uint64"):
        index.search(np.array([-3, 4], dtype=np.int32), 1)
    with pytest.raises(ValueError, match="one-dimensional"):
        index.search(np.zeros((2, 2), dtype=np.uint64), 1)
    with pytest.raises(ValueError, match="substrings"):
        HammingIndex(substrings=1)
    with pytest.raises(ValueError, match="substrings"):
        HammingIndex(substrings=33)


def test_small_unsigned_and_list_inputs_are_accepted() -> None:
    index = HammingIndex.build(np.array([1, 2], dtype=np.uint8), [3, 4])
    assert hits(index.search([3], 1)) == [(0, 3, 1), (0, 4, 1)]


def test_searches_during_adds_see_a_consistent_index() -> None:
    rng = np.random.default_rng(2)
    base = random_codes(rng, 5_000)
    index = HammingIndex.build(base, np.zeros(5_000, dtype=np.int64), delta_limit=50)
    target = base[:20]
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for k in range(1, 40):
                index.add(target, np.full(20, k, dtype=np.int64))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    while thread.is_alive():
        result = index.search(target, 0)
        # Each add() lands whole: every target code has the same number of copies.
        counts = np.bincount(result.query, minlength=20)
        assert (counts == counts[0]).all()
    thread.join()
    assert not errors
    assert np.bincount(index.search(target, 0).query, minlength=20).tolist() == [40] * 20


# --- the parts the exactness rests on ----------------------------------------------------------


@settings(max_examples=30, deadline=None, database=None)
@given(bits=st.integers(1, 22), radius=st.integers(0, 4))
def test_flips_enumerate_each_ball_once(bits: int, radius: int) -> None:
    flips = index_module._flips(bits, radius)
    assert flips.shape[0] == sum(math.comb(bits, k) for k in range(min(radius, bits) + 1))
    assert np.unique(flips).shape[0] == flips.shape[0]
    assert flips.min() >= 0 and flips.max() < 2**bits
    assert index_module.popcount(flips.astype(np.uint64)).max() <= radius


@settings(max_examples=60, deadline=None, database=None)
@given(
    substrings=st.integers(2, 32),
    radius=st.integers(0, 64),
    costs=st.lists(st.floats(0.5, 5000), min_size=32, max_size=32),
)
def test_plan_radii_satisfy_the_pigeonhole_bound(
    substrings: int, radius: int, costs: list[float]
) -> None:
    layout = index_module._layout(substrings)
    assert sum(bits for bits, _ in layout) == 64
    tables = [(bits, costs[j]) for j, (bits, _) in enumerate(layout)]
    radii, _ = index_module._plan(tables, radius)
    # Exact when sum(s_j + 1) >= r + 1, or when some table enumerates all its values.
    saturated = any(s >= bits for s, (bits, _) in zip(radii, tables, strict=True))
    assert saturated or sum(s + 1 for s in radii) == radius + 1
    assert all(-1 <= s <= bits for s, (bits, _) in zip(radii, tables, strict=True))


def test_substrings_cover_disjoint_bits() -> None:
    for m in range(2, 33):
        covered = 0
        for bits, rotate in index_module._layout(m):
            # The left rotation brings the substring to the top bits; rotating back finds it.
            top = ((1 << bits) - 1) << (64 - bits)
            mask = index_module._rotl_int(top, 64 - rotate)
            assert covered & mask == 0
            covered |= mask
        assert covered == U64_MAX


def test_byte_table_popcount_matches_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy < 2 has no bitwise_count; the lookup-table fallback must agree with it."""
    if not hasattr(np, "bitwise_count"):
        pytest.skip("numpy < 2: the fallback is the only popcount")
    rng = np.random.default_rng(4)
    x = random_codes(rng, 1000).reshape(40, 25)
    np.testing.assert_array_equal(index_module._popcount_table(x), np.bitwise_count(x))
    codes, queries = random_codes(rng, 3000), random_codes(rng, 20)
    codes[:20] = queries ^ np.uint64(0b101)
    expected = brute_force_search(codes, np.arange(3000), queries, 20)
    monkeypatch.setattr(index_module, "_HAS_BITWISE_COUNT", False)
    assert_same(brute_force_search(codes, np.arange(3000), queries, 20), expected)
    index = HammingIndex.build(codes, np.arange(3000))
    assert_same(index.search(queries, 20), expected)
