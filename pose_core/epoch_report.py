"""What the training loop reports after every epoch, typed: :class:`EpochReport`.

Every field name is spelled here once. The loop builds reports (:func:`measured`), sessions
add what they know (the first step's time, the checkpoint's place), the orchestrator's
sweep callback reads them back and its row builder turns the last one into a result row.
Only at the Ray boundary does a report become a dict (``ray.train.report`` and
``tune.report`` take one, Tune hands one back): :meth:`EpochReport.as_dict` and
:meth:`EpochReport.from_dict`.

A field that is None was not measured and is left out of the dict, so a report holds what
it did before it was typed: an epoch without evaluation carries the last evaluated metrics
(:meth:`EpochReport.carried`; ASHA and Optuna need them every epoch), but not the details
of that evaluation (sigma set, instance count).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pose_core.metrics import METRIC_NAMES, MetricResult

if TYPE_CHECKING:
    from pose_core.engine import EpochStats


@dataclass(frozen=True)
class TrialFacts:
    """Facts about the trial that do not change between epochs (sent with every report, so
    the last one holds them all)."""

    subset_digest: str | None = None
    datasets: str | None = None
    train_images: int | None = None
    test_images: int | None = None
    keypoint_names: tuple[str, ...] | None = None
    workers: int | None = None
    node: str | None = None
    params_m: float | None = None
    gflops: float | None = None
    images_skipped: int | None = None
    init_message: str | None = None


@dataclass(frozen=True)
class EpochReport:
    """One epoch of one trial. ``restarted``: run after a restart from a checkpoint."""

    epoch: int = 0
    loss: float | None = None
    lr: float | None = None
    images_per_s: float | None = None
    epoch_wall_s: float | None = None
    time: float | None = None  # wall clock at the epoch's end (time.time())
    evaluated: bool = False
    restarted: bool = False
    # The evaluation (pose_core.metrics.MetricResult's fields): this epoch's when evaluated,
    # else the summary metrics and per-keypoint values carried from the last one.
    AP: float | None = None
    AP50: float | None = None
    AP75: float | None = None
    AP85: float | None = None
    AR: float | None = None
    PCK05: float | None = None
    pck_per_keypoint: tuple[float, ...] | None = None
    sigma_set: str | None = None
    sigma_digest: str | None = None
    area_rule: str | None = None
    pck_normaliser: str | None = None
    pck_threshold: float | None = None
    num_instances: int | None = None
    ap_per_keypoint: tuple[float, ...] | None = None
    error_per_keypoint: tuple[float, ...] | None = None
    swap_rate_per_keypoint: tuple[float, ...] | None = None
    facts: TrialFacts = field(default_factory=TrialFacts)
    # Added by the orchestrator's sessions.
    first_step_at: float | None = None  # wall clock at the end of the first optimizer step
    checkpoint_path: str | None = None
    error: str | None = None  # the trial ended on this deterministic error

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EpochReport:
        """A report from its dict (keys it does not know, such as Tune's own, are ignored)."""
        facts = {k: _tuple(values[k]) for k in FACT_FIELDS if values.get(k) is not None}
        own = {k: _tuple(values[k]) for k in OWN_FIELDS if values.get(k) is not None}
        return cls(**own, facts=TrialFacts(**facts))

    def as_dict(self) -> dict[str, Any]:
        """The report as one flat dict (the facts beside the epoch's values), without the
        fields that are None; tuples become lists."""
        out = {k: getattr(self, k) for k in OWN_FIELDS}
        out |= {k: getattr(self.facts, k) for k in FACT_FIELDS}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()
                if v is not None}

    def carried(self, last: EpochReport) -> EpochReport:
        """This report with the summary metrics and per-keypoint values of ``last`` (the
        previous report) when this epoch was not evaluated; 0.0 before any evaluation."""
        if self.evaluated:
            return self
        values: dict[str, Any] = {k: getattr(last, k) for k in PER_KEYPOINT}
        for key in METRIC_NAMES:
            value = getattr(last, key)
            values[key] = 0.0 if value is None else value
        return dataclasses.replace(self, **values)

    def without_lists(self) -> EpochReport:
        """Without the per-keypoint values and keypoint names (what ranks other than 0
        report: only rank 0's report is kept)."""
        lists: dict[str, Any] = dict.fromkeys(PER_KEYPOINT)
        return dataclasses.replace(self, **lists,
                                   facts=dataclasses.replace(self.facts, keypoint_names=None))


FACT_FIELDS = tuple(f.name for f in dataclasses.fields(TrialFacts))
OWN_FIELDS = tuple(f.name for f in dataclasses.fields(EpochReport) if f.name != "facts")
PER_KEYPOINT = tuple(name for name in OWN_FIELDS if name.endswith("_per_keypoint"))
# Every key a report dict can hold (what the sweep callback keeps of a Tune result).
REPORT_KEYS = (*OWN_FIELDS, *FACT_FIELDS)
assert len(set(REPORT_KEYS)) == len(REPORT_KEYS), "a fact and a report field share a name"
assert {f.name for f in dataclasses.fields(MetricResult)} <= set(OWN_FIELDS), \
    "EpochReport lacks a MetricResult field"


def measured(stats: EpochStats, metrics: MetricResult | None, world: int = 1,
             restarted: bool = False) -> EpochReport:
    """One epoch's own report: its training statistics (``world`` workers' throughput)
    and, when it was evaluated, the evaluation."""
    evaluation = {} if metrics is None else {
        k: _tuple(v) for k, v in dataclasses.asdict(metrics).items()}
    return EpochReport(
        epoch=stats.epoch + 1, loss=stats.loss, lr=stats.lr,
        images_per_s=stats.images_per_s * world, epoch_wall_s=stats.wall_s, time=time.time(),
        evaluated=metrics is not None, restarted=restarted, **evaluation,
    )


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
