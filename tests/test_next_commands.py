"""Every command posetune prints as a next step runs as printed, from where the user stands:
after a shipped experiment's sweep, after a sweep of a user's own experiment file (which also
logs to MLflow the way the README shows, with no environment variable of the test's own), and
the demo's follow-up, which must resume the demo's own store instead of training its trials
again. Each sweep runs as a user runs it: the `posetune` command in a fresh process."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.report.demo import next_lines

REPO = Path(__file__).resolve().parents[1]
POSETUNE = [sys.executable, "-m", "orchestrator.cli"]  # `posetune`, from this checkout


def user_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_ALLOW_FILE_STORE", "MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env["PYTHONPATH"] = str(REPO)  # this checkout, as an installed posetune would be
    env["HOME"] = str(tmp_path / "home")  # no user-level settings of the developer's
    return env


def posetune(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run([*POSETUNE, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1500)
    assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout


def printed_commands(out: str) -> list[str]:
    """The `Next:` lines of a sweep: the command after `Next: ` and the indented one below."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Next: "))
    return [lines[start][len("Next: "):], lines[start + 1].strip()]


def run_as_printed(command: str, cwd: Path, env: dict[str, str]) -> str:
    """The line as a user pastes it into a POSIX shell (comments and quoting included)."""
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1500)
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(2400)
def test_next_commands_of_a_shipped_and_an_own_experiment_and_the_demo_run(
        tmp_path: Path) -> None:
    env = user_env(tmp_path)
    # A shipped experiment (the demo's, CPU-sized).
    out = posetune(["sweep", "quickstart", "--smoke", "--results", "demo/results"], tmp_path, env)
    commands = printed_commands(out)
    assert commands[0].endswith(" table quickstart demo/results"), commands
    assert "# tables: trials, epochs, all_trials" in commands[1]
    assert "| " in run_as_printed(commands[0], tmp_path, env)  # the study table
    assert "synthetic_count" in run_as_printed(commands[1], tmp_path, env)

    # The demo's follow-up, printed for that store: more seeds that keep its trials.
    lines = next_lines(shlex.join(POSETUNE), "demo/results")
    assert lines[0] == "Next (run from this folder):"
    follow_up = [line.strip() for line in lines[1:] if not line.strip().startswith("#")]
    assert len(follow_up) == 4
    for command in follow_up:
        if " sweep quickstart --seeds 3 " in command:
            # The demo ran at the quickstart's own scale; this store holds its smoke-scale
            # twin, so the same command runs at that scale (8 smoke trials, not 8 minutes).
            out = run_as_printed(command + " --smoke", tmp_path, env)
            assert "resuming: 4 finished trial(s) skipped, 8 to run" in out, out[-3000:]
        else:
            run_as_printed(command, tmp_path, env)

    # A user's own experiment file, with MLflow as the README shows it.
    posetune(["new", "my_study.py"], tmp_path, env)
    out = posetune(["sweep", "my_study.py", "--smoke", "--log", "mlflow"], tmp_path, env)
    commands = printed_commands(out)
    assert commands[0].endswith(" table runs/my_study --experiment my_study"), commands
    table = run_as_printed(commands[0], tmp_path, env)
    assert "lr" in table and "AP" in table
    assert "lr=0.002" in run_as_printed(commands[1], tmp_path, env)
    from mlflow.tracking import MlflowClient

    db = tmp_path / "runs" / "my_study" / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("my_study")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["train.lr"] for r in runs) == ["0.0005", "0.002"]
    assert all("final.AP" in r.data.metrics for r in runs)
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()


def test_query_hint_names_every_query_table() -> None:
    from orchestrator.store.query import QUERY_TABLES

    text = "\n".join(next_lines("posetune", "r"))
    assert re.search(r"tables: trials, epochs, all_trials\)", text)
    assert set(QUERY_TABLES) == {"trials", "epochs", "all_trials"}
