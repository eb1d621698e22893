"""Keypoint metrics: OKS AP through pycocotools, PCK as MMPose computes it.

OKS AP (POSE_REFERENCE 5.4): pycocotools ``COCOeval(iouType="keypoints")`` with
``params.kpt_oks_sigmas`` set to the given sigmas and every other default kept (maxDets 20,
areaRng all, iouThrs 0.50:0.05:0.95). AP = stats[0], AP50 = stats[1], AP75 = stats[2],
AR = stats[5]; AP85 is read from ``eval["precision"]`` at the 0.85 threshold. OKS divides by
the GT ``area``: ``area_rule="given"`` uses the file's value (missing or non-positive is an
error), ``"bbox"`` replaces every GT area by bbox ``w*h``. The two are not comparable; the
rule is recorded in the result.

PCK (POSE_REFERENCE 5.5, MMPose ``PCKAccuracy``): a GT keypoint counts when ``v > 0``; it is
correct when ``distance / normaliser < threshold`` (strictly less, as MMPose and HRNet's
``dist_acc``). Normaliser: ``bbox`` = max(bbox w, h), ``diagonal`` = sqrt(w^2 + h^2),
``sqrt_area`` = sqrt(area after the area rule). An instance whose normaliser is <= 0 is left
out (MMPose). Accuracy is computed per keypoint, then averaged over keypoints that have any
counted GT (keypoint-mean, not instance-mean); NaN when no keypoint has one.

Which prediction a GT is scored against for PCK: :func:`evaluate_predictions` knows the pairs
(record i <-> prediction i). :func:`evaluate_coco` takes a results file with possibly several
predictions per image, so predictions are visited by descending score and each takes the
still-unmatched GT of its image and category with the highest OKS; a GT left without a
prediction counts all its keypoints wrong. Crowd GT and GT without labelled keypoints take
no part in PCK.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pose_core.checks import _number
from pose_core.coco import read_coco
from pose_core.keypoint_metrics import box_normaliser, keypoint_ap, keypoint_errors
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
    gt = _records_to_coco(gt_records, num_keypoints)
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
    predictions = _load_json(str(pred_path))
    if not isinstance(predictions, list):
        raise DataError(
            str(pred_path), "whole file", "(json)", f"top level is {type(predictions).__name__}",
            "a COCO results list",
        )
    category = _keypoint_category(gt, str(gt_path))
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


def keypoint_names(gt_path: str | Path) -> list[str]:
    """The keypoint names of a COCO keypoint GT file's category."""
    gt = json.loads(Path(gt_path).read_text())
    return [str(name) for name in _keypoint_category(gt, str(gt_path)).get("keypoints", [])]


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
    gt = _prepared_gt(gt, area_rule, source)
    k = _num_keypoints(gt, source)
    vector = np.asarray(sigmas, dtype=np.float64)
    if vector.shape != (k,):
        raise SigmaError(
            f"{source}: sigmas have shape {vector.shape}, GT has K={k} keypoints (expected ({k},))"
        )
    predictions = _checked_predictions(predictions, gt, k, pred_source)
    stats, ap85 = _oks_ap(gt, predictions, vector)
    if pairs is None:
        pairs = match_by_oks(gt, predictions, vector)
    per_keypoint = _pck(gt, predictions, pairs, pck_normaliser, pck_threshold, k)
    counted = per_keypoint[~np.isnan(per_keypoint)]
    if flip_index is not None and len(flip_index) != k:
        raise ValueError(f"{source}: flip_index has {len(flip_index)} entries, GT has K={k}")
    errors, swaps = keypoint_errors(
        _scored_gt(gt), predictions, pairs, pck_normaliser, flip_index, k)
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
        num_instances=len(_scored_gt(gt)),
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


# ------------------------------------------------------------------ PCK


def match_by_oks(
    gt: dict[str, Any], predictions: list[dict[str, Any]], sigmas: np.ndarray
) -> dict[int, int]:
    """GT annotation id -> prediction index, greedy by prediction score, best OKS first.

    Only GT that PCK scores (not crowd, at least one labelled keypoint) take part; OKS uses
    the GT area already set by the area rule, as pycocotools does.
    """
    by_group: dict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for ann in _scored_gt(gt):
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


def _pck(
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
    for ann in _scored_gt(gt):
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


# ------------------------------------------------------------------ input checks


def _prepared_gt(gt: dict[str, Any], area_rule: str, source: str) -> dict[str, Any]:
    """A deep copy pycocotools can index: iscrowd/num_keypoints filled, the area rule applied."""
    for key in ("annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise DataError(
                source, "top level", key, "missing or not a list", "a COCO keypoint dict"
            )
    gt = copy.deepcopy(gt)
    for n, ann in enumerate(gt["annotations"]):
        record = f"annotation id {ann.get('id', f'? (index {n})')}"
        for key in ("id", "image_id", "category_id", "keypoints", "bbox"):
            if key not in ann:
                raise DataError(source, record, key, "missing")
        if len(ann["bbox"]) != 4:
            raise DataError(source, record, "bbox", f"got {ann['bbox']!r}", "[x, y, w, h]")
        labels = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)[:, 2]
        ann.setdefault("iscrowd", 0)
        ann.setdefault("num_keypoints", int((labels > 0).sum()))
        if area_rule == "bbox":
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
            continue
        area = ann.get("area")
        if area is None:
            raise DataError(source, record, "area", "missing", "a number, or area_rule='bbox'")
        if not math.isfinite(float(area)) or float(area) < 0 or (float(area) == 0 and labels.any()):
            raise DataError(
                source, record, "area", f"got {area!r}", "a positive number, or area_rule='bbox'"
            )
    if not isinstance(gt.get("images"), list):
        gt["images"] = [{"id": i} for i in dict.fromkeys(a["image_id"] for a in gt["annotations"])]
    return gt


def _num_keypoints(gt: dict[str, Any], source: str) -> int:
    lengths = {len(a["keypoints"]) for a in gt["annotations"]}
    if not lengths:
        lengths = {3 * len(c.get("keypoints", [])) for c in gt["categories"]}
    if len(lengths) != 1 or 0 in lengths or any(n % 3 for n in lengths):
        raise DataError(
            source, "annotations", "keypoints", f"lengths {sorted(lengths)}", "one length 3*K"
        )
    return lengths.pop() // 3


def _scored_gt(gt: dict[str, Any]) -> list[dict[str, Any]]:
    """GT that counts: not crowd, at least one labelled keypoint."""
    return [
        a
        for a in gt["annotations"]
        if not a.get("iscrowd") and (np.asarray(a["keypoints"], dtype=np.float64)[2::3] > 0).any()
    ]


def _checked_predictions(
    predictions: list[dict[str, Any]], gt: dict[str, Any], k: int, source: str
) -> list[dict[str, Any]]:
    """Every prediction a dict with numbers where numbers belong: pycocotools takes ``"0.9"``
    for a score and fails deep inside, or sorts strings."""
    image_ids = {img["id"] for img in gt["images"]}
    for n, pred in enumerate(predictions):
        if not isinstance(pred, dict):
            raise DataError(source, f"prediction {n}", "(record)", f"got {pred!r:.40}", "an object")
        record = f"prediction {n} (image id {pred.get('image_id')!r})"
        for key in ("image_id", "category_id", "keypoints", "score"):
            if key not in pred:
                raise DataError(source, record, key, "missing")
        _number(source, record, "score", pred["score"])
        values = pred["keypoints"]
        if not isinstance(values, list) or len(values) != 3 * k:
            got = f"{len(values)} values" if isinstance(values, list) else repr(values)
            raise DataError(source, record, "keypoints", f"got {got}", f"3*K = {3 * k} numbers")
        plain = all(type(v) is float or type(v) is int for v in values)
        if not (plain and np.isfinite(np.asarray(values, dtype=np.float64)).all()):
            for value in values:
                _number(source, record, "keypoints", value)
        if pred["image_id"] not in image_ids:
            raise DataError(source, record, "image_id", "is not in the GT images", "a GT image id")
    return predictions


def _load_json(file: str) -> Any:
    try:
        return json.loads(Path(file).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(file, "whole file", "(json)", f"cannot read JSON: {error}") from None


def _records_to_coco(records: Sequence[dict[str, Any]], k: int) -> dict[str, Any]:
    """GT records (see :func:`evaluate_predictions`) as a one-category COCO keypoint dict."""
    annotations = []
    for i, record in enumerate(records):
        keypoints = np.asarray(record["keypoints"], dtype=np.float64)
        if keypoints.shape != (k, 3):
            raise DataError(
                "<gt_records>", f"record {i}", "keypoints", f"shape {keypoints.shape}", f"({k}, 3)"
            )
        ann = {
            "id": i + 1,
            "image_id": record["image_id"],
            "category_id": 1,
            "keypoints": keypoints.ravel().tolist(),
            "num_keypoints": int((keypoints[:, 2] > 0).sum()),
            "bbox": [float(v) for v in record["bbox"]],
            "iscrowd": 0,
        }
        if record.get("area") is not None:
            ann["area"] = float(record["area"])
        annotations.append(ann)
    images = [{"id": i} for i in dict.fromkeys(r["image_id"] for r in records)]
    category = {"id": 1, "name": "animal", "keypoints": [f"k{j}" for j in range(k)], "skeleton": []}
    return {"images": images, "annotations": annotations, "categories": [category]}


def _keypoint_category(gt: dict[str, Any], source: str) -> dict[str, Any]:
    """The keypoint category of the GT; several are fine when they share one layout."""
    categories = {c["id"]: c for c in gt.get("categories", [])}
    used = sorted({a["category_id"] for a in gt.get("annotations", [])}) or sorted(categories)
    missing = [c for c in used if c not in categories]
    if missing or not used:
        raise DataError(
            source, "categories", "id", f"no category for ids {missing}", "a keypoint category"
        )
    layouts = {tuple(categories[c].get("keypoints") or ()) for c in used}
    if len(layouts) != 1:
        raise DataError(
            source, "categories", "keypoints", "categories differ in keypoints", "one layout"
        )
    return categories[used[0]]
