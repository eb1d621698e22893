"""Fault injection: killed workers, a killed driver, NaN losses, raising trials, planted secrets.

Bounded in time, and they only signal processes these tests started. The figures these tests
assert are the ones in RELIABILITY.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.store.results import ResultsStore
from orchestrator.study.experiment import Cases, Experiment, Stage
from orchestrator.study.trials import SweepOptions
from pose_core.config import TrialConfig, with_values
from tests.conftest import kill_session

pytestmark = [pytest.mark.slow, pytest.mark.fault, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[1]
SECRET = "planted-Secret-9f3e1c"
TINY = with_values(TrialConfig(), {"model.backbone": "hrnet_w18_small", "model.init": "random",
                                   "train.lr": 2e-3})


@pytest.fixture(scope="module")
def faulty_ray(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A local cluster whose workers carry the fault hook and a planted secret in their env."""
    import ray

    from orchestrator.run.driver import init_ray

    marker = tmp_path_factory.mktemp("fault") / "killed-once"
    os.environ.update({
        "POSETUNE_FAULT_KILL_AT_EPOCH": "1", "POSETUNE_FAULT_MARKER": str(marker),
        "AWS_SECRET_ACCESS_KEY": SECRET, "POSETUNE_TEST_TOKEN": SECRET,
    })
    init_ray(SweepOptions(results="unused", ray_address="local"))
    yield marker
    ray.shutdown()
    for key in ("POSETUNE_FAULT_KILL_AT_EPOCH", "POSETUNE_FAULT_MARKER", "AWS_SECRET_ACCESS_KEY",
                "POSETUNE_TEST_TOKEN"):
        os.environ.pop(key, None)


def sweep(experiment: Experiment, results: Path, **options: Any) -> ResultsStore:
    from orchestrator.run.driver import run_sweep

    return run_sweep(experiment, SweepOptions(results=str(results), smoke=True, **options),
                     lambda line: None).store


@pytest.mark.parametrize("runner", ["tune", "train"])
def test_killed_worker_resumes_from_its_checkpoint(faulty_ray: Path, tmp_path: Path,
                                                   runner: str) -> None:
    """The training process dies mid-epoch: Tune restarts the trial (runner tune) or Ray Train
    its worker group (runner train) from the epoch-1 checkpoint."""
    experiment = Experiment(name="kill_worker", description="test", baseline=TINY,
                            stages=(Stage(),))
    faulty_ray.unlink(missing_ok=True)  # arm the kill (once) for this run
    store = sweep(experiment, tmp_path / "a", overrides={"train.epochs": 3}, runner=runner)
    assert faulty_ray.exists(), "the worker was never killed"
    (row,) = store.read_trials().to_pylist()
    assert row["status"] == "ok" and row["epochs_run"] == 3
    history = sorted(store.read_epochs().to_pylist(), key=lambda r: r["epoch"])
    assert [(r["epoch"], r["restarted"]) for r in history] == [(1, False), (2, True), (3, True)]
    # The same trial uninterrupted (the marker now exists, so no kill) ends the same: resume is
    # exact on CPU (model, optimizer, schedule and RNG states restored).
    clean = sweep(experiment, tmp_path / "b", overrides={"train.epochs": 3}, runner=runner)
    (reference,) = clean.read_trials().to_pylist()
    ref_history = sorted(clean.read_epochs().to_pylist(), key=lambda r: r["epoch"])
    assert history[-1]["loss"] == pytest.approx(ref_history[-1]["loss"], rel=1e-4)
    assert row["AP"] == pytest.approx(reference["AP"], abs=0.02)
    assert row["PCK05"] == pytest.approx(reference["PCK05"], abs=0.02)


def test_nan_and_raising_trials_fail_alone(faulty_ray: Path, tmp_path: Path) -> None:
    experiment = Experiment(name="bad_trials", description="test", baseline=TINY, stages=(Stage(
        cases=Cases({
            "nan": {"train.lr": 1e12, "train.warmup_iters": 0},
            "raises": {"model.head": "kitpose", "train.loss": "kitpose", "model.kit_parts": 50,
                       "model.kit_dim": 64},
            "fine": {},
        }),
    ),))
    faulty_ray.touch()  # no worker kill here: with max_failures=0 it would fail the trial
    store = sweep(experiment, tmp_path, max_failures=0)
    rows = {r["variant_id"]: r for r in store.read_trials().to_pylist()}
    assert rows["fine"]["status"] == "ok" and rows["fine"]["AP"] is not None
    assert rows["nan"]["status"] == "failed" and "non-finite loss" in rows["nan"]["error"]
    assert rows["raises"]["status"] == "failed" and rows["raises"]["error"]
    assert "\n" not in rows["raises"]["error"]  # one line, not a traceback wall
    # The planted secret is in every worker's environment; it must not reach rows,
    # epoch rows, checkpoints or Tune's files.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_dashboard_binds_to_loopback(faulty_ray: Path) -> None:
    import ray

    url = ray._private.worker.global_worker.node.webui_url or ""
    assert url.startswith("127.0.0.1"), url


def test_killed_driver_resumes_without_rerunning(tmp_path: Path) -> None:
    """SIGKILL the whole `posetune sweep` process session after its first row lands, then
    `--resume`: exactly one row per trial, and the finished one is not rerun."""
    results = tmp_path / "results"
    command = [sys.executable, "-m", "orchestrator.cli", "sweep", "quickstart", "--smoke",
               "--results", str(results), "--address", "local"]
    env = {**os.environ, "POSETUNE_DATA": str(tmp_path / "data")}
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.time() + 420
    try:
        while time.time() < deadline and process.poll() is None:
            if list((results / "trials").glob("*.parquet")):
                break
            time.sleep(1)
        assert process.poll() is None, "the sweep ended before it could be interrupted"
        assert list((results / "trials").glob("*.parquet")), "no trial finished in time"
    finally:
        kill_session(process)  # only the session this test started
        log.close()
    first = {r["variant_id"]: r["trial_id"] for r in ResultsStore(str(results)).read_trials()
             .to_pylist()}
    assert 1 <= len(first) < 4
    resumed = subprocess.run(command + ["--resume"], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=600, start_new_session=True)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "finished trial(s) skipped" in resumed.stdout
    store = ResultsStore(str(results))
    rows = store.read_trials(latest_only=False).to_pylist()
    assert sorted(r["variant_id"] for r in rows) == sorted(
        ["real_count=0,synthetic_count=0", "real_count=0,synthetic_count=100",
         "real_count=40,synthetic_count=0", "real_count=40,synthetic_count=100"])
    assert all(r["status"] == "ok" for r in rows)
    for variant, trial_id in first.items():
        assert next(r["trial_id"] for r in rows if r["variant_id"] == variant) == trial_id
