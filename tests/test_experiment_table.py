"""The generic table and axis plot of any experiment (orchestrator.report.experiment_table), from
hand-made rows in a results store: 2 learning rates x 2 seeds, uniform and named sigmas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orchestrator.cli import main
from orchestrator.report.experiment_table import render_axis_plot, render_experiment_table
from orchestrator.store.results import ResultsStore
from orchestrator.study.stats import mean_interval
from pose_core.config import TrialConfig, with_values
from pose_core.skeletons import sigma_digest
from tests.test_tables import body_rows, csv_rows, record

AP = {(2e-3, 0): 0.50, (2e-3, 1): 0.54, (5e-4, 0): 0.40, (5e-4, 1): 0.30}
NAMES = ["snout", "leftear", "rightear", "tailbase"]


def write_rows(uri: Path, sigmas: list[float]) -> str:
    store = ResultsStore(str(uri))
    base = with_values(TrialConfig(), {"data.base": "mouse", "data.test": "mouse-test",
                                       "eval.sigmas": "default"})
    for n, ((lr, seed), ap) in enumerate(AP.items()):
        config = with_values(base, {"train.lr": lr, "train.seed": seed})
        store.append_trial(record("mouse_lr", "main", f"lr={lr:g}", config, n, AP=ap,
                                  keypoint_names=NAMES, sigma_set="default",
                                  sigma_digest=sigma_digest(np.asarray(sigmas))))
    return str(store.uri)


def test_generic_table_mean_interval_axes_and_best(tmp_path: Path) -> None:
    uri = write_rows(tmp_path / "r", [0.1] * 4)
    text = render_experiment_table(uri, "mouse_lr")
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0].split("|")[1:4] == [" train.lr ", " Seeds ", " AP "]
    rows = body_rows(text)
    mean, half = mean_interval([0.50, 0.54])
    assert rows[0][:3] == ["0.0005", "2", "0.350 ± 0.635"]  # t(1) = 12.706: wide
    assert rows[1][:3] == ["0.002", "2", f"**{mean:.3f} ± {half:.3f}**"]  # best is bold
    assert "Mean ± 95% interval" in text
    assert "OKS sigmas are uniform (0.1): AP is not comparable with the study's." in text
    table = csv_rows(render_experiment_table(uri, None, "csv"))  # the only experiment
    assert float(table[1]["AP"]) == pytest.approx(0.52)
    assert float(table[1]["AP_ci95"]) == pytest.approx(half)


def test_named_sigmas_drop_the_uniform_warning(tmp_path: Path) -> None:
    uri = write_rows(tmp_path / "r", [0.026, 0.035, 0.035, 0.079])
    assert "uniform" not in render_experiment_table(uri, "mouse_lr")


def test_cli_generic_and_named_forms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = write_rows(tmp_path / "r", [0.1] * 4)
    assert main(["table", uri, "--experiment", "mouse_lr"]) == 0
    assert "| train.lr | Seeds | AP |" in capsys.readouterr().out
    assert main(["table", "mouse_lr", uri]) == 2  # the old form still means a study table
    assert "no table named 'mouse_lr'" in capsys.readouterr().err
    assert main(["table", uri, "--experiment", "other"]) == 2
    assert "holds mouse_lr" in capsys.readouterr().err
    png = tmp_path / "lr.png"
    assert main(["plot", uri, "--x", "train.lr", "--metric", "AP", "--out", str(png)]) == 0
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 500
    assert main(["plot", uri, "--x", "data.base", "--out", str(png)]) == 2
    assert "not numeric" in capsys.readouterr().err


def test_axis_plot_accepts_a_results_column(tmp_path: Path) -> None:
    uri = write_rows(tmp_path / "r", [0.1] * 4)
    out = render_axis_plot(uri, "lr", str(tmp_path / "col.png"), "AP75")
    assert Path(out).stat().st_size > 1000
