"""Experiment trackers (MLflow, TensorBoard, W&B) through Ray Tune's own logger callbacks.

``--log mlflow[=URI] --log tensorboard --log wandb`` (repeatable) becomes a list of Tune
callbacks for the sweep's ``RunConfig``. Each trial is one run: its config as parameters
(flattened, credentials and the data catalog left out), every report as metrics, and at the
end the last report's metrics under ``final.*`` plus the checkpoint URI. The clients are
the trackers' own, driven by Ray's callbacks; we only choose what they are given.

The tracker packages are optional: a missing one is a one-line error naming the pip package.
TensorBoard event files go into each trial's folder beside Tune's other trial files; W&B
honours its usual environment (``WANDB_MODE=offline``, ``WANDB_DIR``, ``WANDB_API_KEY``).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from typing import Any

from orchestrator.study.secrets import has_secret, is_secret_key
from pose_core.config import flatten
from pose_core.epoch_report import EpochReport
from pose_core.metrics import METRIC_NAMES

TRACKERS = ("mlflow", "tensorboard", "wandb")
PIP_PACKAGES = {"mlflow": "mlflow", "tensorboard": "tensorboardX", "wandb": "wandb"}
MODULES = {"mlflow": "mlflow", "tensorboard": "tensorboardX", "wandb": "wandb"}
FINAL_METRICS = (*METRIC_NAMES, "loss", "epoch")

# The catalog travels in the trial config to the workers: its storage options and paths are
# deployment details (and may carry credentials), not hyperparameters.
DROPPED_SECTIONS = ("catalog", "storage_options")


def add_log_argument(parser: argparse.ArgumentParser) -> None:
    """``--log TRACKER[=URI]``, repeatable, on a sweep-like subcommand."""
    parser.add_argument(
        "--log", action="append", default=[], metavar="TRACKER[=URI]",
        help="also log each trial to mlflow[=TRACKING_URI], tensorboard or wandb[=PROJECT] "
        "(repeatable)")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"mlflow=file:/tmp/m"`` -> ``("mlflow", "file:/tmp/m")``; unknown names raise."""
    name, _, target = spec.partition("=")
    name = name.strip().lower()
    if name not in TRACKERS:
        raise ValueError(f"--log {spec!r}: unknown tracker; valid: {', '.join(TRACKERS)}")
    if name == "tensorboard" and target:
        raise ValueError("--log tensorboard takes no URI: event files go into each trial's "
                         "folder under the Tune storage")
    return name, target or None


# ------------------------------------------------------------------ what trackers are given


def tracked_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's job as flat params (``experiment``, ``stage``, ``variant_id``, ``seed``,
    ``scale`` and the config as ``train.lr``, ...), without credentials, the catalog or the
    run settings (storage URIs). Lists become JSON text; None stays out (trackers reject it).
    """
    job = config.get("job")
    if job is not None:
        config = {"experiment": job.experiment, "stage": job.stage,
                  "variant_id": job.variant_id, "seed": job.seed, "scale": job.scale,
                  **job.config.to_dict()}
    out = {}
    for key, value in flatten(config).items():
        if value is None:
            continue
        value = json.dumps(value) if isinstance(value, list | tuple) else value
        parts = key.split(".")
        # Credentials (orchestrator.study.secrets: by name or by value) never leave the driver.
        if any(part in DROPPED_SECTIONS for part in parts) or is_secret_key(key):
            continue
        if isinstance(value, str) and has_secret(value):
            continue
        out[key] = value
    return out


def report_metrics(result: Mapping[str, Any]) -> dict[str, int | float]:
    """The finite numbers of one Tune result, without the echoed config.

    Integers stay integers: W&B rejects a float ``step`` (``training_iteration``).
    """
    out: dict[str, int | float] = {}
    for key, value in result.items():
        if key == "config" or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[key] = value
    return out


def final_metrics(result: Mapping[str, Any] | None) -> dict[str, float]:
    """``final.AP`` etc. from a trial's last result: what its results row holds."""
    numbers = report_metrics(result or {})
    return {f"final.{key}": float(numbers[key]) for key in FINAL_METRICS if key in numbers}


def checkpoint_uri(trial: Any) -> str | None:
    """The trial's checkpoint as its reports name it (the row's ``checkpoint_uri``), else
    the last checkpoint Tune registered."""
    reported = EpochReport.from_dict(trial.last_result or {}).checkpoint_path
    if reported:
        return str(reported)
    checkpoint = getattr(trial, "checkpoint", None)
    return str(checkpoint.path) if checkpoint is not None else None
