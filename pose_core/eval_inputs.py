"""The inputs of an evaluation, checked and put in the form pycocotools indexes.

GT: a deep copy with ``iscrowd``/``num_keypoints`` filled and the area rule applied (see
:mod:`pose_core.metrics`); predictions: dicts with numbers where numbers belong and image ids
of the GT; top-down GT records as a one-category COCO dict; the keypoint category of a GT.
Every bad value is a :class:`~pose_core.records.DataError` naming the file and the record.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pose_core.checks import _number
from pose_core.records import DataError


def prepared_gt(gt: dict[str, Any], area_rule: str, source: str) -> dict[str, Any]:
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


def keypoint_count(gt: dict[str, Any], source: str) -> int:
    lengths = {len(a["keypoints"]) for a in gt["annotations"]}
    if not lengths:
        lengths = {3 * len(c.get("keypoints", [])) for c in gt["categories"]}
    if len(lengths) != 1 or 0 in lengths or any(n % 3 for n in lengths):
        raise DataError(
            source, "annotations", "keypoints", f"lengths {sorted(lengths)}", "one length 3*K"
        )
    return lengths.pop() // 3


def scored_gt(gt: dict[str, Any]) -> list[dict[str, Any]]:
    """GT that counts: not crowd, at least one labelled keypoint."""
    return [
        a
        for a in gt["annotations"]
        if not a.get("iscrowd") and (np.asarray(a["keypoints"], dtype=np.float64)[2::3] > 0).any()
    ]


def checked_predictions(
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


def load_json(file: str) -> Any:
    try:
        return json.loads(Path(file).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(file, "whole file", "(json)", f"cannot read JSON: {error}") from None


def records_to_coco(records: Sequence[dict[str, Any]], k: int) -> dict[str, Any]:
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


def keypoint_category(gt: dict[str, Any], source: str) -> dict[str, Any]:
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
