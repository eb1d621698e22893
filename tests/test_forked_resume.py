"""A halving sweep whose driver is SIGKILLed while a forked trial trains, then `--resume`.

The real `posetune sweep FILE --smoke` as a user runs it, on its own local Ray cluster: two lr
arms x epochs 120/180 (2 and 3 at smoke scale) under halving. Both arms train 2 epochs; the
better one goes on to 3 epochs as a fork member (started from its 2-epoch trial's checkpoint
after epoch 1). The whole process session is killed once that member has reported its own
epoch 2 (so its own checkpoint holds epoch 2 and epoch 3 is in progress); the same command
with `--resume` must finish the sweep with every row once, the member's provenance and every
epoch row, and a resume line that counts what runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.store.results import ResultsStore
from tests.conftest import REPO, kill_session

pytestmark = [pytest.mark.slow, pytest.mark.fault, pytest.mark.ray]

EXPERIMENT_FILE = '''"""forked_resume: halving over two lengths, the longer one forked."""
from orchestrator import Experiment, Grid, Stage
from pose_core.config import TrialConfig, with_values

EXPERIMENT = Experiment(
    name="forked_resume",
    description=__doc__ or "",
    baseline=with_values(TrialConfig(), {
        "model.backbone": "hrnet_w18_small", "model.init": "random", "train.lr": 2e-3,
        "data.base_count": 24}),
    stages=(Stage(changes={"data.synthetic_count": 10},
                  axes={"train.lr": Grid(2e-3, 1e-9), "train.epochs": Grid(120, 180)},
                  scheduler="halving", keep=0.5),),
    scales={"smoke": {"data.max_test": 12}},
)
'''
ARMS = ("lr=0.002", "lr=1e-09")
# The kept arm's 3-epoch trial (a fork member) has reported its own epoch 2.
MEMBER_EPOCH_2 = re.compile(r"\| (lr=[^,]+),epochs=180 epoch 2: ")


def test_a_killed_forked_trial_resumes_with_its_provenance_and_every_epoch(
        tmp_path: Path) -> None:
    (tmp_path / "forked_resume.py").write_text(EXPERIMENT_FILE)
    results = tmp_path / "results"
    command = [sys.executable, "-m", "orchestrator.cli", "sweep", "forked_resume.py", "--smoke",
               "--results", str(results)]
    # The progress lines as they are printed (the kill waits for one of them).
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
        "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    first_log = tmp_path / "first.log"
    with first_log.open("w") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 420
            while time.time() < deadline and process.poll() is None:
                if MEMBER_EPOCH_2.search(first_log.read_text()):
                    break
                time.sleep(0.1)
            found = MEMBER_EPOCH_2.search(first_log.read_text())
            assert found, (f"the forked trial never reported its epoch 2 (exit "
                           f"{process.poll()}):\n" + first_log.read_text()[-3000:])
        finally:
            kill_session(process)  # the driver and the Ray cluster it started, nothing else
    seen = first_log.read_text()
    winner = found[1]
    assert f"forked from {winner},epochs=120 after epoch 1" in seen, seen[-3000:]
    before = ResultsStore(str(results)).read_trials(latest_only=False).to_pylist()
    assert sorted(r["variant_id"] for r in before) == [f"{arm},epochs=120" for arm in ARMS], (
        "the kill came too late: the forked trial had already finished", before)
    first_ids = {r["variant_id"]: r["trial_id"] for r in before}

    resumed = subprocess.run(command + ["--resume"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=420,
                             start_new_session=True)
    out = resumed.stdout + resumed.stderr
    (tmp_path / "resume.log").write_text(out)
    assert resumed.returncode == 0, out[-3000:]
    assert "trains from the start" not in out  # it continues from its own epoch-2 checkpoint

    store = ResultsStore(str(results))
    rows = store.read_trials(latest_only=False).to_pylist()
    member_variant = f"{winner},epochs=180"
    # Every trial once: the two 2-epoch trials (not rerun) and the kept arm's 3-epoch one.
    assert sorted(r["variant_id"] for r in rows) == sorted([*first_ids, member_variant])
    assert all(r["status"] == "ok" for r in rows), rows
    for variant, trial_id in first_ids.items():
        assert next(r["trial_id"] for r in rows if r["variant_id"] == variant) == trial_id
    member = next(r for r in rows if r["variant_id"] == member_variant)
    assert member["forked_from"] == f"forked_resume/main/{winner},epochs=120/seed=0@epoch=1"
    # It ran the whole schedule: epoch 1 inherited, epochs 2 (before the kill) and 3 (after)
    # trained itself.
    assert member["epochs_run"] == member["epochs"] == 3
    assert member["epochs_trained"] == 2
    epochs = [e for e in store.read_epochs().to_pylist() if e["variant_id"] == member_variant]
    assert sorted(e["epoch"] for e in epochs) == [1, 2, 3], epochs
    assert {e["trial_id"] for e in epochs} == {member["trial_id"]}
    prefix = {e["epoch"]: e for e in store.read_epochs().to_pylist()
              if e["variant_id"] == f"{winner},epochs=120"}
    by_epoch = {e["epoch"]: e for e in epochs}
    assert by_epoch[1]["loss"] == prefix[1]["loss"]  # the prefix's own epoch 1
    # Epoch 2 is the member's own (trained before the kill): at epoch 2 the 2-epoch prefix
    # had dropped its learning rate, the 3-epoch schedule had not.
    assert by_epoch[2]["lr"] > prefix[2]["lr"]
    # The resume line counts what ran: the kept arm's member, not the dropped arm's too.
    counted = re.search(r"resuming: (\d+) finished trial\(s\) skipped, (?:\d+ reused, )?"
                        r"(\d+) to run", out)
    assert counted, out[-3000:]
    ran = [r for r in rows if r["trial_id"] not in first_ids.values()]
    assert (int(counted[1]), int(counted[2])) == (2, len(ran)) == (2, 1), counted[0]
