"""Labels in the field's formats (orchestrator.data.labels): DeepLabCut CSV/H5/project,
multi-animal DeepLabCut, SLEAP .slp written with sleap-io's own API, each read into the same
instances as the shared COCO conversion of the same frames; and bad input as one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.data.labels import padded_box, read_labels, to_coco
from pose_core.readers import read_coco
from pose_core.records import DataError, Instance

MOUSE = "dlc_openfield_mouse"
NAMES = ("snout", "leftear", "rightear", "tailbase")


def coco_of(shared_data: Path) -> dict:
    return json.loads((shared_data / MOUSE / "annotations.json").read_text())


def dlc_project(shared_data: Path, root: Path, frames: int = 6, h5: bool = False,
                individuals: tuple[str, ...] = ()) -> Path:
    """A DeepLabCut project in DLC's own layout: config.yaml and labeled-data/m4s1/ holding
    links to the shared frames and CollectedData_Pranav.csv (or .h5). With ``individuals``,
    a multi-animal project whose animal i is the mouse shifted right by 100*i pixels."""
    coco = coco_of(shared_data)
    folder = root / "labeled-data" / "m4s1"
    folder.mkdir(parents=True)
    images = {i["id"]: i["file_name"] for i in coco["images"]}
    rows = []
    for ann in coco["annotations"][:frames]:
        name = images[ann["image_id"]]
        (folder / name).symlink_to(shared_data / MOUSE / "images" / name)
        points = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)[:, :2]
        values = [v + 100 * a * (axis == 0) for a in range(max(1, len(individuals)))
                  for p in points for axis, v in enumerate(p)]
        rows.append((f"labeled-data/m4s1/{name}", values))
    config = {"Task": "openfield", "scorer": "Pranav", "skeleton": [["snout", "tailbase"]]}
    if individuals:
        config |= {"multianimalproject": True, "individuals": list(individuals),
                   "multianimalbodyparts": list(NAMES), "uniquebodyparts": [], "bodyparts": "MULTI!"}
    else:
        config["bodyparts"] = list(NAMES)
    import yaml

    (root / "config.yaml").write_text(yaml.safe_dump(config))
    animals = individuals or ("",)
    header = [["scorer"] + ["Pranav"] * 2 * len(NAMES) * len(animals)]
    if individuals:
        header.append(["individuals"] + [a for a in animals for _ in NAMES for _ in "xy"])
    header.append(["bodyparts"] + [n for _ in animals for n in NAMES for _ in "xy"])
    header.append(["coords"] + [c for _ in animals for _ in NAMES for c in "xy"])
    if h5:
        import pandas as pd

        levels = ["scorer", "individuals", "bodyparts", "coords"] if individuals else \
            ["scorer", "bodyparts", "coords"]
        columns = pd.MultiIndex.from_arrays([h[1:] for h in header], names=levels)
        table = pd.DataFrame([v for _, v in rows], index=[p for p, _ in rows], columns=columns)
        table.to_hdf(folder / "CollectedData_Pranav.h5", key="df_with_missing", mode="w")
    else:
        with open(folder / "CollectedData_Pranav.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([*header, *([p, *v] for p, v in rows)])
    return root


def expected(shared_data: Path, frames: int) -> list[Instance]:
    instances, _, _ = read_coco(shared_data / MOUSE / "annotations.json")
    return instances[:frames]


def assert_same(got: list[Instance], want: list[Instance]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert Path(a.image_path).name == Path(b.image_path).name
        assert (a.width, a.height) == (b.width, b.height)
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
        np.testing.assert_allclose(a.bbox, b.bbox, atol=2e-3)
        assert a.area == pytest.approx(b.area, rel=1e-4)


@pytest.mark.parametrize("h5", [False, True], ids=["csv", "h5"])
def test_dlc_project_reads_like_the_coco_conversion(shared_data: Path, tmp_path: Path,
                                                    h5: bool) -> None:
    root = dlc_project(shared_data, tmp_path / "openfield", frames=6, h5=h5)
    for source in (root, root / "config.yaml",
                   root / "labeled-data/m4s1" / f"CollectedData_Pranav.{'h5' if h5 else 'csv'}"):
        instances, skeleton, report = read_labels(source)
        assert_same(instances, expected(shared_data, 6))
        assert skeleton.keypoints == tuple(NAMES)
        assert skeleton.flip_pairs == ((1, 2),)  # leftear <-> rightear, from the names
        assert skeleton.links == ((0, 3),)  # from config.yaml
        assert report.kept == 6 and not report.skipped


def test_multi_animal_gives_one_instance_per_animal_and_skips_empty(
    shared_data: Path, tmp_path: Path
) -> None:
    root = dlc_project(shared_data, tmp_path / "ma", frames=4, individuals=("mouse1", "mouse2"))
    csv_path = root / "labeled-data/m4s1/CollectedData_Pranav.csv"
    rows = list(csv.reader(csv_path.open()))
    rows[4][9:] = [""] * 8  # frame 0: mouse2 not labelled
    rows[5][1:] = [""] * 16  # frame 1: nobody labelled
    with open(csv_path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    instances, _, report = read_labels(root)
    assert [i.identity for i in instances] == ["mouse1", "mouse1", "mouse2", "mouse1", "mouse2"]
    assert report.skipped == {"animals without a labelled point": 1,
                              "frames without a labelled point": 1}
    want = expected(shared_data, 4)
    np.testing.assert_allclose(instances[0].keypoints, want[0].keypoints, atol=1e-3)
    shifted = instances[2].keypoints[:, 0] - want[2].keypoints[:, 0]
    np.testing.assert_allclose(shifted, 100, atol=1e-3)


def test_slp_written_with_sleap_io_reads_like_coco(shared_data: Path, tmp_path: Path) -> None:
    import sleap_io as sio

    want = expected(shared_data, 5)
    skeleton = sio.Skeleton(list(NAMES), edges=[("snout", "tailbase")])
    video = sio.Video.from_filename([w.image_path for w in want])
    frames = [sio.LabeledFrame(video=video, frame_idx=i, instances=[
        sio.Instance.from_numpy(w.keypoints[:, :2].astype(float), skeleton=skeleton)])
        for i, w in enumerate(want)]
    sio.save_file(sio.Labels(frames), str(tmp_path / "mouse.slp"))
    instances, got_skeleton, report = read_labels(tmp_path / "mouse.slp")
    assert_same(instances, want)
    assert got_skeleton.links == ((0, 3),) and got_skeleton.flip_pairs == ((1, 2),)
    assert report.kept == 5


def test_convert_cli_writes_coco_that_reads_back(shared_data: Path, tmp_path: Path) -> None:
    from orchestrator.cli import main

    root = dlc_project(shared_data, tmp_path / "openfield", frames=6)
    out = tmp_path / "coco" / "mouse.json"
    assert main(["data", "convert", "dlc", str(root), "--out", str(out)]) == 0
    instances, skeleton, _ = read_coco(out)
    assert_same(instances, expected(shared_data, 6))
    assert skeleton.keypoints == tuple(NAMES) and skeleton.links == ((0, 3),)
    assert to_coco("dlc", str(root), str(tmp_path / "again.json")).kept == 6


def test_split_is_contiguous_and_disjoint(shared_data: Path, tmp_path: Path) -> None:
    root = dlc_project(shared_data, tmp_path / "openfield", frames=10)
    train, _, train_report = read_labels(root, split="train")
    test, _, _ = read_labels(root, split="test")
    assert len(train) == 8 and len(test) == 2
    assert train_report.kept == 8 and train_report.skipped == {"not in split 'train'": 2}
    assert max(i.image_path for i in train) < min(i.image_path for i in test)


@pytest.mark.parametrize("damage, message", [
    (lambda rows: rows[3].__setitem__(1, "abc"), r"line 4 \(labeled-data/m4s1/img0000.png\): "
     r"field 'snout x': not a number"),
    (lambda rows: rows[3].__setitem__(2, ""), r"line 4 .*field 'snout x/y': one coordinate"),
    (lambda rows: rows[1].__setitem__(1, "nose"), r"header: field 'bodyparts': unknown body "
     r"part 'nose'"),
    (lambda rows: rows[3].__setitem__(0, "labeled-data/m4s1/gone.png"), r"line 4 .*"
     r"field 'file_name': image not found"),
])
def test_bad_input_is_one_line_naming_file_frame_field(
    shared_data: Path, tmp_path: Path, damage, message: str
) -> None:
    root = dlc_project(shared_data, tmp_path / "p", frames=2)
    path = root / "labeled-data/m4s1/CollectedData_Pranav.csv"
    rows = list(csv.reader(path.open()))
    damage(rows)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    with pytest.raises(DataError, match=message) as error:
        read_labels(root)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_padded_box_golden() -> None:
    points = np.array([[10.0, 20.0], [30.0, 60.0]])
    assert padded_box(points, (100, 100)) == (8.0, 16.0, 24.0, 48.0)
    assert padded_box(points, (31, 100)) == (8.0, 16.0, 23.0, 48.0)  # clipped at the border


def test_catalog_labels_entry_with_split_and_named_sigmas(shared_data: Path,
                                                         tmp_path: Path) -> None:
    from orchestrator.data.catalog import Catalog, CatalogError
    from pose_core.skeletons import SigmaError, resolve_sigmas

    root = dlc_project(shared_data, tmp_path / "openfield", frames=10)
    catalog = tmp_path / "catalog.toml"
    sigmas = "{ snout = 0.026, leftear = 0.035, rightear = 0.035, tailbase = 0.079 }"
    catalog.write_text(f'data_dir = "{tmp_path / "data"}"\n'
                       f'[datasets.mouse]\nlabels = "{root}"\nsplit = "train"\nsigmas = {sigmas}\n'
                       f'[datasets.mouse-test]\nlabels = "{root}"\nformat = "dlc"\nsplit = "test"\n')
    loaded = Catalog.from_file(catalog)
    train, skeleton, _ = loaded.load("mouse")
    test, test_skeleton, _ = loaded.load("mouse-test")
    assert (len(train), len(test)) == (8, 2)
    assert resolve_sigmas("default", skeleton).tolist() == [0.026, 0.035, 0.035, 0.079]
    assert test_skeleton.sigmas == (0.1,) * 4  # none named: uniform
    assert Catalog.from_dict(loaded.to_dict()).entry("mouse").sigmas == loaded.entry("mouse").sigmas
    catalog.write_text(f'[datasets.mouse]\nlabels = "{root}"\nsigmas = {{ nose = 0.1 }}\n')
    with pytest.raises(SigmaError, match=r"\[datasets.mouse\] sigmas: .*unknown \['nose'\]"):
        Catalog.from_file(catalog).load("mouse")
    catalog.write_text(f'[datasets.mouse]\ncoco = "{root}"\nformat = "dlc"\n')
    with pytest.raises(CatalogError, match="format is for labels"):
        Catalog.from_file(catalog)


def test_video_backed_slp_frames_are_written_once(shared_data: Path, tmp_path: Path) -> None:
    import cv2
    import sleap_io as sio

    want = expected(shared_data, 3)
    movie = tmp_path / "mouse.mp4"
    writer = cv2.VideoWriter(str(movie), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 480))
    for w in want:
        writer.write(cv2.imread(w.image_path))
    writer.release()
    skeleton = sio.Skeleton(list(NAMES))
    video = sio.Video.from_filename(str(movie))
    frames = [sio.LabeledFrame(video=video, frame_idx=i, instances=[
        sio.Instance.from_numpy(w.keypoints[:, :2].astype(float), skeleton=skeleton)])
        for i, w in enumerate(want)]
    sio.save_file(sio.Labels(frames), str(tmp_path / "movie.slp"))
    with pytest.raises(DataError, match="must be extracted to images"):
        read_labels(tmp_path / "movie.slp")
    instances, _, _ = read_labels(tmp_path / "movie.slp", frames_dir=tmp_path / "frames")
    assert [(i.width, i.height) for i in instances] == [(640, 480)] * 3
    assert all(Path(i.image_path).is_file() and i.image_path.startswith(str(tmp_path / "frames"))
               for i in instances)
    np.testing.assert_allclose(instances[2].keypoints, want[2].keypoints, atol=1e-3)


def test_multi_animal_h5_reads_like_its_csv(shared_data: Path, tmp_path: Path) -> None:
    animals = ("mouse1", "mouse2")
    from_csv, _, _ = read_labels(dlc_project(shared_data, tmp_path / "c", 3, individuals=animals))
    from_h5, _, _ = read_labels(dlc_project(shared_data, tmp_path / "h", 3, h5=True,
                                            individuals=animals))
    assert [i.identity for i in from_h5] == ["mouse1", "mouse2"] * 3
    assert_same(from_h5, from_csv)
