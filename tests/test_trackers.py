"""Trackers: ``--log`` parsing, what a run is given, the checks before Ray starts, and one tiny
Tune run of a dummy function trainable logging to MLflow's SQLite store in the results (as
plain ``--log mlflow`` does), TensorBoard event files and offline W&B."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.run.tracker_callbacks import tracker_callbacks
from orchestrator.run.trackers import (
    add_log_argument,
    check_trackers,
    parse_spec,
    tracked_params,
)
from orchestrator.study.trials import RunSettings, TrialJob
from pose_core.config import TrialConfig, with_values
from tests.wandb_offline import config_and_history

JOB = TrialJob(
    "toy", "main", "lr=0.001", 0,
    with_values(TrialConfig(), {"train.lr": 1e-3, "train.epochs": 3, "data.augment": "none",
                                "model.weights": "s3://alice:hunter2@host/w.pth"}),
    catalog={"datasets": {"lynx": {"coco": "s3://bucket/lynx.json"}},
             "storage_options": {"key": "AKIAABCDEFGHIJKLMNOP", "secret": "s"}},
    run=RunSettings("s3://alice:hunter2@host/tune"),
)
CONFIG = {"job": JOB, "note": "AWS_SESSION_TOKEN=xyz"}


def test_params_are_flat_and_leave_out_credentials_and_the_catalog() -> None:
    params = tracked_params(CONFIG)
    assert params["train.lr"] == 1e-3 and params["data.test"] == "lynx-test"
    assert params["variant_id"] == "lr=0.001" and params["experiment"] == "toy"
    assert "model.weights" not in params  # a value holding credentials is left out
    assert "data.base_count" not in params  # None: trackers reject it
    text = json.dumps(params)
    for leaked in ("catalog", "AKIA", "hunter2", "aws_secret", "xyz", "lynx.json"):
        assert leaked not in text, leaked


def test_log_argument_and_specs() -> None:
    parser = argparse.ArgumentParser()
    add_log_argument(parser)
    args = parser.parse_args(["--log", "mlflow=file:/tmp/m", "--log", "tensorboard"])
    assert [parse_spec(s) for s in args.log] == [("mlflow", "file:/tmp/m"), ("tensorboard", None)]
    assert parser.parse_args([]).log == []
    with pytest.raises(ValueError, match="valid: mlflow, tensorboard, wandb"):
        tracker_callbacks(["neptune"], "toy")
    with pytest.raises(ValueError, match="more than once"):
        tracker_callbacks(["wandb", "wandb=p"], "toy")


def test_missing_package_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ValueError, match="pip install wandb"):
        tracker_callbacks(["wandb"], "toy")


def test_file_stores_and_unreachable_servers_are_one_line_problems(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    for spec in ("mlflow=file:mlruns", "mlflow=mlruns", f"mlflow=file://{tmp_path}/m"):
        specs, problems = check_trackers([spec], "runs/x")
        assert len(problems) == 1 and "refuses file stores" in problems[0], problems
        assert "--log mlflow=sqlite:///mlflow.db" in problems[0]
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the user's own opt-in stands
    assert check_trackers(["mlflow=file:mlruns"], "runs/x") == (["mlflow=file:mlruns"], [])
    _, problems = check_trackers(["mlflow=http://127.0.0.1:9"], "runs/x")
    assert problems and "the MLflow server does not answer" in problems[0], problems
    specs, problems = check_trackers(["mlflow"], "s3://bucket/study")
    assert specs == ["mlflow"] and "must be a file on this machine" in problems[0]
    assert check_trackers(["mlflow=sqlite:///x.db"], "r") == (["mlflow=sqlite:///x.db"], [])
    assert check_trackers(["mlflow=databricks"], "r") == (["mlflow=databricks"], [])


@pytest.fixture
def tune_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two trials (lr 1e-3, 1e-4) through all three trackers; returns tmp_path."""
    ray = pytest.importorskip("ray")
    from ray import tune

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # as a user's shell has it
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb").mkdir()

    def dummy_trainable(config: dict[str, Any]) -> None:  # nested: pickled by value for Ray
        lr = config["job"].config.train.lr
        for epoch in range(1, 4):
            tune.report({"epoch": epoch, "loss": lr / epoch, "AP": 0.1 * epoch,
                         "pck_per_keypoint": [0.5, 0.6],
                         "checkpoint_path": f"/ckpt/{config['job'].variant_id}"})

    jobs = [dataclasses.replace(JOB, variant_id=f"lr={lr:g}",
                                config=with_values(JOB.config, {"train.lr": lr}))
            for lr in (1e-3, 1e-4)]
    specs, problems = check_trackers(["mlflow", "tensorboard", "wandb"], str(tmp_path / "res"))
    assert problems == [] and specs[0] == f"mlflow=sqlite:///{tmp_path / 'res' / 'mlflow.db'}"
    callbacks = tracker_callbacks(specs, "toy")
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        tune.Tuner(
            dummy_trainable,
            param_space={"job": tune.grid_search(jobs)},
            run_config=tune.RunConfig(name="toy", storage_path=str(tmp_path / "tune"),
                                      callbacks=callbacks, verbose=0),
        ).fit()
    finally:
        ray.shutdown()
    return tmp_path


@pytest.mark.timeout(300)
def test_trackers_record_params_metrics_final_values_and_checkpoint(tune_run: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tune_run / 'res' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("toy")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["train.lr"] for r in runs) == ["0.0001", "0.001"]
    for run in runs:
        assert not any("catalog" in k or "secret" in k for k in run.data.params)
        assert run.data.params["checkpoint_uri"].startswith("/ckpt/lr=")
        assert run.data.metrics["final.AP"] == pytest.approx(0.3)
        history = client.get_metric_history(run.info.run_id, "AP")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
            [0.1, 0.2, 0.3])
        assert not any(k.startswith("config") for k in run.data.metrics)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    event_files = sorted(tune_run.rglob("events.out.tfevents.*"))
    assert len(event_files) == 2, event_files
    for path in event_files:
        events = EventAccumulator(str(path), size_guidance={"tensors": 0})
        events.Reload()
        ap = events.Scalars("ray/tune/AP")
        assert [round(e.value, 6) for e in ap] == [0.1, 0.2, 0.3]
        assert events.Scalars("final.AP")[0].value == pytest.approx(0.3)
        tensors = events.Tags()["tensors"]
        assert any(t.startswith("checkpoint_uri") for t in tensors), tensors
        assert "_hparams_/experiment" in events.summary_metadata

    offline = sorted((tune_run / "wandb").rglob("offline-run-*/run-*.wandb"))
    assert len(offline) == 2, offline
    for path in offline:
        config, history = config_and_history(path)
        assert "train.lr" in config and not any("catalog" in k for k in config), config
        assert str(config["checkpoint_uri"]).startswith("/ckpt/lr="), config
        assert [row["AP"] for row in history if "AP" in row] == pytest.approx([0.1, 0.2, 0.3])
        assert [row["final.AP"] for row in history if "final.AP" in row] == pytest.approx([0.3])
