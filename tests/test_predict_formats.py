"""``posetune predict --format slp | dlc``: a SLEAP file sleap-io loads with the frames,
instances and scores of the COCO results, and a DeepLabCut table posetune's own reader reads
back with the same coordinates; a file name that does not fit the format is refused first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.cli import main
from orchestrator.data.labels import read_labels
from tests.conftest import write_images


@pytest.fixture(scope="module")
def predicted(predict_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, list[dict[str, object]]]:
    """Five generated images and their COCO results (the reference for the other formats)."""
    root = tmp_path_factory.mktemp("formats")
    images = write_images(root / "images", 5)
    out = root / "poses.json"
    assert main(["predict", "--checkpoint", str(predict_checkpoint), "--images", str(images),
                 "--out", str(out)]) == 0
    return images, json.loads(out.read_text())


def coco_points(results: list[dict[str, object]]) -> dict[str, np.ndarray]:
    return {str(r["file_name"]): np.asarray(r["keypoints"]).reshape(-1, 3) for r in results}


def test_slp_holds_every_frame_and_scores(
    predicted: tuple[Path, list[dict[str, object]]], predict_checkpoint: Path, tmp_path: Path
) -> None:
    import sleap_io

    images, results = predicted
    out = tmp_path / "poses.slp"
    assert main(["predict", "--checkpoint", str(predict_checkpoint), "--images", str(images),
                 "--format", "slp", "--out", str(out)]) == 0
    labels = sleap_io.load_slp(str(out))
    assert len(labels.videos) == 1 and len(labels) == 5
    assert labels.skeletons[0].node_names == ["nose", "left_ear", "right_ear", "tail"]
    assert labels.skeletons[0].symmetry_inds  # the flip pair travels as a SLEAP symmetry
    reference = coco_points(results)
    for lf in labels:
        assert len(lf.predicted_instances) == 1 and not lf.user_instances
        name = Path(labels.videos[0].filename[lf.frame_idx]).name
        inst = lf.predicted_instances[0]
        points = inst.numpy(scores=True)
        np.testing.assert_allclose(points, reference[name], atol=2e-3)
        assert inst.score == pytest.approx(reference[name][:, 2].mean(), abs=2e-3)
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("suffix", [".csv", ".h5"])
def test_dlc_table_reads_back_through_posetune(
    predicted: tuple[Path, list[dict[str, object]]], predict_checkpoint: Path, tmp_path: Path,
    suffix: str,
) -> None:
    images, results = predicted
    out = tmp_path / f"poses{suffix}"
    assert main(["predict", "--checkpoint", str(predict_checkpoint), "--images", str(images),
                 "--format", "dlc", "--out", str(out)]) == 0
    if suffix == ".csv":
        header = out.read_text().splitlines()[:3]
        assert header[0].startswith("scorer,posetune,") and header[1].startswith("bodyparts,")
        assert header[2].startswith("coords,x,y,likelihood,x,y,likelihood")
    instances, skeleton, _ = read_labels(out)
    assert skeleton.keypoints == ("nose", "left_ear", "right_ear", "tail")
    reference = coco_points(results)
    assert sorted(Path(i.image_path).name for i in instances) == sorted(reference)
    for inst in instances:
        np.testing.assert_allclose(inst.keypoints[:, :2],
                                   reference[Path(inst.image_path).name][:, :2], atol=2e-3)


@pytest.mark.parametrize(("fmt", "name"), [("slp", "poses.json"), ("dlc", "poses.slp"),
                                           ("coco", "poses.csv")])
def test_an_out_name_of_another_format_is_refused_before_predicting(
    predict_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    fmt: str, name: str,
) -> None:
    images = write_images(tmp_path / "images", 1)
    code = main(["predict", "--checkpoint", str(predict_checkpoint), "--images", str(images),
                 "--format", fmt, "--out", str(tmp_path / name)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--format {fmt} writes" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]
