"""A new trial's image start-up and the memory of K trials: per-process ImageCache vs ImageStore.

(a) Time for a fresh trial to have every image ready: with :class:`ImageCache` it decodes all
JPEGs; with a warm :class:`ImageStore` (an earlier trial on the node filled it) it maps the
stored files and touches every page. The cold store (the node's first trial: decode, write,
map) is timed too. Rounds alternate and the best of each is reported, because the machine may be shared.

(b) Memory of K processes alive at once, each holding the whole set: the sum of their
proportional set sizes (``Pss`` of /proc/self/smaps_rollup, which splits a shared page among the
processes mapping it) minus each one's Pss before loading, in units of one decoded copy.

    python -m benchmarks.image_store [--images 200] [--width 640] [--height 480] [--procs 4]
    python -m benchmarks.image_store --real /work/shared/data/real   # its JPEG/PNG files instead
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pose_core.dataset import ImageCache
from pose_core.image_store import SHM, ImageStore
from pose_core.readers import read_coco
from pose_core.synth import SynthConfig, generate

PAGE = 4096
SUFFIXES = (".jpg", ".jpeg", ".png")


def _touch(images: list[np.ndarray]) -> int:
    """Read one byte per page, so a mapped image is really resident (as a first epoch would)."""
    return sum(int(image.reshape(-1)[::PAGE].sum()) for image in images)


def _ready_with_cache(paths: Sequence[str]) -> float:
    start = time.perf_counter()
    cache = ImageCache()
    cache.preload(paths)
    _touch([cache.get(p) for p in paths])
    return time.perf_counter() - start


def _ready_with_store(paths: Sequence[str], directory: Path) -> float:
    start = time.perf_counter()
    store = ImageStore(directory)
    store.preload(paths)
    _touch([store.get(p) for p in paths])
    return time.perf_counter() - start


def _pss_bytes() -> int:
    with open("/proc/self/smaps_rollup") as file:
        for line in file:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no Pss line in /proc/self/smaps_rollup")


def _hold(kind: str, paths: list[str], directory: str, barrier: Any) -> int:
    """Load every image, wait until all K processes hold theirs, and return the Pss growth."""
    cv2.setNumThreads(1)
    before = _pss_bytes()
    holder = ImageCache() if kind == "cache" else ImageStore(directory)
    holder.preload(paths)
    _touch([holder.get(p) for p in paths])
    barrier.wait(timeout=600)
    grown = _pss_bytes() - before
    barrier.wait(timeout=600)  # nobody lets go before everyone has measured
    return grown


def _memory(kind: str, paths: list[str], directory: Path, procs: int) -> int:
    context = mp.get_context("spawn")
    with context.Manager() as manager, context.Pool(procs) as pool:
        barrier = manager.Barrier(procs)
        args = [(kind, paths, str(directory), barrier)] * procs
        return sum(pool.starmap(_hold, args))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--real", type=Path, help="use up to --images JPEG/PNG files found here")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    base = SHM if SHM.is_dir() else None
    with tempfile.TemporaryDirectory() as folder:
        if args.real is not None:
            found = (p for p in sorted(args.real.rglob("*")) if p.suffix.lower() in SUFFIXES)
            paths = [str(p) for p, _ in zip(found, range(args.images), strict=False)]
            source = f"files under {args.real}"
        else:
            config = SynthConfig(images=args.images, seed=0, width=args.width, height=args.height)
            instances, _, _ = read_coco(generate(folder, config))
            paths = sorted({inst.image_path for inst in instances})
            source = f"generated {args.width}x{args.height} JPEGs"
        store_dir = Path(tempfile.mkdtemp(prefix="posetune-bench-", dir=base))
        try:
            cold = decode = warm = float("inf")
            for _ in range(args.rounds):
                ImageStore(store_dir).clear()
                cold = min(cold, _ready_with_store(paths, store_dir))
                decode = min(decode, _ready_with_cache(paths))
                warm = min(warm, _ready_with_store(paths, store_dir))
            one_copy = ImageStore(store_dir).stored_bytes()
            cached = _memory("cache", paths, store_dir, args.procs) / one_copy
            shared = _memory("store", paths, store_dir, args.procs) / one_copy
        finally:
            shutil.rmtree(store_dir, ignore_errors=True)
    print(
        f"{len(paths)} {source}, one decoded copy "
        f"{one_copy / 2**20:.0f} MiB, store in {store_dir.parent}; cold store (decode + write) "
        f"{cold:.2f} s, ImageCache {decode:.2f} s, warm store {warm:.3f} s"
    )
    print(
        f"image_store: warm start {decode / warm:.0f}x faster than decode ({warm:.3f} s vs "
        f"{decode:.2f} s for {len(paths)} images); {args.procs} processes use {shared:.2f}x vs "
        f"{cached:.2f}x the memory of one copy"
    )


if __name__ == "__main__":
    main()
