"""Per-keypoint AP against pycocotools on one-keypoint copies of the real sets; error and
swap rate against hand-worked values."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import numpy as np
import pytest

from orchestrator.cli import main
from pose_core.metrics import evaluate_coco, evaluate_predictions
from tests.test_metrics import REAL, SETS, _load, _perturbed, _pycocotools_by_hand, needs_real


def _one_keypoint(
    gt: dict[str, Any], predictions: list[dict[str, Any]], j: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The GT and results with keypoint ``j`` only, as a user would hand them to pycocotools."""
    gt = copy.deepcopy(gt)
    for ann in gt["annotations"]:
        ann["keypoints"] = ann["keypoints"][3 * j : 3 * j + 3]
        ann["num_keypoints"] = int(ann["keypoints"][2] > 0)
    for category in gt["categories"]:
        category["keypoints"] = [category["keypoints"][j]]
        category["skeleton"] = []
    sliced = [{**p, "keypoints": p["keypoints"][3 * j : 3 * j + 3]} for p in predictions]
    return gt, sliced


@needs_real
@pytest.mark.parametrize("name", SETS)
def test_keypoint_ap_equals_pycocotools_on_one_keypoint(name: str) -> None:
    gt, sigmas = _load(name)
    predictions = _perturbed(gt, seed=3 + len(name), spread=0.1)
    result = evaluate_coco(gt, predictions, sigmas)
    assert len(result.ap_per_keypoint) == len(sigmas)
    for j, sigma in enumerate(sigmas):
        one_gt, one_predictions = _one_keypoint(gt, predictions, j)
        expected = _pycocotools_by_hand(one_gt, one_predictions, np.array([sigma]))["AP"]
        assert result.ap_per_keypoint[j] == pytest.approx(expected, abs=1e-9), (j, expected)
    # spread 0.1 leaves some values strictly between 0 and 1: the comparison is not degenerate
    assert any(0 < v < 1 for v in result.ap_per_keypoint)


def _gt_records() -> list[dict[str, Any]]:
    # keypoints: 0 nose (centre), 1 left paw, 2 right paw; a 100 x 50 box (bbox normaliser 100)
    keypoints = np.array([[50, 10, 2], [20, 40, 2], [80, 40, 2]], dtype=np.float64)
    return [
        {"image_id": 1, "bbox": [0, 0, 100, 50], "keypoints": keypoints, "area": 5000.0},
        {"image_id": 2, "bbox": [0, 0, 100, 50], "keypoints": keypoints, "area": 5000.0},
    ]


def test_error_and_swap_rate_hand_worked() -> None:
    records = _gt_records()
    right = [[50, 14], [20, 40], [80, 40]]  # nose 4 px off; paws exact
    swapped = [[50, 10], [78, 40], [21, 40]]  # paws exchanged, each a little off
    coords = np.array([right, swapped], dtype=np.float64)
    result = evaluate_predictions(
        records, coords, np.ones((2, 3)), num_keypoints=3, sigmas=np.full(3, 0.1),
        flip_index=[0, 2, 1],
    )
    # nose: (4 + 0) / 2 / 100; left paw: (0 + 58) / 2 / 100; right paw: (0 + 59) / 2 / 100
    assert result.error_per_keypoint == pytest.approx((0.02, 0.29, 0.295))
    assert math.isnan(result.swap_rate_per_keypoint[0])  # the nose has no mirror
    assert result.swap_rate_per_keypoint[1:] == (0.5, 0.5)
    values = result.as_dict()
    for key in ("ap_per_keypoint", "error_per_keypoint", "swap_rate_per_keypoint"):
        assert isinstance(values[key], list) and len(values[key]) == 3
    assert result.ap_per_keypoint[0] > result.ap_per_keypoint[1]  # swapped paws lose AP


def test_swap_rate_is_nan_without_flip_index_and_unlabelled_mirror_is_skipped() -> None:
    records = _gt_records()
    records[1] = {**records[1], "keypoints": records[1]["keypoints"].copy()}
    records[1]["keypoints"][2, 2] = 0  # right paw unlabelled: no swap judgement possible
    coords = np.array([[[50, 10], [80, 40], [20, 40]]] * 2, dtype=np.float64)
    scores = np.ones((2, 3))
    result = evaluate_predictions(records, coords, scores, 3, np.full(3, 0.1), flip_index=[0, 2, 1])
    assert result.swap_rate_per_keypoint[1:] == (1.0, 1.0)  # only record 0 counts
    plain = evaluate_predictions(records, coords, scores, 3, np.full(3, 0.1))
    assert all(math.isnan(v) for v in plain.swap_rate_per_keypoint)
    with pytest.raises(ValueError, match="flip_index"):
        evaluate_predictions(records, coords, scores, 3, np.full(3, 0.1), flip_index=[0, 1])


@needs_real
def test_eval_per_keypoint_prints_one_line_per_named_keypoint(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    gt_path = REAL / "animalpose" / "annotations.json"
    gt = json.loads(gt_path.read_text())
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps(_perturbed(gt, seed=1, spread=0.1)))
    assert main(["eval", "--gt", str(gt_path), "--pred", str(pred_path), "--per-keypoint"]) == 0
    out = capsys.readouterr().out
    names = gt["categories"][0]["keypoints"]
    lines = [line for line in out.splitlines() if line.split(" ")[0] in names]
    assert len(lines) == len(names) and "swap" in out
    assert main(["eval", "--gt", str(gt_path), "--pred", str(pred_path)]) == 0
    assert "swap" not in capsys.readouterr().out
