"""What the pretrained-weights check adds to a sweep's preflight on data already cached.

    .venv/bin/python benchmarks/preflight_cost.py

Runs the preflight of the quickstart at smoke scale two ways, each after a warm-up run so
the generated data and the decoded-image store are warm (best of three): random init, and
ImageNet init from a weights file (the check builds the timm backbone once and loads the
file to see that its tensors fit).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(experiment: object, options: object, repeats: int = 3) -> float:
    from orchestrator.plan.preflight import preflight

    preflight(experiment, options, lambda line: None)  # type: ignore[arg-type]  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        preflight(experiment, options, lambda line: None)  # type: ignore[arg-type]
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="posetune-preflight-"))
    os.environ.setdefault("POSETUNE_DATA", str(root / "data"))
    os.environ.setdefault("POSETUNE_IMAGE_STORE", str(root / "images"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    import dataclasses

    import timm
    import torch

    from orchestrator.study.trials import SweepOptions
    from search_spaces import load_experiment

    base = load_experiment("quickstart")
    weights = root / "hrnet_w18_small.pth"
    torch.save(timm.create_model("hrnet_w18_small", pretrained=False).state_dict(), weights)
    imagenet = dataclasses.replace(base, scales={"smoke": {"model.init": "imagenet",
                                                           "model.weights": str(weights)}})
    options = SweepOptions(results=str(root / "res"), smoke=True)
    random_s = timed(base, options)
    named_s = timed(imagenet, options)
    print(f"preflight_cost: quickstart --smoke, data cached: random init {random_s:.2f} s, "
          f"ImageNet weights file checked {named_s:.2f} s (+{named_s - random_s:.2f} s)")


if __name__ == "__main__":
    main()
