"""The typed epoch report: its dict at the Ray boundary, carried metrics, and that every key
the loop reports is one the callback and the row builder read back."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime

from orchestrator.store.rows import TrialOutcome, trial_record
from orchestrator.study.trials import TrialJob
from pose_core.config import TrialConfig, with_values
from pose_core.engine import EpochStats
from pose_core.epoch_report import REPORT_KEYS, EpochReport, TrialFacts, measured
from pose_core.metrics import METRIC_NAMES, MetricResult

METRICS = MetricResult(AP=0.5, AP50=0.6, AP75=0.4, AP85=0.3, AR=0.55, PCK05=0.7,
                       pck_per_keypoint=(0.7, 0.8), sigma_set="animalpose", sigma_digest="abc",
                       area_rule="given", pck_normaliser="bbox", pck_threshold=0.05,
                       num_instances=4, ap_per_keypoint=(0.5, 0.4))
FACTS = TrialFacts(subset_digest="d1", datasets="animalpose,test=lynx-test", train_images=32,
                   test_images=8, keypoint_names=("nose", "tail"), workers=2, node="host",
                   params_m=1.5, gflops=0.2, images_skipped=0, init_message="random init")


def test_the_dict_round_trips_and_leaves_out_what_was_not_measured() -> None:
    stats = EpochStats(epoch=2, loss=0.25, lr=1e-3, iterations=4, images=40, wall_s=2.0)
    report = measured(stats, METRICS, world=2, restarted=True)
    assert report.epoch == 3 and report.images_per_s == 40.0 and report.evaluated
    full = dataclasses.replace(report, facts=FACTS)
    values = full.as_dict()
    assert values["pck_per_keypoint"] == [0.7, 0.8] and values["keypoint_names"] == ["nose", "tail"]
    assert values["node"] == "host" and "facts" not in values and "checkpoint_path" not in values
    assert set(values) <= set(REPORT_KEYS)
    assert EpochReport.from_dict(values | {"training_iteration": 3, "config": {}}) == full
    plain = measured(stats, None).as_dict()
    assert not any(k in plain for k in (*METRIC_NAMES, "pck_per_keypoint", "sigma_digest"))


def test_epochs_without_evaluation_carry_the_last_metrics() -> None:
    stats = EpochStats(epoch=0, loss=1.0, lr=1e-3, iterations=1, images=8, wall_s=1.0)
    first = measured(stats, None).carried(EpochReport())
    assert [getattr(first, k) for k in METRIC_NAMES] == [0.0] * len(METRIC_NAMES)
    evaluated = measured(stats, METRICS)
    later = measured(stats, None).carried(evaluated)
    assert later.AP == 0.5 and later.pck_per_keypoint == (0.7, 0.8)
    assert later.sigma_digest is None and not later.evaluated  # the evaluation's details stay
    assert "keypoint_names" not in evaluated.without_lists().as_dict()


def test_the_row_is_built_from_the_typed_report() -> None:
    cfg = with_values(TrialConfig(), {"train.epochs": 1})
    stats = EpochStats(epoch=0, loss=0.5, lr=1e-3, iterations=2, images=16, wall_s=1.0)
    report = dataclasses.replace(measured(stats, METRICS), facts=FACTS)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    row = trial_record("exp", TrialOutcome(TrialJob("exp", "main", "v", 0, cfg), "t",
                                           [EpochReport.from_dict(report.as_dict())], t0, t0))
    assert row.status == "ok" and row.AP == 0.5 and row.sigma_digest == "abc"
    assert row.keypoint_names == ["nose", "tail"] and row.workers == 2 and row.node == "host"
    assert row.train_images == 32 and row.images_skipped == 0 and row.params_m == 1.5
    failed = EpochReport(epoch=0, error="ValueError: x", **dict.fromkeys(METRIC_NAMES, math.nan))
    row = trial_record("exp", TrialOutcome(TrialJob("exp", "main", "v", 0, cfg), "t",
                                           [failed], t0, t0))
    assert row.status == "failed" and row.workers == 1 and row.train_images is None
