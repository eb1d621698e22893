"""Turn what a trial reported into typed result records (Ray-free).

The driver's Tune callback hands us the trial config and the list of per-epoch reports
(rank 0's metrics, as forwarded by ``TuneReportCallback``); we build one
:class:`~orchestrator.store.results.TrialRecord` and its :class:`~orchestrator.store.results.EpochRecord`
rows. Status: ``ok`` when all epochs ran, ``stopped`` when ASHA cut the trial, ``failed``
with the error text otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from orchestrator.store.schema import EpochRecord, TrialRecord, TrialStatus
from orchestrator.study.secrets import redact
from orchestrator.study.trials import TrialJob
from pose_core.config import TrialConfig
from pose_core.epoch_report import EpochReport
from pose_core.metrics import METRIC_NAMES


@cache
def versions() -> dict[str, str | None]:
    import timm
    import torch

    import pose_core

    try:
        import ray

        ray_version = ray.__version__
    except ImportError:  # pragma: no cover - the orchestrator always has Ray
        ray_version = "n/a"
    return {
        "posetune_version": pose_core.__version__,
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "ray_version": ray_version,
        "git_commit": git_commit(),
    }


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
            timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass
class TrialOutcome:
    """What the driver knows about a finished trial: its job and what it reported."""

    job: TrialJob
    trial_id: str
    reports: list[EpochReport]
    started_at: datetime
    ended_at: datetime
    error: str | None = None
    checkpoint_uri: str | None = None
    startup_s: float | None = None

    @property
    def config(self) -> TrialConfig:
        return self.job.config


def trial_record(experiment: str, outcome: TrialOutcome) -> TrialRecord:
    job = outcome.job
    cfg = job.config
    run = job.run
    last = outcome.reports[-1] if outcome.reports else EpochReport()
    facts = last.facts
    evaluated = [r for r in outcome.reports if r.evaluated]
    best = max(evaluated, key=lambda r: -1.0 if r.AP is None else r.AP) if evaluated else None
    epochs_run = int(last.epoch)
    error = outcome.error or last.error
    status: TrialStatus
    if error:
        status = "failed"
    elif epochs_run < cfg.train.epochs:
        status = "stopped"
    else:
        status = "ok"
    wall = (outcome.ended_at - outcome.started_at).total_seconds()

    def metric(key: str) -> float | None:
        return _finite(getattr(last, key)) if evaluated else None

    def floats(values: tuple[float, ...] | None) -> list[float] | None:
        return [float(v) for v in values or ()] or None

    v = versions()
    rates = [r.images_per_s for r in outcome.reports if r.images_per_s]
    return TrialRecord(
        experiment=experiment, stage=job.stage, variant_id=job.variant_id,
        trial_id=outcome.trial_id, seed=cfg.train.seed, status=status,
        error=None if error is None else redact(error),  # errors can echo env vars
        backbone=cfg.model.backbone, head=cfg.model.head, init=cfg.model.init,
        init_checkpoint=cfg.model.weights if cfg.model.init == "checkpoint" else None,
        lr=cfg.train.lr, epochs=cfg.train.epochs, batch_size=cfg.train.batch_size,
        augment=cfg.data.augment, real_count=cfg.data.real_count,
        synthetic_count=cfg.data.synthetic_count,
        datasets=facts.datasets or "", input_size=cfg.data.input_size,
        loss=cfg.train.loss, schedule=cfg.train.schedule,
        config_json=json.dumps(cfg.to_dict(), sort_keys=True), job_digest=job.digest,
        scale=job.scale,
        subset_digest=facts.subset_digest or "",
        **{name: metric(name) for name in METRIC_NAMES},  # type: ignore[arg-type]
        pck_per_keypoint=floats(last.pck_per_keypoint),
        keypoint_names=list(facts.keypoint_names or ()) or None,
        ap_per_keypoint=floats(last.ap_per_keypoint),
        error_per_keypoint=floats(last.error_per_keypoint),
        swap_rate_per_keypoint=floats(last.swap_rate_per_keypoint),
        sigma_set=cfg.eval.sigmas, sigma_digest=last.sigma_digest or "",
        area_rule=cfg.eval.area_rule, pck_normaliser=cfg.eval.pck_normaliser,
        params_m=_finite(facts.params_m), gflops=_finite(facts.gflops),
        best_epoch=int(best.epoch) if best else None, epochs_run=epochs_run,
        wall_s=wall, gpu_hours=wall / 3600 * (run.gpus_per_trial if run else 0.0),
        train_images_per_s=sum(rates) / len(rates) if rates else None,
        checkpoint_uri=outcome.checkpoint_uri,
        posetune_version=str(v["posetune_version"]), torch_version=str(v["torch_version"]),
        timm_version=str(v["timm_version"]), ray_version=str(v["ray_version"]),
        git_commit=v["git_commit"],
        started_at=outcome.started_at, ended_at=outcome.ended_at,
        node=facts.node, workers=1 if facts.workers is None else int(facts.workers),
        use_gpu=bool(run and run.use_gpu), startup_s=outcome.startup_s,
        images_skipped=_int(facts.images_skipped), train_images=_int(facts.train_images),
        subset_seed=cfg.data.subset_seed, forked_from=forked_from(job),
        epochs_trained=max(0, epochs_run - (job.fork_epoch if job.fork_of else 0)),
    )


def forked_from(job: TrialJob) -> str | None:
    if job.fork_of is None:
        return None
    variant, seed = job.fork_of
    return f"{job.experiment}/{job.stage}/{variant}/seed={seed}@epoch={job.fork_epoch}"


def epoch_records(experiment: str, outcome: TrialOutcome) -> list[EpochRecord]:
    rows = []
    start = outcome.started_at.timestamp()
    for report in outcome.reports:
        rows.append(
            EpochRecord(
                experiment=experiment, stage=outcome.job.stage,
                variant_id=outcome.job.variant_id,
                trial_id=outcome.trial_id, seed=outcome.config.train.seed,
                epoch=int(report.epoch), loss=math.nan if report.loss is None else float(report.loss),
                lr=0.0 if report.lr is None else float(report.lr),
                AP=_finite(report.AP) if report.evaluated else None,
                PCK05=_finite(report.PCK05) if report.evaluated else None,
                wall_s=(start if report.time is None else float(report.time)) - start,
                images_per_s=_finite(report.images_per_s),
                # A fork member's first epoch resumes from its prefix's copy: not a restart.
                restarted=report.restarted and outcome.job.fork_of is None,
            )
        )
    return rows


EPOCH_FIELDS = frozenset(f.name for f in dataclasses.fields(EpochRecord))


def relabel_epochs(rows: Iterable[Mapping[str, Any]], job: TrialJob,
                   trial_id: str) -> list[EpochRecord]:
    """Stored epoch rows of another trial as ``job``'s (a fork member's prefix, a reused
    trial): the same epochs under its experiment, stage, variant, seed and ``trial_id``."""
    return [EpochRecord(**{**{k: v for k, v in r.items() if k in EPOCH_FIELDS},
                           "experiment": job.experiment, "stage": job.stage,
                           "variant_id": job.variant_id, "seed": job.seed,
                           "trial_id": trial_id}) for r in rows]


def now() -> datetime:
    return datetime.now(UTC)
