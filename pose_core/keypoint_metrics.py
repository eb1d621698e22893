"""Per-keypoint metrics: OKS AP of one keypoint, normalised pixel error, left/right swaps.

Per-keypoint AP is COCO keypoint AP computed as if the data set had a single keypoint: the
OKS of a prediction against a GT is pycocotools' OKS restricted to keypoint ``j``,
``exp(-d_j^2 / (2 * area * (2 * sigma_j)^2))``, with ``sigma_j`` the keypoint's own sigma, and
everything else is pycocotools' ``COCOeval(iouType="keypoints")`` unchanged: predictions are
ranked by their full instance score, at most 20 per image, greedily matched per OKS threshold
0.50:0.05:0.95, a GT is ignored when it is crowd or keypoint ``j`` is unlabelled there (its
``num_keypoints`` would be 0), and precision is interpolated at 101 recall points. We chose
this over averaging per-keypoint OKS of the instance-level matches because it equals
pycocotools run on a one-keypoint copy of the GT and results exactly (the test checks this),
so the value means the same as the AP column, one keypoint at a time. It is computed here in
numpy rather than by K pycocotools runs, which cost K times the full evaluation.

Error and swaps use the same GT-prediction pairs as PCK (:mod:`pose_core.pck`). The error
of keypoint ``j`` is the mean over labelled, matched GT of ``distance / normaliser`` (the PCK
normaliser, by default the larger box side). A prediction of ``j`` is swapped when it lies
nearer the GT of ``j``'s mirror keypoint than the GT of ``j`` (both labelled); the swap rate is
the fraction of such cases. NaN marks a keypoint with nothing to score (a centre-line keypoint
has no mirror, so its swap rate is always NaN).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = 20  # pycocotools' keypoint maxDets


def box_normaliser(ann: dict[str, Any], normaliser: str) -> float:
    """The PCK / error normaliser of a GT: ``bbox`` max(w, h), ``diagonal``, ``sqrt_area``."""
    w, h = float(ann["bbox"][2]), float(ann["bbox"][3])
    if normaliser == "bbox":
        return max(w, h)
    if normaliser == "diagonal":
        return math.hypot(w, h)
    return math.sqrt(max(float(ann["area"]), 0.0))


# ------------------------------------------------------------------ per-keypoint AP


def keypoint_ap(
    gt: dict[str, Any], predictions: list[dict[str, Any]], sigmas: np.ndarray
) -> np.ndarray:
    """``(K,)`` one-keypoint OKS AP (see the module docstring); -1 where no GT is labelled.

    ``gt`` is prepared (areas set, ``iscrowd`` filled), as :mod:`pose_core.metrics` passes it.
    """
    k = len(sigmas)
    parts: list[dict[Any, list[tuple[Any, ...]]]] = [defaultdict(list) for _ in range(k)]
    for group in _groups(gt, predictions, k):
        matched, ignored, ignore = _match_all(group, np.asarray(sigmas, dtype=np.float64))
        positives = (~ignore).sum(axis=1)
        for j in range(k):
            parts[j][group["category"]].append(
                (group["score"], matched[j], ignored[j], int(positives[j])))
    out = []
    for per_category in parts:
        precisions = [p for items in per_category.values() if (p := _precision(items)) is not None]
        valid = np.concatenate(precisions) if precisions else np.empty(0)
        out.append(float(valid.mean()) if valid.size else -1.0)
    return np.array(out)


def _match_all(group: dict[str, Any], sigmas: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(K, T, D)`` matched and ignored flags of one image, and the ``(K, G)`` GT ignore."""
    crowd = group["crowd"]
    ignore = crowd[None, :] | (group["gt_xyv"][:, :, 2].T <= 0)
    k, d, g = len(sigmas), len(group["score"]), len(crowd)
    if not (d and g):
        empty = np.zeros((k, len(OKS_THRESHOLDS), d), dtype=bool)
        return empty, empty, ignore
    oks = _oks_all(group, sigmas)
    if d == 1 and g == 1:  # one prediction, one GT (top-down on GT boxes): nothing competes
        matched = oks[:, 0, 0][:, None, None] >= np.minimum(OKS_THRESHOLDS, 1 - 1e-10)[:, None]
        return matched, matched & ignore[:, None, :], ignore
    pairs = [_match(oks[j], ignore[j], crowd) for j in range(k)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), ignore


def _groups(
    gt: dict[str, Any], predictions: list[dict[str, Any]], k: int
) -> list[dict[str, Any]]:
    """Per (category, image) in pycocotools' order: GT and top-20 predictions as arrays."""
    gts: dict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    dts: dict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    categories = sorted(c["id"] for c in gt["categories"])
    for ann in gt["annotations"]:
        gts[(ann["category_id"], ann["image_id"])].append(ann)
    for pred in predictions:
        dts[(pred["category_id"], pred["image_id"])].append(pred)
    images = sorted(img["id"] for img in gt["images"])
    groups = []
    for category in categories:
        for image in images:
            g, d = gts.get((category, image), []), dts.get((category, image), [])
            if not g and not d:
                continue
            order = np.argsort([-float(p["score"]) for p in d], kind="mergesort")
            d = [d[i] for i in order[:MAX_DETECTIONS]]
            groups.append({
                "category": category,
                "gt_xyv": np.array([a["keypoints"] for a in g], dtype=np.float64).reshape(
                    len(g), k, 3),
                "bbox": np.array([a["bbox"] for a in g], dtype=np.float64).reshape(-1, 4),
                "area": np.array([float(a["area"]) for a in g]),
                "crowd": np.array([bool(a.get("iscrowd")) for a in g], dtype=bool),
                "dt_xy": np.array([p["keypoints"] for p in d], dtype=np.float64).reshape(
                    len(d), k, 3)[:, :, :2],
                "score": np.array([float(p["score"]) for p in d]),
            })
    return groups


def _oks_all(group: dict[str, Any], sigmas: np.ndarray) -> np.ndarray:
    """``(K, D, G)`` pycocotools OKS of each keypoint alone, with its unlabelled-GT rule."""
    gt = group["gt_xyv"].transpose(1, 0, 2)[:, None]  # (K, 1, G, 3)
    dt = group["dt_xy"].transpose(1, 0, 2)[:, :, None]  # (K, D, 1, 2)
    squared = ((dt - gt[..., :2]) ** 2).sum(axis=-1)
    # pycocotools: a GT without labelled keypoints scores the distance outside its box,
    # doubled on each side; such a GT is ignored, but matching one still hides a prediction.
    x, y, w, h = (group["bbox"][:, i] for i in range(4))
    px, py = dt[..., 0], dt[..., 1]
    outside_x = np.maximum(0, (x - w) - px) + np.maximum(0, px - (x + 2 * w))
    outside_y = np.maximum(0, (y - h) - py) + np.maximum(0, py - (y + 2 * h))
    squared = np.where(gt[..., 2] > 0, squared, outside_x**2 + outside_y**2)
    variance = ((2.0 * sigmas) ** 2)[:, None, None]
    return np.asarray(np.exp(-squared / variance / (group["area"] + np.spacing(1)) / 2))


def _match(oks: np.ndarray, ignore: np.ndarray, crowd: np.ndarray) -> tuple[np.ndarray, ...]:
    """pycocotools ``evaluateImg`` matching: ``(T, D)`` matched and ignored flags."""
    order = np.argsort(ignore, kind="mergesort")
    oks, ignore, crowd = oks[:, order], ignore[order], crowd[order]
    matched = np.zeros((len(OKS_THRESHOLDS), oks.shape[0]), dtype=bool)
    ignored = np.zeros_like(matched)
    for t, threshold in enumerate(OKS_THRESHOLDS):
        taken = np.zeros(oks.shape[1], dtype=bool)
        for d in range(oks.shape[0]):
            best, m = min(threshold, 1 - 1e-10), -1
            for g in range(oks.shape[1]):
                if taken[g] and not crowd[g]:
                    continue
                if m > -1 and not ignore[m] and ignore[g]:
                    break
                if oks[d, g] < best:
                    continue
                best, m = oks[d, g], g
            if m > -1:
                matched[t, d], ignored[t, d], taken[m] = True, ignore[m], True
    return matched, ignored


def _precision(parts: list[tuple[np.ndarray, ...]]) -> np.ndarray | None:
    """pycocotools ``accumulate`` for one category: ``(T * R,)`` precision, None without GT."""
    positives = int(sum(p[3] for p in parts))
    if positives == 0:
        return None
    scores = np.concatenate([p[0] for p in parts])
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([p[1] for p in parts], axis=1)[:, order]
    ignored = np.concatenate([p[2] for p in parts], axis=1)[:, order]
    tp = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
    fp = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
    out = np.zeros((len(OKS_THRESHOLDS), len(RECALL_POINTS)))
    for t in range(len(OKS_THRESHOLDS)):
        recall = tp[t] / positives
        precision = tp[t] / (fp[t] + tp[t] + np.spacing(1))
        precision = np.maximum.accumulate(precision[::-1])[::-1]  # interpolated: max to the right
        index = np.searchsorted(recall, RECALL_POINTS, side="left")
        inside = index < len(precision)
        out[t, : int(inside.sum())] = precision[index[inside]]
    return out.ravel()


# ------------------------------------------------------------------ error and swaps


def keypoint_errors(
    scored_gt: Sequence[dict[str, Any]],
    predictions: list[dict[str, Any]],
    pairs: dict[int, int],
    normaliser: str,
    flip_index: Sequence[int] | None,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(K,)`` mean normalised error and ``(K,)`` swap rate over the matched GT (NaN: none).

    ``flip_index[j]`` is the mirror keypoint of ``j`` (itself on the centre line); None
    leaves every swap rate NaN.
    """
    error_sum, error_count = np.zeros(k), np.zeros(k)
    swaps, swap_count = np.zeros(k), np.zeros(k)
    mirror = np.asarray(flip_index if flip_index is not None else range(k))
    has_mirror = mirror != np.arange(k)
    for ann in scored_gt:
        norm = box_normaliser(ann, normaliser)
        index = pairs.get(ann["id"])
        if index is None or not norm > 0:
            continue
        g = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        xy = np.asarray(predictions[index]["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
        labelled = g[:, 2] > 0
        own = np.linalg.norm(xy - g[:, :2], axis=1)
        error_sum += np.where(labelled, own / norm, 0.0)
        error_count += labelled
        both = labelled & labelled[mirror] & has_mirror
        swaps += both & (np.linalg.norm(xy - g[mirror, :2], axis=1) < own)
        swap_count += both
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(error_count > 0, error_sum / np.maximum(error_count, 1), np.nan),
                np.where(swap_count > 0, swaps / np.maximum(swap_count, 1), np.nan))
