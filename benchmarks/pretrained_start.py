"""Is the generated-pretrained start worth something? (issue 25, part 2)

The quickstart's configuration (hrnet_w18_small, 128 px, generated base set + 40 real-style +
100 synthetic images, eval every epoch) trained twice with the same seed and data: from random
weights, and from the mini scale's generated-pretrained start (:mod:`pose_core.pretrain`,
built here first if this machine has none; its build time is printed). Prints AP per epoch of
both and the first epoch at which each reaches ``--target`` AP (default: half the random
start's best, so the question is "how soon", not one arbitrary level). The recipe's size is
chosen by this benchmark alone (README, issue 25 part 3), never by a study finding.

    nice -n 10 python benchmarks/pretrained_start.py                 # about 1 h on 2 CPU cores
    nice -n 10 python benchmarks/pretrained_start.py --epochs 2 --recipe smoke   # plumbing
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from orchestrator.data.catalog import Catalog  # noqa: E402
from orchestrator.plan.pretraining import ensure_start  # noqa: E402
from orchestrator.run.worker import TuneSession, run_job  # noqa: E402
from orchestrator.study.experiment import Stage  # noqa: E402
from orchestrator.study.trials import RunSettings, build_job, with_run  # noqa: E402
from search_spaces import load_experiment  # noqa: E402

VALUES = {"data.real_count": 40, "data.synthetic_count": 100}


class CpuSession(TuneSession):
    """The Tune trial's session without Ray: this process, its CPU."""

    def device(self) -> torch.device:
        return torch.device("cpu")


def train(init: dict[str, Any], epochs: int, seed: int, root: Path) -> list[float]:
    """AP after each epoch of the quickstart variant with ``init`` (model.init/weights)."""
    experiment = load_experiment("quickstart")
    stage = Stage(changes={**init, "train.epochs": epochs})
    job = build_job(experiment, stage, VALUES, seed)
    data = job.config.data
    needs = {data.base or "": data.base_count or 0, data.real or "": data.real_count,
             data.synthetic or "": data.synthetic_count, data.test: data.max_test or 0}
    catalog = Catalog.default(needs={k: v for k, v in needs.items() if k and v})
    job = with_run(job, catalog.to_dict(), RunSettings(storage=str(root), threads=2))
    reports: list[dict[str, Any]] = []
    run_job(job, CpuSession(str(root / job.checkpoint_name()), report_to=reports.append))
    if reports and reports[-1].get("error"):
        raise SystemExit(f"trial failed: {reports[-1]['error']}")
    return [float(r["AP"]) for r in reports if r.get("evaluated")]


def first_reaching(curve: list[float], target: float) -> str:
    return next((str(i + 1) for i, ap in enumerate(curve) if ap >= target), "not reached")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="mini", choices=["smoke", "mini"])
    parser.add_argument("--epochs", type=int, default=20, help="the quickstart's 20")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, help="AP to reach (default: half the random "
                        "start's best)")
    args = parser.parse_args()
    start = time.perf_counter()
    path, built = ensure_start(args.recipe, "hrnet_w18_small", lambda line: print(line, flush=True))
    print(f"start: {'built' if built else 'cached'} in {time.perf_counter() - start:.0f} s",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        curves = {}
        for name, init in (("random", {"model.init": "random"}),
                           ("generated start", {"model.init": "imagenet",
                                                "model.weights": str(path)})):
            began = time.perf_counter()
            curves[name] = train(init, args.epochs, args.seed, Path(tmp) / name.replace(" ", "_"))
            print(f"{name}: {time.perf_counter() - began:.0f} s, AP per epoch "
                  + " ".join(f"{ap:.3f}" for ap in curves[name]), flush=True)
    target = args.target or max(curves["random"]) / 2
    print(f"\n| start | best AP | epochs to AP {target:.3f} |\n|---|---|---|")
    for name, curve in curves.items():
        print(f"| {name} | {max(curve):.3f} | {first_reaching(curve, target)} |")


if __name__ == "__main__":
    main()
