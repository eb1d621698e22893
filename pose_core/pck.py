"""PCK per keypoint as MMPose computes it, and the GT-prediction pairs it is scored on.

PCK (POSE_REFERENCE 5.5, MMPose ``PCKAccuracy``): a GT keypoint counts when ``v > 0``; it is
correct when ``distance / normaliser < threshold`` (strictly less, as MMPose and HRNet's
``dist_acc``). Normaliser: ``bbox`` = max(bbox w, h), ``diagonal`` = sqrt(w^2 + h^2),
``sqrt_area`` = sqrt(area after the area rule). An instance whose normaliser is <= 0 is left
out (MMPose). Accuracy is computed per keypoint; :mod:`pose_core.metrics` averages it over
keypoints that have any counted GT (keypoint-mean, not instance-mean).

Which prediction a GT is scored against: :func:`pose_core.metrics.evaluate_predictions` knows
the pairs (record i <-> prediction i). A results file may hold several predictions per image,
so :func:`match_by_oks` visits predictions by descending score and each takes the
still-unmatched GT of its image and category with the highest OKS; a GT left without a
prediction counts all its keypoints wrong. Crowd GT and GT without labelled keypoints take no
part in PCK. The per-keypoint error and swap rate (:mod:`pose_core.keypoint_metrics`) use the
same pairs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from pose_core.eval_inputs import scored_gt
from pose_core.keypoint_metrics import box_normaliser


def match_by_oks(
    gt: dict[str, Any], predictions: list[dict[str, Any]], sigmas: np.ndarray
) -> dict[int, int]:
    """GT annotation id -> prediction index, greedy by prediction score, best OKS first.

    Only GT that PCK scores (not crowd, at least one labelled keypoint) take part; OKS uses
    the GT area already set by the area rule, as pycocotools does.
    """
    by_group: dict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for ann in scored_gt(gt):
        by_group[(ann["image_id"], ann["category_id"])].append(ann)
    order = sorted(range(len(predictions)), key=lambda i: -float(predictions[i]["score"]))
    variances = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    pairs: dict[int, int] = {}
    for i in order:
        pred = predictions[i]
        free = [
            a
            for a in by_group.get((pred["image_id"], pred["category_id"]), [])
            if a["id"] not in pairs
        ]
        if not free:
            continue
        xy = np.asarray(pred["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
        best = max(free, key=lambda ann: _oks(xy, ann, variances))
        pairs[best["id"]] = i
    return pairs


def instance_oks(
    pred_xy: np.ndarray, gt_keypoints: np.ndarray, area: float, sigmas: np.ndarray
) -> float:
    """OKS of one prediction ``(K, 2)`` against one GT ``(K, 3)`` (pycocotools' formula);
    NaN when the GT has no labelled keypoint."""
    if not (np.asarray(gt_keypoints)[:, 2] > 0).any():
        return math.nan
    ann = {"keypoints": np.asarray(gt_keypoints, dtype=np.float64).ravel(), "area": area}
    return _oks(np.asarray(pred_xy, dtype=np.float64), ann, (2.0 * np.asarray(sigmas)) ** 2)


def _oks(xy: np.ndarray, ann: dict[str, Any], variances: np.ndarray) -> float:
    """pycocotools' OKS of one prediction ``(K, 2)`` against one GT with labelled keypoints."""
    g = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    labelled = g[:, 2] > 0
    squared = ((xy - g[:, :2]) ** 2).sum(axis=1)
    e = squared / variances / (float(ann["area"]) + np.spacing(1)) / 2
    return float(np.exp(-e[labelled]).mean())


def pck_per_keypoint(
    gt: dict[str, Any],
    predictions: list[dict[str, Any]],
    pairs: dict[int, int],
    normaliser: str,
    threshold: float,
    k: int,
) -> np.ndarray:
    """``(K,)`` per-keypoint accuracy, NaN where no GT keypoint was counted."""
    counted = np.zeros(k)
    correct = np.zeros(k)
    for ann in scored_gt(gt):
        g = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        norm = box_normaliser(ann, normaliser)
        if not norm > 0:
            continue
        labelled = g[:, 2] > 0
        counted += labelled
        index = pairs.get(ann["id"])
        if index is None:
            continue
        xy = np.asarray(predictions[index]["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
        distance = np.linalg.norm(xy - g[:, :2], axis=1) / norm
        correct += labelled & (distance < threshold)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted > 0, correct / np.maximum(counted, 1), np.nan)

