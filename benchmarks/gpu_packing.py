"""Packing small trials on one GPU (target P4), without Ray: trials per hour, 1 vs K at once.

What ``--gpus-per-worker 1/K`` does on a Ray node is start K trial processes that share one GPU
(Ray only sets ``CUDA_VISIBLE_DEVICES`` and counts the fractions). This script does exactly that
with plain processes, so it runs where Ray is not installed (the lent GPU machine): ``--trials``
small trials (pose_core ``fit`` on ``--images`` generated images, the size the issue names:
10-100), first one process at a time, then ``--pack`` processes at once, and reports trials per
hour for both and their ratio. Each trial is a fresh process (spawned), as a Ray trial is.

    python benchmarks/gpu_packing.py [--trials 8] [--pack 4] [--images 60] [--epochs 5] [--size 128]

On a CPU-only machine it runs on the CPU (``--device cpu``), where K trials share the same cores
and packing cannot gain much; the figure that matters is the GPU one.
The one-line summary starts with ``gpu_packing:``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def trial(job: dict[str, Any]) -> float:
    """One small trial in this (fresh) process; returns its wall time."""
    import torch

    from pose_core.config import TrialConfig, with_values
    from pose_core.loop import fit
    from pose_core.readers import read_coco

    started = time.perf_counter()
    torch.set_num_threads(job["threads"])
    train, skeleton, _ = read_coco(job["train"])
    test, _, _ = read_coco(job["test"])
    cfg = with_values(TrialConfig(), {
        "model.backbone": job["backbone"], "model.init": "random",
        "data.input_size": job["size"], "data.loader_workers": 0,
        "train.epochs": job["epochs"], "train.batch_size": 16, "train.lr": 2e-3,
        "train.warmup_iters": 10, "train.bf16": job["device"] == "cuda",
        "train.seed": job["seed"], "eval.interval": job["epochs"],
    })
    fit(cfg, train, test, skeleton, device=torch.device(job["device"]))
    return time.perf_counter() - started


def run(jobs: list[dict[str, Any]], at_once: int) -> float:
    """Wall time for all jobs with ``at_once`` trial processes (a fresh process per trial)."""
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    with ProcessPoolExecutor(at_once, mp_context=context, max_tasks_per_child=1) as pool:
        list(pool.map(trial, jobs))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--pack", type=int, default=4, help="trials sharing the GPU at once")
    parser.add_argument("--images", type=int, default=60, help="training images per trial")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--backbone", default="hrnet_w18_small")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if any)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per trial "
                        "(default: cores / pack)")
    args = parser.parse_args()

    import torch

    from pose_core.synth import SynthConfig, generate

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="posetune-packing-") as tmp:
        root = Path(tmp)
        train = generate(root / "train", SynthConfig(images=args.images, seed=1))
        test = generate(root / "test", SynthConfig(images=24, seed=2))
        results = {}
        for at_once in (1, args.pack):
            threads = args.threads or max(1, cores // at_once)
            jobs = [{"train": str(train), "test": str(test), "size": args.size,
                     "epochs": args.epochs, "backbone": args.backbone, "device": device,
                     "threads": threads, "seed": i} for i in range(args.trials)]
            wall = run(jobs, at_once)
            results[at_once] = args.trials / wall * 3600
            print(f"  {at_once} trial(s) at once on {name}: {results[at_once]:.0f} trials/hour "
                  f"({wall:.1f} s for {args.trials}, {threads} thread(s) each)", flush=True)
    print(f"gpu_packing: {args.pack} trials per {name} {results[args.pack]:.0f} trials/hour vs "
          f"1 at a time {results[1]:.0f}: {results[args.pack] / results[1]:.2f}x "
          f"({args.images} images x {args.epochs} epochs, {args.backbone} {args.size} px)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
