"""Measured training throughput for ``--plan``'s hours: per device, backbone, head, input size
and batch, measured on this machine by ``--plan --calibrate`` and cached (Ray-free).

A figure is only meaningful for the device it was measured on, so the cache is keyed by the
device's name (``NVIDIA H100 80GB HBM3``, or the CPU) and a plan uses the figures of the device
it runs on: run ``posetune sweep EXP --plan --calibrate`` once on a node of the cluster (a GPU
node's figures are GPU figures), and later plans there reuse them. ``--throughput IMG_PER_S``
overrides every figure. The model step runs on random tensors with the engine's CUDA settings
(bf16 autocast and channels_last on CUDA, fp32 on CPU): data loading is not timed, so the hours
are a lower bound where the loader cannot keep up (BENCHMARKS.md, P2).

The cache is ``$POSETUNE_CACHE/throughput.json`` (default ``~/.cache/posetune``).
"""

from __future__ import annotations

import contextlib
import json
import platform
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.data.pretrained import cache_root
from orchestrator.study.trials import TrialJob

KEYPOINTS = 20  # the study's skeletons; only the last layer depends on it


def cache_file() -> Path:
    return cache_root() / "throughput.json"


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return str(torch.cuda.get_device_name(0))
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"CPU {model}, {torch.get_num_threads()} threads"


def figure_key(job: TrialJob) -> str:
    """What a figure depends on: backbone, head, input size, batch (keypoints barely matter)."""
    model, data, train = job.config.model, job.config.data, job.config.train
    return f"{model.backbone}/{model.head}/{data.input_size}px/batch{train.batch_size}"


def load(device: str | None = None) -> dict[str, dict[str, Any]]:
    """The cached figures of ``device`` (default: this machine's), by :func:`figure_key`."""
    path = cache_file()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return {}
    return dict(data.get(device or device_name(), {}))


def throughputs(jobs: Iterable[TrialJob], device: str | None = None) -> dict[str, float]:
    """Images per second per :func:`figure_key` of ``jobs`` that the cache has."""
    cached = load(device)
    keys = {figure_key(job) for job in jobs}
    return {k: float(cached[k]["images_per_s"]) for k in keys if k in cached}


def calibrate(jobs: Iterable[TrialJob], say: Callable[[str], None],
              steps: int | None = None) -> dict[str, float]:
    """Measure every figure ``jobs`` need on this machine's device and cache it."""
    import torch

    from pose_core.throughput import time_training_step

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    name = device_name()
    todo: dict[str, TrialJob] = {}
    for job in jobs:
        todo.setdefault(figure_key(job), job)
    found: dict[str, float] = {}
    for index, (key, job) in enumerate(sorted(todo.items()), 1):
        cfg = job.config
        say(f"calibrating {key} on {name} ({index}/{len(todo)}) ...")
        timing = time_training_step(
            cfg.model, KEYPOINTS, cfg.data.input_size, cfg.train.batch_size, device,
            bf16=cuda and cfg.train.bf16, channels_last=cuda and cfg.train.channels_last,
            steps=steps or (20 if cuda else 2), warmup=5 if cuda else 1)
        found[key] = timing.images_per_s
        say(f"  {key}: {timing.images_per_s:.1f} training images/s")
    save(name, found)
    return found


def save(device: str, figures: dict[str, float]) -> Path:
    path = cache_file()
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    import torch

    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    entries = data.setdefault(device, {})
    for key, value in figures.items():
        entries[key] = {"images_per_s": value, "measured_at": stamp, "torch": torch.__version__}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)
    return path
