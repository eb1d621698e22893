"""Evaluation: OKS AP through pycocotools, with PCK and the per-keypoint metrics beside it.

OKS AP (POSE_REFERENCE 5.4): pycocotools ``COCOeval(iouType="keypoints")`` with
``params.kpt_oks_sigmas`` set to the given sigmas and every other default kept (maxDets 20,
areaRng all, iouThrs 0.50:0.05:0.95). AP = stats[0], AP50 = stats[1], AP75 = stats[2],
AR = stats[5]; AP85 is read from ``eval["precision"]`` at the 0.85 threshold. OKS divides by
the GT ``area``: ``area_rule="given"`` uses the file's value (missing or non-positive is an
error), ``"bbox"`` replaces every GT area by bbox ``w*h``. The two are not comparable; the
rule is recorded in the result.

PCK as MMPose computes it and the GT-prediction pairs it is scored on live in
:mod:`pose_core.pck`, the other per-keypoint metrics (one-keypoint AP, error, swaps) in
:mod:`pose_core.keypoint_metrics`, input checks in :mod:`pose_core.eval_inputs`, the text
table in :mod:`pose_core.keypoint_table`. This module runs them all on one evaluation and
returns one :class:`MetricResult`; its PCK05 is the mean of PCK over the keypoints
that have any counted GT (keypoint-mean, not instance-mean), NaN when none has.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pose_core.coco import read_coco
from pose_core.eval_inputs import (
    checked_predictions,
    keypoint_category,
    keypoint_count,
    load_json,
    prepared_gt,
    records_to_coco,
    scored_gt,
)
from pose_core.keypoint_metrics import keypoint_ap, keypoint_errors
from pose_core.pck import match_by_oks, pck_per_keypoint
from pose_core.records import DataError
from pose_core.skeletons import (
    SigmaError,
    resolve_sigmas,
    sigma_digest,
    skeleton_from_coco_category,
)

AreaRule = Literal["given", "bbox"]
PckNormaliser = Literal["bbox", "diagonal", "sqrt_area"]

# MMPose CocoMetric: only keypoints scoring above this enter the instance score.
KEYPOINT_SCORE_THRESHOLD = 0.2
# The summary metrics, named once (STYLE.md 10): MetricResult's fields, results columns,
# Tune metrics and table columns all come from this tuple.
METRIC_NAMES = ("AP", "AP50", "AP75", "AP85", "AR", "PCK05")


@dataclass(frozen=True)
class MetricResult:
    """One evaluation. AP* and AR are in [0, 1] (-1 when pycocotools has no GT to score)."""

    AP: float
    AP50: float
    AP75: float
    AP85: float
    AR: float
    PCK05: float
    pck_per_keypoint: tuple[float, ...]
    sigma_set: str
    sigma_digest: str
    area_rule: str
    pck_normaliser: str
    pck_threshold: float
    num_instances: int
    # Per keypoint (see pose_core.keypoint_metrics): one-keypoint OKS AP (-1: no labelled GT),
    # mean error / normaliser and left/right swap rate (NaN: nothing to score).
    ap_per_keypoint: tuple[float, ...] = ()
    error_per_keypoint: tuple[float, ...] = ()
    swap_rate_per_keypoint: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Plain values (the per-keypoint tuples as lists) for results rows and JSON."""
        values = dataclasses.asdict(self)
        for key in PER_KEYPOINT:
            values[key] = list(getattr(self, key))
        return values

    def to_json(self) -> str:
        """:meth:`as_dict` as strict JSON: NaN (no GT to count) becomes ``null``, since
        ``json.dumps`` would write a bare ``NaN`` that JSON parsers reject."""
        values = self.as_dict()
        for key, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                values[key] = None
        for key in PER_KEYPOINT:
            values[key] = [v if math.isfinite(v) else None for v in getattr(self, key)]
        return json.dumps(values, allow_nan=False)


assert tuple(f.name for f in dataclasses.fields(MetricResult))[: len(METRIC_NAMES)] == METRIC_NAMES


PER_KEYPOINT = ("pck_per_keypoint", "ap_per_keypoint", "error_per_keypoint",
                "swap_rate_per_keypoint")


# ------------------------------------------------------------------ public entry points


def evaluate_coco(
    gt: dict[str, Any],
    predictions: list[dict[str, Any]],
    sigmas: np.ndarray,
    sigma_set: str = "custom",
    area_rule: AreaRule = "given",
    pck_normaliser: PckNormaliser = "bbox",
    pck_threshold: float = 0.05,
    *,
    source: str = "<ground truth>",
    flip_index: Sequence[int] | None = None,
) -> MetricResult:
    """Score COCO keypoint results against a COCO keypoint GT dict.

    ``predictions`` are COCO results: ``image_id``, ``category_id``, ``keypoints``
    ``[x, y, s] * K`` and ``score``. ``sigmas`` is ``(K,)``; a different length raises
    :class:`SigmaError`. Neither input is modified. ``source`` names the GT in errors.
    ``flip_index`` (mirror keypoint of each keypoint) enables the left/right swap rates.
    """
    return _evaluate(
        gt, predictions, sigmas, sigma_set, area_rule, pck_normaliser, pck_threshold, source,
        flip_index=flip_index,
    )


def evaluate_predictions(
    gt_records: Sequence[dict[str, Any]],
    pred_keypoints: np.ndarray,
    pred_scores: np.ndarray,
    num_keypoints: int,
    sigmas: np.ndarray,
    sigma_set: str = "custom",
    area_rule: AreaRule = "given",
    pck_normaliser: PckNormaliser = "bbox",
    pck_threshold: float = 0.05,
    flip_index: Sequence[int] | None = None,
) -> MetricResult:
    """Top-down evaluation with GT boxes: prediction i belongs to record i.

    ``gt_records[i]`` is ``{"image_id", "bbox" [x, y, w, h], "keypoints" (K, 3), "area"}``,
    ``pred_keypoints (N, K, 2)`` and ``pred_scores (N, K)`` in image pixels. The instance score
    that ranks predictions for AP is the mean of the keypoint scores above 0.2 (0 when none),
    MMPose ``CocoMetric``'s rule with a GT box score of 1; MMPose's OKS-NMS (threshold 0.9) is
    not applied, since each GT box yields exactly one prediction.
    """
    coords = np.asarray(pred_keypoints, dtype=np.float64)
    scores = np.asarray(pred_scores, dtype=np.float64)
    n = len(gt_records)
    if coords.shape != (n, num_keypoints, 2) or scores.shape != (n, num_keypoints):
        raise ValueError(
            f"expected pred_keypoints ({n}, {num_keypoints}, 2) and pred_scores "
            f"({n}, {num_keypoints}), got {coords.shape} and {scores.shape}"
        )
    gt = records_to_coco(gt_records, num_keypoints)
    predictions = []
    for i, record in enumerate(gt_records):
        triples = np.concatenate([coords[i], scores[i][:, None]], axis=1)
        predictions.append(
            {
                "image_id": record["image_id"],
                "category_id": 1,
                "keypoints": triples.ravel().tolist(),
                "score": instance_score(scores[i]),
            }
        )
    pairs = {i + 1: i for i in range(n)}  # annotation id -> prediction index
    return _evaluate(
        gt,
        predictions,
        sigmas,
        sigma_set,
        area_rule,
        pck_normaliser,
        pck_threshold,
        "<gt_records>",
        pairs,
        flip_index=flip_index,
    )


def evaluate_files(
    gt_path: str | Path,
    pred_path: str | Path,
    sigmas: str = "animalpose",
    **options: Any,
) -> MetricResult:
    """:func:`evaluate_coco` on a COCO keypoint JSON and a COCO results JSON (a list).

    ``sigmas`` is a spec for :func:`pose_core.skeletons.resolve_sigmas`, resolved against the
    skeleton of the GT's keypoint category (all categories used must share one layout).
    ``options``: ``area_rule``, ``pck_normaliser``, ``pck_threshold``. The GT goes through
    :func:`pose_core.coco.read_coco` first, so it is held to the sweep's rules (images are not
    opened, but a GT image without ``width``/``height`` needs its file for the header); a bad
    record in either file is a :class:`DataError` naming the file and the record.
    """
    # The sweep's reader checks first (duplicate ids, non-finite or non-numeric values, ...):
    # pycocotools would score a NaN keypoint as a perfect match and let a repeated id win.
    read_coco(gt_path, check_images="none")
    gt = json.loads(Path(gt_path).read_text())
    predictions = load_json(str(pred_path))
    if not isinstance(predictions, list):
        raise DataError(
            str(pred_path), "whole file", "(json)", f"top level is {type(predictions).__name__}",
            "a COCO results list",
        )
    category = keypoint_category(gt, str(gt_path))
    skeleton = skeleton_from_coco_category(category, str(gt_path))
    vector = resolve_sigmas(sigmas, skeleton)
    return _evaluate(
        gt,
        predictions,
        vector,
        sigmas,
        options.pop("area_rule", "given"),
        options.pop("pck_normaliser", "bbox"),
        float(options.pop("pck_threshold", 0.05)),
        str(gt_path),
        unknown=options,
        pred_source=str(pred_path),
        flip_index=skeleton.flip_index,
    )


def instance_score(
    keypoint_scores: np.ndarray, threshold: float = KEYPOINT_SCORE_THRESHOLD
) -> float:
    """Mean of the keypoint scores above ``threshold``; 0.0 when none is (MMPose CocoMetric)."""
    scores = np.asarray(keypoint_scores, dtype=np.float64)
    kept = scores[scores > threshold]
    return float(kept.mean()) if kept.size else 0.0


# ------------------------------------------------------------------ the shared pipeline


def _evaluate(
    gt: dict[str, Any],
    predictions: list[dict[str, Any]],
    sigmas: np.ndarray,
    sigma_set: str,
    area_rule: str,
    pck_normaliser: str,
    pck_threshold: float,
    source: str,
    pairs: dict[int, int] | None = None,
    unknown: dict[str, Any] | None = None,
    pred_source: str = "<predictions>",
    flip_index: Sequence[int] | None = None,
) -> MetricResult:
    if unknown:
        raise TypeError(
            f"unknown options {sorted(unknown)}; valid: area_rule, pck_normaliser, pck_threshold"
        )
    if area_rule not in ("given", "bbox"):
        raise ValueError(f"unknown area_rule {area_rule!r}; valid: given, bbox")
    if pck_normaliser not in ("bbox", "diagonal", "sqrt_area"):
        raise ValueError(
            f"unknown pck_normaliser {pck_normaliser!r}; valid: bbox, diagonal, sqrt_area"
        )
    gt = prepared_gt(gt, area_rule, source)
    k = keypoint_count(gt, source)
    vector = np.asarray(sigmas, dtype=np.float64)
    if vector.shape != (k,):
        raise SigmaError(
            f"{source}: sigmas have shape {vector.shape}, GT has K={k} keypoints (expected ({k},))"
        )
    predictions = checked_predictions(predictions, gt, k, pred_source)
    stats, ap85 = _oks_ap(gt, predictions, vector)
    if pairs is None:
        pairs = match_by_oks(gt, predictions, vector)
    per_keypoint = pck_per_keypoint(gt, predictions, pairs, pck_normaliser, pck_threshold, k)
    counted = per_keypoint[~np.isnan(per_keypoint)]
    if flip_index is not None and len(flip_index) != k:
        raise ValueError(f"{source}: flip_index has {len(flip_index)} entries, GT has K={k}")
    errors, swaps = keypoint_errors(
        scored_gt(gt), predictions, pairs, pck_normaliser, flip_index, k)
    return MetricResult(
        AP=float(stats[0]),
        AP50=float(stats[1]),
        AP75=float(stats[2]),
        AP85=ap85,
        AR=float(stats[5]),
        PCK05=float(counted.mean()) if counted.size else math.nan,
        pck_per_keypoint=tuple(float(v) for v in per_keypoint),
        sigma_set=sigma_set,
        sigma_digest=sigma_digest(vector),
        area_rule=area_rule,
        pck_normaliser=pck_normaliser,
        pck_threshold=float(pck_threshold),
        num_instances=len(scored_gt(gt)),
        ap_per_keypoint=tuple(float(v) for v in keypoint_ap(gt, predictions, vector)),
        error_per_keypoint=tuple(float(v) for v in errors),
        swap_rate_per_keypoint=tuple(float(v) for v in swaps),
    )


def _oks_ap(
    gt: dict[str, Any], predictions: list[dict[str, Any]], sigmas: np.ndarray
) -> tuple[np.ndarray, float]:
    """pycocotools stats (10,) and AP at OKS 0.85, its prints swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if predictions:
            coco_dt = coco_gt.loadRes(copy.deepcopy(predictions))
        else:
            # loadRes cannot take an empty list; an empty result set scores 0, not an error.
            coco_dt = COCO()
            coco_dt.dataset = {
                "images": gt["images"],
                "categories": gt["categories"],
                "annotations": [],
            }
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = sigmas
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    thresholds = evaluator.params.iouThrs
    t = int(np.flatnonzero(np.isclose(thresholds, 0.85))[0])
    precision = evaluator.eval["precision"][t, :, :, 0, -1]
    valid = precision[precision > -1]
    return np.asarray(evaluator.stats), float(valid.mean()) if valid.size else -1.0

