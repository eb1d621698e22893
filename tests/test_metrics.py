"""Metrics: OKS AP against pycocotools run by hand, PCK against a plain loop, on every real set."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pose_core.metrics import (
    MetricResult,
    evaluate_coco,
    evaluate_files,
    evaluate_predictions,
    instance_score,
)
from pose_core.records import DataError
from pose_core.skeletons import SigmaError, resolve_sigmas, skeleton_from_coco_category

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
SETS = sorted(p.parent.name for p in REAL.glob("*/annotations.json")) if REAL.is_dir() else []
NAMED_SIGMAS = {"animalpose": "animalpose", "ap10k": "ap10k"}  # uniform 0.1 elsewhere
needs_real = pytest.mark.skipif(not SETS, reason=f"real test data not found under {REAL}")


def _load(name: str) -> tuple[dict[str, Any], np.ndarray]:
    gt = json.loads((REAL / name / "annotations.json").read_text())
    category = next(c for c in gt["categories"] if c["id"] == gt["annotations"][0]["category_id"])
    skeleton = skeleton_from_coco_category(category)
    return gt, resolve_sigmas(NAMED_SIGMAS.get(name, "uniform:0.1"), skeleton)


def _perturbed(gt: dict[str, Any], seed: int, spread: float = 0.03) -> list[dict[str, Any]]:
    """GT + Gaussian noise, random scores, some dropped, some low-score duplicates."""
    rng = np.random.default_rng(seed)
    annotations = gt["annotations"]
    drop = set(rng.choice(len(annotations), size=len(annotations) // 6, replace=False).tolist())
    predictions = []
    for n, ann in enumerate(annotations):
        kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        noise = max(2.0, spread * max(ann["bbox"][2], ann["bbox"][3]))  # "a few px" at 64 px
        for copy_index in range(2 if n % 3 == 1 else 1):  # every third GT gets a duplicate
            if n in drop and copy_index == 0:
                continue
            scale = noise * (4.0 if copy_index else 1.0)
            xy = kp[:, :2] + rng.normal(0.0, scale, kp[:, :2].shape)
            scores = rng.uniform(0.1, 1.0, len(kp))
            predictions.append(
                {
                    "image_id": ann["image_id"],
                    "category_id": ann["category_id"],
                    "keypoints": np.column_stack([xy, scores]).ravel().tolist(),
                    "score": float(rng.uniform(0.05, 0.5) if copy_index else rng.uniform(0.3, 1)),
                }
            )
    return predictions


def _pycocotools_by_hand(
    gt: dict[str, Any], predictions: list[dict[str, Any]], sigmas: np.ndarray
) -> dict[str, float]:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(predictions))
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    t = int(np.argmin(np.abs(ev.params.iouThrs - 0.85)))
    p = ev.eval["precision"][t, :, :, 0, -1]
    ap85 = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
    s = ev.stats
    return {"AP": s[0], "AP50": s[1], "AP75": s[2], "AP85": ap85, "AR": s[5]}


def _pck_by_loop(gt: dict[str, Any], predictions: list[dict[str, Any]], thr: float) -> float:
    """Single-animal images: each GT is scored against the best-scoring prediction of its image."""
    k = len(gt["annotations"][0]["keypoints"]) // 3
    hits, counts = [0] * k, [0] * k
    for ann in gt["annotations"]:
        mine = [
            p
            for p in predictions
            if p["image_id"] == ann["image_id"] and p["category_id"] == ann["category_id"]
        ]
        best = max(mine, key=lambda p: p["score"]) if mine else None
        size = max(ann["bbox"][2], ann["bbox"][3])
        for j in range(k):
            gx, gy, v = ann["keypoints"][3 * j : 3 * j + 3]
            if v <= 0:
                continue
            counts[j] += 1
            if best is not None:
                px, py = best["keypoints"][3 * j], best["keypoints"][3 * j + 1]
                if math.sqrt((px - gx) ** 2 + (py - gy) ** 2) / size < thr:
                    hits[j] += 1
    accuracies = [h / c for h, c in zip(hits, counts, strict=True) if c > 0]
    return sum(accuracies) / len(accuracies)


@needs_real
@pytest.mark.parametrize("spread", [0.03, 0.1])
@pytest.mark.parametrize("name", SETS)
def test_matches_pycocotools_and_plain_pck_on_real_set(name: str, spread: float) -> None:
    gt, sigmas = _load(name)
    images = [a["image_id"] for a in gt["annotations"]]
    assert len(images) == len(set(images)), "the PCK loop assumes one animal per image"
    predictions = _perturbed(gt, seed=len(name), spread=spread)
    original = copy.deepcopy((gt, predictions))
    result = evaluate_coco(gt, predictions, sigmas, sigma_set=name)
    assert (gt, predictions) == original  # inputs untouched
    expected = _pycocotools_by_hand(gt, predictions, sigmas)
    for metric, value in expected.items():
        assert abs(getattr(result, metric) - value) < 1e-9, (metric, getattr(result, metric), value)
    assert abs(result.PCK05 - _pck_by_loop(gt, predictions, 0.05)) < 1e-12
    assert result.num_instances == sum(a["num_keypoints"] > 0 for a in gt["annotations"])
    assert len(result.pck_per_keypoint) == len(sigmas)


@needs_real
def test_real_set_comparisons_are_not_degenerate() -> None:
    results = []
    for name in SETS:
        gt, sigmas = _load(name)
        for spread in (0.03, 0.1):
            results.append(evaluate_coco(gt, _perturbed(gt, len(name), spread), sigmas))
    assert sum(0 < r.AP < 1 for r in results) >= len(results) // 2
    assert sum(0 < r.PCK05 < 1 for r in results) >= len(results) // 2
    assert len({round(r.AP85, 6) for r in results}) > 2


@needs_real
@pytest.mark.parametrize("name", SETS)
def test_ground_truth_as_prediction_scores_one(name: str) -> None:
    gt, sigmas = _load(name)
    predictions = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "keypoints": a["keypoints"],
            "score": 1.0,
        }
        for a in gt["annotations"]
    ]
    for area_rule in ("given", "bbox"):
        result = evaluate_coco(gt, predictions, sigmas, area_rule=area_rule)
        # pycocotools divides by tp + fp + eps, so a perfect AP is 1 - 2e-16.
        for value in (result.AP, result.AP50, result.AP75, result.AP85, result.AR):
            assert value == pytest.approx(1.0, abs=1e-12)
        assert result.PCK05 == 1.0


@needs_real
def test_wrong_length_sigmas_raise() -> None:
    gt, sigmas = _load("animalpose")
    predictions = _perturbed(gt, seed=0)
    for bad in (sigmas[:-1], np.append(sigmas, 0.1), np.full(17, 0.05)):
        with pytest.raises(SigmaError, match="K=20"):
            evaluate_coco(gt, predictions, bad)


@needs_real
def test_area_rule_changes_result_when_areas_differ_from_bbox() -> None:
    gt, sigmas = _load("macaque")  # its areas are segmentation areas, well below bbox w*h
    assert all(a["area"] < 0.6 * a["bbox"][2] * a["bbox"][3] for a in gt["annotations"])
    predictions = _perturbed(gt, seed=11, spread=0.1)  # 0.03 leaves every OKS above 0.95
    given = evaluate_coco(gt, predictions, sigmas, area_rule="given")
    by_bbox = evaluate_coco(gt, predictions, sigmas, area_rule="bbox")
    assert (given.AP, given.AP75, given.AP85) != (by_bbox.AP, by_bbox.AP75, by_bbox.AP85)
    bbox_gt = copy.deepcopy(gt)
    for ann in bbox_gt["annotations"]:
        ann["area"] = ann["bbox"][2] * ann["bbox"][3]
    assert abs(by_bbox.AP - _pycocotools_by_hand(bbox_gt, predictions, sigmas)["AP"]) < 1e-9
    assert (given.area_rule, by_bbox.area_rule) == ("given", "bbox")


def _one_instance_gt(area: float | None, bbox: list[float], points: np.ndarray) -> dict[str, Any]:
    ann: dict[str, Any] = {
        "id": 7,
        "image_id": 1,
        "category_id": 1,
        "bbox": bbox,
        "keypoints": np.column_stack([points, np.full(len(points), 2.0)]).ravel().tolist(),
        "num_keypoints": len(points),
        "iscrowd": 0,
    }
    if area is not None:
        ann["area"] = area
    category = {"id": 1, "name": "toy", "keypoints": [f"p{i}" for i in range(len(points))]}
    return {"images": [{"id": 1}], "annotations": [ann], "categories": [category]}


def _prediction(points: np.ndarray, score: float = 0.9, image_id: int = 1) -> dict[str, Any]:
    triples = np.column_stack([points, np.ones(len(points))])
    return {"image_id": image_id, "category_id": 1, "keypoints": triples.ravel().tolist(),
            "score": score}  # fmt: skip


def test_area_rule_synthetic_and_missing_area() -> None:
    points = np.array([[10.0, 10.0], [50.0, 60.0], [90.0, 20.0]])
    moved = points + np.array([4.0, 0.0])
    sigmas = np.full(3, 0.1)  # OKS = exp(-16 / (0.08 * area)): 0.82 at area 1000, 0.98 at 1e4
    gt = _one_instance_gt(1000.0, [0.0, 0.0, 100.0, 100.0], points)
    given = evaluate_coco(gt, [_prediction(moved)], sigmas)
    by_bbox = evaluate_coco(gt, [_prediction(moved)], sigmas, area_rule="bbox")
    assert given.AP85 == 0.0 and given.AP == pytest.approx(0.7)  # 7 of 10 thresholds pass
    assert by_bbox.AP85 == pytest.approx(1.0) and by_bbox.AP == pytest.approx(1.0)
    missing = _one_instance_gt(None, [0.0, 0.0, 100.0, 100.0], points)
    with pytest.raises(DataError, match="annotation id 7.*area"):
        evaluate_coco(missing, [_prediction(moved)], sigmas)
    assert evaluate_coco(missing, [_prediction(moved)], sigmas, area_rule="bbox").AP > 0.99


def test_pck_normalisers_and_strict_threshold() -> None:
    points = np.zeros((5, 2)) + 50.0
    gt = _one_instance_gt(2000.0, [0.0, 0.0, 100.0, 50.0], points)
    # Thresholds at 0.05: bbox max side 5 px, diagonal 5.59 px, sqrt(area) 2.24 px.
    offsets = np.array([2.0, 4.0, 5.3, 6.0, 5.0])
    predictions = [_prediction(points + np.column_stack([offsets, np.zeros(5)]))]
    sigmas = np.full(5, 0.1)
    expected = {
        "bbox": [1, 1, 0, 0, 0],  # 5.0 px is exactly 0.05 and does not count (MMPose: <)
        "diagonal": [1, 1, 1, 0, 1],
        "sqrt_area": [1, 0, 0, 0, 0],
    }
    for normaliser, hits in expected.items():
        result = evaluate_coco(gt, predictions, sigmas, pck_normaliser=normaliser)  # type: ignore[arg-type]
        assert list(result.pck_per_keypoint) == hits, normaliser
        assert result.PCK05 == pytest.approx(np.mean(hits))
    wide = evaluate_coco(gt, predictions, sigmas, pck_threshold=0.1)
    assert wide.PCK05 == 1.0 and wide.pck_threshold == 0.1


def test_pck_matches_by_oks_not_by_order_and_counts_missing_gt_wrong() -> None:
    a = np.array([[10.0, 10.0], [20.0, 10.0]])
    b = a + 200.0
    gt = _one_instance_gt(400.0, [0.0, 0.0, 30.0, 20.0], a)
    second = copy.deepcopy(gt["annotations"][0])
    second.update(id=8, bbox=[200.0, 200.0, 30.0, 20.0])
    second["keypoints"] = np.column_stack([b, [2.0, 0.0]]).ravel().tolist()  # 2nd kp unlabelled
    gt["annotations"].append(second)
    sigmas = np.full(2, 0.1)
    # The higher-scoring prediction sits on B: it must take B, not the first GT in the list.
    both = evaluate_coco(gt, [_prediction(b + 0.5, 0.9), _prediction(a + 0.5, 0.8)], sigmas)
    assert both.PCK05 == 1.0 and both.pck_per_keypoint == (1.0, 1.0)
    # Only a prediction for B: A's keypoints are wrong; keypoint 1 is labelled on A only.
    only_b = evaluate_coco(gt, [_prediction(b + 0.5, 0.9)], sigmas)
    assert only_b.pck_per_keypoint == (0.5, 0.0) and only_b.PCK05 == 0.25
    empty = evaluate_coco(gt, [], sigmas)
    assert (empty.AP, empty.PCK05, empty.num_instances) == (0.0, 0.0, 2)


def test_nan_where_a_keypoint_is_never_labelled() -> None:
    points = np.array([[10.0, 10.0], [20.0, 20.0]])
    gt = _one_instance_gt(400.0, [0.0, 0.0, 30.0, 30.0], points)
    gt["annotations"][0]["keypoints"][5] = 0  # keypoint 1 unlabelled
    result = evaluate_coco(gt, [_prediction(points)], np.full(2, 0.1))
    assert result.pck_per_keypoint[0] == 1.0 and math.isnan(result.pck_per_keypoint[1])
    assert result.PCK05 == 1.0


@needs_real
def test_evaluate_predictions_pairs_records_and_uses_mmpose_instance_score() -> None:
    gt, sigmas = _load("dlc_openfield_mouse")
    rng = np.random.default_rng(5)
    records, coords, scores = [], [], []
    for ann in gt["annotations"]:
        kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        records.append(
            {"image_id": ann["image_id"], "bbox": ann["bbox"], "keypoints": kp, "area": ann["area"]}
        )
        coords.append(kp[:, :2] + rng.normal(0, 3.0, (len(kp), 2)))
        scores.append(rng.uniform(0.0, 1.0, len(kp)))
    result = evaluate_predictions(records, np.stack(coords), np.stack(scores), 4, sigmas, "u")
    predictions = []
    for ann, xy, s in zip(gt["annotations"], coords, scores, strict=True):
        kept = s[s > 0.2]
        predictions.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "keypoints": np.column_stack([xy, s]).ravel().tolist(),
                "score": float(kept.mean()) if kept.size else 0.0,
            }
        )
    expected = _pycocotools_by_hand(gt, predictions, sigmas)
    for metric, value in expected.items():
        assert abs(getattr(result, metric) - value) < 1e-9, metric
    assert abs(result.PCK05 - _pck_by_loop(gt, predictions, 0.05)) < 1e-12
    assert 0 < result.AP < 1 and result.num_instances == len(records)
    assert instance_score(np.array([0.1, 0.3, 0.5])) == pytest.approx(0.4)
    assert instance_score(np.array([0.1, 0.2])) == 0.0
    with pytest.raises(ValueError, match="pred_keypoints"):
        evaluate_predictions(records, np.stack(coords)[:-1], np.stack(scores), 4, sigmas)


@needs_real
@pytest.mark.parametrize(("name", "spec"), [("animalpose", "animalpose"), ("ap10k", "ap10k")])
def test_evaluate_files_resolves_named_sigmas(tmp_path: Path, name: str, spec: str) -> None:
    gt, sigmas = _load(name)
    predictions = _perturbed(gt, seed=3)
    pred_path = tmp_path / "results.json"
    pred_path.write_text(json.dumps(predictions))
    gt_path = REAL / name / "annotations.json"
    result = evaluate_files(gt_path, pred_path, spec, pck_normaliser="diagonal")
    category = next(c for c in gt["categories"] if c["id"] == gt["annotations"][0]["category_id"])
    direct = evaluate_coco(gt, predictions, sigmas, spec, pck_normaliser="diagonal",
                           flip_index=skeleton_from_coco_category(category).flip_index)
    got, want = result.as_dict(), direct.as_dict()
    for key in ("pck_per_keypoint", "ap_per_keypoint", "error_per_keypoint",
                "swap_rate_per_keypoint"):  # NaN-holding lists: compared NaN-equal
        np.testing.assert_array_equal(got.pop(key), want.pop(key))
    assert got == want
    assert result.sigma_set == spec and result.pck_normaliser == "diagonal"
    other = "ap10k" if spec == "animalpose" else "animalpose"
    with pytest.raises(SigmaError):
        evaluate_files(gt_path, pred_path, other)
    with pytest.raises(TypeError, match="unknown options"):
        evaluate_files(gt_path, pred_path, spec, area="bbox")


def test_result_record_and_quiet_pycocotools(capsys: pytest.CaptureFixture[str]) -> None:
    points = np.array([[10.0, 10.0], [20.0, 20.0]])
    gt = _one_instance_gt(400.0, [0.0, 0.0, 30.0, 30.0], points)
    result = evaluate_coco(gt, [_prediction(points)], np.array([0.05, 0.1]), "mine")
    assert capsys.readouterr().out == ""
    values = result.as_dict()
    assert {"AP", "AP50", "AP75", "AP85", "AR", "PCK05"} <= set(values)
    assert values["pck_per_keypoint"] == [1.0, 1.0] and values["sigma_set"] == "mine"
    assert len(values["sigma_digest"]) == 12
    other = evaluate_coco(gt, [_prediction(points)], np.array([0.1, 0.05]))
    assert other.sigma_digest != result.sigma_digest
    assert isinstance(result, MetricResult)
    with pytest.raises(ValueError, match="not in the GT images"):
        evaluate_coco(gt, [_prediction(points, image_id=99)], np.array([0.05, 0.1]))
