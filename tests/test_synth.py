from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from pose_core.readers import read_coco
from pose_core.skeletons import ANIMALPOSE
from pose_core.synth import Rendered, SynthConfig, generate, render
from pose_core.synth.body import OWNERS, PART_IDS

SMALL = SynthConfig(images=16, seed=3, workers=1)
PAWS = [ANIMALPOSE.index(f"{s}_{e}_Paw") for s in "LR" for e in "FB"]


@pytest.fixture(scope="module")
def rendered() -> list[Rendered]:
    """60 synthetic renders (seed 11), shared by the checks that need many images."""
    config = SynthConfig(images=60, seed=11)
    return [render(i, config) for i in range(config.images)]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "images").iterdir())}


def test_same_seed_same_bytes_any_worker_count(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", SMALL)
    b = generate(tmp_path / "b", SynthConfig(images=16, seed=3, workers=2))
    assert a.read_bytes() == b.read_bytes()
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert len(_files(tmp_path / "a")) == 16
    c = generate(tmp_path / "c", SynthConfig(images=16, seed=4, workers=1))
    assert json.loads(c.read_text())["annotations"] != json.loads(a.read_text())["annotations"]
    differing = [
        n for n, data in _files(tmp_path / "c").items() if data != _files(tmp_path / "a")[n]
    ]
    assert len(differing) == 16


def test_coco_json_is_valid_and_honest(tmp_path: Path) -> None:
    path = generate(
        tmp_path / "set", SynthConfig(images=24, seed=5, style="camera-trap", workers=1)
    )
    coco = COCO(str(path))
    (category,) = coco.loadCats(coco.getCatIds())
    assert category["name"] == "lynx" and category["keypoints"] == list(ANIMALPOSE.keypoints)
    assert category["skeleton"] == [[a + 1, b + 1] for a, b in ANIMALPOSE.links]
    assert len(coco.getImgIds()) == 24 and len(coco.getAnnIds()) == 24
    for ann in coco.loadAnns(coco.getAnnIds()):
        image = coco.loadImgs(ann["image_id"])[0]
        w, h = image["width"], image["height"]
        k = np.array(ann["keypoints"], dtype=float).reshape(-1, 3)
        assert k.shape == (20, 3) and set(k[:, 2]) <= {0.0, 1.0, 2.0}
        assert (k[k[:, 2] == 0, :2] == 0).all()
        seen = k[k[:, 2] > 0]
        assert (
            (seen[:, 0] >= 0) & (seen[:, 0] <= w - 1) & (seen[:, 1] >= 0) & (seen[:, 1] <= h - 1)
        ).all()
        x, y, bw, bh = ann["bbox"]
        assert x >= 0 and y >= 0 and x + bw <= w and y + bh <= h and bw > 0 and bh > 0
        assert 0 < ann["area"] <= bw * bh and ann["area_rule"] == "mask"
        assert ann["num_keypoints"] == int((k[:, 2] > 0).sum()) > 0
        # labelled points lie inside the box of the silhouette they sit on
        assert ((seen[:, 0] >= x - 0.5) & (seen[:, 0] <= x + bw) & (seen[:, 1] >= y - 0.5)).all()
        assert image["style"] == "camera-trap" and image["pose"] in ("walk", "sit")
        assert (path.parent / "images" / image["file_name"]).is_file()
    instances, skeleton, report = read_coco(path)
    assert len(instances) == 24 and skeleton.keypoints == ANIMALPOSE.keypoints
    assert {i.scene for i in instances} == {f"scene_{s}" for s in range(4)}
    assert all(i.area_rule == "mask" for i in instances) and report.kept == 24


def test_scenes_poses_and_facings(rendered: list[Rendered]) -> None:
    scenes = Counter(r.info["scene"] for r in rendered)
    assert scenes == {f"scene_{s}": 15 for s in range(4)}
    assert [r.info["scene"] for r in rendered[:5]] == [
        "scene_0",
        "scene_1",
        "scene_2",
        "scene_3",
        "scene_0",
    ]
    poses = Counter(r.info["pose"] for r in rendered)
    facings = Counter(r.info["facing"] for r in rendered)
    assert poses["walk"] >= 20 and poses["sit"] >= 10
    assert facings["left"] >= 15 and facings["right"] >= 15
    assert any(r.info["truncated"] for r in rendered) and any(
        r.info["occluder"] != "none" for r in rendered
    )
    assert sum(r.info["truncated"] for r in rendered) < 30
    # the same scene is the same place: scene backgrounds are crops of one panorama
    assert (
        SynthConfig(scenes=6).scenes == 6
        and render(5, SynthConfig(scenes=6)).info["scene"] == "scene_5"
    )


def test_keypoints_sit_on_the_drawn_body(rendered: list[Rendered]) -> None:
    hidden = total = 0
    for r in rendered:
        k = r.keypoints
        inside = k[:, 2] > 0
        xy = np.round(k[inside, :2]).astype(int)
        # every labelled point is on the animal's silhouette (parts, not background)
        assert r.silhouette[xy[:, 1], xy[:, 0]].all()
        for j in np.flatnonzero(k[:, 2] == 2):
            x, y = (int(round(v)) for v in k[j, :2])
            owners = {PART_IDS[p] for p in OWNERS[ANIMALPOSE.keypoints[j]]}
            assert r.label[y, x] in owners  # nothing painted over a visible point
        for paw in PAWS:
            if k[paw, 2] == 2:  # a visible paw is drawn: the pixels differ from the bare scene
                x, y = (int(round(v)) for v in k[paw, :2])
                patch = np.s_[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2]
                diff = np.abs(r.image[patch].astype(int) - r.background[patch].astype(int))
                assert diff.mean() > 6, (r.info, ANIMALPOSE.keypoints[paw])
        hidden += int((k[:, 2] == 1).sum())
        total += int(inside.sum())
        assert (k[~inside, :2] == 0).all()
    assert 0.1 * total < hidden < 0.6 * total  # far-side legs, far eye, occluders: some, not most
    assert any((r.keypoints[:, 2] == 0).any() for r in rendered)  # truncation cuts points


def test_far_side_legs_are_hidden_more_often(rendered: list[Rendered]) -> None:
    near = far = 0
    for r in rendered:
        if (
            r.info["occluder"] != "none"
            or r.info["pose"] != "walk"
            or not 60 < abs(r.info["yaw_deg"] % 180 - 90)
        ):
            continue  # clean, near-profile walks
        near_side = "R" if r.info["facing"] == "right" else "L"
        for name in ("F_Elbow", "B_Elbow"):
            for side in "LR":
                v = r.keypoints[ANIMALPOSE.index(f"{side}_{name}"), 2]
                if v == 1:
                    near, far = (near + 1, far) if side == near_side else (near, far + 1)
    assert far > 2 * near and far >= 5


def test_camera_trap_style_differs_like_real_data() -> None:
    indices = range(16)
    syn = [render(i, SynthConfig(seed=2)) for i in indices]
    trap = [render(i, SynthConfig(seed=2, style="camera-trap")) for i in indices]

    def gray(img: np.ndarray) -> bool:
        return int(np.abs(img.astype(int) - img[..., :1]).max()) <= 2

    def grain(img: np.ndarray) -> float:  # noise level: residual after a 3x3 median filter
        import cv2

        return float(np.abs(img.astype(float) - cv2.medianBlur(img, 3)).mean())

    assert not any(gray(r.image) for r in syn)
    assert 2 <= sum(gray(r.image) for r in trap) <= 14
    assert np.median([grain(r.image) for r in trap]) > 1.3 * np.median(
        [grain(r.image) for r in syn]
    )
    assert all(r.jpeg_quality <= 60 for r in trap) and all(r.jpeg_quality == 90 for r in syn)
    # same seed, same animals: only the look (and what the info strip hides) changes
    assert [r.bbox for r in syn] == [r.bbox for r in trap]
    for s, t in zip(syn, trap, strict=True):
        assert (t.keypoints[:, 2] <= s.keypoints[:, 2]).all()


def test_progress_and_config_checks(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate(
        tmp_path / "p", SynthConfig(images=5, workers=1), progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(i, 5) for i in range(1, 6)]
    with pytest.raises(ValueError, match="valid: synthetic, camera-trap"):
        SynthConfig(style="unity")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="jpeg_quality"):
        SynthConfig(jpeg_quality=0)


def test_two_hundred_images_are_fast(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    start = time.perf_counter()
    config = SynthConfig(images=200, seed=1, workers=2)
    path = generate(tmp_path / "t", config, progress=lambda d, t: calls.append((d, t)))
    elapsed = time.perf_counter() - start
    assert len(json.loads(path.read_text())["images"]) == 200
    assert calls == [(i, 200) for i in range(1, 201)]
    # about 3 s on 2 idle cores; the bound leaves room for a busy CI machine
    assert elapsed < 45, f"200 images took {elapsed:.1f} s"
