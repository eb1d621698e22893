"""Label files as users hand them over (issue 23): the named format is honoured, sources with
nothing to train on stop with what they hold, every reader error is one short line naming the
file, the record and the field; COCO categories, Ultralytics splits and flip_idx, points
outside the image, never-labelled body parts, misspelt dataset names, and ``data convert
--split`` for every format. Every file is built here, with sleap-io's own writers or by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from orchestrator.cli import main
from orchestrator.data.catalog import Catalog, CatalogError
from orchestrator.data.labels import read_labels
from pose_core.records import DataError

NAMES = ("nose", "left_ear", "right_ear")  # a tuple: sio.Skeleton turns a list into Nodes
SIZE = (80, 60)  # width, height


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    assert err.startswith("posetune: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "NoneType" not in err
    return err


def images(folder: Path, count: int = 4) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"f{i}.png"
        cv2.imwrite(str(path), np.full((SIZE[1], SIZE[0], 3), 40 * i, np.uint8))
        paths.append(str(path))
    return paths


def points(i: int) -> np.ndarray:
    return np.array([[10.0 + i, 10.0], [20.0 + i, 12.0], [30.0 + i, 14.0]])


def sleap_labels(video: object, frames: int, predicted: bool = False) -> object:
    import sleap_io as sio

    skeleton = sio.Skeleton(list(NAMES), edges=[("nose", "left_ear")], name="mouse")
    def instance(i: int) -> object:
        if predicted:
            return sio.PredictedInstance.from_numpy(points(i), skeleton=skeleton,
                                                    point_scores=np.ones(3), score=0.9)
        return sio.Instance.from_numpy(points(i), skeleton=skeleton)
    return sio.Labels([sio.LabeledFrame(video=video, frame_idx=i, instances=[instance(i)])
                       for i in range(frames)])


def slp(tmp_path: Path, name: str = "mouse.slp", predicted: bool = False,
        count: int = 4) -> Path:
    import sleap_io as sio

    video = sio.Video.from_filename(images(tmp_path / "frames", count))
    sio.save_file(sleap_labels(video, count, predicted), str(tmp_path / name))
    return tmp_path / name


def movie(tmp_path: Path, frames: int = 4) -> object:
    import sleap_io as sio

    path = tmp_path / "mouse.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, SIZE)
    for i in range(frames):
        writer.write(np.full((SIZE[1], SIZE[0], 3), 40 * i, np.uint8))
    writer.release()
    return sio.Video.from_filename(str(path))


def jabs(tmp_path: Path, frames: int = 5) -> Path:
    """A JABS v2 pose file (one mouse, 12 points, as JABS writes them: y, x)."""
    import h5py

    path = tmp_path / "mouse_pose_est_v2.h5"
    with h5py.File(path, "w") as file:
        group = file.create_group("poseest")
        group.attrs["version"] = np.array([2, 0])
        group["points"] = np.full((frames, 12, 2), 20, np.uint16)
        group["confidence"] = np.ones((frames, 12), np.float32)
    return path


def dlc_project(root: Path, frames: int = 5, bodyparts: tuple[str, ...] = NAMES,
                columns: tuple[str, ...] = NAMES) -> Path:
    """A DeepLabCut project in DLC's layout, labelled on ``columns`` of ``bodyparts``."""
    import yaml

    folder = root / "labeled-data" / "v1"
    images(folder, frames)
    (root / "config.yaml").write_text(yaml.safe_dump(
        {"Task": "mouse", "scorer": "me", "bodyparts": list(bodyparts)}))
    rows = [["scorer"] + ["me"] * 2 * len(columns),
            ["bodyparts"] + [n for n in columns for _ in "xy"],
            ["coords"] + [c for _ in columns for c in "xy"]]
    for i in range(frames):
        rows.append([f"labeled-data/v1/f{i}.png",
                     *(f"{v:g}" for p in points(i)[:len(columns)] for v in p)])
    with open(folder / "CollectedData_me.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return root


def coco_file(tmp_path: Path, categories: list[dict], annotations: list[dict]) -> Path:
    paths = images(tmp_path / "images", 3)
    data = {"images": [{"id": i + 1, "file_name": Path(p).name, "width": SIZE[0],
                        "height": SIZE[1]} for i, p in enumerate(paths)],
            "categories": categories, "annotations": annotations}
    (tmp_path / "keypoints.json").write_text(json.dumps(data))
    return tmp_path / "keypoints.json"


def annotation(id: int, image: int, category: int, keypoints: list[float]) -> dict:
    return {"id": id, "image_id": image, "category_id": category, "keypoints": keypoints,
            "bbox": [1, 1, 40, 30], "area": 1200, "iscrowd": 0}


# ------------------------------------------------------------- nothing to train on (item 3)


def test_predictions_only_slp_stops_convert_with_what_it_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = slp(tmp_path, "predictions.slp", predicted=True)
    out = tmp_path / "out.json"
    code, _, err = run(capsys, "data", "convert", "slp", str(path), "--out", str(out))
    assert code == 2 and not out.exists()
    one_line_error(err)
    assert f"{path}: whole file: field 'instances': 0 labelled instances; 4 predicted " \
           "instances in 4 frames (expected labelled instances: predictions are not " \
           "training labels)" in err


@pytest.mark.parametrize("kind", ["nwb", "analysis_h5", "jabs"])
def test_predictions_only_formats_say_so(tmp_path: Path, kind: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import sleap_io as sio

    if kind == "jabs":
        path, holds = jabs(tmp_path), "5 predicted instances in 5 frames"
    else:
        path = tmp_path / ("mouse.nwb" if kind == "nwb" else "mouse.analysis.h5")
        labels = sleap_labels(movie(tmp_path), 4, predicted=True)
        sio.save_nwb(labels, str(path)) if kind == "nwb" else sio.save_analysis_h5(labels,
                                                                                     str(path))
        holds = "4 predicted instances in 4 frames"
    code, _, err = run(capsys, "data", "convert", kind, str(path), "--out",
                       str(tmp_path / "out.json"))
    assert code == 2 and f"0 labelled instances; {holds}" in one_line_error(err)
    if kind != "nwb":
        assert "holds predictions only" in err
    # Without a format the content decides, and says the same.
    with pytest.raises(DataError, match=f"0 labelled instances; {holds}"):
        read_labels(path)


def test_labelled_nwb_on_a_video_reads(tmp_path: Path) -> None:
    import sleap_io as sio

    sio.save_nwb(sleap_labels(movie(tmp_path), 3), str(tmp_path / "mouse.nwb"))
    instances, skeleton, report = read_labels(tmp_path / "mouse.nwb",
                                              frames_dir=tmp_path / "extracted")
    assert report.kept == 3 and skeleton.keypoints == NAMES
    assert all(Path(i.image_path).is_file() for i in instances)
    np.testing.assert_allclose(instances[1].keypoints[:, :2], points(1), atol=1e-3)


def test_predictions_only_labels_stop_the_sweep_before_ray(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    monkeypatch.chdir(tmp_path)
    path = slp(tmp_path, "predictions.slp", predicted=True)
    (tmp_path / "catalog.toml").write_text(f'[datasets.lynx-test]\nlabels = "{path}"\n')
    code, _, err = run(capsys, "sweep", "quickstart", "--catalog", "catalog.toml")
    assert code == 2 and "0 labelled instances; 4 predicted instances" in one_line_error(err)
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()


def test_a_reader_that_returns_nothing_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = dlc_project(tmp_path / "p", frames=2)
    path = root / "labeled-data/v1/CollectedData_me.csv"
    rows = list(csv.reader(path.open()))
    for row in rows[3:]:
        row[1:] = [""] * (len(row) - 1)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    code, _, err = run(capsys, "data", "convert", "dlc", str(root), "--out",
                       str(tmp_path / "o.json"))
    assert code == 2 and "0 labelled instances (skipped 2 frames without a labelled point)" \
        in one_line_error(err)
    empty = coco_file(tmp_path, [{"id": 1, "name": "cat", "keypoints": list(NAMES)}], [])
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f'[datasets.cats]\ncoco = "{empty}"\n')
    with pytest.raises(DataError, match="keypoints.json: whole file: field 'instances': 0 "):
        Catalog.from_file(catalog).load("cats")
    one = dlc_project(tmp_path / "one", frames=1)
    with pytest.raises(DataError, match=r"split 'test': field 'split': holds no frames \(1 "):
        read_labels(one, split="test")


# ------------------------------------------------------------------ format honoured (item 4)


@pytest.mark.parametrize(("named", "source", "holds"), [
    ("slp", "jabs", "a JABS pose file (format = 'jabs')"),
    ("nwb", "slp", "a SLEAP .slp file (format = 'slp')"),
    ("dlc", "slp", "a SLEAP .slp file (format = 'slp')"),
    ("labelstudio", "slp", "a SLEAP .slp file (format = 'slp')"),
    ("leap", "coco", "a COCO keypoint JSON (an object) (format = 'coco')"),
    ("analysis_h5", "jabs", "a JABS pose file (format = 'jabs')"),
    ("jabs", "dlc", "a DeepLabCut project, config.yaml or CollectedData file (format = 'dlc')"),
])
def test_the_named_format_is_read_by_that_reader_only(
    tmp_path: Path, named: str, source: str, holds: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = {"jabs": lambda: jabs(tmp_path), "slp": lambda: slp(tmp_path),
            "dlc": lambda: dlc_project(tmp_path / "p") / "labeled-data/v1/CollectedData_me.csv",
            "coco": lambda: coco_file(tmp_path, [{"id": 1, "name": "c", "keypoints": list(NAMES)}],
                                      [])}[source]()
    code, _, err = run(capsys, "data", "convert", named, str(path), "--out",
                       str(tmp_path / "o.json"))
    assert code == 2
    assert f"{path}: whole file: field 'format': named {named!r}, but the file is {holds}" \
        in one_line_error(err)
    catalog = tmp_path / "catalog.toml"  # the sweep's preflight reads through the same check
    catalog.write_text(f'[datasets.x]\nlabels = "{path}"\nformat = "{named}"\n')
    with pytest.raises(DataError, match=f"named {named!r}, but the file is"):
        Catalog.from_file(catalog).load("x")


def test_a_json_list_without_format_suggests_labelstudio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps([{"id": 1, "data": {"image": "f0.png"}, "annotations": []}]))
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f'[datasets.x]\nlabels = "{path}"\n')
    with pytest.raises(DataError, match='a JSON list, not COCO .* format = "labelstudio"'):
        Catalog.from_file(catalog).load("x")
    code, _, err = run(capsys, "data", "convert", "coco", str(path), "--out",
                       str(tmp_path / "o.json"))
    assert code == 2 and "(format = 'labelstudio')" in one_line_error(err)


# --------------------------------------------------------------------- Label Studio (item 6)


def test_labelstudio_reads_and_each_error_names_task_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sleap_io as sio

    video = sio.Video.from_filename(images(tmp_path / "frames", 3))
    path = tmp_path / "tasks.json"
    sio.save_labelstudio(sleap_labels(video, 3), str(path))
    instances, skeleton, report = read_labels(path, "labelstudio")
    assert skeleton.keypoints == tuple(NAMES) and report.kept == 3
    assert skeleton.flip_pairs == ((1, 2),)  # from the names
    np.testing.assert_allclose(instances[2].keypoints[:, :2], points(2), atol=1e-3)

    # Label Studio's own export names the image in data.image, beside the JSON file.
    tasks = json.loads(path.read_text())
    for n, task in enumerate(tasks):
        del task["meta"]
        task["data"] = {"image": f"/data/upload/1/f{n}.png"}
        task["id"] = 100 + n
    for n in range(3):
        (tmp_path / f"f{n}.png").symlink_to(tmp_path / "frames" / f"f{n}.png")
    path.write_text(json.dumps(tasks))
    assert read_labels(path, "labelstudio")[2].kept == 3

    big = "x" * 6000  # the whole task used to be printed
    cases = [
        (lambda t: t[1].pop("data"), "task 1 (id 101): field 'data.image': missing"),
        (lambda t: t[2]["annotations"][0]["result"][1]["value"].update(x="12%"),
         "task 2 (id 102): field 'annotations[0].result[1].value.x': got '12%'"),
        (lambda t: t[0]["annotations"][0]["result"][3].pop("original_width"),
         "task 0 (id 100): field 'annotations[0].result[3].original_width': got None"),
        (lambda t: t[1].update(annotations=None, note=big), "task 1 (id 101): field "
         "'annotations': got null"),
    ]
    for damage, message in cases:
        broken = json.loads(json.dumps(tasks))
        damage(broken)
        path.write_text(json.dumps(broken))
        code, _, err = run(capsys, "data", "convert", "labelstudio", str(path), "--out",
                           str(tmp_path / "o.json"))
        assert code == 2 and f"{path}: {message}" in one_line_error(err), (message, err)
        assert len(err) - len(str(path)) < 200


# ---------------------------------------------------------------------- Ultralytics (item 7)


def test_ultralytics_flip_idx_and_the_datasets_own_splits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sleap_io as sio
    import yaml

    root = tmp_path / "yolo"
    video = sio.Video.from_filename(images(tmp_path / "frames", 4))
    sio.save_ultralytics(sleap_labels(video, 4), str(root),
                         split_ratios={"train": 0.5, "val": 0.5}, verbose=False)
    config = yaml.safe_load((root / "data.yaml").read_text())
    assert config["flip_idx"] == [0, 1, 2]  # sleap-io writes the identity: no pairs
    assert read_labels(root)[1].flip_pairs == ()
    config["flip_idx"] = [0, 2, 1]
    (root / "data.yaml").write_text(yaml.safe_dump(config))
    train, skeleton, _ = read_labels(root, split="train")
    val, _, _ = read_labels(root / "data.yaml", split="val")
    every, _, report = read_labels(root)
    assert skeleton.flip_pairs == ((1, 2),)
    assert (len(train), len(val), len(every), report.kept) == (2, 2, 4, 4)
    assert not {i.image_path for i in train} & {i.image_path for i in val}
    code, _, err = run(capsys, "data", "convert", "ultralytics", str(root), "--split", "val",
                       "--out", str(tmp_path / "val.json"))
    assert code == 0 and "kept 2 instances" in err
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f'[datasets.y]\nlabels = "{root}"\nsplit = "val"\n')
    assert len(Catalog.from_file(catalog).load("y")[0]) == 2
    with pytest.raises(DataError, match=r"field 'split': 'test' is not one of this dataset's "
                       r"splits \(expected one of \['train', 'val'\]\)"):
        read_labels(root, split="test")
    config["flip_idx"] = [0, 2, 2]
    (root / "data.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(DataError, match=r"data.yaml: data.yaml: field 'flip_idx': got \[0, 2, 2\]"):
        read_labels(root)


# ----------------------------------------------------------------- COCO category (item 5)


def test_coco_category_chosen_in_the_catalog_and_on_convert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kps = [10, 10, 2, 20, 12, 2, 30, 14, 2]
    path = coco_file(tmp_path, [{"id": 1, "name": "cat", "keypoints": list(NAMES)},
                                {"id": 2, "name": "bird", "keypoints": ["beak", "tail"]}],
                     [annotation(1, 1, 1, kps), annotation(2, 2, 1, kps),
                      annotation(3, 3, 2, [5, 5, 2, 9, 9, 2])])
    code, _, err = run(capsys, "data", "convert", "coco", str(path), "--out",
                       str(tmp_path / "all.json"))
    assert code == 2
    assert "'cat' K=3 (id 1, 2 instances), 'bird' K=2 (id 2, 1 instances)" in one_line_error(err)
    assert "category = NAME in the catalog, --category NAME on data convert" in err
    out = tmp_path / "birds.json"
    code, _, err = run(capsys, "data", "convert", "coco", str(path), "--category", "bird",
                       "--out", str(out))
    assert code == 0 and len(json.loads(out.read_text())["annotations"]) == 1
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f'[datasets.cats]\ncoco = "{path}"\ncategory = "cat"\n'
                       f'[datasets.cats2]\nlabels = "{path}"\ncategory = "cat"\nsplit = "train"\n')
    loaded = Catalog.from_file(catalog)
    assert [i.category for i in loaded.load("cats")[0]] == ["cat", "cat"]
    assert len(loaded.load("cats2")[0]) == 1
    catalog.write_text(f'[datasets.cats]\ncoco = "{path}"\ncategory = "dog"\n')
    with pytest.raises(DataError, match="no keypoint category matches .*'bird' K=2"):
        Catalog.from_file(catalog).load("cats")
    code, _, err = run(capsys, "data", "convert", "dlc", str(dlc_project(tmp_path / "p")),
                       "--category", "cat", "--out", str(tmp_path / "o.json"))
    assert code == 2 and "field 'category': is for COCO files" in one_line_error(err)
    catalog.write_text('[datasets.g]\ngenerate = { images = 3 }\ncategory = "cat"\n')
    with pytest.raises(CatalogError, match="category is for COCO files"):
        Catalog.from_file(catalog)
    catalog.write_text(f'[datasets.g]\ncoco = "{path}"\nsplit = "train"\n')
    with pytest.raises(CatalogError, match="split is for labels and czechlynx entries"):
        Catalog.from_file(catalog)


# ------------------------------------------------------- points outside the image (item 8)


def test_keypoints_outside_the_image_are_counted_by_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inside = [10, 10, 2, 20, 12, 2, 30, 14, 2]
    path = coco_file(tmp_path, [{"id": 1, "name": "cat", "keypoints": list(NAMES)}], [
        annotation(1, 1, 1, [-5, 10, 2, 20, 70, 2, 30, 14, 2]),  # 2 outside (x < 0, y > 60)
        annotation(2, 2, 1, [85, 10, 2, 20, 12, 2, 30, 14, 2]),  # 1 outside (x > 80)
        annotation(3, 3, 1, inside)])
    code, _, err = run(capsys, "data", "convert", "coco", str(path), "--out",
                       str(tmp_path / "o.json"))
    assert code == 0
    assert "3 keypoints outside the image (most: f0.png 2, f1.png 1)" in err
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f'[datasets.cats]\ncoco = "{path}"\n')
    report = Catalog.from_file(catalog).load("cats")[2]
    assert report.notes == {"keypoints outside the image (most: f0.png 2, f1.png 1)": 3}


# ------------------------------------------------------------ the probe's cases (item 10)


def test_a_body_part_never_labelled_is_an_error(tmp_path: Path) -> None:
    root = dlc_project(tmp_path / "p", bodyparts=[*NAMES, "tailbase"], columns=NAMES)
    with pytest.raises(DataError) as caught:
        read_labels(root)
    assert str(caught.value).startswith(f"{root / 'config.yaml'}: bodyparts: field "
                                        "'bodyparts': ['tailbase'] listed but in no column "
                                        "of CollectedData_me.csv")
    import sleap_io as sio

    video = sio.Video.from_filename(images(tmp_path / "frames", 2))
    labels = sleap_labels(video, 2)
    for lf in labels.labeled_frames:  # nobody ever placed the right ear
        lf.instances[0].points["xy"][2] = np.nan
    sio.save_file(labels, str(tmp_path / "m.slp"))
    with pytest.raises(DataError, match=r"field 'keypoints': \['right_ear'\] never labelled in "
                       r"2 instance\(s\)"):
        read_labels(tmp_path / "m.slp")


def test_a_misspelt_dataset_name_is_an_error_naming_the_set_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    monkeypatch.chdir(tmp_path)
    (tmp_path / "catalog.toml").write_text('[datasets.lynx-tset]\ncoco = "test.json"\n')
    code, _, err = run(capsys, "sweep", "quickstart", "--catalog", "catalog.toml")
    assert code == 2 and not ray.is_initialized()
    assert "[datasets.lynx-tset] is read by no trial, and 'lynx-test' (read) is not defined, " \
           "so it would be generated data; did you mean [datasets.lynx-test]?" \
           in one_line_error(err)
    shared = Catalog.from_file(_write(tmp_path / "c.toml", '[datasets.mouse]\ncoco = "m.json"\n'))
    shared.check_read({"lynx-test", "lynx-train"})  # an entry for other experiments is fine
    both = Catalog.from_file(_write(tmp_path / "d.toml", '[datasets.lynx-train]\ncoco = "t.json"\n'))
    both.check_read({"lynx-test", "lynx-train"})  # read itself: not a misspelling of lynx-test


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------ --split everywhere (item 11)


@pytest.mark.parametrize("fmt", ["dlc", "slp", "coco"])
def test_convert_split_is_applied_for_every_format(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if fmt == "dlc":
        source = dlc_project(tmp_path / "p", frames=5)
    elif fmt == "slp":
        source = slp(tmp_path, count=5)
    else:
        kps = [10, 10, 2, 20, 12, 2, 30, 14, 2]
        source = coco_file(tmp_path, [{"id": 1, "name": "c", "keypoints": list(NAMES)}],
                           [annotation(i, i, 1, kps) for i in (1, 2, 3)])
    counts = {}
    for split in ("train", "test"):
        out = tmp_path / f"{split}.json"
        code, _, err = run(capsys, "data", "convert", fmt, str(source), "--split", split,
                           "--out", str(out))
        assert code == 0, err
        counts[split] = len(json.loads(out.read_text())["annotations"])
    assert counts == ({"train": 4, "test": 1} if fmt != "coco" else {"train": 2, "test": 1})
    code, _, err = run(capsys, "data", "convert", fmt, str(source), "--split", "val",
                       "--out", str(tmp_path / "v.json"))
    assert code == 2 and "field 'split': got 'val'" in one_line_error(err)
