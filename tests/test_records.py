"""From a trial's reports to its typed row: status rules, metrics (Ray-free;
redaction: tests/test_secrets.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.store.rows import TrialOutcome, epoch_records, trial_record
from orchestrator.study.trials import RunSettings, TrialJob
from pose_core.config import TrialConfig, with_values
from pose_core.epoch_report import EpochReport

CFG = with_values(TrialConfig(), {"train.epochs": 3})
T0 = datetime(2026, 11, 21, tzinfo=UTC)


def outcome(reports: list[dict], error: str | None = None) -> TrialOutcome:  # type: ignore[type-arg]
    job = TrialJob("exp", "main", "v", 0, CFG, run=RunSettings("/tmp/x", gpus_per_trial=0.5))
    return TrialOutcome(job=job, trial_id="t1", reports=[EpochReport.from_dict(r) for r in reports],
                        started_at=T0,
                        ended_at=T0 + timedelta(seconds=90), error=error)


def report(epoch: int, ap: float | None) -> dict:  # type: ignore[type-arg]
    row = {"epoch": epoch, "loss": 0.1 / epoch, "lr": 1e-3, "images_per_s": 10.0,
           "evaluated": ap is not None, "time": T0.timestamp() + 30 * epoch}
    if ap is not None:
        row.update(AP=ap, AP50=ap, AP75=ap, AP85=ap, AR=ap, PCK05=ap)
    return row


def test_status_ok_stopped_failed() -> None:
    full = [report(1, 0.1), report(2, None), report(3, 0.3)]
    record = trial_record("exp", outcome(full))
    assert record.status == "ok" and record.AP == 0.3 and record.best_epoch == 3
    assert record.epochs_run == 3 and record.wall_s == 90 and record.gpu_hours == 90 / 3600 * 0.5
    assert trial_record("exp", outcome(full[:2])).status == "stopped"  # ASHA cut it at epoch 2
    failed = trial_record("exp", outcome(full[:1], error="ValueError: boom"))
    assert failed.status == "failed" and failed.error == "ValueError: boom"
    nan = trial_record("exp", outcome([report(1, 0.1) | {"error": "non-finite loss nan"}]))
    assert nan.status == "failed" and "non-finite" in (nan.error or "")


def test_no_evaluation_means_no_metrics() -> None:
    record = trial_record("exp", outcome([report(1, None)]))
    assert record.AP is None and record.PCK05 is None and record.best_epoch is None


def test_epoch_rows() -> None:
    rows = epoch_records("exp", outcome([report(1, 0.1), report(2, None) | {"restarted": True}]))
    assert [(r.epoch, r.AP, r.restarted) for r in rows] == [(1, 0.1, False), (2, None, True)]
    assert rows[1].wall_s == 60

