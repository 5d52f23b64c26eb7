"""Hashing speed: images per second per core, as a ratio to merely decoding the same files.

Run: .venv/bin/python bench/hashing_speed.py [--images 60] [--repeat 3]

Builds JPEG and PNG files in memory (manga-like sample pages at typical pirate-site sizes),
then times, on one core and in the same run:
  decode (full)         Pillow decode at full resolution, RGB
  decode (DCT-scaled)   the same JPEGs decoded with draft() at the size hashing needs
  global hashes         safe DCT-scaled decode + the whole-page pHash and dHash
  decode (regions size) the same decode at the size region hashing needs (robust.WORK_SIDE)
  full fingerprint set  what registration stores: safe decode + global + region hashes
The goal (issue 3) is fingerprinting within 1.5x of the DCT-scaled decode time. The global
hashes are measured against the DCT-scaled decode; the full set, whose region hashes need a
1024-pixel image rather than a 32x32 one, against a decode at that size.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image

from admin.samples import render_page
from matcher import robust
from matcher.decode import decode_image
from matcher.fingerprint import DRAFT_SIZE, fingerprint_image
from matcher.hashing import reference_fingerprints


def corpus(count: int) -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = []
    sizes = [(900, 1350), (1200, 1800), (720, 1080), (1600, 2400)]
    for n in range(count):
        page = render_page(f"bench-{n % 7}", n + 1).resize(sizes[n % len(sizes)])
        buffer = io.BytesIO()
        if n % 5 == 4:
            page.save(buffer, "PNG")
            files.append(("png", buffer.getvalue()))
        else:
            page.save(buffer, "JPEG", quality=70)
            files.append(("jpeg", buffer.getvalue()))
    return files


def timed(files: list[tuple[str, bytes]], work: Callable[[bytes], object], repeat: int) -> float:
    """Best-of-``repeat`` seconds for one pass over ``files`` (best: least disturbed by load)."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _, data in files:
            work(data)
        runs.append(time.perf_counter() - start)
    return min(runs)


def full_decode(data: bytes) -> object:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def scaled_decode(data: bytes) -> object:
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (DRAFT_SIZE, DRAFT_SIZE))
        return im.convert("RGB")


def global_hashes(data: bytes) -> object:
    with decode_image(data, source="bench", draft_size=DRAFT_SIZE) as im:
        return fingerprint_image(im)


def regions_decode(data: bytes) -> object:
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (robust.WORK_SIDE, robust.WORK_SIDE))
        return im.convert("RGB")


def full_set(data: bytes) -> object:
    with decode_image(data, source="bench", draft_size=robust.WORK_SIDE) as im:
        return reference_fingerprints(im)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = corpus(args.images)
    n = len(files)
    sample = decode_image(files[0][1], source="x", draft_size=robust.WORK_SIDE)
    per_fp = len(reference_fingerprints(sample))
    print(
        f"{n} images ({sum(1 for k, _ in files if k == 'jpeg')} JPEG, "
        f"{sum(1 for k, _ in files if k == 'png')} PNG), {per_fp} fingerprints each "
        f"(2 global + regions), one core, best of {args.repeat}"
    )
    results = {
        "decode (full)": timed(files, full_decode, args.repeat),
        "decode (DCT-scaled)": timed(files, scaled_decode, args.repeat),
        "global hashes": timed(files, global_hashes, args.repeat),
        "decode (regions size)": timed(files, regions_decode, args.repeat),
        "full fingerprint set": timed(files, full_set, args.repeat),
    }
    base = results["decode (DCT-scaled)"]
    print(f"{'step':22} {'images/s/core':>14} {'ms/image':>9} {'x DCT-scaled decode':>20}")
    for name, seconds in results.items():
        print(f"{name:22} {n / seconds:14.1f} {1000 * seconds / n:9.2f} {seconds / base:20.2f}")
    ratio = results["global hashes"] / base
    verdict = "meets" if ratio <= 1.5 else "misses"
    print(f"global hashes / DCT-scaled decode = {ratio:.2f} ({verdict} the goal of <= 1.5)")
    full = results["full fingerprint set"] / results["decode (regions size)"]
    print(f"full fingerprint set / decode at regions size = {full:.2f}")


if __name__ == "__main__":
    main()
