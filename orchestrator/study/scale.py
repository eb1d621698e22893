"""Named scales: one declared object per size a sweep can run at (Ray-free).

A scale says how an experiment written at the study's size shrinks: the model and input
size, how data-set sizes and epoch counts map, and what happens to ImageNet initialisation
where no weights file exists. Planning applies a scale in one place
(:func:`orchestrator.study.trials.build_job`); nothing else in the code branches on it.

- ``full``: the study's sizes, unchanged (the default).
- ``mini``: a laptop. Every experiment at a size where rows differ: a small HRNet at 128 px,
  ImageNet init replaced by a generated-pretrained start (fractal categories, built once per
  machine: ``posetune pretrain --scale mini``), batch 8, data sizes to about twice their square root (still nested and
  distinct), 210 epochs to 21, generated pools sized so that the base set, real and
  synthetic images keep the study's order of sizes. The study's backbones map to CPU-sized
  members of the same families (``backbones``). Input size and batch were chosen from pilot
  runs of the zero-shot Animal-Pose trial for its AP level per CPU second (96 px batch 16:
  AP 0.008; batch 8: 0.048; 128 px batch 8: 0.112 for 10% more time), never for a contrast.
- ``smoke``: seconds a trial on a CPU; proves the plumbing, not the science. Data sizes
  go to about their square root (still nested and distinct), 50/100/210 epochs to 1/2/3;
  ImageNet init is a generated start pretrained for seconds (plumbing only).

An experiment adjusts a scale for itself with ``Experiment.scales`` (``{scale: changes}``,
applied after its axis values, e.g. a smaller KITPose width at ``smoke``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pose_core.config import ConfigError

COUNT_PATHS = ("data.real_count", "data.synthetic_count")
EPOCH_PATH = "train.epochs"
BACKBONE_PATH = "model.backbone"
CountRule = Literal["same", "sqrt"]


def sqrt_count(n: int, factor: float = 1.0) -> int:
    """~factor * sqrt(n), at least 2: distinct sizes stay distinct and nested (0 stays 0)."""
    return 0 if n <= 0 else max(2, round(factor * math.sqrt(n)))


@dataclass(frozen=True)
class Scale:
    """How a sweep's trials are sized.

    ``changes`` apply on top of the experiment's baseline, before its stages. ``counts``
    maps every data-size value (``data.real_count``, ``data.synthetic_count``), from stage
    changes, axes and search ranges alike (``"sqrt"``: ``count_factor * sqrt(n)``);
    ``epochs_per_unit`` maps ``train.epochs`` values to ``round(epochs / epochs_per_unit)``
    clipped to ``epoch_range``; ``backbones`` maps ``model.backbone`` values (the baseline's,
    stages' and axes' alike; a name not in it is kept). ``dataset_sizes`` are the images of
    each generated stand-in set of the default catalog (None: sized by the sweep's needs,
    the full-scale behaviour); a scale with fixed sizes gives every sweep the same pools,
    so equal trials of different experiments draw equal subsets and reuse each other.
    """

    name: str
    description: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    counts: CountRule = "same"
    count_factor: float = 1.0
    epochs_per_unit: float | None = None
    epoch_range: tuple[int, int] = (1, 1_000_000)
    # No ImageNet file exists on a fresh machine: at such a scale ImageNet init with no file
    # means the generated-pretrained start of this recipe (pose_core.pretrain), named in rows
    # and tables as a stand-in for ImageNet, like the stand-in backbones.
    generated_start: str | None = None
    dataset_sizes: Mapping[str, int] | None = None
    backbones: Mapping[str, str] = field(default_factory=dict)

    def count(self, n: int) -> int:
        return sqrt_count(n, self.count_factor) if self.counts == "sqrt" else n

    def backbone(self, name: str) -> str:
        return self.backbones.get(name, name)

    def epochs(self, n: int) -> int:
        if self.epochs_per_unit is None:
            return n
        low, high = self.epoch_range
        return max(low, min(high, round(n / self.epochs_per_unit)))

    def value(self, path: str, value: Any) -> Any:
        """One dotted-path value at this scale."""
        if path in COUNT_PATHS and isinstance(value, int):
            return self.count(value)
        if path == EPOCH_PATH and isinstance(value, int):
            return self.epochs(value)
        if path == BACKBONE_PATH and isinstance(value, str):
            return self.backbone(value)
        return value

    def values(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        return {path: self.value(path, value) for path, value in changes.items()}


SCALES: dict[str, Scale] = {
    "full": Scale("full", "the study's sizes (GPU cluster)"),
    "smoke": Scale(
        "smoke", "seconds a trial on a CPU: proves the plumbing, numbers mean nothing",
        changes={
            "model.backbone": "hrnet_w18_small",
            "data.input_size": 64,
            "data.loader_workers": 0,
            "data.max_test": 24,
            "train.epochs": 2,
            "train.batch_size": 16,
            "train.warmup_iters": 10,
            "train.bf16": False,
            "eval.interval": 1,
            "eval.flip_test": True,
        },
        counts="sqrt", epochs_per_unit=60, epoch_range=(1, 3),
        generated_start="smoke",
        dataset_sizes={"animalpose": 60, "lynx-train": 40, "lynx-test": 40,
                       "lynx-synthetic": 100},
    ),
    "mini": Scale(
        "mini", "a laptop: the whole study in about an hour on 2 CPU cores, rows that differ",
        changes={
            "data.input_size": 128,
            "data.loader_workers": 0,
            "data.max_test": None,  # the whole generated test pool, the same for every trial
            "train.batch_size": 8,
            "train.warmup_iters": 30,
            "train.bf16": False,
            "eval.interval": 7,
            "eval.flip_test": True,
        },
        counts="sqrt", count_factor=2.0, epochs_per_unit=10, epoch_range=(2, 21),
        generated_start="mini",
        # 2 * sqrt of the study's sizes: Animal-Pose (~4,000 images) -> 126, the largest real
        # subset (1000 -> 63), 10k synthetic -> 200; the test pool gives AP a resolution of
        # about 0.01 per image.
        dataset_sizes={"animalpose": 126, "lynx-train": 63, "lynx-test": 100,
                       "lynx-synthetic": 200},
        backbones={"hrnet_w32": "hrnet_w18_small", "hrnet_w48": "hrnet_w18_small_v2",
                   "resnet50": "resnet18", "resnet101": "resnet26", "resnet152": "resnet34"},
    ),
}


def get_scale(name: str) -> Scale:
    """The scale called ``name``; an unknown name is one line listing the valid ones."""
    if name not in SCALES:
        raise ConfigError(f"unknown scale {name!r}; valid scales: {', '.join(SCALES)}")
    return SCALES[name]
