"""Shared fixtures: paths to the shared real data, a small generated data set, S3 and Ray."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.s3server import s3_server  # noqa: F401  (re-exported fixture)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "real"

# Keep generated data of the tests out of the user's cache.
os.environ.setdefault(
    "POSETUNE_DATA", str(Path(os.environ.get("TMPDIR", "/tmp")) / "posetune-test-data")
)
# Measured throughput figures (--plan --calibrate): a per-session cache, never the user's.
os.environ["POSETUNE_CACHE"] = str(
    Path(os.environ.get("TMPDIR", "/tmp")) / f"posetune-test-cache-{os.getpid()}")
# Tests never download: timm's hub weights come only from caches the tests build.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Trials' decoded-image store: on disk for the tests, not in the node's /dev/shm (RAM).
os.environ.setdefault(
    "POSETUNE_IMAGE_STORE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "posetune-test-images")
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 generated images (camera-trap style) shared by the tests of one session."""
    from pose_core.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, SynthConfig(images=60, seed=7, style="camera-trap", workers=1))
    return out


@pytest.fixture(scope="session")
def predict_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained checkpoint (test_resnet, 64 px; nose, left/right ear, tail) for
    ``posetune predict`` tests: real inference, no training, no Ray."""
    from pose_core.config import TrialConfig, with_values
    from pose_core.engine import save_checkpoint
    from pose_core.models import build_model

    cfg = with_values(TrialConfig(), {
        "model.backbone": "test_resnet", "model.init": "random", "data.input_size": 64,
    })
    names = ["nose", "left_ear", "right_ear", "tail"]
    model = build_model(cfg.model, len(names), cfg.data.input_size)
    path = tmp_path_factory.mktemp("predict-ckpt") / "checkpoint.pt"
    save_checkpoint(path, model, None, None, 1, cfg.to_dict(), names)
    return path


def write_images(folder: Path, count: int, size: tuple[int, int] = (96, 72)) -> Path:
    """``count`` small noisy PNGs (``im00.png``, ...) in ``folder``."""
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in range(count):
        image = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"im{n:02d}.png"), image)
    return folder


def kill_session(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGKILL every process of ``process``'s session (started with ``start_new_session``:
    the driver and the local Ray cluster it started, nothing else), as a machine that dies
    would, and reap the driver."""
    sid = process.pid
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == sid:
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue
    process.wait(timeout=30)
