"""Ray's start-up warnings: a local cluster started with posetune's settings prints none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.run.ray_settings import local_ray_settings

ROOT = Path(__file__).resolve().parents[1]

# Ray imported first (the worst case: its config is already loaded), then posetune's settings,
# then the local start as orchestrator.run.driver.init_ray makes it.
SCRIPT = """
import logging, os, ray
from orchestrator.run.ray_settings import apply_local_ray_settings
assert apply_local_ray_settings(None) == {"RAY_AUTH_MODE": "token"}
ray.init(include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False,
         logging_level=logging.WARNING)
print(ray.get(ray.remote(lambda: os.environ["RAY_AUTH_MODE"]).remote()))
ray.shutdown()
"""


@pytest.mark.parametrize(("address", "environ", "expected"), [
    (None, {}, {"RAY_AUTH_MODE": "token"}),
    ("auto", {}, {"RAY_AUTH_MODE": "token"}),
    ("local", {}, {"RAY_AUTH_MODE": "token"}),
    (None, {"RAY_AUTH_MODE": "disabled"}, {}),  # the user's choice stands
    ("10.0.0.5:6379", {}, {}),  # a cluster we do not start: Ray neither forces auth nor warns
])
def test_settings_only_state_rays_own_default_for_local_clusters(
        address: str | None, environ: dict[str, str], expected: dict[str, str]) -> None:
    assert local_ray_settings(address, environ) == expected


@pytest.mark.ray
def test_local_ray_start_with_settings_prints_no_warning(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT))  # a fresh ~/.ray: no token yet
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("token")
    assert "WARNING" not in done.stderr and "Token authentication" not in done.stderr, done.stderr
    assert (tmp_path / ".ray" / "auth_token").is_file()  # auth stays on, as Ray's default
