"""Every image checked once, before training: a zero-byte PNG and a truncated JPEG among real
DeepLabCut mouse frames stop the sweep in the preflight by name, or (bad_images = "skip") are
left out of every trial and counted in its row."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import pytest

from orchestrator.plan.preflight import preflight
from orchestrator.run.worker import TuneSession, run_job
from orchestrator.study.experiment import Experiment, Stage
from orchestrator.study.trials import RunSettings, SweepOptions, with_run
from pose_core.config import TrialConfig, with_values
from pose_core.records import DataError

MOUSE = with_values(TrialConfig(), {
    "data.base": "mouse", "data.real": None, "data.synthetic": None, "data.test": "mouse",
    "model.init": "random", "eval.sigmas": "uniform:0.1",
})
EXPERIMENT = Experiment(name="mouse", description="x", baseline=MOUSE, stages=(Stage(),))


def mouse_set(shared_data: Path, folder: Path) -> Path:
    """The shared DLC mouse frames plus a zero-byte PNG and a JPEG cut in half, each with a
    copy of a real annotation."""
    source = shared_data / "dlc_openfield_mouse"
    shutil.copytree(source / "images", folder / "images")
    coco = json.loads((source / "annotations.json").read_text())
    (folder / "images" / "zero.png").write_bytes(b"")
    ok, encoded = cv2.imencode(".jpg", cv2.imread(str(folder / "images" / "img0000.png")))
    assert ok
    (folder / "images" / "cut.jpg").write_bytes(encoded.tobytes()[: len(encoded) // 2])
    for offset, name in enumerate(("zero.png", "cut.jpg"), start=1000):
        coco["images"].append({**coco["images"][0], "id": offset, "file_name": name})
        coco["annotations"].append({**coco["annotations"][0], "id": offset, "image_id": offset})
    (folder / "annotations.json").write_text(json.dumps(coco))
    return folder


def catalog(folder: Path, bad_images: str) -> Path:
    path = folder / "catalog.toml"
    path.write_text(f'[datasets.mouse]\ncoco = "annotations.json"\nimages = "images"\n'
                    f'bad_images = "{bad_images}"\n')
    return path


def test_bad_images_stop_the_sweep_in_the_preflight_by_name(shared_data: Path,
                                                             tmp_path: Path) -> None:
    folder = mouse_set(shared_data, tmp_path / "mouse")
    options = SweepOptions(results=str(tmp_path / "res"), catalog=str(catalog(folder, "stop")),
                           smoke=True)
    with pytest.raises(DataError) as error:
        preflight(EXPERIMENT, options, lambda line: None)
    message = str(error.value)
    assert ("zero.png" in message or "cut.jpg" in message) and "1 more" in message
    assert "\n" not in message


def test_skipped_bad_images_are_left_out_and_counted_in_the_row(shared_data: Path,
                                                               tmp_path: Path) -> None:
    folder = mouse_set(shared_data, tmp_path / "mouse")
    lines: list[str] = []
    options = SweepOptions(results=str(tmp_path / "res"), catalog=str(catalog(folder, "skip")),
                           smoke=True, overrides={"train.epochs": 1})
    planned, checked = preflight(EXPERIMENT, options, lines.append)
    assert len(checked.entry("mouse").skipped_image_ids) == 2
    assert any("2 bad" in line or "left out" in line for line in lines), lines
    job = with_run(planned["main"][0], checked.to_dict(), RunSettings(str(tmp_path / "tune")))
    reports: list[dict[str, Any]] = []

    class Session(TuneSession):
        def device(self) -> Any:
            import torch

            return torch.device("cpu")

    run_job(job, Session(str(tmp_path / "ckpt"), report_to=reports.append))
    assert reports and "error" not in reports[-1], reports[-1].get("error")
    assert reports[-1]["images_skipped"] == 2
    assert reports[-1]["train_images"] == 29 and reports[-1]["test_images"] <= 29
