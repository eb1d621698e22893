"""``posetune predict --suggest N --package DIR``: frames built to be uncertain (low scores, a
left/right flip disagreement, a jump between video frames) are the ones picked; the package
in each format reads back through the catalog's ``labels =``; bad requests are one line."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from orchestrator.cli import main
from orchestrator.data.catalog import Catalog
from orchestrator.infer.frames import Frame, Pose, Predictions
from orchestrator.infer.suggest import pick, uncertainties, write_package
from pose_core.skeletons import skeleton_from_coco_category
from tests.conftest import write_images

SKELETON = skeleton_from_coco_category({
    "name": "animal", "keypoints": ["nose", "left_ear", "right_ear", "tail"],
    "skeleton": [[1, 2], [1, 3], [1, 4]]})
POINTS = np.array([[20.0, 20.0], [30.0, 15.0], [30.0, 25.0], [60.0, 20.0]])
BOX = (10.0, 5.0, 60.0, 40.0)


def pose(frame: int, scores: float = 0.9, shift: float = 0.0,
         flipped: np.ndarray | None = None) -> Pose:
    points = POINTS + [shift, 0.0]
    return Pose(frame, BOX, points, np.full(4, scores),
                flipped=points.copy() if flipped is None else flipped)


def image_predictions(folder: Path, poses: list[Pose], count: int) -> Predictions:
    write_images(folder, count)
    frames = [Frame(n, f"im{n:02d}.png", 96, 72, str(folder / f"im{n:02d}.png"))
              for n in range(count)]
    return Predictions(SKELETON, frames, poses)


def read_file(frame: Frame) -> np.ndarray:
    assert frame.path is not None
    return cv2.imread(frame.path)


def test_low_scores_and_a_flip_disagreement_are_picked(tmp_path: Path) -> None:
    swapped = POINTS[[0, 2, 1, 3]].copy()  # the mirror's left ear is the image's right ear
    swapped[3] += [30.0, 0.0]
    poses = [pose(0), pose(1, scores=0.3), pose(2), pose(3, flipped=swapped), pose(4), pose(5)]
    preds = image_predictions(tmp_path, poses, 6)
    rows = {u.position: u for u in uncertainties(preds)}
    assert rows[1].confidence == pytest.approx(0.3) and rows[3].flip > 0.2
    assert all(u.jump is None for u in rows.values())  # image folders: no neighbours
    assert {u.position for u in pick(preds, 2)} == {1, 3}


def test_a_jump_between_video_frames_is_picked() -> None:
    frames = [Frame(n, f"clip.mp4#{n}", 96, 72, time_s=n / 25) for n in range(0, 12, 2)]
    poses = [pose(n, shift=float(n)) for n in range(6)]
    poses[3] = pose(3, shift=40.0)  # a one-frame glitch
    for n in range(6):  # no flipped predictions: that term is left out, not zero
        poses[n] = Pose(n, BOX, poses[n].keypoints, poses[n].scores)
    preds = Predictions(SKELETON, frames, poses, video="clip.mp4", fps=25.0)
    rows = uncertainties(preds)
    assert all(u.flip is None for u in rows)
    assert [u.position for u in pick(preds, 1)] == [3]
    assert max(rows, key=lambda u: u.jump or 0).position == 3


@pytest.mark.parametrize("fmt", ["slp", "dlc", "coco"])
def test_the_package_reads_back_through_the_catalog(tmp_path: Path, fmt: str) -> None:
    poses = [pose(n, scores=0.9 - 0.1 * n, shift=float(n)) for n in range(6)]
    preds = image_predictions(tmp_path / "in", poses, 6)
    picked = pick(preds, 4)
    package = tmp_path / "to_label"
    labels = write_package(preds, picked, package, fmt, read_file)
    readme = (package / "README.txt").read_text()
    assert "flip: " in readme and "not measured (image folder" in readme
    assert [line.split("\t")[6] for line in readme.splitlines()[-4:]] == \
        ["im05.png", "im04.png", "im03.png", "im02.png"]  # least confident first
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f'[datasets.corrected]\nlabels = "{labels.relative_to(tmp_path)}"\n')
    instances, skeleton, _ = Catalog.from_file(catalog).load("corrected")
    assert skeleton.keypoints == SKELETON.keypoints
    assert len(instances) == 4 and all(Path(i.image_path).is_file() for i in instances)
    shifts = sorted(float(i.keypoints[0, 0]) - 20.0 for i in instances)
    assert shifts == pytest.approx([2.0, 3.0, 4.0, 5.0])
    assert not list(tmp_path.glob(".*partial*"))


def test_low_scored_points_are_left_for_the_labeller(tmp_path: Path) -> None:
    poses = [Pose(0, BOX, POINTS, np.array([0.9, 0.1, 0.9, 0.9])),
             Pose(1, BOX, POINTS, np.array([0.9, 0.9, 0.9, 0.9]))]
    preds = image_predictions(tmp_path / "in", poses, 2)
    labels = write_package(preds, pick(preds, 2), tmp_path / "pkg", "coco", read_file)
    data = json.loads(labels.read_text())
    first = next(a for a in data["annotations"] if a["image_id"] == 1)
    assert first["keypoints"][3:6] == [0.0, 0.0, 0]


def test_suggest_from_the_command_line(predict_checkpoint: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    images = write_images(tmp_path / "images", 3)
    package = tmp_path / "to_label"
    assert main(["predict", "--checkpoint", str(predict_checkpoint), "--images", str(images),
                 "--format", "slp", "--out", str(tmp_path / "poses.slp"), "--suggest", "5",
                 "--package", str(package)]) == 0
    captured = capsys.readouterr()
    assert "--suggest 5: only 3 frame(s) have an animal; the package holds all 3" in captured.err
    assert f'labels = "{package / "labels.slp"}"' in captured.out
    assert sorted(p.name for p in (package / "images").iterdir()) == \
        ["im00.png", "im01.png", "im02.png"]
    # The command line fills the mirrored-crop predictions, so the flip term is measured.
    assert "(high = uncertain); measured" in (package / "README.txt").read_text()
    # A second run into the same (now non-empty) package is refused before predicting.
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = main(["predict", "--checkpoint", str(predict_checkpoint), "--images", str(images),
                 "--out", str(tmp_path / "again.json"), "--suggest", "2",
                 "--package", str(package)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "exists and is not an empty folder" in err[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert main(["predict", "--checkpoint", str(predict_checkpoint), "--images", str(images),
                 "--out", str(tmp_path / "again.json"), "--suggest", "2"]) == 2
    assert "--suggest N and --package DIR go together" in capsys.readouterr().err
