"""What a sweep needs, checked before Ray starts, run as a user runs `posetune sweep`:
trackers and cluster addresses that do not answer stop in seconds with one line (exit 2),
and `--plan` prints the plan with each problem the sweep would stop on instead of refusing."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from orchestrator.cli import main

# An experiment a laptop plans for a cluster: ImageNet weights it does not have, data it
# cannot read (the catalog names files that are on the cluster only).
LAPTOP = '''"""laptop_plan: planned here, trained elsewhere."""
from orchestrator import Experiment, Grid, Stage
from pose_core.config import TrialConfig, with_values

EXPERIMENT = Experiment(
    name="laptop_plan", description=__doc__,
    baseline=with_values(TrialConfig(), {
        "data.base": "mine", "data.test": "mine-test", "data.input_size": 64,
        "model.backbone": "hrnet_w18_small", "model.init": "imagenet", "train.epochs": 2}),
    stages=(Stage(axes={"train.lr": Grid(1e-3, 5e-4)}),),
)
'''
CATALOG = '''[datasets.mine]
coco = "cluster-only/train.json"
images = "cluster-only/images"

[datasets.mine-test]
coco = "cluster-only/test.json"
images = "cluster-only/images"
'''


def one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    started = time.monotonic()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("posetune: error: "), err
    assert time.monotonic() - started < 60  # seconds, not MLflow's or Ray's minutes of retries
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()  # stopped before Ray started
    return err


def test_unreachable_tracker_and_cluster_stop_before_ray(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    results = ["--results", str(tmp_path / "r")]
    err = one_line_exit_2(capsys, ["sweep", "quickstart", "--smoke", *results,
                                   "--log", "mlflow=http://127.0.0.1:9"])
    assert "--log mlflow=http://127.0.0.1:9: the MLflow server does not answer" in err
    err = one_line_exit_2(capsys, ["sweep", "quickstart", "--smoke", *results,
                                   "--log", "mlflow=file:mlruns"])
    assert "refuses file stores" in err and "--log mlflow=sqlite:///mlflow.db" in err
    err = one_line_exit_2(capsys, ["sweep", "quickstart", "--smoke", *results,
                                   "--address", "127.0.0.1:9"])
    assert "--address 127.0.0.1:9: the Ray cluster at 127.0.0.1:9 does not answer" in err
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    err = one_line_exit_2(capsys, ["sweep", "quickstart", "--smoke", *results])
    assert "RAY_ADDRESS=http://127.0.0.1:8265: an HTTP address" in err


def test_plan_lists_what_the_sweep_would_stop_on_and_the_sweep_stops(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hub-cache"))  # a laptop without weights
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    Path("laptop_plan.py").write_text(LAPTOP)
    Path("catalog.toml").write_text(CATALOG)
    argv = ["sweep", "laptop_plan.py", "--catalog", "catalog.toml", "--log",
            "mlflow=http://127.0.0.1:9"]
    assert main([*argv, "--plan"]) == 0
    out = capsys.readouterr().out
    assert "plan for laptop_plan at scale full" in out
    tail = out[out.index("the sweep would stop before training on"):].splitlines()
    assert tail[0].startswith("the sweep would stop before training on 4 problem(s)"), tail
    problems = [line for line in tail if line.startswith("  - ")]
    assert len(problems) == 4, problems
    assert any("the MLflow server does not answer" in p for p in problems)
    assert any("model.init='imagenet' for 'hrnet_w18_small'" in p for p in problems)
    assert sum("cluster-only/t" in p for p in problems) == 2  # both datasets, by file
    assert tail[-1].startswith("plan written to ")
    # The sweep stops on the first of them, before the preflight and before Ray.
    one_line_exit_2(capsys, argv)
    err = one_line_exit_2(capsys, argv[:-2])  # without the tracker: the weights
    assert "model.init='imagenet'" in err
