"""``posetune report`` of a real small sweep: quickstart in --smoke with 2 seeds on local Ray,
then the report with the best trial's poses drawn from its checkpoint (slow: trains)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.report.page import build_report
from orchestrator.store.results import ResultsStore
from orchestrator.study.trials import SweepOptions
from search_spaces import load_experiment

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(1800)]


def test_report_of_a_smoke_sweep_has_per_keypoint_rows_and_poses(tmp_path: Path) -> None:
    import ray

    from orchestrator.run.driver import run_sweep

    results = str(tmp_path / "results")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run_sweep(load_experiment("quickstart"), SweepOptions(results=results, smoke=True,
                                                              seeds=2), lambda line: None)
    finally:
        ray.shutdown()
    rows = [r for r in ResultsStore(results).read_trials().to_pylist() if r["status"] == "ok"]
    assert rows and {r["seed"] for r in rows} == {0, 1}
    for row in rows:  # the new per-keypoint columns reach the result rows
        k = len(row["keypoint_names"])
        for column in ("ap_per_keypoint", "error_per_keypoint", "swap_rate_per_keypoint"):
            assert row[column] is not None and len(row[column]) == k, column
        assert any(math.isfinite(v) for v in row["swap_rate_per_keypoint"])
    page = build_report(results, tmp_path / "report", pose_images=2)
    html = page.read_text()
    assert "Ground truth in green" in html, html[html.find("Predicted poses"):][:600]
    poses = sorted((page.parent / "figures").glob("*-pose-*.jpg"))
    assert [p.name.split("-")[-1] for p in poses] == ["hardest.jpg"] * 2 + ["easiest.jpg"] * 2
    for path in poses:
        with Image.open(path) as image:
            assert image.format == "JPEG" and min(image.size) > 16
