"""posetune processes on one machine, as users start them: each sweep its own Ray cluster,
honest exit codes after Ctrl-C, and a resume that finishes the job (slow: real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.store.results import ResultsStore

pytestmark = [pytest.mark.slow, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[1]
STUDY = '''
from orchestrator.study.experiment import Experiment, Grid, Stage
from pose_core.config import TrialConfig, with_values

EXPERIMENT = Experiment(
    name="iso", description="isolation test",
    baseline=with_values(TrialConfig(), {{"model.backbone": "hrnet_w18_small",
                                          "model.init": "random"}}),
    stages=(
        Stage(name="pre", axes={{"data.synthetic_count": Grid({counts})}},
              changes={{"train.epochs": {epochs}}}),
        Stage(name="fine", changes={{"model.init": "checkpoint", "model.weights": "@best:pre"}},
              depends_on=("pre",)),
    ),
)
'''


def posetune(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, env=env | {
            "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_three_concurrent_sweeps_each_start_their_own_cluster(tmp_path: Path) -> None:
    """Started together on one machine, into three stores: none joins another's cluster, so
    none dies when another ends (the old ray.init(address="auto") did exactly that)."""
    study = tmp_path / "study.py"
    study.write_text(STUDY.format(counts="0", epochs=60))
    procs = [posetune(["sweep", str(study), "--smoke", "--results", str(tmp_path / f"r{i}"),
                       "--stage", "pre"], tmp_path) for i in range(3)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    for i in range(3):
        rows = ResultsStore(str(tmp_path / f"r{i}")).read_trials().to_pylist()
        assert [r["status"] for r in rows] == ["ok"]
    # Three different clusters: each row names its own Ray node.
    nodes = {ResultsStore(str(tmp_path / f"r{i}")).read_trials().to_pylist()[0]["node"]
             for i in range(3)}
    assert len(nodes) == 3


def test_ctrl_c_exits_130_names_the_resume_command_and_never_starts_stage_two(
    tmp_path: Path,
) -> None:
    study = tmp_path / "study.py"
    study.write_text(STUDY.format(counts="0, 10, 20", epochs=210))  # 3 trials x 3 epochs
    results = tmp_path / "res"
    args = ["sweep", str(study), "--smoke", "--results", str(results), "--max-concurrent", "1"]
    proc = posetune(args, tmp_path)
    deadline = time.time() + 300
    seen = ""
    assert proc.stdout is not None
    while time.time() < deadline:
        line = proc.stdout.readline()
        seen += line
        if "epoch 1:" in line:
            break
    assert "epoch 1:" in seen, seen[-3000:]
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    assert "--resume" in err and "posetune sweep" in err
    stages = {r["stage"] for r in ResultsStore(str(results)).read_trials().to_pylist()}
    assert "fine" not in stages
    again = posetune([*args, "--resume"], tmp_path)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    rows = ResultsStore(str(results)).read_trials().to_pylist()
    assert sorted((r["stage"], r["status"]) for r in rows) == [
        ("fine", "ok"), ("pre", "ok"), ("pre", "ok"), ("pre", "ok")]
