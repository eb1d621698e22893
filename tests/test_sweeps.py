"""Sweeps on a real local Ray cluster: grid, Optuna + ASHA, two stages, DDP, resume, CLI.

Trials run in-process in their Tune trial (runner "tune") except the DDP test (runner
"train", ~15-20 s of fixed Ray Train overhead a trial on 2 cores), so the sweeps here are as
small as the behaviour they check allows, and results are shared where possible.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from orchestrator.store.query import query
from orchestrator.store.results import ResultsStore
from orchestrator.study.experiment import Experiment, Grid, IntRange, LogUniform, Stage
from orchestrator.study.trials import SweepOptions
from pose_core.config import TrialConfig, with_values

pytestmark = pytest.mark.ray

TINY = with_values(TrialConfig(), {
    "model.backbone": "hrnet_w18_small",
    "model.init": "random",
    "train.lr": 2e-3,
})


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    import ray

    ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1",
             log_to_driver=False)
    yield ray
    ray.shutdown()


def sweep(experiment: Experiment, results: Path, **options: Any) -> ResultsStore:
    from orchestrator.run.driver import run_sweep

    lines: list[str] = []
    outcome = run_sweep(
        experiment, SweepOptions(results=str(results), smoke=True, **options), lines.append
    )
    store = outcome.store
    store.lines = lines  # type: ignore[attr-defined]
    store.outcome = outcome  # type: ignore[attr-defined]
    return store


def rows(store: ResultsStore) -> list[dict[str, Any]]:
    return sorted(store.read_trials().to_pylist(), key=lambda r: (r["stage"], r["variant_id"]))


@pytest.fixture(scope="module")
def two_stage(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> ResultsStore:
    """Stage 1: one pre-training trial; stage 2: a 2-point grid fine-tuned from its best."""
    experiment = Experiment(
        name="twostage_test",
        description="test",
        baseline=TINY,
        stages=(
            Stage(name="pre", changes={"data.synthetic_count": 20}),
            Stage(
                name="fine",
                axes={"data.real_count": Grid(10, 20)},
                changes={"data.base": None, "model.init": "checkpoint",
                         "model.weights": "@best:pre"},
                depends_on=("pre",),
            ),
        ),
    )
    return sweep(experiment, tmp_path_factory.mktemp("two_stage"))


def test_grid_and_two_stage_rows(two_stage: ResultsStore) -> None:
    got = rows(two_stage)
    assert [(r["stage"], r["variant_id"], r["status"]) for r in got] == [
        ("fine", "real_count=10", "ok"), ("fine", "real_count=20", "ok"), ("pre", "baseline", "ok"),
    ]
    pre = got[2]
    for row in got:
        for key in ("AP", "AP50", "AP75", "AP85", "AR", "PCK05"):
            assert row[key] is not None and 0.0 <= row[key] <= 1.0, (key, row[key])
        assert row["epochs_run"] == 2 and row["best_epoch"] in (1, 2)
        assert len(row["pck_per_keypoint"]) == 20 and row["keypoint_names"][0] == "L_Eye"
        assert row["params_m"] > 1 and row["gflops"] > 0
        assert row["sigma_set"] == "animalpose" and row["area_rule"] == "given"
        assert row["subset_digest"] and row["checkpoint_uri"]
        assert row["torch_version"] and row["ray_version"].startswith("2.60")
        assert row["wall_s"] > 0 and row["ended_at"] > row["started_at"]
    # Stage 2 started from stage 1's checkpoint, and on real data only (nested subsets).
    fine = got[:2]
    assert all(r["init"] == "checkpoint" and r["init_checkpoint"] == pre["checkpoint_uri"]
               for r in fine)
    assert Path(pre["checkpoint_uri"], "checkpoint.pt").is_file()
    # --smoke shrinks 10 and 20 real images to 3 and 4 (still nested, still distinct).
    assert "lynx-train=3" in fine[0]["datasets"] and "animalpose" not in fine[0]["datasets"]
    assert "lynx-train=4" in fine[1]["datasets"]
    assert fine[0]["subset_digest"] != fine[1]["subset_digest"]
    epochs = two_stage.read_epochs().to_pylist()
    assert sorted({(e["stage"], e["epoch"]) for e in epochs}) == [
        ("fine", 1), ("fine", 2), ("pre", 1), ("pre", 2)]
    assert any("done" in line and "best AP" in line for line in two_stage.lines)  # type: ignore[attr-defined]


def test_query_cli_and_table(two_stage: ResultsStore, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli import main

    sql = "SELECT variant_id, status FROM trials WHERE stage = 'fine' ORDER BY variant_id"
    assert main(["query", two_stage.uri, "--sql", sql, "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == [{"variant_id": "real_count=10", "status": "ok"},
                   {"variant_id": "real_count=20", "status": "ok"}]
    table = query(two_stage.uri, "SELECT count(*) AS n FROM epochs").to_pylist()
    assert table == [{"n": 6}]
    assert main(["query", two_stage.uri, "--sql", "SELECT nope FROM trials"]) == 2
    assert "error" in capsys.readouterr().err


def test_predict_with_megadetector_boxes(two_stage: ResultsStore, tmp_path: Path,
                                         synth_dir: Path) -> None:
    from orchestrator.cli import main

    checkpoint = rows(two_stage)[0]["checkpoint_uri"]
    images = synth_dir / "images"
    gt = json.loads((synth_dir / "annotations.json").read_text())
    pick = gt["images"][:3]
    boxes = {a["image_id"]: a["bbox"] for a in gt["annotations"]}
    detections = {
        "detection_categories": {"1": "animal", "2": "person"},
        "images": [
            {"file": im["file_name"].split("/")[-1], "detections": [
                {"category": "1", "conf": 0.9, "bbox": [
                    boxes[im["id"]][0] / im["width"], boxes[im["id"]][1] / im["height"],
                    boxes[im["id"]][2] / im["width"], boxes[im["id"]][3] / im["height"]]},
                {"category": "2", "conf": 0.95, "bbox": [0.1, 0.1, 0.2, 0.2]},
                {"category": "1", "conf": 0.05, "bbox": [0.5, 0.5, 0.2, 0.2]},
            ]} for im in pick
        ],
    }
    det_file = tmp_path / "md.json"
    det_file.write_text(json.dumps(detections))
    out = tmp_path / "pred.json"
    code = main(["predict", "--checkpoint", checkpoint, "--images", str(images),
                 "--detections", str(det_file), "--out", str(out),
                 "--overlay", str(tmp_path / "overlay")])
    assert code == 0
    preds = json.loads(out.read_text())
    assert len(preds) == 3  # one animal box per image above threshold; the person is ignored
    for p in preds:
        points = np.asarray(p["keypoints"]).reshape(-1, 3)
        x, y, w, h = p["bbox"]
        assert points.shape == (20, 3)
        assert np.all(points[:, 0] >= x - 0.5 * w) and np.all(points[:, 0] <= x + 1.5 * w)
    assert len(list((tmp_path / "overlay").glob("*.jpg"))) == 3


def test_optuna_asha_sweep(ray_cluster: Any, tmp_path: Path) -> None:
    experiment = Experiment(
        name="tpe_test",
        description="test",
        baseline=TINY,
        early_stopping=True,
        stages=(Stage(
            search="optuna", num_samples=3, scheduler="asha",
            axes={"train.lr": LogUniform(1e-4, 3e-3), "train.epochs": IntRange(50, 210)},
        ),),
    )
    store = sweep(experiment, tmp_path)
    got = rows(store)
    assert len(got) == 3
    assert {r["status"] for r in got} <= {"ok", "stopped"}
    lrs = [r["lr"] for r in got]
    assert len(set(lrs)) == 3 and all(1e-4 <= lr <= 3e-3 for lr in lrs)
    # Sampled trials keep checkpoints by trial id too (TPE may sample the same values twice).
    assert len({r["checkpoint_uri"] for r in got}) == 3
    assert all(r["trial_id"] in r["checkpoint_uri"] for r in got)
    # In --smoke the epochs range shrinks to 1..3; ids carry the sampled values.
    assert all(1 <= r["epochs"] <= 3 and r["variant_id"].startswith("lr=") for r in got)


def test_data_parallel_trial_with_two_workers(ray_cluster: Any, tmp_path: Path) -> None:
    experiment = Experiment(name="ddp_test", description="test", baseline=TINY,
                            stages=(Stage(changes={"train.epochs": 50}),))
    store = sweep(experiment, tmp_path, workers=2)
    (row,) = rows(store)
    assert row["status"] == "ok" and row["workers"] == 2 and row["AP"] is not None


def forget_trial(folder: Path, trial_id: str) -> None:
    """Drop a trial's row from the store's files, whether the sweep compacted them or not."""
    dropped = 0
    for path in folder.glob("*.parquet"):
        table = pq.read_table(path)
        kept = table.filter(pc.not_equal(table["trial_id"], trial_id))
        dropped += table.num_rows - kept.num_rows
        if kept.num_rows == 0:
            path.unlink()
        elif kept.num_rows != table.num_rows:
            pq.write_table(kept, path)
    assert dropped == 1


def test_resume_skips_finished_trials(ray_cluster: Any, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    experiment = Experiment(name="resume_test", description="test", baseline=TINY,
                            stages=(Stage(axes={"data.synthetic_count": Grid(0, 10)}),))
    monkeypatch.chdir(tmp_path.parent)  # a relative results path, as `posetune sweep` defaults to
    relative = Path(tmp_path.name)
    store = sweep(experiment, relative)
    first = {r["variant_id"]: r["trial_id"] for r in rows(store)}
    assert len(first) == 2
    # Forget one trial (as if the driver died before it finished), then resume.
    forget_trial(tmp_path / "trials", first["synthetic_count=10"])
    again = sweep(experiment, relative, resume=True)
    second = {r["variant_id"]: r["trial_id"] for r in rows(again)}
    assert second["synthetic_count=0"] == first["synthetic_count=0"]  # not rerun
    assert second["synthetic_count=10"] != first["synthetic_count=10"]  # rerun
    assert any("1 finished trial(s) skipped" in line for line in again.lines)  # type: ignore[attr-defined]
    # Its checkpoint (stable name) held the finished run: re-reported once, not retrained;
    # its epoch rows come back from the checkpoint's history, each ended before this run.
    rerun = [r for r in again.read_epochs().to_pylist()
             if r["trial_id"] == second["synthetic_count=10"]]
    assert sorted(r["epoch"] for r in rerun) == [1, 2]
    assert all(r["wall_s"] < 0 for r in rerun), rerun
    assert len(again.read_trials(latest_only=False)) == 2
    done = sweep(experiment, relative, resume=True)
    assert any("already finished (--resume)" in line for line in done.lines), done.lines  # type: ignore[attr-defined]
    assert len(done.read_trials(latest_only=False)) == 2
    # Resume by identity: with another config the finished rows no longer match; both
    # trials are named as changed and run again.
    old_folders = {r["checkpoint_uri"] for r in rows(done)}
    changed = sweep(experiment, relative, resume=True, overrides={"train.lr": 1e-3})
    assert any("2 finished trial(s) changed" in line and "train.lr 0.002 -> 0.001" in line
               for line in changed.lines), changed.lines  # type: ignore[attr-defined]
    latest = rows(changed)
    assert [r["lr"] for r in latest] == [1e-3, 1e-3] and changed.outcome.exit_code == 0  # type: ignore[attr-defined]
    # ... and trained afresh: a changed trial never re-reports the old run's checkpoint.
    for row in latest:
        epochs = [e["epoch"] for e in changed.read_epochs().to_pylist()
                  if e["trial_id"] == row["trial_id"]]
        assert epochs == [1, 2], (row["variant_id"], epochs)
        assert row["checkpoint_uri"] not in old_folders


def test_failed_stage_fails_the_sweep_and_blocks_its_dependants(ray_cluster: Any,
                                                                tmp_path: Path) -> None:
    """A diverging loss is deterministic: the trial ends failed with the reason, once (no
    retry), the stage that depends on it never starts, and the sweep's exit code is 3."""
    experiment = Experiment(
        name="fail_test", description="test", baseline=TINY,
        stages=(
            Stage(name="pre", changes={"train.lr": 1e12}),
            Stage(name="fine", changes={"model.init": "checkpoint",
                                        "model.weights": "@best:pre"}, depends_on=("pre",)),
        ),
    )
    mlflow_db = f"sqlite:///{tmp_path / 'mlflow.db'}"  # what plain --log mlflow logs to
    store = sweep(experiment, tmp_path, max_failures=2, loggers=(f"mlflow={mlflow_db}",))
    outcome = store.outcome  # type: ignore[attr-defined]
    every = store.read_trials(latest_only=False).to_pylist()
    assert [(r["stage"], r["status"]) for r in every] == [("pre", "failed")]  # one row: no retry
    assert "non-finite loss" in every[0]["error"] and "NonFiniteLossError" in every[0]["error"]
    assert outcome.exit_code == 3 and outcome.counts == {"failed": 1}
    assert outcome.not_started and outcome.not_started[0].startswith("fine:")
    assert outcome.failures[0].startswith("pre/baseline/seed=0: ")
    # --log mlflow: the sweep's trial is an MLflow run with the job as params.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_db)
    (run,) = client.search_runs([client.get_experiment_by_name("fail_test").experiment_id])
    assert run.data.params["train.lr"] == "1000000000000.0"
    assert run.data.params["stage"] == "pre" and run.data.params["variant_id"] == "baseline"


def test_study_wide_reuse_and_a_plan_that_matches_what_trains(ray_cluster: Any,
                                                              tmp_path: Path) -> None:
    """Experiment B's 10-synthetic trial is experiment A's pre-training (same config, data
    and code): B trains only its other trial, its row says reused_from, and --plan's
    image-epochs are what the rows trained."""
    from orchestrator.run.driver import plan_sweep

    a = Experiment(name="reuse_a", description="test", baseline=TINY,
                   stages=(Stage(name="pre", changes={"data.synthetic_count": 10}),))
    b = Experiment(name="reuse_b", description="test", baseline=TINY,
                   stages=(Stage(axes={"data.synthetic_count": Grid(10, 20)}),))
    options = SweepOptions(results=str(tmp_path), smoke=True)
    plan_a = plan_sweep(a, options, say=lambda line: None)
    first = sweep(a, tmp_path)
    (row_a,) = rows(first)
    assert plan_a.total("trained_image_epochs") == row_a["train_images"] * row_a["epochs_run"]
    plan_b = plan_sweep(b, options, say=lambda line: None)
    assert plan_b.total("reused") == 1 and plan_b.total("trials") == 2
    assert (tmp_path / "plan" / "reuse_b.json").is_file()
    second = sweep(b, tmp_path)
    got = {r["variant_id"]: r for r in rows(second) if r["experiment"] == "reuse_b"}
    reused, trained = got["synthetic_count=10"], got["synthetic_count=20"]
    assert reused["reused_from"] == "reuse_a/pre/baseline/seed=0" and reused["wall_s"] == 0
    assert reused["epochs_trained"] == 0
    assert reused["AP"] == row_a["AP"] and reused["checkpoint_uri"] == row_a["checkpoint_uri"]
    assert trained["reused_from"] is None and trained["status"] == "ok"
    assert plan_b.total("trained_image_epochs") == \
        trained["train_images"] * trained["epochs_run"]
    assert any("reused from reuse_a/pre/baseline/seed=0" in line
               for line in second.lines)  # type: ignore[attr-defined]
    # A reuse of a reuse names the trial that trained, not the copy in between.
    c = Experiment(name="reuse_c", description="test", baseline=TINY,
                   stages=(Stage(changes={"data.synthetic_count": 10}),))
    (row_c,) = [r for r in rows(sweep(c, tmp_path)) if r["experiment"] == "reuse_c"]
    assert row_c["reused_from"] == "reuse_a/pre/baseline/seed=0"
    # A row is trusted only as far as its checkpoint: a corrupt file means training again.
    checkpoint = Path(row_a["checkpoint_uri"]) / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    d = dataclasses.replace(c, name="reuse_d")
    fourth = sweep(d, tmp_path)
    (row_d,) = [r for r in rows(fourth) if r["experiment"] == "reuse_d"]
    assert row_d["reused_from"] is None and row_d["status"] == "ok"
    assert row_d["checkpoint_uri"] != row_a["checkpoint_uri"]
    assert any(f"not reusing reuse_a/pre/baseline/seed=0: its checkpoint {checkpoint} does "
               "not load" in line for line in fourth.lines)  # type: ignore[attr-defined]
    # --no-reuse trains it again.
    third = sweep(b, tmp_path / "again", reuse=False)
    assert all(r["reused_from"] is None for r in rows(third))


def test_forked_trials_equal_unforked_ones_and_the_plan_counts_the_saving(
        ray_cluster: Any, tmp_path: Path) -> None:
    """Trials differing only in epochs (2 and 3 at smoke scale): the longer starts from the
    shorter's checkpoint after epoch 1 and ends exactly where it ends trained alone."""
    from orchestrator.run.driver import plan_sweep

    experiment = Experiment(name="fork_test", description="test", baseline=TINY, stages=(
        Stage(changes={"data.synthetic_count": 10}, axes={"train.epochs": Grid(120, 180)}),))
    options = SweepOptions(results=str(tmp_path / "forked"), smoke=True)
    plan = plan_sweep(experiment, options, say=lambda line: None)
    assert plan.total("forked") == 1
    forked = sweep(experiment, tmp_path / "forked")
    alone = sweep(experiment, tmp_path / "alone", fork=False)
    got = {r["variant_id"]: r for r in rows(forked)}
    ref = {r["variant_id"]: r for r in rows(alone)}
    member = got["epochs=180"]
    assert member["forked_from"] == "fork_test/main/epochs=120/seed=0@epoch=1"
    assert got["epochs=120"]["forked_from"] is None and ref["epochs=180"]["forked_from"] is None
    for variant in ("epochs=120", "epochs=180"):
        assert got[variant]["status"] == ref[variant]["status"] == "ok"
        assert got[variant]["AP"] == ref[variant]["AP"], variant
        assert got[variant]["epochs_run"] == ref[variant]["epochs_run"]
    epochs = [e for e in forked.read_epochs().to_pylist() if e["variant_id"] == "epochs=180"]
    assert sorted(e["epoch"] for e in epochs) == [1, 2, 3]
    assert not any(e["restarted"] for e in epochs)
    assert len({e["trial_id"] for e in epochs}) == 1
    reference_losses = sorted((e["epoch"], e["loss"]) for e in alone.read_epochs().to_pylist()
                              if e["variant_id"] == "epochs=180")
    assert sorted((e["epoch"], e["loss"]) for e in epochs) == reference_losses
    trained = sum(r["train_images"] * r["epochs_trained"] for r in got.values())
    assert [got[v]["epochs_trained"] for v in ("epochs=120", "epochs=180")] == [2, 2]
    assert plan.total("trained_image_epochs") == trained
    assert any("forked from epochs=120 after epoch 1" in line
               for line in forked.lines)  # type: ignore[attr-defined]


def test_halving_runs_the_best_arm_longer_and_the_plan_counts_it(
        ray_cluster: Any, tmp_path: Path) -> None:
    """Two lr arms x epochs 2 and 3 (smoke scale): both train 2 epochs, only the better arm
    trains 3 (forked after epoch 1), and --plan said so before."""
    from orchestrator.run.driver import plan_sweep

    experiment = Experiment(name="halving_test", description="test", baseline=TINY, stages=(
        Stage(changes={"data.synthetic_count": 10},
              axes={"train.lr": Grid(2e-3, 1e-9), "train.epochs": Grid(120, 180)},
              scheduler="halving"),))
    options = SweepOptions(results=str(tmp_path), smoke=True)
    plan = plan_sweep(experiment, options, say=lambda line: None)
    assert plan.total("trials") == 3 and plan.total("forked") == 1
    store = sweep(experiment, tmp_path)
    assert store.outcome.exit_code == 0  # type: ignore[attr-defined]
    got = {r["variant_id"]: r for r in rows(store)}
    short = {v: r for v, r in got.items() if "epochs=120" in v}
    assert len(got) == 3 and len(short) == 2 and all(r["status"] == "ok" for r in got.values())
    winner = max(short.values(), key=lambda r: r["AP"])  # ties: the grid's first arm
    (longer,) = [v for v in got if "epochs=180" in v]
    assert longer == winner["variant_id"].replace("epochs=120", "epochs=180")
    assert got[longer]["forked_from"].endswith(f"{winner['variant_id']}/seed=0@epoch=1")
    trained = sum(r["train_images"] * r["epochs_trained"] for r in got.values())
    assert plan.total("trained_image_epochs") == trained
    line = next(x for x in store.lines if "halving after" in x)  # type: ignore[attr-defined]
    assert "1 of 2 arm(s) go on" in line and "their 1 longer trial(s) not run" in line
    # The plain grid in the same store trains only the cell halving dropped ...
    grid = dataclasses.replace(experiment, name="grid_test", stages=(
        dataclasses.replace(experiment.stages[0], scheduler="fifo"),))
    both = rows(sweep(grid, tmp_path))
    mine = [r for r in both if r["experiment"] == "grid_test"]
    assert len(mine) == 4 and sum(r["reused_from"] is None for r in mine) == 1
    # ... and halving again, with every cell in the store, reuses just the cells it picks.
    again = dataclasses.replace(experiment, name="halving_again")
    store = sweep(again, tmp_path)
    picked = [r for r in rows(store) if r["experiment"] == "halving_again"]
    assert sorted(r["variant_id"] for r in picked) == sorted(got)
    assert all(r["reused_from"] for r in picked)
