"""--plan's hours: figures measured per backbone and input size on this device (--calibrate),
cached and reused by later plans, overridden by --throughput (Ray-free)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.plan.calibration import cache_file, device_name
from orchestrator.run.driver import plan_sweep
from orchestrator.study.experiment import Experiment, Grid, Stage
from orchestrator.study.trials import SweepOptions
from pose_core.config import TrialConfig, with_values

TINY = with_values(TrialConfig(), {"model.backbone": "hrnet_w18_small", "model.init": "random"})
EXPERIMENT = Experiment(name="plan_hours", description="test", baseline=TINY, stages=(
    Stage(changes={"data.synthetic_count": 10}, axes={"train.epochs": Grid(120, 180)}),
    Stage(name="other", changes={"data.input_size": 96}),
))


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POSETUNE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "throughput.json"


def test_calibrate_measures_each_figure_caches_it_and_later_plans_use_it(
        cache: Path, tmp_path: Path) -> None:
    options = SweepOptions(results=str(tmp_path / "res"), smoke=True)
    lines: list[str] = []
    before = plan_sweep(EXPERIMENT, options, say=lines.append)
    assert before.total_hours() is None and all(s.hours is None for s in before.stages)
    assert any("hours: pass --calibrate" in line for line in lines)

    measured = plan_sweep(EXPERIMENT, options, say=lines.append, calibrate=True)
    assert cache_file() == cache
    figures = json.loads(cache.read_text())[device_name()]
    # Smoke: 64 px for the first stage; the second stage sets 96 px: two figures.
    assert sorted(figures) == ["hrnet_w18_small/heatmap/64px/batch16",
                               "hrnet_w18_small/heatmap/96px/batch16"]
    assert all(f["images_per_s"] > 0 for f in figures.values())
    assert any(line.startswith("calibrating hrnet_w18_small/heatmap/64px") for line in lines)
    main_stage, other = measured.stages
    rate = figures["hrnet_w18_small/heatmap/64px/batch16"]["images_per_s"]
    assert main_stage.hours == pytest.approx(main_stage.trained_image_epochs / rate / 3600)
    assert measured.total_hours() == pytest.approx(main_stage.hours + other.hours)

    again = plan_sweep(EXPERIMENT, options, say=lines.append)  # no --calibrate: the cache
    assert [s.hours for s in again.stages] == [s.hours for s in measured.stages]
    assert f"measured on {device_name()}" in lines[-2]
    written = json.loads((tmp_path / "res" / "plan" / "plan_hours.json").read_text())
    assert written["hours"] == pytest.approx(again.total_hours())
    assert written["device"] == device_name() and len(written["figures"]) == 2

    fixed = plan_sweep(EXPERIMENT, options, throughput=1000.0, say=lines.append)
    assert fixed.stages[0].hours == pytest.approx(fixed.stages[0].trained_image_epochs / 1000 / 3600)
    assert "1000 training images/s per device (--throughput)" in lines[-2]


def test_a_figure_for_another_device_is_not_used(cache: Path, tmp_path: Path) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps({"NVIDIA Some GPU": {
        "hrnet_w18_small/heatmap/64px/batch16": {"images_per_s": 5000.0}}}))
    plan = plan_sweep(EXPERIMENT, SweepOptions(results=str(tmp_path), smoke=True),
                      say=lambda line: None)
    assert plan.figures == {} and plan.total_hours() is None


def test_calibrate_and_throughput_need_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "quickstart", "--calibrate"]) == 2
    assert "--calibrate and --throughput go with --plan" in capsys.readouterr().err


def test_an_unreadable_cache_is_ignored_and_replaced(cache: Path, tmp_path: Path) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    options = SweepOptions(results=str(tmp_path), smoke=True)
    assert plan_sweep(EXPERIMENT, options, say=lambda line: None).figures == {}
    plan = plan_sweep(EXPERIMENT, options, say=lambda line: None, calibrate=True)
    assert plan.total_hours() is not None and device_name() in json.loads(cache.read_text())
