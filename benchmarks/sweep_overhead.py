"""Orchestration overhead on local Ray (target P4): trial start-up, driver CPU, GPU packing.

Three measurements, side by side in one run on one local Ray instance:

1. **Start-up**: a grid of small trials run by each runner, ``train`` (a Ray Train
   ``TorchTrainer`` per trial) and ``tune`` (the trial trains in its Tune process). A trial's
   start-up is the time from Tune starting it (driver clock) to the end of its first optimizer
   step (the ``startup_s`` column of every result row). "Warm" is the median over all trials
   but the first one of each runner.
2. **Driver CPU**: the sweep driver's own CPU time (user + system, this process) during each
   stage, as a share of the summed wall time of its trials; once more for 2 longer trials
   (``--long-epochs``), since the driver's cost follows the number of reports (one per epoch).
3. **Packing**: small trials (``--images`` training images) on one GPU, first one trial per GPU
   and then ``--pack`` trials per GPU (``--gpus-per-worker 1/pack``), reported as trials per
   hour. Without a real GPU the cluster declares a *logical* one and the trials train on the
   CPU (``POSETUNE_EMULATE_GPU=1``): the figure then measures what the scheduling overlaps
   (process start, data, evaluation, Ray's per-trial costs) on the CPUs, not GPU sharing.

    python benchmarks/sweep_overhead.py [--trials 6] [--images 60] [--epochs 3] [--pack 4]

The one-line summary starts with ``sweep_overhead:``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.run.worker import EMULATE_GPU_ENV  # noqa: E402
from orchestrator.study.experiment import Experiment, Grid, Stage  # noqa: E402
from orchestrator.study.trials import SweepOptions  # noqa: E402
from pose_core.config import TrialConfig, with_values  # noqa: E402


def small_trial(images: int, epochs: int) -> TrialConfig:
    """A small trial: hrnet_w18_small at 64 px on ``images`` generated images."""
    return with_values(TrialConfig(), {
        "model.backbone": "hrnet_w18_small", "model.init": "random",
        "data.input_size": 64, "data.base_count": images, "data.max_test": 24,
        "data.loader_workers": 0, "train.epochs": epochs, "train.batch_size": 16,
        "train.lr": 2e-3, "train.warmup_iters": 10, "train.bf16": False,
        "eval.interval": epochs,
    })


def experiment(name: str, trials: int, images: int, epochs: int) -> Experiment:
    lrs = [round(1e-3 * (1 + i / 10), 6) for i in range(trials)]
    return Experiment(name=name, description="benchmark", baseline=small_trial(images, epochs),
                      stages=(Stage(axes={"train.lr": Grid(*lrs)}),))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(exp: Experiment, root: Path, **options: Any) -> dict[str, Any]:
    """Run one sweep; its rows, wall time and the driver's CPU time while it ran."""
    from orchestrator.run.driver import run_sweep

    results = root / f"{exp.name}-{len(list(root.iterdir()))}"
    cpu, wall = cpu_seconds(), time.perf_counter()
    store = run_sweep(exp, SweepOptions(results=str(results), **options), lambda line: None).store
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    rows = store.read_trials().to_pylist()
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        raise SystemExit(f"benchmark trial failed: {bad[0]['error']}")
    return {"rows": sorted(rows, key=lambda r: r["started_at"]), "wall": wall, "cpu": cpu}


def startup(result: dict[str, Any]) -> tuple[float, float]:
    """(cold, warm): the first trial's start-up and the median of the others."""
    values = [r["startup_s"] for r in result["rows"]]
    return values[0], statistics.median(values[1:] or values)


def driver_share(result: dict[str, Any]) -> float:
    return result["cpu"] / sum(r["wall_s"] for r in result["rows"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="trials per measurement")
    parser.add_argument("--images", type=int, default=60, help="training images per trial")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--pack", type=int, default=4, help="trials per GPU when packed")
    parser.add_argument("--long-epochs", type=int, default=20)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--skip-train-runner", action="store_true")
    args = parser.parse_args()

    import ray
    import torch

    emulated = not torch.cuda.is_available()
    if emulated:
        os.environ[EMULATE_GPU_ENV] = "1"  # before ray.init: trial processes inherit it
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(num_cpus=args.cpus, num_gpus=1 if emulated else None, include_dashboard=True,
             dashboard_host="127.0.0.1", log_to_driver=False)
    gpu = "logical GPU (emulated on CPU)" if emulated else torch.cuda.get_device_name(0)
    print(f"local Ray: {args.cpus} CPUs, 1 {gpu}; {args.trials} trials of {args.images} "
          f"images x {args.epochs} epochs (hrnet_w18_small, 64 px)", flush=True)
    cpu_only = {"gpus_per_worker": 0.0, "max_concurrent": 1, "ray_address": "local"}
    with tempfile.TemporaryDirectory(prefix="posetune-bench-") as tmp:
        root = Path(tmp)
        os.environ.setdefault("POSETUNE_DATA", str(root / "data"))
        # Warm-up: generates the data sets and starts Ray's worker pool.
        run(experiment("warmup", 1, args.images, 1), root, **cpu_only)
        found: dict[str, dict[str, Any]] = {}
        runners = ["tune"] if args.skip_train_runner else ["train", "tune"]
        for runner in runners:
            exp = experiment(f"startup-{runner}", args.trials, args.images, args.epochs)
            found[runner] = run(exp, root, runner=runner, **cpu_only)
            cold, warm = startup(found[runner])
            print(f"  runner {runner:5s}: start-up cold {cold:5.1f} s, warm median {warm:5.2f} s;"
                  f" stage {found[runner]['wall']:6.1f} s; driver CPU "
                  f"{100 * driver_share(found[runner]):.2f}% of trial time", flush=True)
        long_run = run(experiment("driver-long", 2, args.images, args.long_epochs), root,
                       **cpu_only)
        epoch_s = statistics.median(r["wall_s"] for r in long_run["rows"]) / args.long_epochs
        print(f"  runner tune, 2 trials x {args.long_epochs} epochs ({epoch_s:.2f} s each): "
              f"driver CPU {100 * driver_share(long_run):.2f}% of trial time", flush=True)
        packing: dict[int, float] = {}
        for per_gpu in (1, args.pack):
            exp = experiment(f"pack{per_gpu}", args.trials, args.images, args.epochs)
            result = run(exp, root, gpus_per_worker=1 / per_gpu, ray_address="local")
            packing[per_gpu] = args.trials / result["wall"] * 3600
            print(f"  {per_gpu} trial(s) per GPU: {packing[per_gpu]:6.0f} trials/hour "
                  f"({result['wall']:.1f} s for {args.trials})", flush=True)
    ray.shutdown()
    tune_cold, tune_warm = startup(found["tune"])
    summary = [f"tune runner start-up {tune_warm:.2f} s warm ({tune_cold:.1f} s cold)"]
    if "train" in found:
        summary.append(f"train runner {startup(found['train'])[1]:.1f} s warm")
    summary.append(f"driver CPU {100 * driver_share(found['tune']):.2f}% of trial time "
                   f"({100 * driver_share(long_run):.2f}% with {args.long_epochs}-epoch trials)")
    summary.append(f"packing {args.pack}/GPU {packing[args.pack] / packing[1]:.2f}x trials/hour"
                   f"{' (emulated GPU)' if emulated else ''}")
    print("sweep_overhead: " + "; ".join(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
