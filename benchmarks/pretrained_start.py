"""Is the generated-pretrained start worth something? (issue 25, part 2)

The quickstart's configuration (hrnet_w18_small, 128 px, generated base set + 40 real-style +
100 synthetic images, eval every epoch) trained from random weights and from the mini scale's
generated-pretrained start (:mod:`pose_core.pretrain`, built here first if this machine has
none; its build time is printed), the two arms of a seed side by side with one thread each,
for each seed and fine-tuning learning rate. Prints AP per epoch of every run, then per arm the
epoch at which each seed first reaches ``--target`` AP (fixed, 0.1: "half the random start's
best" degenerates when that best is 0) and the mean AP at epochs 5, 10 and the last. The
recipe is chosen by this benchmark alone (README, issue 25 part 3), never by a study finding.

    nice -n 10 python benchmarks/pretrained_start.py --out benchmarks/results/pretrained_start.json
    nice -n 10 python benchmarks/pretrained_start.py --epochs 2 --seeds 1 --lr 2e-3 --recipe smoke  # plumbing
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from orchestrator.data.catalog import Catalog  # noqa: E402
from orchestrator.plan.pretraining import ensure_start  # noqa: E402
from orchestrator.run.worker import TuneSession, run_job  # noqa: E402
from orchestrator.study.experiment import Stage  # noqa: E402
from orchestrator.study.trials import RunSettings, build_job, with_run  # noqa: E402
from pose_core.pretrain import RECIPES  # noqa: E402
from search_spaces import load_experiment  # noqa: E402

VALUES = {"data.real_count": 40, "data.synthetic_count": 100}


class CpuSession(TuneSession):
    """The Tune trial's session without Ray: this process, its CPU."""

    def device(self) -> torch.device:
        return torch.device("cpu")


def train(name: str, init: dict[str, Any], epochs: int, seed: int, root: Path,
          threads: int, lr: float | None) -> tuple[list[float], float]:
    """AP after each epoch of the quickstart variant with ``init`` (model.init/weights), and
    the seconds it took."""
    began = time.perf_counter()
    experiment = load_experiment("quickstart")
    stage = Stage(changes={**init, "train.epochs": epochs, **({"train.lr": lr} if lr else {})})
    job = build_job(experiment, stage, VALUES, seed)
    data = job.config.data
    needs = {data.base or "": data.base_count or 0, data.real or "": data.real_count,
             data.synthetic or "": data.synthetic_count, data.test: data.max_test or 0}
    catalog = Catalog.default(needs={k: v for k, v in needs.items() if k and v})
    job = with_run(job, catalog.to_dict(), RunSettings(storage=str(root), threads=threads))
    reports: list[dict[str, Any]] = []

    def report(row: dict[str, Any]) -> None:
        reports.append(row)
        if row.get("evaluated"):
            print(f"  {name}: epoch {row.get('epoch')}, AP {float(row['AP']):.3f}, "
                  f"{time.perf_counter() - began:.0f} s", flush=True)

    run_job(job, CpuSession(str(root / job.checkpoint_name()), report_to=report))
    if reports and reports[-1].get("error"):
        raise SystemExit(f"trial failed: {reports[-1]['error']}")
    return ([float(r["AP"]) for r in reports if r.get("evaluated")],
            round(time.perf_counter() - began, 1))


def first_reaching(curve: list[float], target: float) -> int | None:
    return next((i + 1 for i, ap in enumerate(curve) if ap >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="mini", choices=["smoke", "mini"])
    parser.add_argument("--steps", type=int, help="override the recipe's pretraining steps "
                        "(to compare sizes; the start is cached under its own digest)")
    parser.add_argument("--instances", type=int, help="override the recipe's images per "
                        "category")
    parser.add_argument("--weights", help="compare this start file instead of the recipe's")
    parser.add_argument("--epochs", type=int, default=20, help="the quickstart's 20")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1, each a pair")
    parser.add_argument("--target", type=float, default=0.1, help="AP to reach")
    parser.add_argument("--lr", type=float, nargs="+", default=[2e-3, 5e-4],
                        help="fine-tuning learning rates (the quickstart's 2e-3; the study's "
                        "default 5e-4)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per arm")
    parser.add_argument("--out", help="also write the curves as JSON here (BENCHMARKS.md's "
                        "figures: benchmarks/results/pretrained_start.json)")
    args = parser.parse_args()
    changes = {k: v for k, v in (("steps", args.steps), ("instances", args.instances)) if v}
    RECIPES[args.recipe] = dataclasses.replace(RECIPES[args.recipe], **changes)
    began = time.perf_counter()
    if args.weights:
        path = Path(args.weights)
    else:
        path, built = ensure_start(args.recipe, "hrnet_w18_small",
                                   lambda line: print(line, flush=True))
        print(f"start: {'built' if built else 'cached'} in {time.perf_counter() - began:.0f} s",
              flush=True)
    arms = {"random": {"model.init": "random"},
            "generated start": {"model.init": "imagenet", "model.weights": str(path)}}
    runs: list[dict[str, Any]] = []
    # The two arms of a seed side by side, one thread each (the split run_study.sh uses on
    # 2 cores); they share nothing but the CPU, and the question is epochs, not seconds.
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(
            max_workers=len(arms), mp_context=multiprocessing.get_context("spawn")) as pool:
        for lr in args.lr:
            for seed in range(args.seeds):
                futures = {name: pool.submit(train, name, init, args.epochs, seed,
                                             Path(tmp) / f"{name.replace(' ', '_')}-{lr}-{seed}",
                                             args.threads, lr)
                           for name, init in arms.items()}
                for name, future in futures.items():
                    curve, seconds = future.result()
                    runs.append({"arm": name, "lr": lr, "seed": seed, "curve": curve,
                                 "seconds": seconds})
                    print(f"lr {lr:g}, seed {seed}, {name}: {seconds:.0f} s, AP per epoch "
                          + " ".join(f"{ap:.3f}" for ap in curve), flush=True)
    epochs = sorted({e for e in (5, 10, args.epochs) if e <= args.epochs})
    print(f"\n| lr | start | epochs to AP {args.target} (per seed) | AP at epoch "
          f"{' / '.join(map(str, epochs))} (mean) |\n|---|---|---|---|")
    for lr in args.lr:
        for name in arms:
            mine = [r for r in runs if r["lr"] == lr and r["arm"] == name]
            reached = [first_reaching(r["curve"], args.target) for r in mine]
            at = " / ".join(f"{statistics.mean(r['curve'][e - 1] for r in mine):.3f}"
                            for e in epochs)
            print(f"| {lr:g} | {name} | {', '.join(str(e or '-') for e in reached)} | {at} |")
    if args.out:
        record = {"recipe": dataclasses.asdict(RECIPES[args.recipe]), "start": str(path),
                  "epochs": args.epochs, "target": args.target, "runs": runs,
                  "machine": f"{os.cpu_count()} CPU core(s), {platform.machine()}, no GPU",
                  "date": time.strftime("%Y-%m-%d", time.gmtime())}
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
