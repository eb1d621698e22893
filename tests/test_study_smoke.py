"""Every shipped experiment in --smoke on local Ray, then every table and figure from its rows.

About 93 trial rows (hyperparameters_halving reuses the grid's): slow, run by `make test-slow`
(and CI). All experiments write into one results store, as a user running the whole study
would.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import search_spaces
from orchestrator.report.tables import render_plot, render_table
from orchestrator.store.results import ResultsStore
from orchestrator.study.trials import SweepOptions

# The module fixture runs ~82 trainings (~5 min on 2 cores) inside the first test's setup.
pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> str:
    import ray

    from orchestrator.run.driver import run_sweep

    existing = os.environ.get("POSETUNE_STUDY_RESULTS")
    if existing:
        # Re-check rows, tables and figures of an earlier `make study-smoke` without rerunning.
        return existing
    results = str(tmp_path_factory.mktemp("study"))
    ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False)
    try:
        for name in search_spaces.names():
            outcome = run_sweep(search_spaces.load_experiment(name),
                                SweepOptions(results=results, smoke=True), lambda line: None)
            assert outcome.exit_code == 0, (name, outcome.failures, outcome.not_started)
    finally:
        ray.shutdown()
    return results


@pytest.mark.parametrize("name", search_spaces.names())
def test_every_experiment_lands_its_trials(study: str, name: str) -> None:
    described = search_spaces.describe(search_spaces.load_experiment(name))
    rows = [r for r in ResultsStore(study).read_trials().to_pylist() if r["experiment"] == name]
    for stage in described["stages"]:
        got = [r for r in rows if r["stage"] == stage["name"]]
        assert len(got) == stage["trials"], (stage, [r["variant_id"] for r in got])
        assert all(r["status"] in ("ok", "stopped") for r in got), [r["error"] for r in got]


@pytest.mark.parametrize("name", search_spaces.names())
def test_every_table_renders_from_the_smoke_rows(study: str, name: str) -> None:
    experiment = search_spaces.load_experiment(name)
    markdown = render_table(experiment.table or name, study, "markdown")
    header = next(line for line in markdown.splitlines() if line.startswith("|"))
    assert all(f" {column} " in header for column in ("AP", "AP.75", "AP.85", "PCK.05")), header
    assert "sigma" in markdown.lower() and "Not tabulated" not in markdown
    csv = render_table(experiment.table or name, study, "csv")
    assert {"AP", "AP.75", "AP.85", "PCK.05"} <= set(csv.splitlines()[0].split(","))


def test_figure_seven_and_per_keypoint_plot(study: str, tmp_path: Path) -> None:
    from PIL import Image

    for name in ("synthetic_amount", "pck_per_keypoint"):
        out = Path(render_plot(name, study, str(tmp_path / f"{name}.png")))
        with Image.open(out) as image:
            assert image.size[0] >= 600 and image.size[1] >= 400
        assert out.stat().st_size > 10_000


def test_study_rows_record_params_and_flops(study: str) -> Any:
    rows = [r for r in ResultsStore(study).read_trials().to_pylist()
            if r["experiment"] == "backbones"]
    assert {r["backbone"] for r in rows} == {"resnet50", "resnet101", "resnet152", "hrnet_w32",
                                             "hrnet_w48"}
    assert all(r["params_m"] > 20 and r["gflops"] > 0 for r in rows)
