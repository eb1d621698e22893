"""``posetune predict`` on a folder with bad files: they are skipped and listed, the rest are
predicted, and overlays of ``x.png`` and ``x.jpeg`` do not overwrite each other. A tiny
untrained checkpoint stands in for a trained one (no Ray)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orchestrator.cli import build_parser, main
from orchestrator.infer.predict import run_predict
from pose_core.config import TrialConfig, with_values
from pose_core.engine import save_checkpoint
from pose_core.models import build_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = with_values(TrialConfig(), {
        "model.backbone": "test_resnet", "model.init": "random", "data.input_size": 64,
    })
    names = ["nose", "tail", "paw"]
    model = build_model(cfg.model, len(names), cfg.data.input_size)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    save_checkpoint(path, model, None, None, 1, cfg.to_dict(), names)
    return path


def test_bad_images_are_skipped_and_listed(
    checkpoint: Path, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    shutil.copy(shared_data / "horse10" / "images" / "0465.png", images / "x.png")
    shutil.copy(shared_data / "animalpose" / "images" / "ca110.jpeg", images / "x.jpeg")
    (images / "sub" / "empty.png").write_bytes(b"")
    whole = (shared_data / "ap10k" / "images" / "000000000004.jpg").read_bytes()
    (images / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    out, overlay = tmp_path / "pred.json", tmp_path / "overlay"
    code = main(["predict", "--checkpoint", str(checkpoint), "--images", str(images),
                 "--out", str(out), "--overlay", str(overlay)])
    assert code == 3  # some inputs could not be used; the rest are written
    captured = capsys.readouterr()
    predictions = json.loads(out.read_text())
    assert sorted(p["file_name"] for p in predictions) == ["x.jpeg", "x.png"]
    assert all(len(p["keypoints"]) == 9 for p in predictions)
    assert "2 animal(s) in 2 image(s)" in captured.out
    assert captured.err.splitlines() == [
        "posetune predict: skipped 2 of 4 image(s) that do not decode:",
        "  cut.jpg: truncated image: the JPEG ends without its end-of-image marker",
        "  sub/empty.png: cannot decode image: empty file (0 bytes)",
    ]
    assert sorted(p.name for p in overlay.iterdir()) == ["x.jpeg.jpg", "x.png.jpg"]


def test_the_outcome_names_the_skipped_images(checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "bad.jpg").write_text("not an image")
    args = build_parser().parse_args([
        "predict", "--checkpoint", str(checkpoint), "--images", str(tmp_path / "images"),
        "--out", str(tmp_path / "p.json")])
    outcome = run_predict(args)
    assert outcome.results == [] and json.loads((tmp_path / "p.json").read_text()) == []
    assert [(Path(b.path).name, b.fault) for b in outcome.skipped] == [("bad.jpg", "undecodable")]
