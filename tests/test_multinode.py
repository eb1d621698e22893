"""A real two-node Ray cluster on loopback: `ray start` head + worker, `ray job submit` a sweep.

Ray >= 2.59 turns token auth on for such clusters, so the job is submitted with
RAY_AUTH_MODE=token (RAY_NOTES.md section 0.2). Only the processes of this test's cluster
(recognised by its private temp dir) are stopped at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.store.results import ResultsStore

pytestmark = [pytest.mark.slow, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ray_cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ray"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def stop_cluster(temp_dir: str) -> None:
    """SIGKILL the processes whose command line names this cluster's temp dir, and only them."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if temp_dir in cmdline and int(entry.name) != os.getpid():
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_job_submit_runs_trials_on_both_nodes(tmp_path: Path) -> None:
    temp_dir = f"/tmp/ptmn{os.getpid()}"  # Ray needs a short temp dir (socket path length)
    port, dashboard = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({"RAY_AUTH_MODE": "token", "POSETUNE_DATA": str(tmp_path / "data")})
    try:
        head = ray_cli("start", "--head", f"--port={port}", "--num-cpus=2",
                       "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                       f"--temp-dir={temp_dir}", "--disable-usage-stats",
                       f"--ray-client-server-port={free_port()}", env=env)
        assert head.returncode == 0, head.stdout[-2000:] + head.stderr[-2000:]
        worker = ray_cli("start", f"--address=127.0.0.1:{port}", "--num-cpus=2",
                         '--resources={"worker_node": 1}', "--disable-usage-stats",
                         f"--temp-dir={temp_dir}", env=env)
        assert worker.returncode == 0, worker.stdout[-2000:] + worker.stderr[-2000:]
        results = tmp_path / "results"
        job = ray_cli(
            "job", "submit", f"--address=http://127.0.0.1:{dashboard}", "--",
            str(BIN / "posetune"), "sweep", "quickstart", "--smoke", "--results", str(results),
            "--max-concurrent", "2", env=env, timeout=900,
        )
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        rows = ResultsStore(str(results)).read_trials().to_pylist()
        assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
        nodes = {r["node"].split("/", 1)[1] for r in rows}
        listing = ray_cli("list", "nodes", f"--address=http://127.0.0.1:{dashboard}",
                          "--format=json", env=env)
        assert listing.returncode == 0, listing.stderr[-2000:]
        by_resource = {n["node_id"]: n.get("resources_total", {}) for n in json.loads(listing.stdout)}
        worker_nodes = {n for n, res in by_resource.items() if "worker_node" in res}
        assert len(by_resource) == 2 and len(worker_nodes) == 1
        assert nodes == set(by_resource), (nodes, by_resource)  # trials ran on both nodes
    finally:
        stop_cluster(temp_dir)
        time.sleep(1)
