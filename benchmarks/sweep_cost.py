"""Sweep cost (target P3): TPE + ASHA against the grid of the `hyperparameters` experiment.

Runs the shipped ``hyperparameters`` grid (lr x epochs, 9 trials; its no-augmentation arm, the
one the TPE variant searches) and the shipped ``hyperparameters_tpe`` search (TPE over the
same ranges, 9 samples, ASHA) with ``--seeds`` seeds each, at CPU scale, through the real
orchestrator on local Ray, and compares per seed:

- cost: the training epochs each spent, against the naive grid's (the sum of ``epochs_run``
  over its trials): the grid with exact schedule forking (``orchestrator.forking``: a forked
  trial trains only the epochs after its fork point) and TPE+ASHA;
- quality: the best AP each found; TPE "finds the grid's best" when its best is within
  ``--tolerance`` (0.01) AP of the grid's best for the same seed.

CPU scale: the experiments' data, model and lengths are shrunk, everything else is theirs
(axes, ASHA, TPE): hrnet_w18_small at ``--size`` px on generated data (``--images`` base +
``--synthetic`` synthetic images, ``--test`` test images), epochs and the evaluation interval
multiplied by ``--scale`` (0.1: the grid's 50/100/210 epochs become 5/10/21, the search range
50..210 step 10 becomes 5..21 step 1). The study fine-tunes an ImageNet-initialised HRNet-w32;
here the model starts from a checkpoint pretrained once on ``--pretrain-images`` generated base
images (a first run from random weights scored AP 0 at every epoch ASHA compares, 1 to 9, and
AP 0.00 after 10 epochs, so neither ASHA nor TPE had anything to rank).

    python benchmarks/sweep_cost.py [--seeds 3] [--scale 0.1] [--size 96] [--keep DIR]

The one-line summary starts with ``sweep_cost:``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.experiment import Axis, Experiment, Grid, IntRange, Stage  # noqa: E402
from orchestrator.planning import SweepOptions  # noqa: E402
from pose_core.config import TrialConfig, with_values  # noqa: E402
from search_spaces import load_experiment  # noqa: E402


def scale_axis(path: str, axis: Axis, scale: float) -> Axis:
    if path != "train.epochs":
        return axis
    if isinstance(axis, Grid):
        return Grid(*[max(1, round(v * scale)) for v in axis.values])
    if isinstance(axis, IntRange):
        return IntRange(max(1, round(axis.low * scale)), max(1, round(axis.high * scale)),
                        max(1, round(axis.step * scale)))
    raise TypeError(f"cannot scale {axis!r}")


def pretrain(root: Path, args: argparse.Namespace) -> str:
    """The CPU-scale stand-in for ImageNet weights: hrnet_w18_small trained on generated base
    images (no lynx data), as one trial; returns its checkpoint."""
    config = with_values(TrialConfig(), {
        "model.backbone": "hrnet_w18_small", "model.init": "random",
        "data.input_size": args.size, "data.base_count": args.pretrain_images,
        "data.max_test": args.test, "data.loader_workers": 0,
        "train.epochs": args.pretrain_epochs, "train.lr": 2e-3, "train.batch_size": 16,
        "train.warmup_iters": 20, "train.bf16": False, "eval.interval": args.pretrain_epochs,
    })
    experiment = Experiment(name="pretrain", description="benchmark", baseline=config,
                            stages=(Stage(),))
    (row,) = run(experiment, root / "pretrain", args, seeds=1)
    print(f"  pretrained {args.pretrain_epochs} epochs on {args.pretrain_images} base images: "
          f"AP {row['AP']:.3f} on the lynx test set", flush=True)
    return str(row["checkpoint_uri"])


def cpu_scale(experiment: Experiment, args: argparse.Namespace, weights: str) -> Experiment:
    """The experiment at CPU scale; only its lr and epochs axes (the no-augmentation arm)."""
    base = experiment.baseline
    baseline = with_values(base, {
        "model.backbone": "hrnet_w18_small", "model.init": "checkpoint",
        "model.weights": weights,
        "data.input_size": args.size, "data.base_count": args.images,
        "data.max_test": args.test, "data.loader_workers": 0,
        "train.epochs": max(1, round(base.train.epochs * args.scale)),
        "train.batch_size": 16, "train.warmup_iters": 20, "train.bf16": False,
        "eval.interval": max(1, round(base.eval.interval * args.scale)),
    })
    stages = tuple(
        dataclasses.replace(
            stage,
            changes={**stage.changes, "data.synthetic_count": args.synthetic,
                     "data.augment": "none"},
            axes={path: scale_axis(path, axis, args.scale) for path, axis in stage.axes.items()
                  if path in ("train.lr", "train.epochs")},
        )
        for stage in experiment.stages
    )
    return dataclasses.replace(experiment, baseline=baseline, stages=stages)


def run(experiment: Experiment, results: Path, args: argparse.Namespace,
        seeds: int | None = None) -> list[dict[str, Any]]:
    from orchestrator.driver import run_sweep

    def say(line: str) -> None:
        if args.verbose or "finished:" in line:
            print("    " + line, flush=True)

    options = SweepOptions(results=str(results), seeds=seeds or args.seeds, ray_address="local",
                           max_concurrent=args.max_concurrent)
    rows = run_sweep(experiment, options, say).store.read_trials().to_pylist()
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        raise SystemExit(f"{experiment.name}: {len(failed)} trial(s) failed: {failed[0]['error']}")
    return rows


def trained_epochs(row: dict[str, Any]) -> int:
    """Epochs the trial trained itself: a forked trial's first K came from its prefix."""
    forked = row.get("forked_from")
    return int(row["epochs_run"]) - (int(forked.rsplit("@epoch=", 1)[1]) if forked else 0)


def per_seed(rows: list[dict[str, Any]]) -> dict[int, tuple[float, int, int, dict[str, Any]]]:
    """seed -> (best AP, epochs run (naive cost), epochs trained, best row)."""
    out = {}
    for seed in sorted({r["seed"] for r in rows}):
        mine = [r for r in rows if r["seed"] == seed]
        best = max(mine, key=lambda r: r["AP"] if r["AP"] is not None else -1.0)
        out[seed] = (float(best["AP"] or 0.0), sum(int(r["epochs_run"]) for r in mine),
                     sum(trained_epochs(r) for r in mine), best)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=0.1, help="epochs multiplier")
    parser.add_argument("--size", type=int, default=96, help="input size (px)")
    parser.add_argument("--images", type=int, default=100, help="generated base images")
    parser.add_argument("--synthetic", type=int, default=100, help="synthetic images")
    parser.add_argument("--test", type=int, default=60, help="test images")
    parser.add_argument("--pretrain-images", type=int, default=200)
    parser.add_argument("--pretrain-epochs", type=int, default=30)
    parser.add_argument("--tolerance", type=float, default=0.01, help="AP tolerance")
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--keep", help="keep the result rows in this folder")
    parser.add_argument("--grid-results", help="reuse the grid's rows from an earlier --keep "
                        "run (its grid/ folder; same CPU-scale settings)")
    parser.add_argument("--weights", help="reuse a pretrained checkpoint (an earlier run's)")
    parser.add_argument("--verbose", action="store_true", help="print every progress line")
    args = parser.parse_args()

    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with tempfile.TemporaryDirectory(prefix="posetune-cost-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        os.environ.setdefault("POSETUNE_DATA", str(root / "data"))
        started = time.perf_counter()
        weights = args.weights or pretrain(root, args)
        grid = cpu_scale(load_experiment("hyperparameters"), args, weights)
        tpe = cpu_scale(load_experiment("hyperparameters_tpe"), args, weights)
        print(f"CPU scale: {grid.stages[0].axes} vs {tpe.stages[0].axes}, "
              f"{tpe.stages[0].num_samples} samples + ASHA; {args.seeds} seed(s); "
              f"{args.size} px, {args.images} base + {args.synthetic} synthetic images",
              flush=True)
        if args.grid_results:  # the grid does not depend on the search settings: reuse it
            from orchestrator.results import ResultsStore

            grid_rows = ResultsStore(args.grid_results).read_trials().to_pylist()
            print(f"  grid: {len(grid_rows)} rows from {args.grid_results}", flush=True)
        else:
            print("  grid ...", flush=True)
            grid_rows = run(grid, root / "grid", args)
        print("  TPE + ASHA ...", flush=True)
        tpe_rows = run(tpe, root / "tpe", args)
        minutes = (time.perf_counter() - started) / 60
    ray.shutdown()
    grid_by, tpe_by = per_seed(grid_rows), per_seed(tpe_rows)
    ratios, fork_ratios, gaps = [], [], []
    for seed, (grid_ap, grid_epochs, grid_trained, grid_best) in grid_by.items():
        tpe_ap, _, tpe_epochs, tpe_best = tpe_by[seed]
        ratios.append(tpe_epochs / grid_epochs)
        fork_ratios.append(grid_trained / grid_epochs)
        gaps.append(grid_ap - tpe_ap)
        stopped = sum(r["status"] == "stopped" for r in tpe_rows if r["seed"] == seed)
        print(f"  seed {seed}: grid best AP {grid_ap:.3f} (lr {grid_best['lr']:.1e}, "
              f"{grid_best['epochs']} ep) in {grid_epochs} epochs naive, {grid_trained} "
              f"forked; TPE+ASHA best AP {tpe_ap:.3f} (lr {tpe_best['lr']:.1e}, "
              f"{tpe_best['epochs']} ep) in {tpe_epochs} epochs ({stopped} trials stopped "
              f"early); epoch ratio {ratios[-1]:.2f}, AP gap {gaps[-1]:+.3f}", flush=True)
    found = sum(gap <= args.tolerance for gap in gaps)
    print(f"sweep_cost: grid with forking spent {statistics.mean(fork_ratios):.2f}x the naive "
          f"grid's training epochs (same rows); TPE+ASHA {statistics.mean(ratios):.2f}x "
          f"(per seed {', '.join(f'{r:.2f}' for r in ratios)}); TPE+ASHA best AP within "
          f"{args.tolerance} of the grid's in {found}/{len(gaps)} seeds (gaps "
          f"{', '.join(f'{g:+.3f}' for g in gaps)}); {minutes:.0f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
