"""How trials run: the in-process Tune runner, its resources, and GPU packing.

The cluster here declares one *logical* GPU (Ray schedules it like a real one) and sets
``POSETUNE_EMULATE_GPU=1`` so the trials, which get that GPU from Ray but see no CUDA device,
train on the CPU. That exercises the scheduling of fractional-GPU packing on a CPU machine;
the packing *speed-up* on a real GPU is measured by benchmarks/sweep_overhead.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from orchestrator.run.worker import EMULATE_GPU_ENV
from orchestrator.store.results import ResultsStore
from orchestrator.study.experiment import Experiment, Grid, Stage
from orchestrator.study.trials import SweepOptions
from pose_core.config import TrialConfig, with_values

pytestmark = pytest.mark.ray

TINY = with_values(TrialConfig(), {"model.backbone": "hrnet_w18_small", "model.init": "random",
                                   "train.lr": 2e-3})


@pytest.fixture(scope="module")
def gpu_cluster() -> Any:
    import ray

    previous = os.environ.get(EMULATE_GPU_ENV)
    os.environ[EMULATE_GPU_ENV] = "1"  # inherited by the trial processes
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=True, dashboard_host="127.0.0.1",
             log_to_driver=False)
    yield ray
    ray.shutdown()
    if previous is None:
        os.environ.pop(EMULATE_GPU_ENV, None)
    else:
        os.environ[EMULATE_GPU_ENV] = previous


def test_runner_choice_and_resources(gpu_cluster: Any) -> None:
    from orchestrator.run.driver import choose_runner, plan_resources

    options = SweepOptions(results="unused")
    assert choose_runner(options) == "tune"
    assert choose_runner(SweepOptions(results="unused", workers=2)) == "train"
    with pytest.raises(ValueError, match="needs --runner train"):
        choose_runner(SweepOptions(results="unused", workers=2, runner="tune"))
    with pytest.raises(ValueError, match="unknown runner"):
        choose_runner(SweepOptions(results="unused", runner="threads"))

    packed = plan_resources(SweepOptions(results="unused", gpus_per_worker=0.25))
    assert packed.runner == "tune" and packed.use_gpu and packed.max_concurrent == 4
    # Four packed trials share the node's 2 CPUs instead of asking 4 CPUs each (infeasible).
    assert packed.per_worker == {"CPU": 0.5, "GPU": 0.25}
    assert packed.trial_driver == packed.per_worker  # the trial itself holds the GPU share
    whole = plan_resources(SweepOptions(results="unused"))
    assert whole.max_concurrent == 1 and whole.per_worker == {"CPU": 2.0, "GPU": 1.0}
    train = plan_resources(SweepOptions(results="unused", runner="train"))
    assert train.runner == "train" and train.trial_driver == {"CPU": 0.25}


def test_fractional_gpu_trials_run_together(gpu_cluster: Any, tmp_path: Path) -> None:
    from orchestrator.run.driver import run_sweep

    experiment = Experiment(name="packing_test", description="test", baseline=TINY,
                            stages=(Stage(axes={"train.lr": Grid(1e-3, 2e-3)}),))
    lines: list[str] = []
    options = SweepOptions(results=str(tmp_path), smoke=True, gpus_per_worker=0.5,
                           overrides={"train.epochs": 4})
    store: ResultsStore = run_sweep(experiment, options, lines.append).store
    rows = store.read_trials().to_pylist()
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows), rows
    assert all(r["use_gpu"] for r in rows)
    assert all(r["gpu_hours"] == pytest.approx(r["wall_s"] / 3600 * 0.5) for r in rows)
    assert any("up to 2 trial(s) at once, runner tune" in line for line in lines), lines
    first, second = sorted(rows, key=lambda r: r["started_at"])
    assert second["started_at"] < first["ended_at"], "packed trials did not overlap"
    assert all(r["startup_s"] is not None and 0 < r["startup_s"] < r["wall_s"] for r in rows)
    # Each trial keeps one checkpoint under its stable name; the row points at it.
    for row in rows:
        checkpoint = Path(row["checkpoint_uri"]) / "checkpoint.pt"
        assert checkpoint.is_file(), row["checkpoint_uri"]
        assert not [p for p in checkpoint.parent.iterdir() if p.name.startswith(".tmp")]
