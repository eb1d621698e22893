"""Per-keypoint results as a text table (``posetune evaluate --per-keypoint``)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from pose_core.eval_inputs import keypoint_category
from pose_core.metrics import MetricResult


def keypoint_names(gt_path: str | Path) -> list[str]:
    """The keypoint names of a COCO keypoint GT file's category."""
    gt = json.loads(Path(gt_path).read_text())
    return [str(name) for name in keypoint_category(gt, str(gt_path)).get("keypoints", [])]


def keypoint_table(result: MetricResult, names: Sequence[str] = ()) -> str:
    """Per-keypoint AP, PCK, normalised error and swap rate as aligned text, one keypoint a line.

    Missing values (-1 AP, NaN) print as ``-``; names default to ``k0, k1, ...``.
    """
    k = len(result.pck_per_keypoint)
    labels = list(names) if len(names) == k else [f"k{j}" for j in range(k)]
    width = max([len("keypoint"), *(len(name) for name in labels)])
    pck = f"PCK@{result.pck_threshold:g}"
    lines = [f"{'keypoint':<{width}}  {'AP':>6}  {pck:>8}  {'error':>6}  {'swap':>6}"]
    columns = (result.ap_per_keypoint, result.pck_per_keypoint, result.error_per_keypoint,
               result.swap_rate_per_keypoint)
    for j, label in enumerate(labels):
        cells = [_metric_text(column[j] if j < len(column) else math.nan) for column in columns]
        lines.append(f"{label:<{width}}  {cells[0]:>6}  {cells[1]:>8}  {cells[2]:>6}  "
                     f"{cells[3]:>6}")
    lines.append(f"error: mean distance / {result.pck_normaliser} size; swap: share of "
                 "predictions nearer the mirrored keypoint's GT")
    return "\n".join(lines)


def _metric_text(value: float) -> str:
    return "-" if not math.isfinite(value) or value < 0 else f"{value:.4f}"

