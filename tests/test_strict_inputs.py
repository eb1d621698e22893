"""Ambiguous or malformed files are one-line errors naming the file and record, in the readers
and in ``posetune eval`` (issue 17): real shared COCO files, modified in tmp_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main
from pose_core.coco import read_coco
from pose_core.metrics import evaluate_files
from pose_core.records import DataError


def _ap10k(tmp_path: Path, shared_data: Path) -> tuple[Path, dict[str, Any]]:
    """The shared AP-10K file (images 37516 and 4, annotations 9284 and 6) and its data."""
    shutil.copytree(shared_data / "ap10k", tmp_path / "ap10k")
    path = tmp_path / "ap10k" / "annotations.json"
    return path, json.loads(path.read_text())


def _predictions(gt: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"],
             "keypoints": a["keypoints"], "score": 0.9} for a in gt["annotations"]]


def test_duplicate_image_id_names_both_files(tmp_path: Path, shared_data: Path) -> None:
    path, data = _ap10k(tmp_path, shared_data)
    assert len(read_coco(path)[0]) == 2
    data["images"][1]["id"] = data["images"][0]["id"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as caught:
        read_coco(path)
    assert str(caught.value) == (
        f"{path}: image id 37516: field 'id': duplicate image id: '000000037516.jpg' "
        "(images[0]) and '000000000004.jpg' (images[1]) (expected unique image ids)"
    )


def test_duplicate_annotation_id_names_both_records(tmp_path: Path, shared_data: Path) -> None:
    path, data = _ap10k(tmp_path, shared_data)
    data["annotations"][1]["id"] = data["annotations"][0]["id"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotation id 9284 \(image id 4\): field 'id': "
                       r"duplicate annotation id: annotations\[0\] \(image id 37516\) and "
                       r"annotations\[1\] \(image id 4\)"):
        read_coco(path)


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d["annotations"][0]["keypoints"].__setitem__(0, float("nan")),
     "annotation id 9284 (image id 37516): field 'keypoints': non-finite value nan"),
    (lambda d: d["annotations"][1].__setitem__("id", d["annotations"][0]["id"]),
     "field 'id': duplicate annotation id"),
    (lambda d: d["images"][1].__setitem__("id", d["images"][0]["id"]),
     "field 'id': duplicate image id"),
], ids=["nan-keypoint", "duplicate-annotation", "duplicate-image"])
def test_eval_checks_the_gt_as_the_readers_do(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str], change: Any,
    expected: str,
) -> None:
    path, data = _ap10k(tmp_path, shared_data)
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(_predictions(data)))
    assert evaluate_files(path, pred, "ap10k").AP == pytest.approx(1.0)
    change(data)
    path.write_text(json.dumps(data))  # json writes NaN as the bare NaN Python reads back
    assert main(["eval", "--gt", str(path), "--pred", str(pred), "--sigmas", "ap10k"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: " in err and expected in err, err


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("score", "0.9", "field 'score': got '0.9' (expected a number)"),
    ("keypoints", "x", "field 'keypoints': got 'x' (expected a number)"),
    ("keypoints", float("inf"), "field 'keypoints': non-finite value inf (expected a finite number)"),
    ("score", None, "field 'score': got None (expected a number)"),
])
def test_eval_rejects_a_non_numeric_prediction(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str], field: str,
    value: Any, expected: str,
) -> None:
    path, data = _ap10k(tmp_path, shared_data)
    predictions = _predictions(data)
    if field == "score":
        predictions[1]["score"] = value
    else:
        predictions[1]["keypoints"][4] = value
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(predictions))
    assert main(["eval", "--gt", str(path), "--pred", str(pred), "--sigmas", "ap10k"]) == 2
    err = capsys.readouterr().err
    assert err == f"posetune: error: {pred}: prediction 1 (image id 4): {expected}\n"


def test_eval_json_is_strict_json(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, data = _ap10k(tmp_path, shared_data)
    for ann in data["annotations"]:  # no GT has the first keypoint: its PCK is NaN
        ann["keypoints"][:3] = [0, 0, 0]
    path.write_text(json.dumps(data))
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(_predictions(data)))
    assert main(["eval", "--gt", str(path), "--pred", str(pred), "--sigmas", "ap10k",
                 "--json"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    values = json.loads(out, parse_constant=refuse)
    assert values["AP"] == pytest.approx(1.0) and values["PCK05"] == 1.0
    assert values["pck_per_keypoint"][0] is None and set(values["pck_per_keypoint"]) == {None, 1.0}
