"""How much training the whole study repeats: image-epochs of every experiment's trials,
naive (each trained) against study-wide reuse (each training identity once) and exact
schedule forking on top (grid trials differing only in epochs train their shared first
epochs once), from the same planning and preflight a sweep runs (job digests: config, drawn
subsets, weights, code; forks: orchestrator.plan.forking).

    .venv/bin/python benchmarks/study_reuse.py --scale mini --seeds 3 --redraw-subsets
    .venv/bin/python benchmarks/study_reuse.py --scale full --catalog-sizes   # a fixed catalog

``--catalog-sizes`` skips the preflight and plans as a catalog of fixed files would: equal
configs draw equal subsets, and each dataset has the size given (default: the study's
Animal-Pose, ~4,000 images, 1,000 real and 10,000 synthetic lynx images). Without it, the
default generated sets are planned through the real preflight (at the full scale they are
rendered first and sized by each sweep's draws, so experiments that draw different amounts
draw different subsets and are not reused).

Nothing is trained. At the full scale the preflight renders the generated stand-in sets at
their full sizes first (minutes, once per machine). Sampled (TPE) stages are counted at
their epochs maximum and never reused (their trials are not known before they run).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.plan.cost import halving_jobs, image_epochs, make_plan, train_images  # noqa: E402
from orchestrator.plan.forking import members, plan_forks  # noqa: E402
from orchestrator.plan.preflight import preflight  # noqa: E402
from orchestrator.study.trials import SweepOptions, plan  # noqa: E402
from search_spaces import load_experiment, names  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="smoke", help="full, mini or smoke")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per experiment")
    parser.add_argument("--redraw-subsets", action="store_true")
    parser.add_argument("--all", action="store_true", help="every shipped experiment, not only "
                        "the study's seven (make study-mini's order)")
    parser.add_argument("--halving", action="store_true",
                        help="hyperparameters_halving in place of the hyperparameters grid")
    parser.add_argument("--catalog-sizes", action="store_true",
                        help="plan without the preflight, as a fixed-file catalog of the "
                        "study's dataset sizes would")
    args = parser.parse_args()
    fixed = {"animalpose": 4000, "lynx-train": 1000, "lynx-test": 300, "lynx-synthetic": 10000}
    study = ["real_amount", "backbones", "synthetic_amount", "augmentations", "hyperparameters",
             "real_plus_synthetic", "two_stage"]
    if args.halving:
        study[study.index("hyperparameters")] = "hyperparameters_halving"
    os.environ.setdefault("POSETUNE_DATA", str(Path(tempfile.gettempdir()) / "posetune-bench"))
    started = time.time()
    seen: dict[str, str] = {}
    naive = unique = forked = 0
    with tempfile.TemporaryDirectory() as results:
        options = SweepOptions(results=results, scale=args.scale, seeds=args.seeds, reuse=False,
                               redraw_subsets=args.redraw_subsets)
        for name in names() if args.all else study:
            experiment = load_experiment(name)
            sizes: dict[str, int] = {}
            if args.catalog_sizes:
                planned, catalog_dict, sizes = plan(experiment, options), {}, dict(fixed)
            else:
                planned, catalog = preflight(experiment, options, lambda line: None, sizes)
                catalog_dict = catalog.to_dict()
            cost = make_plan(experiment, planned, sizes, options, catalog_dict)
            mine = theirs = shared = 0
            for stage_name, stage in planned.items():
                if experiment.stage(stage_name).scheduler == "halving":  # the trials it runs
                    stage, _ = halving_jobs(stage, experiment.stage(stage_name).keep, sizes)
                todo = []
                for job in stage:
                    if job.sampled:
                        continue
                    job = dataclasses.replace(job, catalog=catalog_dict)
                    work = image_epochs(job, sizes)
                    if job.digest in seen:
                        theirs += work
                    else:
                        seen[job.digest] = f"{name}/{job.trial_key}"
                        mine += work
                        todo.append(job)
                shared += sum(train_images(m, sizes) * m.fork_epoch for m in members(plan_forks(todo)))
            sampled = sum(s.image_epochs for s in cost.stages if s.upper_bound)
            naive += cost.total("image_epochs")
            unique += mine + sampled
            forked += shared
            print(f"{name:22s} image-epochs {cost.total('image_epochs'):>12,}  "
                  f"already trained by an earlier experiment {theirs:>10,}  "
                  f"forked {shared:>10,}", flush=True)
    saving = 1 - unique / naive if naive else 0.0
    both = 1 - (unique - forked) / naive if naive else 0.0
    print(f"study_reuse: scale {args.scale}, seeds {args.seeds}"
          f"{', fixed catalog sizes' if args.catalog_sizes else ''}"
          f"{', subsets redrawn' if args.redraw_subsets else ''}"
          f"{', hyperparameters by halving' if args.halving else ''}: naive {naive:,} image-epochs, "
          f"with study-wide reuse {unique:,} ({saving:.0%} less), with reuse and forking "
          f"{unique - forked:,} ({both:.0%} less); planned in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
