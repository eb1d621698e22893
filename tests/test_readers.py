import csv
import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util

from pose_core.readers import (
    czechlynx_to_coco,
    load_image,
    read_coco,
    read_czechlynx,
    read_dataset,
    write_coco,
)
from pose_core.records import DataError
from pose_core.skeletons import ANIMALPOSE, AP10K

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
REAL_SETS = [
    "animalpose", "ap10k", "animalkingdom", "horse10", "macaque", "fly", "locust", "zebra",
    "dlc_openfield_mouse", "dlc_reaching_mouse",
]  # fmt: skip


def expect_error(call: Callable[[], Any], file: Path | str, record: str, field: str) -> DataError:
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert str(file) in message and record in message and f"field '{field}'" in message, message
    return info.value


def _image(path: Path, width: int = 80, height: int = 60) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((height, width, 3), 127, np.uint8)
    assert cv2.imwrite(str(path), image)


# ------------------------------------------------------------------ COCO


def _coco(tmp_path: Path, **ann_changes: Any) -> Path:
    """A 3-keypoint COCO file with one 80x60 image and one annotation (id 17, image 3)."""
    _image(tmp_path / "images" / "a.jpg")
    ann = {
        "id": 17, "image_id": 3, "category_id": 1, "iscrowd": 0, "area": 300.0,
        "bbox": [10, 10, 30, 20], "keypoints": [12, 14, 2, 20, 20, 1, 0, 0, 0],
    }  # fmt: skip
    ann.update(ann_changes)
    ann = {k: v for k, v in ann.items() if v is not None}
    data = {
        "images": [{"id": 3, "file_name": "a.jpg", "width": 80, "height": 60, "scene": "forest"}],
        "annotations": [ann],
        "categories": [
            {"id": 1, "name": "cat", "keypoints": ["nose", "L_ear", "R_ear"], "skeleton": [[1, 2]]}
        ],
    }
    path = tmp_path / "anns.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("name", REAL_SETS)
def test_read_every_real_set(name: str) -> None:
    path = REAL / name / "annotations.json"
    if not path.exists():
        pytest.skip(f"shared real data not found at {path}")
    data = json.loads(path.read_text())
    expected = [
        a
        for a in data["annotations"]
        if not a.get("iscrowd") and any(v > 0 for v in a["keypoints"][2::3])
    ]
    instances, skeleton, report = read_coco(path, check_images="header")
    assert len(instances) == len(expected) == report.kept
    assert skeleton.num_keypoints == len(data["categories"][0]["keypoints"])
    for inst, ann in zip(instances, expected, strict=True):
        assert Path(inst.image_path).is_absolute() and Path(inst.image_path).is_file()
        assert inst.keypoints.shape == (skeleton.num_keypoints, 3)
        assert inst.keypoints.dtype == np.float32
        assert inst.annotation_id == ann["id"] and inst.area == pytest.approx(ann["area"])
        assert inst.source == name
    if name == "ap10k":
        assert skeleton is AP10K
    if name == "animalpose":
        assert skeleton is ANIMALPOSE


def test_write_coco_round_trip_of_a_real_set(tmp_path: Path) -> None:
    path = REAL / "animalpose" / "annotations.json"
    if not path.exists():
        pytest.skip(f"shared real data not found at {path}")
    instances, skeleton, _ = read_coco(path)
    out = tmp_path / "copy.json"
    write_coco(instances, skeleton, out)
    again, skeleton2, _ = read_coco(out, source="animalpose")
    assert skeleton2 is skeleton
    for a, b in zip(instances, again, strict=True):
        assert a.image_path == b.image_path and a.bbox == b.bbox and a.area == b.area
        assert np.array_equal(a.keypoints, b.keypoints) and a.key() == b.key()


def test_coco_fields_defaults_and_scene(tmp_path: Path) -> None:
    path = _coco(tmp_path, identity="lynx-7")
    (inst,), skeleton, report = read_coco(path)
    assert inst.image_path == str(tmp_path / "images" / "a.jpg")  # default root: <dir>/images
    assert inst.scene == "forest" and inst.identity == "lynx-7"
    assert inst.area == 300.0 and inst.area_rule == "given" and inst.category == "cat"
    assert skeleton.flip_pairs == ((1, 2),) and skeleton.links == ((0, 1),)
    assert inst.source == "anns"
    (inst,), _, _ = read_coco(path, area_rule="bbox")
    assert inst.area == 600.0 and inst.area_rule == "bbox"


def test_coco_missing_area_uses_bbox_and_is_reported(tmp_path: Path) -> None:
    (inst,), _, report = read_coco(_coco(tmp_path, area=None))
    assert inst.area == 600.0 and inst.area_rule == "bbox"
    assert report.notes["area missing, used bbox"] == 1 and report.kept == 1
    assert not report.skipped


def test_coco_skips_crowd_and_unlabelled(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    data = json.loads(path.read_text())
    base = data["annotations"][0]
    data["annotations"] += [
        {**base, "id": 18, "iscrowd": 1},
        {**base, "id": 19, "keypoints": [-1, -1, 0] * 3},  # animalkingdom-style unlabelled
    ]
    path.write_text(json.dumps(data))
    instances, _, report = read_coco(path)
    assert [i.annotation_id for i in instances] == [17]
    assert report.skipped == {"crowd": 1, "no labelled keypoints": 1}
    assert "skipped 2" in report.summary()


def test_coco_categories_with_different_keypoints(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    data = json.loads(path.read_text())
    data["categories"].append({"id": 2, "name": "bird", "keypoints": ["beak", "tail"]})
    data["annotations"].append(
        {**data["annotations"][0], "id": 18, "category_id": 2, "keypoints": [1, 1, 2, 2, 2, 2]}
    )
    path.write_text(json.dumps(data))
    error = expect_error(lambda: read_coco(path), path, "categories", "keypoints")
    assert "'cat' K=3 (id 1, " in str(error) and "'bird' K=2 (id 2, 1 instances)" in str(error)
    instances, skeleton, report = read_coco(path, category="bird")
    assert skeleton.keypoints == ("beak", "tail") and [i.annotation_id for i in instances] == [18]
    assert report.skipped["other category"] == 1
    instances, _, _ = read_coco(path, category=1)
    assert [i.annotation_id for i in instances] == [17]
    expect_error(lambda: read_coco(path, category="dog"), path, "category 'dog'", "name")


ANN = "annotation id 17 (image id 3)"


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"keypoints": [1, 2, 2, 3, 4, 2]}, "keypoints", "got 6 values"),
        ({"keypoints": [12, math.nan, 2, 20, 20, 1, 0, 0, 0]}, "keypoints", "non-finite"),
        ({"keypoints": [12, 14, 3, 20, 20, 1, 0, 0, 0]}, "keypoints", "visibility 3"),
        ({"keypoints": [12, 14, 2, 130, 20, 1, 0, 0, 0]}, "keypoints", "'L_ear' at (130, 20)"),
        ({"keypoints": [12, -31, 2, 0, 0, 0, 0, 0, 0]}, "keypoints", "far outside"),
        ({"bbox": [10, 10, 0, 20]}, "bbox", "zero or negative"),
        ({"bbox": [10, 10, 30, -5]}, "bbox", "zero or negative"),
        ({"bbox": [10, 10, math.inf, 5]}, "bbox", "non-finite"),
        ({"bbox": None}, "bbox", "got None"),
        ({"area": 0}, "area", "got 0"),
        ({"keypoints": None}, "keypoints", "got None"),
    ],
)
def test_coco_annotation_errors(tmp_path: Path, changes: dict, field: str, problem: str) -> None:
    path = _coco(tmp_path, **changes)
    error = expect_error(lambda: read_coco(path), path, ANN, field)
    assert problem in str(error)


def test_coco_far_outside_tolerance_allows_points_near_border(tmp_path: Path) -> None:
    # 80x60 image: 50% tolerance allows x up to 120 and y down to -30.
    path = _coco(tmp_path, keypoints=[119, -29, 2, -39, 89, 1, 0, 0, 0])
    (inst,), _, _ = read_coco(path)
    assert inst.keypoints[0, 0] == 119


def test_coco_file_level_errors(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    expect_error(lambda: read_coco(path), path, "whole file", "(json)")
    data = json.loads(text)
    del data["images"]
    path.write_text(json.dumps(data))
    expect_error(lambda: read_coco(path), path, "whole file", "images")
    missing = tmp_path / "missing.json"
    expect_error(lambda: read_coco(missing), missing, "whole file", "(json)")


def test_coco_record_level_errors(tmp_path: Path) -> None:
    path = _coco(tmp_path, image_id=99)
    expect_error(lambda: read_coco(path), path, "annotation id 17 (image id 99)", "image_id")
    path = _coco(tmp_path, category_id=5)
    expect_error(lambda: read_coco(path), path, ANN, "category_id")
    path = _coco(tmp_path)
    data = json.loads(path.read_text())
    data["annotations"].append(dict(data["annotations"][0]))
    path.write_text(json.dumps(data))
    expect_error(lambda: read_coco(path), path, ANN, "id")


def test_coco_image_checks(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    image = tmp_path / "images" / "a.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    read_coco(path)  # "exists" does not open the file
    error = expect_error(lambda: read_coco(path, check_images="header"), path, ANN, "file_name")
    assert "corrupt image" in str(error) and str(image) in str(error)
    with pytest.raises(DataError, match="cannot decode"):
        load_image(str(image))
    image.unlink()
    error = expect_error(lambda: read_coco(path), path, ANN, "file_name")
    assert "image not found" in str(error)
    (inst,), _, _ = read_coco(path, check_images="none")
    with pytest.raises(DataError, match=f"{inst.image_path}: image file: field 'path'"):
        load_image(inst.image_path)


def test_coco_header_size_mismatch(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    _image(tmp_path / "images" / "a.jpg", width=50, height=50)
    expect_error(lambda: read_coco(path, check_images="header"), path, ANN, "width/height")


def test_load_image_returns_bgr(tmp_path: Path) -> None:
    _image(tmp_path / "x.png", width=7, height=5)
    image = load_image(str(tmp_path / "x.png"))
    assert image.shape == (5, 7, 3) and image.dtype == np.uint8


def test_read_dataset_dispatch(tmp_path: Path) -> None:
    instances, skeleton, _ = read_dataset(_coco(tmp_path))
    assert len(instances) == 1 and skeleton.num_keypoints == 3
    bad = tmp_path / "data.xml"
    expect_error(lambda: read_dataset(bad), bad, "whole file", "suffix")


# ------------------------------------------------------------------ CzechLynx


def _rle_text(height: int, width: int, box: tuple[int, int, int, int]) -> str:
    mask = np.zeros((height, width), np.uint8, order="F")
    x, y, w, h = box
    mask[y : y + h, x : x + w] = 1
    rle = mask_util.encode(mask)
    return repr({"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")})


def _lynx_rows() -> list[dict[str, str]]:
    return [
        {
            "path": "photos/a.jpg",
            "pose": repr(
                {"L_F_Paw": [20.5, 40.0], "left_eye": [30, 12], "tail_base": [60.0, 30.0]}
            ),
            "mask": _rle_text(60, 80, (10, 5, 50, 40)),
            "unique_name": "lynx-1",
            "source": "sumava",
            "date": "2020-01-02",
            "split-geo_aware": "train",
            "split-time_open": "test",
            "split-time_closed": "train",
            "split-pose": "train",
        },
        {
            "path": "photos/b.jpg",
            "pose": repr({"front-right knee": [41, 33], "Nose": [44, 10]}),
            "mask": _rle_text(60, 80, (30, 2, 20, 50)),
            "unique_name": "lynx-2",
            "source": "sumava",
            "date": "2021-03-04",
            "split-geo_aware": "test",
            "split-time_open": "train",
            "split-time_closed": "test",
            "split-pose": "test",
        },
        {
            "path": "photos/c.jpg",
            "pose": "{}",
            "mask": _rle_text(60, 80, (1, 1, 5, 5)),
            "unique_name": "lynx-3",
            "source": "sumava",
            "date": "",
            "split-geo_aware": "train",
            "split-time_open": "train",
            "split-time_closed": "train",
            "split-pose": "",
        },
    ]


def _lynx_csv(tmp_path: Path, rows: list[dict[str, str]] | None = None) -> Path:
    rows = _lynx_rows() if rows is None else rows
    for row in rows:
        if row["path"]:
            _image(tmp_path / row["path"])
    path = tmp_path / "lynx.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_czechlynx_reader(tmp_path: Path) -> None:
    path = _lynx_csv(tmp_path)
    instances, report = read_czechlynx(path, check_images="header")
    assert [i.annotation_id for i in instances] == [1, 2]
    assert report.skipped == {"empty pose": 1} and report.kept == 2
    first = instances[0]
    assert first.image_path == str(tmp_path / "photos" / "a.jpg")
    assert (first.width, first.height) == (80, 60)  # from the mask size
    assert first.bbox == (10.0, 5.0, 50.0, 40.0)
    assert first.area == 2000.0 and first.area_rule == "mask"
    assert first.identity == "lynx-1" and first.source == "sumava" and first.category == "lynx"
    assert first.split == {
        "geo_aware": "train",
        "time_open": "test",
        "time_closed": "train",
        "pose": "train",
    }
    kps = first.keypoints
    assert kps[ANIMALPOSE.index("L_F_Paw")].tolist() == [20.5, 40.0, 2.0]
    assert kps[ANIMALPOSE.index("L_Eye")].tolist() == [30.0, 12.0, 2.0]
    assert kps[ANIMALPOSE.index("TailBase")].tolist() == [60.0, 30.0, 2.0]
    assert int((kps[:, 2] > 0).sum()) == 3
    assert instances[1].keypoints[ANIMALPOSE.index("R_F_Knee"), 2] == 2


def test_czechlynx_split_filter(tmp_path: Path) -> None:
    path = _lynx_csv(tmp_path)
    instances, report = read_czechlynx(path, split="pose:train", source="lynx")
    assert [i.annotation_id for i in instances] == [1] and instances[0].source == "lynx"
    assert report.skipped == {"split-pose is not train": 2}
    instances, _ = read_czechlynx(path, split="geo_aware:test")
    assert [i.annotation_id for i in instances] == [2]
    with pytest.raises(ValueError, match="geo_aware"):
        read_czechlynx(path, split="pose")


def test_czechlynx_round_trip_through_coco(tmp_path: Path) -> None:
    path = _lynx_csv(tmp_path)
    rows = _lynx_rows()
    rows[1]["bbox"] = "[29.5, 1.5, 21.0, 51.0]"  # an explicit bbox wins over the mask's
    rows[0]["bbox"] = ""
    rows[2]["bbox"] = ""
    path = _lynx_csv(tmp_path, rows)
    out = tmp_path / "coco" / "lynx.json"
    report = czechlynx_to_coco(path, out)
    assert report.kept == 2
    lynx, _ = read_czechlynx(path)
    coco, skeleton, _ = read_coco(out)
    assert skeleton is ANIMALPOSE and len(coco) == len(lynx) == 2
    assert lynx[1].bbox == (29.5, 1.5, 21.0, 51.0) and lynx[1].area == 1000.0
    for a, b in zip(lynx, coco, strict=True):
        assert np.array_equal(a.keypoints, b.keypoints)
        assert a.bbox == b.bbox and a.area == b.area and a.area_rule == b.area_rule == "mask"
        assert a.image_path == b.image_path and a.key() == b.key()
        assert a.split == b.split and a.identity == b.identity
    data = json.loads(out.read_text())
    assert data["images"][0]["file_name"] == str(tmp_path / "photos" / "a.jpg")
    assert data["categories"][0]["keypoints"] == list(ANIMALPOSE.keypoints)


def test_czechlynx_bbox_only_and_given_size(tmp_path: Path) -> None:
    row = {"path": "p.jpg", "pose": "{'Withers': (40, 20)}", "bbox": "[5, 5, 50, 30]"}
    rows = [{**row, "width": "100", "height": "70", "identity": "x"}]
    rows.append({**row, "path": "q.jpg", "width": "", "height": "", "identity": ""})
    first, second = read_czechlynx(_lynx_csv(tmp_path, rows))[0]
    assert first.area == 1500.0 and first.area_rule == "bbox" and first.identity == "x"
    assert (first.width, first.height) == (100, 70)  # the columns win
    assert (second.width, second.height) == (80, 60)  # read from the image header
    assert first.source == "czechlynx" and first.split == {} and second.identity is None
    assert (first.image_id, second.image_id) == (1, 2)


def _bad_lynx(tmp_path: Path, **changes: str) -> Path:
    rows = _lynx_rows()
    rows[1].update(changes)
    return _lynx_csv(tmp_path, rows)


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"pose": "{'left_front_toe': [1, 2]}"}, "pose", "unknown keypoint name 'left_front_toe'"),
        ({"pose": "{'Nose': [1, 2], 'nose': [1, 2]}"}, "pose", "repeats"),
        ({"pose": "{'Nose': [1, 2, 3]}"}, "pose", "[x, y]"),
        ({"pose": "{'Nose': [float('nan'), 2]}"}, "pose", "not a Python literal"),
        ({"pose": "{'Nose': [1, 900]}"}, "keypoints", "far outside"),
        ({"pose": "__import__('os')"}, "pose", "not a Python literal"),
        ({"pose": "[1, 2]"}, "pose", "a dict"),
        ({"mask": "{'size': [60, 80]}"}, "mask", "'counts'"),
        ({"mask": "{'size': [60, 80], 'counts': '!!!'}"}, "mask", ""),
        ({"mask": _rle_text(60, 80, (0, 0, 0, 0))}, "bbox", "zero or negative"),
        ({"path": ""}, "path", "empty"),
    ],
)
def test_czechlynx_row_errors(tmp_path: Path, changes: dict, field: str, problem: str) -> None:
    path = _bad_lynx(tmp_path, **changes)
    error = expect_error(lambda: read_czechlynx(path), path, "CSV line 3", field)
    assert problem in str(error)


def test_czechlynx_file_errors(tmp_path: Path) -> None:
    path = _lynx_csv(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 3])  # truncated last line
    error = expect_error(lambda: read_czechlynx(path), path, "CSV line 3", "mask")
    assert "row ends early" in str(error)
    path.write_text("".join(lines[:2]) + lines[2].rstrip("\n") + ",extra\n")
    expect_error(lambda: read_czechlynx(path), path, "CSV line 3", "(csv)")
    path.write_bytes(b"path,pose,mask\n\xff\xfe\x00bad")
    expect_error(lambda: read_czechlynx(path), path, "whole file", "(csv)")
    missing = tmp_path / "none.csv"
    expect_error(lambda: read_czechlynx(missing), missing, "whole file", "(csv)")
    path.write_text("path,mask\nphotos/a.jpg,\n")
    expect_error(lambda: read_czechlynx(path), path, "header (CSV line 1)", "pose")
    path.write_text("path,pose\nphotos/a.jpg,{}\n")
    expect_error(lambda: read_czechlynx(path), path, "header (CSV line 1)", "mask or bbox")
    path.write_text("path,pose,bbox\nphotos/a.jpg,\"{'Nose': [1, 2]}\",\n")
    expect_error(lambda: read_czechlynx(path), path, "CSV line 2", "bbox")
    path.write_text("path,pose,bbox\nphotos/a.jpg,\"{'Nose': [1, 2]}\",[1,1,5,5]\n")
    expect_error(lambda: read_czechlynx(path, split="pose:train"), path, "header", "split-pose")


def test_czechlynx_image_errors(tmp_path: Path) -> None:
    path = _lynx_csv(tmp_path)
    (tmp_path / "photos" / "b.jpg").write_bytes(b"\xff\xd8 broken")
    expect_error(
        lambda: read_czechlynx(path, check_images="header"), path, "CSV line 3", "file_name"
    )
    (tmp_path / "photos" / "b.jpg").unlink()
    error = expect_error(lambda: read_czechlynx(path), path, "CSV line 3", "file_name")
    assert "image not found" in str(error)
    instances, _ = read_czechlynx(path, check_images="none")
    assert len(instances) == 2


def test_coco_missing_image_size_is_read_from_the_header(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    data = json.loads(path.read_text())
    del data["images"][0]["width"]
    path.write_text(json.dumps(data))
    (inst,), _, _ = read_coco(path, check_images="none")
    assert (inst.width, inst.height) == (80, 60)


def test_write_coco_relative_names_and_renumbering(tmp_path: Path) -> None:
    (inst,), skeleton, _ = read_coco(_coco(tmp_path))
    twin = dataclasses.replace(inst, image_path=str(tmp_path / "images" / "b.jpg"))
    out = tmp_path / "out" / "merged.json"
    write_coco([inst, twin], skeleton, out, image_root=tmp_path)
    data = json.loads(out.read_text())
    assert [i["file_name"] for i in data["images"]] == ["images/a.jpg", "images/b.jpg"]
    assert [i["id"] for i in data["images"]] == [1, 2]  # both had image id 3
    assert [a["id"] for a in data["annotations"]] == [1, 2]  # both had annotation id 17
    assert [a["image_id"] for a in data["annotations"]] == [1, 2]
    assert data["categories"][0]["skeleton"] == [[1, 2]]
    _image(tmp_path / "images" / "b.jpg")
    again, _, _ = read_coco(out, image_root=tmp_path)
    assert [a.image_path for a in again] == [inst.image_path, twin.image_path]
    assert again[0].scene == "forest" and again[0].source == "anns"
    (first, _), _, _ = read_coco(out, image_root=tmp_path, source="catalog-name")
    assert first.source == "catalog-name"  # an explicit source beats the annotation's field
