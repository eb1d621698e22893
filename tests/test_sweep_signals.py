"""Stopping a sweep as users and job schedulers do: Ctrl-C, SIGTERM, and a second sweep into
a store another one holds. Real `posetune sweep` processes, each with its own Ray cluster;
the tests only signal processes they started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import kill_session

REPO = Path(__file__).resolve().parents[1]


def posetune(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    """``posetune ARGS`` in its own session, stdout and stderr in one stream (their order)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd,
        env=env | {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize(("name", "to_group"), [
    ("SIGINT", True),  # Ctrl-C in a terminal: the whole foreground process group
    ("SIGTERM", True),  # `timeout`, Slurm's scancel: Ray's own processes get it too
    ("SIGTERM", False),  # `kill PID`, Kubernetes: the driver alone
])
def test_a_stopped_sweep_says_so_first_and_names_the_resume_command(
    tmp_path: Path, name: str, to_group: bool,
) -> None:
    results = tmp_path / "res"
    proc = posetune(["sweep", "quickstart", "--smoke", "--results", str(results)], tmp_path)
    assert proc.stdout is not None
    try:
        seen, deadline = "", time.time() + 420
        while time.time() < deadline and "epoch 1:" not in seen:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        assert "epoch 1:" in seen, seen[-3000:]  # the first trial is training
        started = time.time()
        (os.killpg if to_group else os.kill)(proc.pid, getattr(signal, name))
        after, _ = proc.communicate(timeout=240)
        took = time.time() - started
    finally:
        kill_session(proc)  # whatever is left of this test's session
    lines = [line for line in after.splitlines() if line.strip()]
    assert lines and lines[0].startswith("posetune: interrupted"), after[-3000:]
    assert "posetune sweep quickstart --smoke" in lines[0] and "--resume" in lines[0]
    assert proc.returncode == 130, after[-3000:]
    assert "Next:" not in after and "(0 rows)" not in after and "variant_id" not in after
    for noise in ("Traceback", "SIGTERM received", "logging.cc", "Failed to connect to GCS"):
        assert noise not in after, after[-3000:]
    assert took < 60, f"took {took:.0f} s to stop"  # never Ray's 60 s wait for a dead GCS


def test_a_second_sweep_into_a_held_store_is_refused_before_its_preflight(
    tmp_path: Path,
) -> None:
    from orchestrator.store.lock import store_lock

    results = tmp_path / "res"
    with store_lock(str(results)):  # as a running sweep holds it
        started = time.time()
        proc = posetune(["sweep", "quickstart", "--smoke", "--results", str(results)],
                        tmp_path)
        out, _ = proc.communicate(timeout=120)
        took = time.time() - started
    assert proc.returncode == 2, out
    assert out.startswith("posetune: error: results store") and out.count("\n") == 1, out
    assert f"pid {os.getpid()}" in out and "in use by another posetune sweep" in out
    assert "checking" not in out  # refused before the preflight read any dataset
    assert took < 60, took


def test_the_lock_leaves_no_folder_a_refused_sweep_created(tmp_path: Path) -> None:
    """A sweep whose preflight fails leaves no results folder behind (the lock created it);
    a store with results keeps its folder."""
    from orchestrator.store.lock import LOCK_FILE, store_lock

    fresh = tmp_path / "a" / "res"
    with pytest.raises(ValueError), store_lock(str(fresh)):
        assert (fresh / LOCK_FILE).exists()
        raise ValueError("the preflight failed")
    assert not fresh.exists()
    with store_lock(str(fresh)):
        (fresh / "plan.json").write_text("{}")
    assert sorted(p.name for p in fresh.iterdir()) == [LOCK_FILE, "plan.json"]
    with pytest.raises(PermissionError, match="is not writable"), \
            store_lock(str(tmp_path / "a" / "res" / "plan.json" / "x")):
        pass
