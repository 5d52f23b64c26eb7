"""Matching quality: recall of pirate copies at a false-positive rate <= 1e-4, per transform.

    .venv/bin/python bench/matching_quality.py [--seed 1] [--references 300] [--unrelated 10000]
        [--queries 150] [--transforms jpeg,mirror,...] [--workers 2] [--misses]

About 5 minutes on two cores at the defaults. ``--queries`` copies per transform are made from
every k-th reference (150 of 300 by default: each transform costs a second per ten copies).

Three methods, measured in the same run on the same images:

- ``phash``: imagehash's plain pHash of the whole image, one 64-bit hash per page; score is
  minus the Hamming distance to the reference.
- ``pdq``: Meta's PDQ (``pdqhash``), one 256-bit hash per page; score is minus the distance.
- ``robust``: ``matcher.robust`` region hashes (64-bit each) scored by geometric agreement.

For every method the decision threshold comes from the unrelated images alone: it is the
lowest score that at most ``fpr * len(unrelated)`` unrelated images exceed (each unrelated image
scored against every reference, its best score counts). The same threshold then applies to every
transform, as it would in production where nobody knows what a pirate did. A copy counts as
identified only when its best-scoring reference is the right one (strictly ahead of every
other reference) and that score is above the threshold. Comparison is brute force; the
production index answers the same question faster. For ``robust``, only references whose
fingerprints could add up to ``SCORE_FLOOR`` are scored in full (the rest cannot pass a
threshold above it; the threshold is never set below it).

The unrelated set (see bench/corpus.py) is mostly near-misses, and ``--framed`` of it (30% by
default) goes through a random pirate transform too, because a pirate site frames and re-encodes
everything it serves.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import imagehash
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.corpus import build_references, filler_pages, make_unrelated
from bench.transforms import FAMILIES, TRANSFORMS, by_name
from matcher import robust
from matcher.fingerprint import Fingerprint
from matcher.identify import Thresholds
from matcher.index import popcount

METHODS = ("phash", "pdq", "robust")
# Recall of robust copies above the production "confident" threshold (auto-approvable), shown as
# a fourth column; it is not a method of its own.
CONFIDENT = "conf."


# --- per-method fingerprints and brute-force best match --------------------------------------


def _phash(image: Image.Image) -> np.ndarray:
    return np.array([int(str(imagehash.phash(image)), 16)], dtype=np.uint64)


def _pdq(image: Image.Image) -> np.ndarray:
    import pdqhash  # type: ignore[import-untyped]

    bits, _quality = pdqhash.compute(np.asarray(image.convert("RGB")))
    # 256 bits as four 64-bit words, so distance is four popcounts.
    packed = np.packbits(bits.astype(np.uint8)).view(">u8").astype(np.uint64)
    return packed


def _pack(fps: Sequence[Fingerprint]) -> list[tuple[str, int, dict[str, Any], str, str]]:
    # MappingProxyType does not pickle; workers hand back plain tuples.
    return [(fp.kind, fp.value, dict(fp.params), fp.variant, fp.version) for fp in fps]


def _unpack(rows: Sequence[tuple[str, int, dict[str, Any], str, str]]) -> list[Fingerprint]:
    return [
        Fingerprint(kind=k, value=v, params=MappingProxyType(p), variant=var, version=ver)
        for k, v, p, var, ver in rows
    ]


@dataclass
class ReferenceSet:
    phash: np.ndarray  # (refs,) uint64
    pdq: np.ndarray  # (refs, 4) uint64
    robust_fps: list[list[Fingerprint]]
    robust_values: np.ndarray  # all reference values, concatenated
    robust_owner: np.ndarray  # reference index of each value
    robust_starts: np.ndarray  # first value of each reference

    @property
    def count(self) -> int:
        return len(self.robust_fps)


_REFS: ReferenceSet | None = None
_IMAGES: list[Image.Image] = []
_FILLERS: list[Image.Image] = []
_SEED = 1
_FRAMED = 0.3
# Only references whose upper bound on the robust score reaches this are scored in full; the
# report checks that the threshold lies above it, so nothing that matters is skipped.
SCORE_FLOOR = 1.0


def _reference_row(index: int) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    image = _IMAGES[index]
    return _phash(image), _pdq(image), _pack(robust.reference_fingerprints(image))


def _best(scores: np.ndarray, truth: int | None) -> tuple[float, int, float]:
    """(best score, its reference if strictly ahead else -1, score of the true reference)."""
    order = np.argsort(scores)[::-1]
    top = float(scores[order[0]])
    ahead = len(scores) == 1 or top > float(scores[order[1]])
    true_score = float(scores[truth]) if truth is not None else math.nan
    return top, int(order[0]) if ahead else -1, true_score


def _score_all(image: Image.Image, truth: int | None) -> dict[str, tuple[float, int, float, float]]:
    """Each method's (best score, best reference, true reference's score, seconds)."""
    refs = _REFS
    assert refs is not None
    out: dict[str, tuple[float, int, float, float]] = {}

    start = time.perf_counter()
    q = _phash(image)
    scores = -popcount(refs.phash ^ q[0]).astype(np.float64)
    out["phash"] = (*_best(scores, truth), time.perf_counter() - start)

    start = time.perf_counter()
    q = _pdq(image)
    scores = -popcount(refs.pdq ^ q[None, :]).sum(axis=1).astype(np.float64)
    out["pdq"] = (*_best(scores, truth), time.perf_counter() - start)

    start = time.perf_counter()
    fps = robust.query_fingerprints(image)
    scores = np.zeros(refs.count)
    if fps:
        values = np.array([fp.value for fp in fps], dtype=np.uint64)
        distances = popcount(values[:, None] ^ refs.robust_values[None, :]).astype(np.int64)
        radius = robust.RETRIEVAL_RADIUS
        weights = np.where(distances <= radius, (radius + 1 - distances) / (radius + 1), 0.0)
        bound = np.add.reduceat(weights.max(axis=0), refs.robust_starts)
        for ref in np.flatnonzero(bound >= SCORE_FLOOR):
            scores[ref] = robust.score(fps, refs.robust_fps[ref])[0]
    out["robust"] = (*_best(scores, truth), time.perf_counter() - start)
    return out


def _unrelated_image(index: int) -> tuple[Image.Image, str, str]:
    """Unrelated image ``index`` as served: (image, its kind, the transform applied or none)."""
    rng = random.Random(f"{_SEED}|unrelated-frame|{index}")
    unrelated = make_unrelated(_SEED, index)
    if rng.random() >= _FRAMED:
        return unrelated.image, unrelated.kind, "none"
    chosen = rng.choice(TRANSFORMS)
    return chosen.apply(unrelated.image, rng, _FILLERS), unrelated.kind, chosen.name


def _task(task: tuple[str, int, str]) -> tuple[tuple[str, int, str], Any]:
    what, index, transform = task
    if what == "unrelated":
        image, kind, applied = _unrelated_image(index)
        return (what, index, f"{kind}, {applied}"), _score_all(image, None)
    rng = random.Random(f"{_SEED}|{transform}|{index}")
    image = by_name(transform).apply(_IMAGES[index], rng, _FILLERS)
    return task, _score_all(image, index)


# --- report ----------------------------------------------------------------------------------


def threshold_for(unrelated: np.ndarray, fpr: float) -> tuple[float, int]:
    """Lowest t with at most fpr*N unrelated scores > t; returns (t, false positives at t)."""
    allowed = math.floor(fpr * len(unrelated))
    ranked = np.sort(unrelated)[::-1]
    if allowed >= len(ranked):
        return -math.inf, len(ranked)
    t = float(ranked[allowed])
    return t, int((unrelated > t).sum())


def _format_threshold(method: str, t: float) -> str:
    if method in ("phash", "pdq"):
        return f"distance <= {int(-t) - 1}" if t > -math.inf else "any"
    return f"score > {t:.3f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--references", type=int, default=300)
    parser.add_argument("--unrelated", type=int, default=10_000)
    parser.add_argument("--fpr", type=float, default=1e-4)
    parser.add_argument("--framed", type=float, default=0.3, help="share of unrelated transformed")
    parser.add_argument("--transforms", default=",".join(t.name for t in TRANSFORMS))
    parser.add_argument(
        "--queries", type=int, default=150, help="copies per transform (every k-th reference)"
    )
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--misses", action="store_true", help="list robust misses")
    args = parser.parse_args(argv)

    global _REFS, _IMAGES, _FILLERS, _SEED, _FRAMED
    started = time.perf_counter()
    _SEED, _FRAMED = args.seed, args.framed
    references = build_references(args.seed, args.references)
    _IMAGES = [r.image for r in references]
    _FILLERS = filler_pages(args.seed)
    context = multiprocessing.get_context("fork")  # workers inherit the corpus, unpickled
    with context.Pool(args.workers) as pool:
        rows = pool.map(_reference_row, range(len(_IMAGES)), chunksize=4)
    robust_fps = [_unpack(row[2]) for row in rows]
    counts = np.array([len(fps) for fps in robust_fps])
    _REFS = ReferenceSet(
        phash=np.concatenate([row[0] for row in rows]),
        pdq=np.stack([row[1] for row in rows]),
        robust_fps=robust_fps,
        robust_values=np.array([fp.value for fps in robust_fps for fp in fps], dtype=np.uint64),
        robust_owner=np.repeat(np.arange(len(rows)), counts),
        robust_starts=np.concatenate([[0], np.cumsum(counts)[:-1]]),
    )
    prepared = time.perf_counter()

    transforms = [by_name(name) for name in args.transforms.split(",") if name]
    tasks: list[tuple[str, int, str]] = [("unrelated", i, "") for i in range(args.unrelated)]
    step = max(1, len(_IMAGES) // max(1, args.queries))
    sources = list(range(0, len(_IMAGES), step))[: args.queries]
    tasks += [("query", i, t.name) for t in transforms for i in sources]
    with context.Pool(args.workers) as pool:
        results = pool.map(_task, tasks, chunksize=16)
    finished = time.perf_counter()

    unrelated = {
        m: np.array([r[m][0] for (w, _, _), r in results if w == "unrelated"]) for m in METHODS
    }
    worst = {
        m: max(((r[m][0], key) for key, r in results if key[0] == "unrelated"), default=None)
        for m in METHODS
    }
    thresholds = {m: threshold_for(unrelated[m], args.fpr) for m in METHODS}
    if thresholds["robust"][0] < SCORE_FLOOR:
        # Below the floor the unrelated scores are upper bounds cut to 0, not measurements:
        # the floor itself is the lowest threshold this run can vouch for.
        floor = SCORE_FLOOR
        thresholds["robust"] = (floor, int((unrelated["robust"] > floor).sum()))
    hits: dict[tuple[str, str], list[bool]] = defaultdict(list)
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    misses: list[str] = []
    for (what, index, transform), result in results:
        for m in METHODS:
            seconds[(what, m)].append(result[m][3])
        if what != "query":
            continue
        for m in METHODS:
            top, best, true_score, _ = result[m]
            hit = best == index and top > thresholds[m][0]
            hits[(transform, m)].append(hit)
            if m == "robust":
                hits[(transform, CONFIDENT)].append(best == index and top > Thresholds().confident)
            if m == "robust" and not hit and args.misses:
                misses.append(
                    f"  {transform:10s} {references[index].key:24s} true {true_score:6.2f} "
                    f"best {top:6.2f} ({_who(best, index, references)})"
                )

    _print_report(args, references, counts, transforms, thresholds, unrelated, worst, hits, seconds)
    _print_worst(results, references)
    if misses:
        print("\nrobust misses:")
        print("\n".join(misses))
    print(
        f"\nwall time {finished - started:.0f} s (references {prepared - started:.0f} s) "
        f"on {args.workers} workers"
    )


def _who(best: int, truth: int, references: Sequence[Any]) -> str:
    if best == truth:
        return "right"
    return "tie" if best < 0 else str(references[best].key)


def _print_worst(results: Sequence[Any], references: Sequence[Any], count: int = 3) -> None:
    """Why the unrelated images closest to the robust threshold scored what they did."""
    assert _REFS is not None
    ranked = sorted(
        ((r["robust"][0], key[1]) for key, r in results if key[0] == "unrelated"), reverse=True
    )
    print("\nmost similar unrelated images (robust):")
    for value, index in ranked[:count]:
        image, kind, applied = _unrelated_image(index)
        fps = robust.query_fingerprints(image)
        scored = [robust.score(fps, ref) for ref in _REFS.robust_fps]
        best = max(range(len(scored)), key=lambda i: scored[i][0])
        print(
            f"  {value:5.2f} unrelated #{index} ({kind}, {applied}) vs "
            f"{references[best].key}: {scored[best][1]}"
        )


def _print_report(
    args: argparse.Namespace,
    references: Sequence[Any],
    counts: np.ndarray,
    transforms: Sequence[Any],
    thresholds: dict[str, tuple[float, int]],
    unrelated: dict[str, np.ndarray],
    worst: dict[str, Any],
    hits: dict[tuple[str, str], list[bool]],
    seconds: dict[tuple[str, str], list[float]],
) -> None:
    kinds: dict[str, int] = defaultdict(int)
    for ref in references:
        kinds[ref.kind] += 1
    print(
        f"seed {args.seed}: {len(references)} references "
        f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}), "
        f"{len(unrelated['phash'])} unrelated ({args.framed:.0%} framed by a random transform), "
        f"{len(hits[(transforms[0].name, 'phash')]) if transforms else 0} copies per transform, "
        f"target FPR <= {args.fpr:g}"
    )
    print("\nthresholds (from the unrelated set alone):")
    for m in METHODS:
        t, fp = thresholds[m]
        top = worst[m]
        print(
            f"  {m:7s} {_format_threshold(m, t):18s} false positives {fp}/{len(unrelated[m])}"
            f"   most similar unrelated: {top[0]:.2f} (#{top[1][1]}: {top[1][2]})"
        )
    if thresholds["robust"][0] <= SCORE_FLOOR:
        print(
            f"  (robust: raised to the scoring floor {SCORE_FLOOR}, below which nothing is scored)"
        )
    production = Thresholds()
    above = int((unrelated["robust"] > production.confident).sum())
    total = len(unrelated["robust"])
    print(
        f"  matcher.identify uses: review score > {production.review:.3f}, confident score > "
        f"{production.confident:.3f} (unrelated above confident: {above}/{total})"
    )

    columns = (*METHODS, CONFIDENT)
    header = f"\n{'transform':12s} {'family':8s} " + " ".join(f"{m:>7s}" for m in columns)
    print(
        "\nrecall at that threshold (right reference, strictly best; conf. = robust above the "
        "confident threshold):" + header
    )
    for transform in transforms:
        cells = " ".join(f"{np.mean(hits[(transform.name, m)]):7.3f}" for m in columns)
        print(f"{transform.name:12s} {transform.family:8s} {cells}")
    for family in FAMILIES:
        names = [t.name for t in transforms if t.family == family]
        if not names:
            continue
        means = [np.mean([h for name in names for h in hits[(name, m)]]) for m in columns]
        print(f"{'ALL ' + family:21s} " + " ".join(f"{v:7.3f}" for v in means))

    print(
        f"\nfingerprints per page: phash 1 x 64 bit, pdq 1 x 256 bit, robust "
        f"{counts.mean():.1f} x 64 bit (min {counts.min()}, max {counts.max()}, "
        f"cap {robust.MAX_REFERENCE_FINGERPRINTS})"
    )
    for what, label in (("query", "pirate copy"), ("unrelated", "unrelated (small)")):
        print(
            f"time per image, {label}, fingerprint + brute-force scoring on one core, ms: "
            + ", ".join(f"{m} {1000 * np.mean(seconds[(what, m)]):.1f}" for m in METHODS)
        )


if __name__ == "__main__":
    main()
