"""The loop after a study, end to end as README "After the study" runs it: predict -> the
least certain frames as a SLEAP labelling package -> a correction (points moved, as a
labeller would) -> the package as the catalog's ``labels =`` -> a smoke sweep that trains and
tests on the corrected labels (a real sweep on local Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.store.results import ResultsStore
from tests.conftest import write_images
from tests.test_next_commands import posetune, user_env


def correct(labels_file: Path, shift: float) -> np.ndarray:
    """What a labeller does in SLEAP: every point placed (moved by ``shift`` pixels, the ones
    the package left empty put at the animal's centre) and the file saved."""
    import sleap_io

    labels = sleap_io.load_slp(str(labels_file))
    placed = []
    for lf in labels:
        for inst in lf.user_instances:
            points = inst.numpy()
            centre = np.nanmean(points, axis=0) if np.isfinite(points).any() else (40.0, 30.0)
            points = np.where(np.isfinite(points), points + shift, centre)
            points = np.clip(points, 1.0, [94.0, 70.0])
            inst.points["xy"] = points
            inst.points["visible"] = True
            placed.append(points)
    sleap_io.save_slp(labels, str(labels_file), verbose=False)
    return np.stack(placed)


@pytest.mark.slow
@pytest.mark.ray
def test_predict_suggest_correct_and_train_again(
    predict_checkpoint: Path, tmp_path: Path
) -> None:
    env = user_env(tmp_path)  # each command in a fresh process, as the user types it
    write_images(tmp_path / "traps", 12)
    posetune(["predict", "--checkpoint", str(predict_checkpoint), "--images", "traps",
              "--format", "slp", "--out", "poses.slp", "--suggest", "10",
              "--package", "to_label"], tmp_path, env)
    placed = correct(tmp_path / "to_label" / "labels.slp", shift=3.0)
    assert placed.shape == (10, 4, 2)
    (tmp_path / "my_catalog.toml").write_text(
        '[datasets.traps]\nlabels = "to_label/labels.slp"\nsplit = "train"\n\n'
        '[datasets.traps-test]\nlabels = "to_label/labels.slp"\nsplit = "test"\n')
    posetune(["new", "traps_study.py", "--data", "traps"], tmp_path, env)
    study = tmp_path / "traps_study.py"
    study.write_text(study.read_text().replace("Grid(2e-3, 5e-4)", "Grid(2e-3)"))  # 1 trial
    posetune(["sweep", "traps_study.py", "--catalog", "my_catalog.toml", "--smoke"], tmp_path,
             env)
    rows = [r for r in ResultsStore(str(tmp_path / "runs" / "traps_study")).read_trials()
            .to_pylist() if r["status"] == "ok"]
    assert len(rows) == 1
    # Trained on 80% of the 10 corrected frames, tested on the other 20%.
    assert rows[0]["datasets"] == "traps=8,test=traps-test", rows[0]["datasets"]
