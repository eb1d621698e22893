"""Sweep cost (target P3): successive halving and TPE + ASHA against the `hyperparameters` grid.

Runs the shipped ``hyperparameters`` grid (lr x epochs, 9 trials; its no-augmentation arm, the
one the TPE variant searches), the shipped ``hyperparameters_halving`` (the same grid, its
lengths in order, the best half of the lr arms going on to each longer one) and the shipped
``hyperparameters_tpe`` search (TPE over the same ranges, 9 samples, ASHA) with ``--seeds``
seeds each, at CPU scale, through the real orchestrator on local Ray, and compares:

- cost: the training epochs each spent, against the naive grid's (the sum of ``epochs_run``
  over its trials): the grid with exact schedule forking (``orchestrator.plan.forking``: a forked
  trial trains only the epochs after its fork point), halving (with forking) and TPE+ASHA;
- quality: the best AP each found; a method "finds the grid's best" when its best is within
  ``--tolerance`` (0.01) AP of the grid's best.

Halving decides on the mean over the seeds of one sweep (what ``posetune sweep
hyperparameters_halving --seeds 3`` does), so it is compared with the grid's best mean; and,
as independent replicates, its rule (``orchestrator.plan.halving.run_levels``) is also replayed on
each seed's grid rows alone (the rows a halving run trains are the grid's rows: forking is
exact), which gives a cost and an answer per seed. TPE searches once per seed.

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
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.study.experiment import Axis, Experiment, Grid, IntRange, Stage  # noqa: E402
from orchestrator.study.trials import SweepOptions  # noqa: E402
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
    from orchestrator.run.driver import run_sweep

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
    """Epochs the trial trained itself: a forked trial's first K came from its prefix (rows
    written before the ``epochs_trained`` column: K from ``forked_from``)."""
    if row.get("epochs_trained") is not None:
        return int(row["epochs_trained"])
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


def mean_by_config(rows: list[dict[str, Any]]) -> dict[tuple[float, int], float]:
    """(lr, epochs) -> mean AP over the seeds (ok or stopped rows)."""
    values: dict[tuple[float, int], list[float]] = {}
    for r in rows:
        if r["AP"] is not None and r["status"] in ("ok", "stopped"):
            values.setdefault((float(r["lr"]), int(r["epochs"])), []).append(float(r["AP"]))
    return {key: statistics.mean(v) for key, v in values.items()}


def replay(experiment: Experiment, grid_rows: list[dict[str, Any]],
           group: tuple[int, ...]) -> list[dict[str, Any]]:
    """The grid rows halving's rule would have run had a sweep's seeds been the grid's seeds
    ``group`` (deciding on their mean, as the sweep does). Forking is exact, so these are the
    rows such a sweep trains."""
    from orchestrator.plan.forking import plan_forks
    from orchestrator.plan.halving import run_levels
    from orchestrator.study.trials import plan

    jobs = plan(experiment, SweepOptions(results="unused", seeds=len(group)))["main"]
    by_key = {(r["variant_id"], r["seed"]): r for r in grid_rows}
    rows = {job.key: by_key[(job.variant_id, group[job.seed])] for job in jobs}
    ran: list[dict[str, Any]] = []

    def run(jobs_now: list[Any]) -> bool:
        ran.extend(rows[job.key] for job in jobs_now)
        return True

    stage = experiment.stages[0]
    marked = [job for phase in plan_forks(jobs) for job in phase]
    run_levels(marked, experiment.metric, experiment.mode, stage.keep, lambda: rows, run,
               lambda line: None, "replay")
    return ran


def report_halving(experiment: Experiment, grid_rows: list[dict[str, Any]],
                   rows: list[dict[str, Any]], naive: dict[int, int],
                   args: argparse.Namespace) -> str:
    sweep_seeds = sorted({r["seed"] for r in rows})
    mine = [r for r in grid_rows if r["seed"] in sweep_seeds]
    grid_mean, mean = mean_by_config(mine), mean_by_config(rows)
    grid_best, best = max(grid_mean, key=grid_mean.__getitem__), max(mean, key=mean.__getitem__)
    spent = sum(trained_epochs(r) for r in rows)
    cost = spent / sum(naive[seed] for seed in sweep_seeds)
    gap = grid_mean[grid_best] - mean[best]
    print(f"  halving, one sweep of {len(sweep_seeds)} seed(s), deciding on the mean: "
          f"{len(rows)} trials, {spent} epochs trained = {cost:.3f}x the naive grid's; best "
          f"(lr {best[0]:.0e}, {best[1]} ep) mean AP {mean[best]:.3f}, the grid's best "
          f"(lr {grid_best[0]:.0e}, {grid_best[1]} ep) {grid_mean[grid_best]:.3f}; gap {gap:+.3f}",
          flush=True)
    differ = [r["variant_id"] for r in rows if next(
        g["AP"] for g in mine if (g["variant_id"], g["seed"]) == (r["variant_id"], r["seed"])
    ) != r["AP"]]
    print(f"  its rows equal the grid's own for the same trials: {not differ} {differ[:3]}",
          flush=True)
    parts = [f"halving (one {len(sweep_seeds)}-seed sweep) {cost:.3f}x the naive grid's "
             f"epochs, best mean AP gap {gap:+.3f}"]
    seeds = sorted(naive)
    for size in sorted({1, len(sweep_seeds)}):
        groups = list(itertools.combinations(seeds, size))
        ratios, gaps = [], []
        for group in groups:
            ran = replay(experiment, grid_rows, group)
            chosen = [r for r in grid_rows if r["seed"] in group]
            top, got = mean_by_config(chosen), mean_by_config(ran)
            best_top, best_got = max(top, key=top.__getitem__), max(got, key=got.__getitem__)
            ratios.append(sum(trained_epochs(r) for r in ran) / sum(naive[s] for s in group))
            gaps.append(top[best_top] - got[best_got])
            if size == 1 or len(groups) <= 4:
                print(f"  replayed on seeds {group}: {ratios[-1]:.3f}x; best (lr "
                      f"{best_got[0]:.0e}, {best_got[1]} ep) {got[best_got]:.3f}, the grid's "
                      f"(lr {best_top[0]:.0e}, {best_top[1]} ep) {top[best_top]:.3f}", flush=True)
        found = sum(g <= args.tolerance for g in gaps)
        parts.append(f"replayed on {len(groups)} {size}-seed group(s) of the grid's {len(seeds)} "
                     f"seeds: {statistics.mean(ratios):.3f}x, within {args.tolerance} of the "
                     f"grid's best in {found}/{len(groups)} (worst gap {max(gaps):+.3f})")
    return "; ".join(parts)


def ap(row: dict[str, Any]) -> float:
    return float(row["AP"]) if row["AP"] is not None else -1.0


def report_tpe(grid_by: dict[int, Any], tpe_by: dict[int, Any], tpe_rows: list[dict[str, Any]],
               args: argparse.Namespace) -> str:
    ratios, gaps = [], []
    for seed, (grid_ap, grid_epochs, grid_trained, grid_best) in grid_by.items():
        if seed not in tpe_by:  # --grid-results with more seeds than this search ran
            continue
        tpe_ap, _, tpe_epochs, tpe_best = tpe_by[seed]
        ratios.append(tpe_epochs / grid_epochs)
        gaps.append(grid_ap - tpe_ap)
        stopped = sum(r["status"] == "stopped" for r in tpe_rows if r["seed"] == seed)
        print(f"  seed {seed}: grid best AP {grid_ap:.3f} (lr {grid_best['lr']:.1e}, "
              f"{grid_best['epochs']} ep) in {grid_epochs} epochs naive, {grid_trained} "
              f"forked; TPE+ASHA best AP {tpe_ap:.3f} (lr {tpe_best['lr']:.1e}, "
              f"{tpe_best['epochs']} ep) in {tpe_epochs} epochs ({stopped} trials stopped "
              f"early); epoch ratio {ratios[-1]:.2f}, AP gap {gaps[-1]:+.3f}", flush=True)
    found = sum(gap <= args.tolerance for gap in gaps)
    return (f"TPE+ASHA {statistics.mean(ratios):.2f}x (per seed "
            f"{', '.join(f'{r:.2f}' for r in ratios)}), best AP within {args.tolerance} of "
            f"the grid's in {found}/{len(gaps)} seeds (gaps "
            f"{', '.join(f'{g:+.3f}' for g in gaps)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default="grid,halving,tpe",
                        help="comma-separated: grid (always run or read), halving, tpe")
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
    parser.add_argument("--halving-results", help="reuse halving's rows from an earlier --keep "
                        "run (its halving/ folder)")
    parser.add_argument("--weights", help="reuse a pretrained checkpoint (an earlier run's)")
    parser.add_argument("--verbose", action="store_true", help="print every progress line")
    args = parser.parse_args()

    import ray

    methods = set(args.methods.split(","))
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with tempfile.TemporaryDirectory(prefix="posetune-cost-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        os.environ.setdefault("POSETUNE_DATA", str(root / "data"))
        started = time.perf_counter()
        weights = args.weights or pretrain(root, args)
        grid = cpu_scale(load_experiment("hyperparameters"), args, weights)
        halving = cpu_scale(load_experiment("hyperparameters_halving"), args, weights)
        tpe = cpu_scale(load_experiment("hyperparameters_tpe"), args, weights)
        print(f"CPU scale: {grid.stages[0].axes}; halving keeps {halving.stages[0].keep}; "
              f"TPE {tpe.stages[0].axes}, {tpe.stages[0].num_samples} samples + ASHA; "
              f"{args.seeds} seed(s); {args.size} px, {args.images} base + {args.synthetic} "
              "synthetic images", flush=True)
        if args.grid_results:  # the grid does not depend on the search settings: reuse it
            from orchestrator.store.results import ResultsStore

            grid_rows = ResultsStore(args.grid_results).read_trials().to_pylist()
            print(f"  grid: {len(grid_rows)} rows from {args.grid_results}", flush=True)
        else:
            print("  grid ...", flush=True)
            grid_rows = run(grid, root / "grid", args)
        halving_rows = tpe_rows = None
        if args.halving_results:
            from orchestrator.store.results import ResultsStore

            halving_rows = ResultsStore(args.halving_results).read_trials().to_pylist()
        elif "halving" in methods:
            print("  halving ...", flush=True)
            halving_rows = run(halving, root / "halving", args)
        if "tpe" in methods:
            print("  TPE + ASHA ...", flush=True)
            tpe_rows = run(tpe, root / "tpe", args)
        minutes = (time.perf_counter() - started) / 60
    ray.shutdown()
    grid_by = per_seed(grid_rows)
    naive = {seed: entry[1] for seed, entry in grid_by.items()}
    fork_ratios = [grid_by[seed][2] / naive[seed] for seed in grid_by]
    parts = [f"grid with forking spent {statistics.mean(fork_ratios):.2f}x the naive grid's "
             "training epochs (same rows)"]
    if halving_rows is not None:
        parts.append(report_halving(halving, grid_rows, halving_rows, naive, args))
    if tpe_rows is not None:
        parts.append(report_tpe(grid_by, per_seed(tpe_rows), tpe_rows, args))
    print(f"sweep_cost: {'; '.join(parts)}; {minutes:.0f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
