"""Named scales: one declared object per size a sweep can run at (Ray-free).

A scale says how an experiment written at the study's size shrinks: the model and input
size, how data-set sizes and epoch counts map, and what happens to ImageNet initialisation
where no weights file exists. Planning applies a scale in one place
(:func:`orchestrator.planning.build_job`); nothing else in the code branches on it.

- ``full``: the study's sizes, unchanged (the default).
- ``smoke``: seconds a trial on a CPU; proves the plumbing, not the science. Data sizes
  go to about their square root (still nested and distinct), 50/100/210 epochs to 1/2/3.

An experiment adjusts a scale for itself with ``Experiment.smoke`` (changes applied at the
smoke scale after its axis values, e.g. a smaller KITPose width).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pose_core.config import ConfigError

COUNT_PATHS = ("data.real_count", "data.synthetic_count")
EPOCH_PATH = "train.epochs"
CountRule = Literal["same", "sqrt"]


def sqrt_count(n: int) -> int:
    """~sqrt(n), at least 2: distinct sizes stay distinct and nested (0 stays 0)."""
    return 0 if n <= 0 else max(2, round(math.sqrt(n)))


@dataclass(frozen=True)
class Scale:
    """How a sweep's trials are sized.

    ``changes`` apply on top of the experiment's baseline, before its stages. ``counts``
    maps every data-size value (``data.real_count``, ``data.synthetic_count``), from stage
    changes, axes and search ranges alike; ``epochs_per_unit`` maps ``train.epochs`` values
    to ``round(epochs / epochs_per_unit)`` clipped to ``epoch_range``.
    """

    name: str
    description: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    counts: CountRule = "same"
    epochs_per_unit: float | None = None
    epoch_range: tuple[int, int] = (1, 1_000_000)
    # No ImageNet file exists on a fresh machine: such a scale trains from random weights.
    random_init_without_weights: bool = False
    small_datasets: bool = False  # the default catalog generates CPU-sized stand-in sets

    def count(self, n: int) -> int:
        return sqrt_count(n) if self.counts == "sqrt" else n

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
        random_init_without_weights=True, small_datasets=True,
    ),
}


def get_scale(name: str) -> Scale:
    """The scale called ``name``; an unknown name is one line listing the valid ones."""
    if name not in SCALES:
        raise ConfigError(f"unknown scale {name!r}; valid scales: {', '.join(SCALES)}")
    return SCALES[name]
