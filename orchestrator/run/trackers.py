"""Experiment trackers (MLflow, TensorBoard, W&B) through Ray Tune's own logger callbacks.

``--log mlflow[=URI] --log tensorboard --log wandb`` (repeatable) becomes a list of Tune
callbacks for the sweep's ``RunConfig``. Each trial is one run: its config as parameters
(flattened, credentials and the data catalog left out), every report as metrics, and at the
end the last report's metrics under ``final.*`` plus the checkpoint URI. The clients are
the trackers' own, driven by Ray's callbacks; we only choose what they are given.

The tracker packages are optional: a missing one is a one-line error naming the pip package.
``--log mlflow`` without a URI logs to a SQLite database in the results store
(``RESULTS/mlflow.db``); :func:`check_trackers` settles that, and refuses what would fail
after Ray started (a file store, which current MLflow refuses; a server that does not answer).
TensorBoard event files go into each trial's folder beside Tune's other trial files; W&B
honours its usual environment (``WANDB_MODE=offline``, ``WANDB_DIR``, ``WANDB_API_KEY``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from orchestrator.run.reachable import http_problem
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


def parse_specs(specs: Sequence[str]) -> list[tuple[str, str | None]]:
    """Every ``--log`` value parsed; a tracker named twice raises."""
    parsed = [parse_spec(spec) for spec in specs]
    seen = [name for name, _ in parsed]
    repeated = sorted({n for n in seen if seen.count(n) > 1})
    if repeated:
        raise ValueError(f"--log {', '.join(repeated)} given more than once")
    return parsed


def missing_package(name: str) -> str | None:
    """The one-line error for a tracker whose package is not installed, or None."""
    if importlib.util.find_spec(MODULES[name]) is not None:
        return None
    return f"--log {name} needs the {PIP_PACKAGES[name]!r} package: pip install {PIP_PACKAGES[name]}"


# ------------------------------------------------------------ checked before Ray starts

MLFLOW_DB = "mlflow.db"


def check_trackers(specs: Sequence[str], results: str) -> tuple[list[str], list[str]]:
    """The ``--log`` values as the sweep uses them, and each problem that would stop it.

    ``mlflow`` without a URI becomes ``mlflow=sqlite:///RESULTS/mlflow.db``. A missing
    package, a file store (current MLflow refuses them unless ``MLFLOW_ALLOW_FILE_STORE`` is
    set) and a tracking server that does not answer within seconds are problems: a sweep stops
    on them before Ray starts, ``--plan`` lists them. An unknown or repeated tracker raises.
    """
    resolved, problems = [], []
    for name, target in parse_specs(specs):
        missing = missing_package(name)
        if missing:
            problems.append(missing)
        if name == "mlflow":
            target, problem = mlflow_target(target, results)
            if problem:
                problems.append(problem)
        resolved.append(f"{name}={target}" if target else name)
    return resolved, problems


def mlflow_target(target: str | None, results: str) -> tuple[str | None, str | None]:
    """The tracking URI for ``--log mlflow[=TARGET]`` and the problem with it, if any."""
    local_results = "://" not in results or results.startswith("file://")
    if target is None:
        if not local_results:
            return None, (f"--log mlflow: the results are at {results}, and MLflow's SQLite "
                          "database must be a file on this machine; give --log "
                          "mlflow=sqlite:////PATH/mlflow.db or a tracking server's http:// URI")
        folder = os.path.abspath(os.path.expanduser(results.removeprefix("file://")))
        return f"sqlite:///{os.path.join(folder, MLFLOW_DB)}", None
    scheme = urlsplit(target).scheme.lower()
    if scheme == "file" or (not scheme and target != "databricks"):
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("1", "true"):
            return target, None  # the user's own opt-in to MLflow's file store
        return target, (f"--log mlflow={target}: current MLflow refuses file stores; use "
                        f"--log mlflow (a SQLite database in the results store, RESULTS/"
                        f"{MLFLOW_DB}) or --log mlflow=sqlite:///{MLFLOW_DB}")
    if scheme in ("http", "https"):
        why = http_problem(target.rstrip("/") + "/health")
        if why:
            return target, (f"--log mlflow={target}: the MLflow server does not answer "
                            f"({why}); start it, or give --log mlflow alone to log to a SQLite "
                            f"database in the results store")
    return target, None


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
